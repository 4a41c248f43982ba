"""Issue 10 point 5: ``--camera-info FILE`` is checked against the bag's images first.

Another aspect ratio: a usage error (exit 2) before the model loads and before anything is
written, so the re-run with the right file is not blocked. Same aspect ratio, other size: a
loud WARNING about the rescale, before the model loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bag_support import image, jpeg, tum_rgb_small, write_bag

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node import bag  # noqa: E402, I100
from depth_node.cli import main  # noqa: E402

S = 1_000_000_000
FIXED = ['--scale-source', 'fixed', '--fixed-scale', '1.0', '--fixed-shift', '0.5']


def _calibration(path: Path, width: int, height: int) -> Path:
    f = 0.8 * width
    path.write_text(
        f'image_width: {width}\nimage_height: {height}\ncamera_name: cam\n'
        f'camera_matrix: {{rows: 3, cols: 3, data: [{f}, 0, {(width - 1) / 2}, 0, {f}, '
        f'{(height - 1) / 2}, 0, 0, 1]}}\n'
        'distortion_model: plumb_bob\n'
        'distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n')
    return path


@pytest.mark.parametrize('compressed', [False, True], ids=['raw', 'compressed'])
def test_other_aspect_ratio_fails_before_the_model_and_writes_nothing(
        tmp_path, model, humble_factory, capsys, monkeypatch, compressed):
    factory = humble_factory
    rgb = tum_rgb_small(64, 48)
    msg = jpeg(factory, S, rgb, 'cam') if compressed else image(factory, S, rgb, 'cam')
    topic = '/cam/image_raw/compressed' if compressed else '/cam/image_raw'
    src = write_bag(tmp_path / 'src', factory.typestore, [(topic, S, msg)])
    out = tmp_path / 'out'
    square = _calibration(tmp_path / 'square.yaml', 64, 64)
    real_build = bag.build_pipeline

    def no_model(options):
        raise AssertionError('the model was loaded before the calibration was checked')
    monkeypatch.setattr(bag, 'build_pipeline', no_model)
    assert main(['bag', str(src), str(out), '--model', str(model), '--camera-info',
                 str(square)]) == bag.EXIT_USAGE
    err = capsys.readouterr().err
    assert f'--camera-info {str(square)!r} is a calibration of 64x64 images' in err
    assert f'{topic} carries 64x48 images: the aspect ratios differ' in err
    assert 'Traceback' not in err and 'publish' not in err.lower()
    assert not out.exists()                      # nothing written: the re-run is not blocked
    monkeypatch.setattr(bag, 'build_pipeline', real_build)
    right = _calibration(tmp_path / 'right.yaml', 64, 48)
    assert main(['bag', str(src), str(out), '--model', str(model), '--quiet', '--camera-info',
                 str(right), *FIXED]) == bag.EXIT_OK


def test_same_aspect_other_size_is_a_loud_warning_before_the_model(tmp_path, model,
                                                                   humble_factory, capsys):
    factory = humble_factory
    rgb = tum_rgb_small(64, 48)
    src = write_bag(tmp_path / 'src', factory.typestore,
                    [('/cam/image_raw', S, image(factory, S, rgb, 'cam'))])
    calib = _calibration(tmp_path / 'big.yaml', 128, 96)
    assert main(['bag', str(src), str(tmp_path / 'out'), '--model', str(model), '--quiet',
                 '--camera-info', str(calib), *FIXED]) == bag.EXIT_OK
    err = capsys.readouterr().err
    warning = err.index('WARNING: --camera-info')
    assert 'is a calibration of 128x96 images, but /cam/image_raw carries 64x48' in err
    assert 'SCALED by 0.5' in err
    assert warning < err.index('self-test passed')      # said before the model loads


def test_intrinsics_serve_a_bag_camera_like_its_camera_info(shared_data, tmp_path, model):
    from test_bag_support import read_bag
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    topic_run, k_run = tmp_path / 'topic', tmp_path / 'k'
    assert main(['bag', str(src), str(topic_run), '--model', str(model), '--quiet',
                 *FIXED]) == bag.EXIT_OK
    assert main(['bag', str(src), str(k_run), '--model', str(model), '--quiet', *FIXED,
                 '--intrinsics', '525,525,319.5,239.5']) == bag.EXIT_OK
    by_topic = {r[0]: r[3] for r in read_bag(topic_run)}
    k_topics = {r[0]: r[3] for r in read_bag(k_run)}
    for name in ('/camera/color/depth/image', '/camera/color/points'):
        assert k_topics[name] == by_topic[name]
    assert '/camera/color/camera_info' in k_topics      # the calibration used, written
