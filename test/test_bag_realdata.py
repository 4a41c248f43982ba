"""depth-node bag on the real recordings of ../shared/data (TUM RGB-D MCAP, T265 ROS 1/2)."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import numpy as np
import pytest
from test_bag_support import check_cdr, decode, pydnet, read_bag, stamp_ns

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node import bag  # noqa: E402, I100
from depth_node.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TUM_STAMP = 1_700_000_000 * 1_000_000_000
FIXED = ['--scale-source', 'fixed', '--fixed-scale', '1.0', '--fixed-shift', '0.5']


@pytest.fixture(scope='module')
def store():
    from depth_node.messages import rosbags_factory
    return rosbags_factory('humble').typestore


def _inputs(store, path: Path) -> dict[str, object]:
    return {topic: msg for topic, _, msg in decode(store, read_bag(path))}


def _same_camera_info(out, ref) -> None:
    assert (out.width, out.height) == (ref.width, ref.height)
    assert out.distortion_model == ref.distortion_model
    for name in ('k', 'r', 'p'):
        np.testing.assert_allclose(np.asarray(getattr(out, name)),
                                   np.asarray(getattr(ref, name)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out.d), np.asarray(ref.d), atol=1e-12)


@pytest.mark.parametrize('image_topic', ['/camera/color/image_raw',
                                         '/camera/color/image_raw/compressed'])
def test_tum_tiny_model(shared_data, model, store, tmp_path, image_topic):
    from depth_node.clouds import pointcloud2_to_array
    from depth_node.images import depth_to_metres
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    out = tmp_path / 'out'
    assert main(['bag', str(src), str(out), '--model', str(model), '--quiet',
                 '--image-topic', image_topic, *FIXED, '--output-encoding', '16UC1']) == 0
    rows = read_bag(out)
    check_cdr(store, rows)
    msgs = {topic: (t, msg) for topic, t, msg in decode(store, rows)}
    assert set(msgs) == {'/camera/color/depth/image', '/camera/color/depth/camera_info',
                         '/camera/color/points'}
    ref = _inputs(store, src)['/camera/color/camera_info']
    for topic, (log_time, msg) in msgs.items():
        assert log_time == TUM_STAMP and stamp_ns(msg) == TUM_STAMP, topic
        assert msg.header.frame_id == 'tum_rgb_optical_frame', topic
    depth = msgs['/camera/color/depth/image'][1]
    assert (depth.encoding, depth.width, depth.height, depth.step) == ('16UC1', 640, 480, 1280)
    metres = depth_to_metres(depth)
    assert np.isfinite(metres).mean() > 0.5 and np.nanmin(metres) >= 0.1
    _same_camera_info(msgs['/camera/color/depth/camera_info'][1], ref)
    cloud = pointcloud2_to_array(msgs['/camera/color/points'][1])
    assert cloud.shape == (480, 640)
    # z of the cloud = the depth image (mm rounding of 16UC1 aside)
    z = cloud['z']
    both = np.isfinite(z) & np.isfinite(metres)
    assert both.mean() > 0.5
    np.testing.assert_allclose(z[both], metres[both], atol=6e-4)


def test_tum_depth_topic_reprojects(shared_data, store, tmp_path):
    from depth_node.camera import CameraModel
    from depth_node.clouds import pointcloud2_to_array
    from depth_node.images import depth_to_metres
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    out = tmp_path / 'out'
    assert main(['bag', str(src), str(out), '--depth-topic',
                 '/camera/depth_registered/image_gt', '--camera-info-topic',
                 '/camera/color/camera_info', '--quiet']) == 0
    inputs = _inputs(store, src)
    gt = depth_to_metres(inputs['/camera/depth_registered/image_gt'])
    camera = CameraModel.from_camera_info(inputs['/camera/color/camera_info'])
    msgs = {topic: msg for topic, _, msg in decode(store, read_bag(out))}
    cloud = pointcloud2_to_array(msgs['/camera/depth_registered/points'])
    xyz = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=-1)
    valid = np.isfinite(xyz).all(axis=-1)
    assert valid.sum() > 0.7 * np.isfinite(gt).sum()        # the edge filter drops a few
    rows, cols = np.nonzero(valid)
    pixels = camera.project(xyz[valid].astype(np.float64))
    np.testing.assert_allclose(pixels[:, 0], cols, atol=1e-3)
    np.testing.assert_allclose(pixels[:, 1], rows, atol=1e-3)
    np.testing.assert_allclose(xyz[valid][:, 2], gt[valid], rtol=1e-6)
    depth = depth_to_metres(msgs['/camera/depth_registered/depth/image'])
    np.testing.assert_array_equal(np.isfinite(depth), valid)


def test_tum_pydnet_sparse_scale_evaluates(shared_data, store, tmp_path):
    from depth_node.evaluate import compute_metrics
    from depth_node.images import depth_to_metres
    onnx, card = pydnet(REPO)
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    out = tmp_path / 'out'
    summary_file = tmp_path / 's.json'
    assert main(['bag', str(src), str(out), '--model', str(onnx), '--card', str(card),
                 '--quiet', '--sparse-depth-topic', '/camera/depth_registered/image_gt',
                 '--scale-source', 'sparse_depth', '--json-summary', str(summary_file)]) == 0
    summary = json.loads(summary_file.read_text())
    assert summary['scale']['accepted_fits'] == 1 and summary['frames_written'] == 1
    gt = depth_to_metres(_inputs(store, src)['/camera/depth_registered/image_gt'])
    rows = read_bag(out)
    check_cdr(store, rows)
    msgs = {topic: msg for topic, _, msg in decode(store, rows)}
    assert set(msgs) == {'/camera/color/depth/image', '/camera/color/depth/camera_info',
                         '/camera/color/points'}
    assert all(m.header.frame_id == 'tum_rgb_optical_frame' and stamp_ns(m) == TUM_STAMP
               for m in msgs.values())
    _same_camera_info(msgs['/camera/color/depth/camera_info'],
                      _inputs(store, src)['/camera/color/camera_info'])
    pred = depth_to_metres(msgs['/camera/color/depth/image'])
    assert msgs['/camera/color/depth/image'].encoding == '32FC1'
    metrics = compute_metrics(pred, gt, min_depth=0.1, max_depth=10.0, align='none')
    # README (scale+shift fit in depth space): AbsRel 0.132, delta1 0.817
    assert metrics['abs_rel'] < 0.2
    assert metrics['delta1'] > 0.7


def _t265(shared_data, kind):
    bags = shared_data / 'bags'
    return bags / ('t265_trimmed_locoffice.bag' if kind == 'ros1'
                   else 't265_trimmed_locoffice_ros2')


@pytest.mark.parametrize('which', ['tiny', 'pydnet'])
def test_t265_ros1_and_ros2_with_calibration_file(shared_data, model, store, tmp_path, which):
    import yaml
    args = ['--model', str(model), *FIXED] if which == 'tiny' else \
        ['--model', str(pydnet(REPO)[0]), '--card', str(pydnet(REPO)[1]), '--scale-source',
         'fixed', '--fixed-scale', '0.05']
    calib = shared_data / 'calibration' / 't265_fisheye1_equidistant.yaml'
    outputs = {}
    for kind in ('ros1', 'ros2'):
        out = tmp_path / kind
        assert main(['bag', str(_t265(shared_data, kind)), str(out), *args, '--quiet',
                     '--image-topic', '/camera/fisheye1/image_raw', '--camera-info',
                     str(calib)]) == 0
        outputs[kind] = read_bag(out)
    assert outputs['ros1'] == outputs['ros2']          # same frames -> same bytes
    rows = outputs['ros2']
    check_cdr(store, rows)
    msgs = decode(store, rows)
    src = [m for topic, _, m in decode(store, read_bag(_t265(shared_data, 'ros2')))
           if topic == '/camera/fisheye1/image_raw']
    depth = [m for topic, _, m in msgs if topic == '/camera/fisheye1/depth/image']
    assert [stamp_ns(m) for m in depth] == [stamp_ns(m) for m in src]
    calib_data = yaml.safe_load(calib.read_text())
    for topic, _, msg in msgs:
        assert msg.header.frame_id == 'camera_fisheye1_optical_frame'
        if topic.endswith('depth/image'):
            assert (msg.encoding, msg.width, msg.height) == ('32FC1', 848, 800)
        if topic.endswith('camera_info'):
            assert msg.distortion_model == 'equidistant'
            np.testing.assert_allclose(msg.k, calib_data['camera_matrix']['data'])
        if topic.endswith('points'):
            assert (msg.width, msg.height) == (848, 800)


def test_t265_camera_info_file_needs_a_topic_choice(shared_data, model, tmp_path, capsys):
    calib = shared_data / 'calibration' / 't265_fisheye1_equidistant.yaml'
    assert main(['bag', str(_t265(shared_data, 'ros1')), str(tmp_path / 'o'), '--model',
                 str(model), '--camera-info', str(calib)]) == 2
    assert '--image-topic' in capsys.readouterr().err


def _tum_yaml(path: Path) -> Path:
    path.write_text(
        'image_width: 640\nimage_height: 480\ncamera_name: tum\n'
        'camera_matrix: {rows: 3, cols: 3, data: [525, 0, 319.5, 0, 525, 239.5, 0, 0, 1]}\n'
        'distortion_model: plumb_bob\n'
        'distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n')
    return path


def test_image_folder_and_video(shared_data, model, tmp_path):
    import cv2
    colour = shared_data / 'rgbd' / 'open3d_tum' / 'TUM_color.png'
    folder = tmp_path / 'images'
    folder.mkdir()
    shutil.copy(colour, folder / 'a.png')
    (folder / 'b_broken.png').write_bytes(b'not a png')
    calib = _tum_yaml(tmp_path / 'tum.yaml')
    out = tmp_path / 'out'
    summary_file = tmp_path / 's.json'
    assert main(['bag', str(folder), str(out), '--model', str(model), '--camera-info',
                 str(calib), '--quiet', *FIXED, '--json-summary', str(summary_file)]) == 3
    summary = json.loads(summary_file.read_text())
    assert summary['skipped'] == {'unreadable_file': 1} and summary['frames_written'] == 1
    png = cv2.imread(str(out / 'a_depth.png'), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (480, 640)
    valid = png > 0
    assert valid.mean() > 0.5 and png[valid].min() >= 100          # >= min_range 0.1 m
    ply = (out / 'a.ply').read_bytes()
    header = ply[:ply.index(b'end_header')].decode()
    assert 'binary_little_endian' in header
    n_vertices = int(header.split('element vertex ')[1].split()[0])
    assert n_vertices > 0.5 * valid.sum()

    video = tmp_path / 'clip.avi'
    frame = cv2.imread(str(colour))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (640, 480))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    out_v = tmp_path / 'out_video'
    assert main(['bag', str(video), str(out_v), '--model', str(model), '--camera-info',
                 str(calib), '--quiet', '--no-points', *FIXED]) == 0
    assert sorted(p.name for p in out_v.iterdir()) == [
        f'frame_{i:06d}_depth.png' for i in range(3)]


def test_tum_summary_has_stage_timings(shared_data, model, tmp_path):
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    summary_file = tmp_path / 's.json'
    assert main(['bag', str(src), str(tmp_path / 'o'), '--model', str(model), '--quiet',
                 '--json-summary', str(summary_file)]) == bag.EXIT_OK
    summary = json.loads(summary_file.read_text())
    for stage in ('read_ms', 'decode_ms', 'preprocess_ms', 'inference_ms', 'postprocess_ms',
                  'metric_ms', 'write_ms'):
        assert summary['stage_ms'][stage] >= 0.0
    assert summary['stage_ms']['inference_ms'] > 0
    assert 0 < summary['inference_fraction'] < 1
    assert summary['messages_written'] == {'/camera/color/depth/relative': 1,
                                           '/camera/color/depth/camera_info': 1}


def test_t265_ros1_copy_input_becomes_ros2(shared_data, model, store, tmp_path):
    calib = shared_data / 'calibration' / 't265_fisheye1_equidistant.yaml'
    out = tmp_path / 'out'
    assert main(['bag', str(_t265(shared_data, 'ros1')), str(out), '--model', str(model),
                 '--quiet', '--image-topic', '/camera/fisheye1/image_raw', '--camera-info',
                 str(calib), '--copy-input', '--max-frames', '2']) == 0
    rows = read_bag(out)
    check_cdr(store, rows)
    copied = [r for r in rows if r[0] == '/camera/fisheye1/image_raw']
    ros2_src = [r for r in read_bag(_t265(shared_data, 'ros2'))
                if r[0] == '/camera/fisheye1/image_raw']
    # the ROS 1 images, converted, are byte-identical to rosbags-convert's ROS 2 version
    assert [(t, raw) for _, _, t, raw in copied] == [(t, raw) for _, _, t, raw in ros2_src][:2]
    assert sum(1 for r in rows if r[0] == '/camera/fisheye1/depth/relative') == 2
