"""depth-node evaluate: every input problem is a clean error (exit 2), aspect and sign checks."""

from __future__ import annotations

import json
import shutil

import cv2
from depth_node.cli import main
from depth_node.evaluate import (
    compute_metrics,
    EvaluationError,
    load_depth_file,
    METRIC_KEYS,
)
import numpy as np
import pytest

TUM_BAG = 'bags/tum_rgbd_sample_mcap'
TUM_DEPTH_TOPIC = '/camera/depth_registered/image_gt'


def _fails(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI, expect exit 2 without a traceback, and the needles in stderr."""
    rc = main(['evaluate', *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert 'Traceback' not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# -- bags ----------------------------------------------------------------------------------

def test_missing_bag_is_a_clean_error(tmp_path, capsys):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    missing = str(tmp_path / 'nope_dir')
    _fails(capsys, [missing, '--pred-topic', '/a', '--gt-topic', '/b'], 'does not exist',
           'nope_dir')
    # an empty folder is not a rosbag2 bag either
    (tmp_path / 'empty').mkdir()
    _fails(capsys, [str(tmp_path / 'empty'), '--pred-topic', '/a', '--gt-topic', '/b'],
           'cannot be read as a bag')


def test_corrupt_bags_are_clean_errors(shared_data, tmp_path, capsys):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    garbage = tmp_path / 'g.bag'
    garbage.write_text('x\n')
    err = _fails(capsys, [str(garbage), '--pred-topic', '/a', '--gt-topic', '/b'],
                 'cannot be read as a bag', 'g.bag')
    assert 'rosbag2' in err                  # says what a bag is
    # a real bag cut in half (a copy in tmp_path) and one with a broken metadata.yaml
    cut = tmp_path / 'cut'
    shutil.copytree(shared_data / TUM_BAG, cut)
    mcap = next(cut.glob('*.mcap'))
    with open(mcap, 'r+b') as f:
        f.truncate(mcap.stat().st_size // 2)
    _fails(capsys, [str(cut), '--pred-topic', TUM_DEPTH_TOPIC, '--gt-topic', TUM_DEPTH_TOPIC],
           'cannot be read as a bag')
    meta = tmp_path / 'meta'
    shutil.copytree(shared_data / TUM_BAG, meta)
    (meta / 'metadata.yaml').write_text('garbage: [\n')
    _fails(capsys, [str(meta), '--pred-topic', TUM_DEPTH_TOPIC, '--gt-topic', TUM_DEPTH_TOPIC],
           'cannot be read as a bag')
    # the ground-truth bag is the broken one: the message names it
    err = _fails(capsys, [str(shared_data / TUM_BAG), str(garbage), '--pred-topic',
                          TUM_DEPTH_TOPIC, '--gt-topic', '/b'], 'g.bag')
    assert 'ground-truth' in err


def test_bag_topic_problems(shared_data, capsys):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    bag = str(shared_data / TUM_BAG)
    # unknown topic: the message lists the Image topics there are
    err = _fails(capsys, [bag, '--pred-topic', '/nope', '--gt-topic', TUM_DEPTH_TOPIC],
                 "'/nope' is not in", TUM_DEPTH_TOPIC)
    # a topic that is not a sensor_msgs/Image
    _fails(capsys, [bag, '--pred-topic', '/camera/color/camera_info', '--gt-topic',
                    TUM_DEPTH_TOPIC], 'sensor_msgs/msg/CameraInfo', 'not sensor_msgs/msg/Image')
    # a colour image topic: every message is skipped, then a clean error
    err = _fails(capsys, [bag, '--pred-topic', '/camera/color/image_raw', '--gt-topic',
                          TUM_DEPTH_TOPIC], 'could be decoded')
    assert 'rgb8' in err
    # only one of the two topics
    _fails(capsys, [bag, '--pred-topic', TUM_DEPTH_TOPIC], '--gt-topic')


def test_bag_without_pairs_says_how_far_apart(tmp_path, capsys):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    from depth_node.images import make_depth_image
    from depth_node.messages import rosbags_factory
    from rosbags.rosbag2 import StoragePlugin, Writer
    factory = rosbags_factory('humble')
    store = factory.typestore
    depth = np.full((6, 8), 2.0, np.float32)
    bag = tmp_path / 'apart'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, sec in (('/pred', 100), ('/gt', 101)):       # 1 s apart
            conn = writer.add_connection(topic, 'sensor_msgs/msg/Image', typestore=store)
            msg = make_depth_image(factory, factory.header(sec, 500_000_000, 'cam'), depth,
                                   '32FC1')
            writer.write(conn, sec * 10**9, store.serialize_cdr(msg, 'sensor_msgs/msg/Image'))
    err = _fails(capsys, [str(bag), '--pred-topic', '/pred', '--gt-topic', '/gt'],
                 'No prediction on /pred within 0.01 s', '1 s apart', '--max-dt')
    assert '1 and 1 messages' in err
    assert main(['evaluate', str(bag), '--pred-topic', '/pred', '--gt-topic', '/gt',
                 '--max-dt', '1.5', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['abs_rel'] == 0.0


# -- files ---------------------------------------------------------------------------------

def test_missing_files_name_which_one(shared_data, tmp_path, capsys):
    gt = str(shared_data / 'rgbd/open3d_tum/TUM_depth.png')
    np.save(tmp_path / 'pred.npy', np.ones((480, 640), np.float32))
    err = _fails(capsys, [str(tmp_path / 'missing.npy'), gt, '--gt-scale', '0.0002'],
                 'does not exist', 'missing.npy')
    assert 'prediction' in err.lower()
    err = _fails(capsys, [str(tmp_path / 'pred.npy'), str(tmp_path / 'nogt.png'),
                          '--gt-scale', '0.0002'], 'does not exist', 'nogt.png')
    assert 'ground-truth' in err.lower()
    # a bag folder given as a file: say how to name the topics
    _fails(capsys, [str(shared_data / TUM_BAG), gt, '--gt-scale', '0.0002'],
           'is a folder', '--pred-topic')
    # a file OpenCV cannot decode
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG not really')
    _fails(capsys, [str(tmp_path / 'pred.npy'), str(tmp_path / 'broken.png'), '--gt-scale',
                    '0.001'], 'cannot read', 'broken.png')


def test_eight_bit_png_is_not_depth(shared_data, tmp_path, capsys):
    colour = shared_data / 'rgbd/open3d_tum/TUM_color.png'
    np.save(tmp_path / 'pred.npy', np.ones((480, 640), np.float32))
    # the colour image passed as ground truth by mistake
    _fails(capsys, [str(tmp_path / 'pred.npy'), str(colour), '--gt-scale', '0.001'],
           '8-bit', 'TUM_color.png', '16-bit')
    # an 8-bit grey PNG, e.g. a depth visualisation
    grey = cv2.cvtColor(cv2.imread(str(colour)), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / 'vis.png'), grey)
    with pytest.raises(EvaluationError, match='8-bit'):
        load_depth_file(tmp_path / 'vis.png', 0.001)
    # the real 16-bit depth PNG still loads
    tum = load_depth_file(shared_data / 'rgbd/open3d_tum/TUM_depth.png', 1 / 5000)
    assert tum.dtype == np.float32 and tum.shape == (480, 640)


def test_npy_shape_dtype_and_corruption(tmp_path, capsys):
    gt = tmp_path / 'gt.npy'
    np.save(gt, np.full((48, 64), 2.0, np.float32))
    for name, array in (('4d', np.ones((2, 3, 48, 64), np.float32)),
                        ('chw', np.ones((3, 48, 64), np.float32)),
                        ('flat', np.ones(48 * 64, np.float32))):
        np.save(tmp_path / f'{name}.npy', array)
        err = _fails(capsys, [str(tmp_path / f'{name}.npy'), str(gt)], f'{name}.npy',
                     str(array.shape), '(H, W)')
        assert 'prediction' in err
    # a leading batch axis of 1 is fine (squeezed)
    np.save(tmp_path / 'batch.npy', np.full((1, 48, 64), 2.0, np.float32))
    assert main(['evaluate', str(tmp_path / 'batch.npy'), str(gt), '--json']) == 0
    assert json.loads(capsys.readouterr().out)['abs_rel'] == 0.0
    # not a number array, and not an .npy at all
    np.save(tmp_path / 'obj.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    _fails(capsys, [str(tmp_path / 'obj.npy'), str(gt)], 'obj.npy', 'cannot be read')
    (tmp_path / 'junk.npy').write_bytes(b'not numpy at all')
    _fails(capsys, [str(tmp_path / 'junk.npy'), str(gt)], 'junk.npy', 'cannot be read')
    np.save(tmp_path / 'bool.npy', np.ones((48, 64), bool))
    _fails(capsys, [str(tmp_path / 'bool.npy'), str(gt)], 'bool', 'bool.npy')


# -- aspect ratio --------------------------------------------------------------------------

def test_aspect_change_is_refused_unless_allowed(shared_data, tmp_path, capsys):
    gt_path = shared_data / 'rgbd/open3d_tum/TUM_depth.png'
    gt = load_depth_file(gt_path, 1 / 5000)
    square = np.full((100, 100), 2.0, np.float32)
    np.save(tmp_path / 'square.npy', square)
    argv = [str(tmp_path / 'square.npy'), str(gt_path), '--gt-scale', '0.0002']
    _fails(capsys, argv, 'same view', '100x100', '640x480', '--allow-aspect-change')
    assert main(['evaluate', *argv, '--allow-aspect-change', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['n_valid'] > 0
    with pytest.raises(EvaluationError, match='same view'):
        compute_metrics(square, gt)
    assert compute_metrics(square, gt, allow_aspect_change=True)['n_valid'] > 0
    # the same aspect at lower resolution, whole-pixel rounding included, is resized as before
    for w, h in ((320, 240), (160, 120), (80, 60), (81, 61)):
        small = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)
        assert compute_metrics(small, gt, 0.1, 10.0)['n_valid'] > 0.5 * gt.size
    # KITTI 1242x375 at 1/16: 78x23 (aspect 3.39 vs 3.31) is rounding, not another view
    kitti = np.ones((375, 1242), np.float32)
    assert compute_metrics(np.ones((23, 78), np.float32), kitti)['n_valid'] == kitti.size
    # but 2 % off at a resolution where rounding cannot explain it is refused
    with pytest.raises(EvaluationError, match='same view'):
        compute_metrics(np.ones((185, 621), np.float32), np.ones((370, 1224), np.float32))


# -- negative scales -----------------------------------------------------------------------

def test_negative_scale_warns_and_suggests_the_other_alignment(shared_data, tmp_path, capsys):
    gt_path = shared_data / 'rgbd/open3d_tum/TUM_depth.png'
    gt = load_depth_file(gt_path, 1 / 5000)
    depth_like = np.where(np.isfinite(gt), 3.0 * gt + 1.0, 5.0).astype(np.float32)
    inverse_like = np.where(np.isfinite(gt), 3.0 / gt + 1.0, 1.0).astype(np.float32)
    np.save(tmp_path / 'depth_like.npy', depth_like)
    np.save(tmp_path / 'inverse_like.npy', inverse_like)
    base = [str(gt_path), '--gt-scale', '0.0002', '--min-depth', '0.1', '--max-depth', '10']
    cases = (('depth_like', 'scale-shift-disparity', '--align scale-shift'),
             ('inverse_like', 'scale-shift', '--align scale-shift-disparity'),
             ('inverse_like', 'median', None))
    for name, align, suggestion in cases:
        rc = main(['evaluate', str(tmp_path / f'{name}.npy'), *base, '--align', align,
                   '--json'])
        captured = capsys.readouterr()
        assert rc == 0
        out = json.loads(captured.out)
        assert set(METRIC_KEYS) <= set(out)
        if suggestion is None:           # median: the scale is positive, nothing to say
            assert out['warnings'] == [] and captured.err == ''
            continue
        assert out['scale'] < 0, (name, align)
        assert len(out['warnings']) == 1
        warning = out['warnings'][0]
        assert 'negative' in warning and 'anti-correlated' in warning
        assert suggestion in warning and warning.endswith('.')
        assert 'warning' in captured.err and suggestion in captured.err
    # the matching alignment is exact and silent
    m = compute_metrics(inverse_like, gt, 0.1, 10.0, align='scale-shift-disparity')
    assert m['scale'] > 0 and m['warnings'] == [] and m['abs_rel'] < 1e-4
    # the table output warns on stderr too
    assert main(['evaluate', str(tmp_path / 'depth_like.npy'), *base, '--align',
                 'scale-shift-disparity']) == 0
    captured = capsys.readouterr()
    assert 'abs_rel' in captured.out and 'anti-correlated' in captured.err


def test_negative_scale_in_bags_is_counted(shared_data, capsys):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    bag = str(shared_data / TUM_BAG)
    # prediction = ground truth (depth), aligned as if it were inverse depth
    assert main(['evaluate', bag, '--pred-topic', TUM_DEPTH_TOPIC, '--gt-topic',
                 TUM_DEPTH_TOPIC, '--min-depth', '0.1', '--max-depth', '10', '--align',
                 'scale-shift-disparity', '--json']) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert len(out['warnings']) == 1 and '1 of 1 frames' in out['warnings'][0]
    assert '--align scale-shift' in out['warnings'][0] and 'anti-correlated' in captured.err
    assert main(['evaluate', bag, '--pred-topic', TUM_DEPTH_TOPIC, '--gt-topic',
                 TUM_DEPTH_TOPIC, '--min-depth', '0.1', '--max-depth', '10', '--align',
                 'scale-shift', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['warnings'] == []


def test_median_of_zero_is_a_clean_error_and_negative_median_warns():
    gt = np.linspace(1.0, 5.0, 20, dtype=np.float32).reshape(4, 5)
    with pytest.raises(EvaluationError, match='median'):
        compute_metrics(np.zeros((4, 5), np.float32), gt, align='median')
    m = compute_metrics(-gt, gt, align='median')       # a sign flip is "exact" after a -1 scale
    assert m['scale'] == pytest.approx(-1.0) and m['abs_rel'] < 1e-6
    assert len(m['warnings']) == 1 and 'opposite signs' in m['warnings'][0]
