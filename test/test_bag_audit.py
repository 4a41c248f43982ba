"""depth-node bag audit fixes: unreadable bags, twin topics, scale reasons, early checks."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import struct

import numpy as np
import pytest
from test_bag_support import camera_info, image, read_bag, tum_rgb_small, write_bag

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node import bag  # noqa: E402, I100
from depth_node.cli import main  # noqa: E402

S = 1_000_000_000
FIXED = ['--scale-source', 'fixed', '--fixed-scale', '1.0', '--fixed-shift', '0.5']
TUM_RAW = '/camera/color/image_raw'


def _copy_bag(src: Path, dst: Path, mutate) -> Path:
    """Copy a rosbag2 folder, passing its .mcap bytes through ``mutate``."""
    shutil.copytree(src, dst)
    mcap = next(dst.glob('*.mcap'))
    data = bytearray(mcap.read_bytes())
    mcap.chmod(0o644)
    mcap.write_bytes(bytes(mutate(data)))
    return dst


def _chunk_offsets(data: bytes) -> list[int]:
    """Offsets of the top-level MCAP chunk records (opcode 0x06)."""
    pos, offsets = 8, []
    while pos < len(data) - 8:
        opcode = data[pos]
        (length,) = struct.unpack_from('<Q', data, pos + 1)
        if opcode == 0x06:
            offsets.append(pos)
        if opcode == 0x02:   # data end
            break
        pos += 9 + length
    return offsets


def _corrupt_chunk(data: bytearray, index: int) -> bytearray:
    """Overwrite the first record header inside a chunk (uncompressed chunk: offset 49)."""
    start = _chunk_offsets(data)[index] + 49
    data[start:start + 20] = b'\xff' * 20
    return data


# -- 1. unreadable bags ---------------------------------------------------------------------
def test_not_a_bag_is_a_clear_usage_error(tmp_path, model, no_model, capsys):
    junk = tmp_path / 'g.bag'
    junk.write_text('x\n')
    assert main(['bag', str(junk), str(tmp_path / 'out'), '--model', str(model)]) == 2
    err = capsys.readouterr().err
    assert f'cannot read the bag {str(junk)!r}' in err and 'File magic is invalid' in err
    assert 'Traceback' not in err and 'rosbag reindex' in err
    assert main(['bag', str(junk), '--list']) == 2
    assert 'cannot read the bag' in capsys.readouterr().err


def test_truncated_mcap_is_a_clear_usage_error(tmp_path, tum_bag, model, no_model, capsys):
    cut = _copy_bag(tum_bag, tmp_path / 'cut', lambda data: data[:3000])
    assert main(['bag', str(cut), str(tmp_path / 'out'), '--model', str(model)]) == 2
    err = capsys.readouterr().err
    assert 'File end magic is invalid' in err and 'mcap recover' in err
    assert not (tmp_path / 'out').exists()


def test_bag_unreadable_midway_keeps_what_was_done(tmp_path, model, humble_factory):
    rgb = tum_rgb_small(320, 240)
    rows = []
    for t in range(1, 11):     # 230 kB images: rosbags closes a chunk every 1 MiB
        info = camera_info(humble_factory, t * S, 320, 240, 'cam', scale=0.5)
        rows.append(('/cam/camera_info', t * S, info))
        frame = image(humble_factory, t * S, np.roll(rgb, t, axis=1), 'cam')
        rows.append(('/cam/image_raw', t * S + 1, frame))
    good = write_bag(tmp_path / 'good', humble_factory.typestore, rows)
    assert len(_chunk_offsets(next(good.glob('*.mcap')).read_bytes())) >= 2
    broken = _copy_bag(good, tmp_path / 'broken', lambda data: _corrupt_chunk(data, -1))
    summary_file = tmp_path / 's.json'
    out = tmp_path / 'out'
    status = main(['bag', str(broken), str(out), '--model', str(model), '--quiet', *FIXED,
                   '--json-summary', str(summary_file)])
    summary = json.loads(summary_file.read_text())
    assert status == bag.EXIT_SKIPPED == summary['exit_status']
    assert 'reading the bag' in summary['read_error'] and str(broken) in summary['read_error']
    assert 0 < summary['frames_written'] < 10
    written = [r for r in read_bag(out) if r[0] == '/cam/depth/image']   # closed, valid
    assert len(written) == summary['frames_written']

    # nothing readable: exit status 4, still a valid (empty) bag
    first = _copy_bag(good, tmp_path / 'first', lambda data: _corrupt_chunk(data, 0))
    assert main(['bag', str(first), str(tmp_path / 'out2'), '--model', str(model), '--quiet',
                 *FIXED]) == bag.EXIT_NOTHING
    assert read_bag(tmp_path / 'out2') == []


# -- 2. one camera per output namespace ------------------------------------------------------
def test_explicit_twins_are_a_usage_error(tmp_path, tum_bag, model, no_model, capsys):
    assert main(['bag', str(tum_bag), str(tmp_path / 'out'), '--model', str(model),
                 '--image-topic', TUM_RAW, '--image-topic', f'{TUM_RAW}/compressed']) == 2
    err = capsys.readouterr().err
    assert TUM_RAW in err and f'{TUM_RAW}/compressed' in err and '/camera/color/depth' in err


def test_discovery_takes_one_camera_per_namespace(shared_data, tmp_path, model, capsys):
    src = shared_data / 'bags' / 'rosbags_rs_synthetic' / 'test_bag_mcap'
    assert main(['bag', str(src), '--list']) == 0
    listing = capsys.readouterr().out
    assert '/test/sensor_msgs/compressed_image [CompressedImage, 2 msgs]: same camera as ' \
        '/test/sensor_msgs/image, which is used' in listing
    summary_file = tmp_path / 's.json'
    main(['bag', str(src), str(tmp_path / 'out'), '--model', str(model), '--quiet',
          '--json-summary', str(summary_file)])
    assert 'note: /test/sensor_msgs/compressed_image is the same camera as ' \
        '/test/sensor_msgs/image' in capsys.readouterr().err
    summary = json.loads(summary_file.read_text())
    assert [c['image_topic'] for c in summary['cameras']] == ['/test/sensor_msgs/image']
    assert summary['skipped'] == {'bad_image': 2}      # the compressed twin is not read


def test_discover_prefers_raw_in_a_namespace():
    from depth_node.bagio import CAMERA_INFO, COMPRESSED, discover, IMAGE
    found = discover({'/a/image_raw': IMAGE, '/a/image_raw/compressed': COMPRESSED,
                      '/a/camera_info': CAMERA_INFO, '/b/image/compressed': COMPRESSED,
                      '/b/camera_info': CAMERA_INFO, '/c/image_raw': IMAGE,
                      '/c/image_raw/compressed': COMPRESSED})
    assert [c.image_topic for c in found.cameras] == ['/a/image_raw', '/b/image/compressed']
    assert found.lonely == ['/c/image_raw']
    assert found.twins == {'/a/image_raw/compressed': '/a/image_raw',
                           '/c/image_raw/compressed': '/c/image_raw'}


# -- 3. scale source and why frames stay relative -------------------------------------------
def test_sparse_depth_without_topic_is_a_usage_error(tmp_path, tum_bag, model, no_model, capsys):
    assert main(['bag', str(tum_bag), str(tmp_path / 'out'), '--model', str(model),
                 '--scale-source', 'sparse_depth']) == 2
    assert 'Add --sparse-depth-topic TOPIC' in capsys.readouterr().err


@pytest.mark.parametrize('options,reason,status', [
    ([], 'no scale source (scale_source none)', bag.EXIT_OK),
    # metres asked for, none written: its own exit status, the numbers in the summary
    (['--scale-source', 'ground_plane', '--camera-height', '1.2'], 'ground_plane: ',
     bag.EXIT_NOT_METRIC),
])
def test_relative_only_reasons_counted(tmp_path, tum_bag, model, capsys, options, reason, status):
    summary_file = tmp_path / 's.json'
    assert main(['bag', str(tum_bag), str(tmp_path / 'out'), '--model', str(model), '--quiet',
                 '--json-summary', str(summary_file), *options]) == status
    summary = json.loads(summary_file.read_text())
    reasons = summary['relative_only_reasons']
    assert len(reasons) == 1 and sum(reasons.values()) == 1
    key = next(iter(reasons))
    assert key.startswith(reason) and ' N ' not in key and '=N' not in key
    err = capsys.readouterr().err
    assert f'relative only, {key}: 1' in err
    assert summary['exit_status'] == status
    if status == bag.EXIT_NOT_METRIC:       # the numbers, in the reason and the JSON
        assert any(ch.isdigit() for ch in key.replace('_', ''))
        assert summary['relative_only_examples'][key] == key
        assert 'NOT ONE METRIC FRAME' in err


def test_relative_only_reason_keys():
    from depth_node.metric import ScaleReport
    nan = float('nan')

    def report(source, message):
        return ScaleReport(False, source, nan, nan, nan, 0, False, message)

    assert bag.relative_only_reason(report(
        'sparse_depth', 'no metric scale (sparse_depth): no sparse depth image for this frame; '
        'publishing the relative map only')) == \
        'sparse_depth: no sparse depth image for this frame'
    assert bag.relative_only_reason(report(
        'ground_plane', 'no metric scale (ground_plane): only 37 of 120 floor points are '
        'inliers (need 50); publishing the relative map only')) == \
        'ground_plane: only N of N floor points are inliers (need N)'


# -- 4. / 5. inputs checked before the model loads ------------------------------------------
def test_inputs_checked_before_the_model(tmp_path, tum_bag, model, no_model, capsys):
    bad_yaml = tmp_path / 'bad.yaml'
    bad_yaml.write_text('image_width: [\n')
    no_k = tmp_path / 'no_k.yaml'
    no_k.write_text('image_width: 64\nimage_height: 48\n')
    images = tmp_path / 'images'
    images.mkdir()
    import cv2
    cv2.imwrite(str(images / 'a.png'), np.zeros((48, 64, 3), np.uint8))
    cases = [
        ([str(tum_bag), '--image-topic', TUM_RAW, '--camera-info', str(bad_yaml)],
         'does not parse'),
        ([str(tum_bag), '--image-topic', TUM_RAW, '--camera-info', str(no_k)], 'camera_matrix'),
        ([str(images)], 'needs a calibration'),
        ([str(images), '--camera-info', str(no_k)], 'camera_matrix'),
        ([str(tmp_path / 'missing')], 'does not exist'),
    ]
    for i, (args, expected) in enumerate(cases):
        assert main(['bag', args[0], str(tmp_path / f'out{i}'), '--model', str(model),
                     *args[1:]]) == 2, args
        assert expected in capsys.readouterr().err, args


def test_one_calibration_file_for_several_cameras_is_refused(shared_data, tmp_path, model,
                                                             no_model, capsys):
    t265 = shared_data / 'bags' / 't265_trimmed_locoffice_ros2'
    calib = shared_data / 'calibration' / 't265_fisheye1_equidistant.yaml'
    assert main(['bag', str(t265), str(tmp_path / 'out'), '--model', str(model),
                 '--image-topic', '/camera/fisheye1/image_raw', '--image-topic',
                 '/camera/fisheye2/image_raw', '--camera-info', str(calib)]) == 2
    err = capsys.readouterr().err
    assert '/camera/fisheye2/image_raw' in err and 'one camera at a time' in err


# -- 6. xyzrgb with --depth-topic ------------------------------------------------------------
def test_xyzrgb_depth_topic_uses_the_only_colour_camera(tmp_path, tum_bag, capsys):
    out = tmp_path / 'out'
    assert main(['bag', str(tum_bag), str(out), '--quiet', '--depth-topic',
                 '/camera/depth_registered/image_gt', '--camera-info-topic',
                 '/camera/color/camera_info', '--point-cloud-fields', 'xyzrgb']) == 0
    # the bag's only colour camera is paired (test_bag_rgb.py checks the colours; several
    # colour cameras and no --rgb-topic: a warning and xyz clouds)
    assert 'with /camera/color/image_raw, the only colour camera' in capsys.readouterr().err
    from depth_node.messages import rosbags_factory
    store = rosbags_factory('humble').typestore
    (cloud_row,) = [r for r in read_bag(out) if r[0].endswith('/points')]
    cloud = store.deserialize_cdr(cloud_row[3], cloud_row[1])
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb']


# -- 7. help text and messages ---------------------------------------------------------------
def test_publish_colorized_help_tells_the_truth(capsys):
    with pytest.raises(SystemExit):
        main(['bag', '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    start = text.index('--publish-colorized, --no-publish-colorized')
    entry = text[start:text.index('--colorize-min-depth', start)]
    assert 'not written by the bag tool' in entry and 'default: True' not in entry


def test_rescale_notice_names_the_calibration_file(tmp_path, model, humble_factory, capsys):
    rgb = tum_rgb_small(64, 48)
    src = write_bag(tmp_path / 'src', humble_factory.typestore,
                    [('/cam/image_raw', S, image(humble_factory, S, rgb, 'cam'))])
    calib = tmp_path / 'cam128.yaml'
    calib.write_text(
        'image_width: 128\nimage_height: 96\ncamera_name: cam\n'
        'camera_matrix: {rows: 3, cols: 3, data: [105.0, 0, 63.5, 0, 105.0, 47.5, 0, 0, 1]}\n'
        'distortion_model: plumb_bob\n'
        'distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n')
    assert main(['bag', str(src), str(tmp_path / 'out'), '--model', str(model), '--quiet',
                 '--camera-info', str(calib), *FIXED]) == 0
    err = capsys.readouterr().err
    assert f'calibration of {str(calib)!r} is 128x96 but the images are 64x48' in err
    assert "of '' is" not in err
    frames = {m.header.frame_id for t, _, m in (
        (r[0], r[2], humble_factory.typestore.deserialize_cdr(r[3], r[1])) for r in
        read_bag(tmp_path / 'out'))}
    assert frames == {'cam'}                  # the label is not an output frame
