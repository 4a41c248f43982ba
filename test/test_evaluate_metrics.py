"""depth-node evaluate: metric definitions, protocols, loaders, the CLI and bags."""

from __future__ import annotations

import json
import math

import cv2
from depth_node.cli import main
from depth_node.evaluate import (
    compute_metrics,
    crop_mask,
    EvaluationError,
    load_depth_file,
    METRIC_KEYS,
    pair_by_stamp,
)
import numpy as np
import pytest

NAN = float('nan')


def test_hand_computed_metrics():
    # valid pairs: (p, g) = (1.1, 1), (1.8, 2), (4, 4), (10, 8); the rest is invalid
    gt = np.array([[1.0, 2.0, 4.0, 8.0, 0.0, NAN, 3.0, 100.0]], np.float32)
    pred = np.array([[1.1, 1.8, 4.0, 10.0, 5.0, 5.0, NAN, 90.0]], np.float32)
    m = compute_metrics(pred, gt, min_depth=0.1, max_depth=80.0)
    # by hand: |p-g|/g = .1, .1, 0, .25; (p-g)^2/g = .01, .02, 0, .5; (p-g)^2 = .01 .04 0 4
    assert m['n_valid'] == 4
    assert m['abs_rel'] == pytest.approx(0.1125, abs=1e-6)
    assert m['sq_rel'] == pytest.approx(0.1325, abs=1e-6)
    assert m['rmse'] == pytest.approx(1.0062306, abs=1e-6)          # sqrt(4.05 / 4)
    # ln 1.1, ln 0.9, 0, ln 1.25 -> sqrt(mean of squares)
    assert m['rmse_log'] == pytest.approx(0.1322667, abs=1e-6)
    assert m['delta1'] == 0.75             # ratio 1.25 exactly is not < 1.25
    assert m['delta2'] == 1.0 and m['delta3'] == 1.0
    assert set(METRIC_KEYS) <= set(m)


def test_alignment_modes_recover_exact_maps():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 9.0, (40, 50)).astype(np.float32)
    cases = {'median': gt * 0.25, 'scale-shift': gt * 2.0 + 3.0,
             'scale-shift-disparity': 2.0 / gt + 0.1}
    for align, pred in cases.items():
        m = compute_metrics(pred.astype(np.float32), gt, 0.1, 10.0, align=align)
        assert m['abs_rel'] < 1e-5 and m['delta1'] == 1.0, align
        unaligned = compute_metrics(pred.astype(np.float32), gt, 0.1, 10.0)
        assert unaligned['abs_rel'] > 0.3, align
    m = compute_metrics(gt * 2.0 + 3.0, gt, 0.1, 10.0, align='scale-shift')
    assert m['scale'] == pytest.approx(0.5, rel=1e-5) and m['shift'] == pytest.approx(-1.5,
                                                                                      abs=1e-4)
    with pytest.raises(EvaluationError, match='alignment'):
        compute_metrics(gt, gt, align='affine')


def test_clamping_and_min_max():
    gt = np.array([[0.05, 1.0, 2.0, 50.0]], np.float32)
    pred = np.array([[1.0, 0.01, 2.0, 1.0]], np.float32)
    m = compute_metrics(pred, gt, min_depth=0.1, max_depth=10.0)
    assert m['n_valid'] == 2                                # 0.05 and 50 m are out
    # the 0.01 m prediction is clamped to 0.1: |0.1 - 1| / 1 = 0.9
    assert m['abs_rel'] == pytest.approx(0.45, abs=1e-6)
    with pytest.raises(EvaluationError, match='No pixel'):
        compute_metrics(pred, np.full_like(gt, NAN))


def test_crops_are_the_kitti_fractions():
    mask = crop_mask(375, 1242, 'garg')
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1] + 1) == (int(0.40810811 * 375), int(0.99189189 * 375))
    assert (cols[0], cols[-1] + 1) == (int(0.03594771 * 1242), int(0.96405229 * 1242))
    eigen = crop_mask(375, 1242, 'eigen')
    assert np.flatnonzero(eigen.any(axis=1))[0] == int(0.3324324 * 375)
    assert crop_mask(10, 10, 'none') is None
    gt = np.ones((375, 1242), np.float32)
    m = compute_metrics(gt, gt, crop='garg')
    assert m['n_valid'] == int(mask.sum())


def test_prediction_resized_bilinearly_to_gt():
    gt = np.tile(np.linspace(1.0, 5.0, 64, dtype=np.float32), (48, 1))
    small = cv2.resize(gt, (32, 24), interpolation=cv2.INTER_AREA)
    m = compute_metrics(small, gt, 0.1, 10.0)
    assert m['n_valid'] == gt.size
    assert m['abs_rel'] < 0.01
    # NaN in the prediction spreads only to the pixels that interpolate from it
    small[5, 5] = NAN
    m2 = compute_metrics(small, gt, 0.1, 10.0)
    assert 0 < gt.size - m2['n_valid'] <= 16


def test_loaders_on_real_formats(shared_data, tmp_path):
    rgbd = shared_data / 'rgbd'
    sun = load_depth_file(rgbd / 'open3d_sun/SUN_depth.png', 0.001, 'sun')
    assert np.isfinite(sun).mean() == pytest.approx(0.82, abs=0.01)
    assert np.nanmedian(sun) == pytest.approx(2.72, abs=0.02)
    nyu = load_depth_file(rgbd / 'open3d_nyu/NYU_depth.pgm', None, 'nyu-raw')
    assert np.isfinite(nyu).mean() == pytest.approx(0.93, abs=0.01)
    assert np.nanmedian(nyu) == pytest.approx(3.27, abs=0.02)
    tum = load_depth_file(rgbd / 'open3d_tum/TUM_depth.png', 1 / 5000)
    assert np.nanmedian(tum) == pytest.approx(2.42, abs=0.02)
    stairs = load_depth_file(rgbd / '7scenes_stairs/seq-01_frame-000000.depth.png', 0.001,
                             invalid_value=65535)
    assert np.nanmax(stairs) < 10.0
    with pytest.raises(EvaluationError, match='unit') as err:
        load_depth_file(rgbd / 'open3d_tum/TUM_depth.png', None)
    assert '0.00390625' in err.value.hint
    np.save(tmp_path / 'tum.npy', tum)
    np.testing.assert_array_equal(load_depth_file(tmp_path / 'tum.npy', None), tum)
    with pytest.raises(EvaluationError, match='does not exist'):
        load_depth_file(tmp_path / 'missing.png', 1.0)


def test_cli_json_and_plot(shared_data, tmp_path, capsys):
    gt_path = shared_data / 'rgbd/kitti_object/000000_velodyne_sparse_depth.png'
    gt = load_depth_file(gt_path, 1 / 256)
    pred = np.where(np.isfinite(gt), gt * 1.1, 20.0).astype(np.float32)
    pred = cv2.resize(pred, (612, 185), interpolation=cv2.INTER_NEAREST)   # half size
    np.save(tmp_path / 'pred.npy', pred)
    plot = tmp_path / 'plot.png'
    rc = main(['evaluate', str(tmp_path / 'pred.npy'), str(gt_path), '--gt-scale', '0.00390625',
               '--crop', 'garg', '--max-depth', '80', '--json', '--plot', str(plot),
               '--image', str(shared_data / 'rgbd/kitti_object/000000_image_2.png')])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(METRIC_KEYS) <= set(out)
    direct = compute_metrics(pred, gt, 1e-3, 80.0, crop='garg')
    for key in METRIC_KEYS:
        assert out[key] == pytest.approx(direct[key], rel=1e-9)
    image = cv2.imread(str(plot))
    assert image.shape == (gt.shape[0] + 36, 4 * gt.shape[1], 3)   # + the colour bars
    # text output and a clean error for a missing scale
    assert main(['evaluate', str(tmp_path / 'pred.npy'), str(tmp_path / 'pred.npy'),
                 '--align', 'median']) == 0
    assert 'abs_rel' in capsys.readouterr().out
    assert main(['evaluate', str(tmp_path / 'pred.npy'), str(gt_path)]) == 2
    assert '--gt-scale' in capsys.readouterr().err


def test_pair_by_stamp():
    pred = {100: 'a', 200: 'b', 305: 'c'}
    gt = {101: 'x', 300: 'y', 1000: 'z'}
    assert pair_by_stamp(pred, gt, 10) == [(100, 101), (305, 300)]
    assert pair_by_stamp({}, gt, 10) == []


def test_bag_evaluation(shared_data, tmp_path, capsys):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    from depth_node.images import make_depth_image
    from depth_node.messages import rosbags_factory
    from rosbags.rosbag2 import StoragePlugin, Writer
    factory = rosbags_factory('humble')
    store = factory.typestore
    gt = load_depth_file(shared_data / 'rgbd/open3d_tum/TUM_depth.png', 1 / 5000)
    bag = tmp_path / 'eval_bag'
    expected = []
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, 'sensor_msgs/msg/Image', typestore=store)
                 for t in ('/pred', '/gt')}
        for i, factor in enumerate((1.05, 0.9, 1.2)):
            pred = np.where(np.isfinite(gt), gt * factor, 0).astype(np.float32)
            expected.append(compute_metrics(np.where(pred > 0, pred, NAN), gt, 0.1, 10.0))
            stamp_ns = 1_700_000_000_000_000_000 + i * 100_000_000
            header = factory.header(stamp_ns // 10**9, stamp_ns % 10**9, 'cam')
            # prediction in 32FC1 metres, ground truth in 16UC1 millimetres; stamps 1 ms apart
            msg_p = make_depth_image(factory, header, pred, '32FC1')
            header_g = factory.header(stamp_ns // 10**9, stamp_ns % 10**9 + 1_000_000, 'cam')
            msg_g = make_depth_image(factory, header_g, gt, '16UC1')
            for topic, msg in (('/pred', msg_p), ('/gt', msg_g)):
                writer.write(conns[topic], stamp_ns,
                             store.serialize_cdr(msg, 'sensor_msgs/msg/Image'))
    rc = main(['evaluate', str(bag), '--pred-topic', '/pred', '--gt-topic', '/gt',
               '--min-depth', '0.1', '--max-depth', '10', '--json'])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out['n_frames'] == 3
    assert out['abs_rel'] == pytest.approx(np.mean([e['abs_rel'] for e in expected]),
                                           abs=2e-4)        # GT stored in whole millimetres
    assert out['delta1'] == pytest.approx(np.mean([e['delta1'] for e in expected]), abs=1e-3)
    assert math.isfinite(out['rmse_log'])
    assert main(['evaluate', str(bag), '--pred-topic', '/nope', '--gt-topic', '/gt']) == 2
    assert '/pred' in capsys.readouterr().err


def test_real_bags(shared_data, capsys):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    tum = shared_data / 'bags/tum_rgbd_sample_mcap'
    topic = '/camera/depth_registered/image_gt'
    assert main(['evaluate', str(tum), '--pred-topic', topic, '--gt-topic', topic,
                 '--min-depth', '0.1', '--max-depth', '10', '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['n_valid'] == 248250 and out['abs_rel'] == 0.0 and out['n_frames'] == 1
    # malformed / non-depth images are skipped with a message, then a clean error
    synthetic = shared_data / 'bags/rosbags_rs_synthetic/test_bag_mcap'
    image = '/test/sensor_msgs/image'
    assert main(['evaluate', str(synthetic), '--pred-topic', image, '--gt-topic', image]) == 2
    err = capsys.readouterr().err
    assert 'skipping' in err and 'could be decoded' in err


def test_pair_by_stamp_uses_the_one_pairing_rule():
    from depth_node.sync import PairingRule
    pred = {100: 'a', 200: 'b', 305: 'c'}
    gt = {101: 'x', 300: 'y'}
    assert pair_by_stamp(pred, gt, PairingRule('exact')) == []
    assert pair_by_stamp(pred, gt, PairingRule('latest_before')) == [(100, 101), (200, 300)]
    assert pair_by_stamp(pred, gt, PairingRule('approximate', 10)) == [(100, 101), (305, 300)]


def _relative_pair(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 5.0, (48, 64)).astype(np.float32)
    np.save(tmp_path / 'gt.npy', gt)
    np.save(tmp_path / 'frame_relative.npy', (10.0 / gt).astype(np.float32))   # unitless
    return tmp_path / 'frame_relative.npy', tmp_path / 'gt.npy', gt


def test_align_none_on_a_relative_map_warns(tmp_path, capsys):
    pred, gt, _ = _relative_pair(tmp_path)
    assert main(['evaluate', str(pred), str(gt)]) == 0
    err = capsys.readouterr().err
    assert 'warning: --align none scores the prediction as metres' in err
    assert main(['evaluate', str(pred), str(gt), '--align', 'scale-shift-disparity']) == 0
    assert '--align none' not in capsys.readouterr().err


def test_constant_baseline_is_printed_beside_every_score(tmp_path, capsys):
    _, gt_path, gt = _relative_pair(tmp_path)
    np.save(tmp_path / 'metric.npy', gt * 1.05)
    for align in ('none', 'median', 'scale-shift'):
        assert main(['evaluate', str(tmp_path / 'metric.npy'), str(gt_path), '--json',
                     '--align', align]) == 0
        baseline = json.loads(capsys.readouterr().out)['baseline']
        assert baseline['depth'] == pytest.approx(float(np.median(gt)))
        assert 0.1 < baseline['abs_rel'] < 1.0 and set(METRIC_KEYS) <= set(baseline)
    assert main(['evaluate', str(tmp_path / 'metric.npy'), str(gt_path)]) == 0
    assert 'baseline (constant' in capsys.readouterr().out


def test_bag_tool_png_prediction_is_read_as_millimetres(tmp_path, capsys):
    gt = np.full((48, 64), 2.0, np.float32)
    np.save(tmp_path / 'gt.npy', gt)
    cv2.imwrite(str(tmp_path / 'frame_depth.png'), np.full((48, 64), 2000, np.uint16))
    assert main(['evaluate', str(tmp_path / 'frame_depth.png'), str(tmp_path / 'gt.npy'),
                 '--json']) == 0
    assert json.loads(capsys.readouterr().out)['abs_rel'] == pytest.approx(0.0, abs=1e-6)


def test_plot_colours_near_warm_with_a_colour_bar(tmp_path):
    from depth_node.evaluate import write_plot
    gt = np.tile(np.linspace(1.0, 5.0, 64, dtype=np.float32), (48, 1))
    image = cv2.imread(str(write_plot(tmp_path / 'p.png', gt, gt)))
    near, far = image[10, 1].astype(int), image[10, 62].astype(int)   # BGR
    assert near[2] > near[0] and far[0] > far[2]          # near red, far blue
    bar = image[48:62, :64].astype(int)                   # the legend under the prediction
    assert bar[7, 1, 2] > bar[7, 1, 0] and bar[7, 62, 0] > bar[7, 62, 2]
