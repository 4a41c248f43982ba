"""Several cameras through one node and one batched model, on a real ROS 2 graph (issue 13).

* the T265 fisheye pair (real 848x800 mono8 frames from ../shared/data, equidistant
  calibrations) and the TUM RGB-D frame split into three namespaces with different stamps,
  rates and intrinsics replay through one node with a tiny real ONNX model that has a batch
  axis: every camera's depth image, depth camera_info and cloud equal what the single-camera
  pipeline computes for that frame (stamps, frame ids, geometry, metric depth), and rounds
  really run as batches of several cameras;
* a camera that sends bad frames, then stops, costs the others no frame: its errors are
  counted for it alone, and a round waits for it at most ``batch_max_wait``;
* per-camera and batch diagnostics, on ``/diagnostics`` too.

No assertion depends on timing: each waits for the event it checks, with generous bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ros_graph

ros_graph.require_rclpy()

from camera_helpers import t265_fisheye_frames  # noqa: E402, I100
import node_helpers as helpers  # noqa: E402, I100

DATA = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'
OUTPUTS = {'depth/image': 'Image', 'depth/camera_info': 'CameraInfo', 'points': 'PointCloud2'}


@pytest.fixture
def g(graph):
    yield graph
    graph.remove_all()


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    return helpers.build_tiny_onnx(tmp_path_factory.mktemp('cams') / 'tiny_b.onnx',
                                   batch='batch')


def open_tiny(path):
    from depth_node.runner import open_model
    return open_model(path, backend='onnxruntime', log=lambda _m: None)


class BatchSpy:
    """Record the batch sizes the node's pipeline runs (process = 1, process_batch = N)."""

    def __init__(self, node, monkeypatch) -> None:
        self.sizes: list[int] = []
        pipeline = node._pipeline
        single, batch = pipeline.process, pipeline.process_batch

        def one(*args, **kwargs):
            self.sizes.append(1)
            return single(*args, **kwargs)

        def many(items):
            self.sizes.append(len(items))
            return batch(items)
        monkeypatch.setattr(pipeline, 'process', one)
        monkeypatch.setattr(pipeline, 'process_batch', many)


def start(node):
    assert node.trigger_configure().name == 'SUCCESS'
    assert node.trigger_activate().name == 'SUCCESS'
    return node


def collector(g, names):
    col = ros_graph.Collector(g, {f'{n}/{s}': c for n in names for s, c in OUTPUTS.items()},
                              name='cams_collector')
    return col


def matched(node, col, names):
    for name in names:
        for suffix in OUTPUTS:
            col.wait_for_publishers(f'{name}/{suffix}')
            pub = node.cameras[name].outputs[suffix]
            ros_graph.wait_for(lambda p=pub: p.get_subscription_count() > 0,
                               what=f'the node to see the subscriber of {name}/{suffix}')


def stamp_of(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def check_outputs(g, node, col, name, sent, model_path):
    """Every output of camera ``name`` equals the single-camera pipeline's for its frame."""
    from depth_node.pipeline import DepthPipeline
    # a model of its own (the node's is busy), the node's settings
    pipeline = DepthPipeline(open_tiny(model_path), node._pipeline.config)
    depth_msgs = col.messages[f'{name}/depth/image']
    infos = col.messages[f'{name}/depth/camera_info']
    clouds = col.messages[f'{name}/points']
    assert [stamp_of(m) for m in depth_msgs] == [stamp_of(img) for img, _ in sent]
    assert [stamp_of(m) for m in infos] == [stamp_of(img) for img, _ in sent]
    assert [stamp_of(m) for m in clouds] == [stamp_of(img) for img, _ in sent]
    for (image, info), depth_msg, info_msg, cloud in zip(sent, depth_msgs, infos, clouds):
        frame_id = image.header.frame_id
        assert depth_msg.header.frame_id == info_msg.header.frame_id == frame_id
        assert cloud.header.frame_id == frame_id
        result = pipeline.process(image, info)
        want = pipeline.outputs(result, g.factory.header(*stamp_of(image), frame_id),
                                g.factory, ['depth/image', 'depth/camera_info', 'points'])
        got = np.frombuffer(bytes(depth_msg.data), np.float32).reshape(
            depth_msg.height, depth_msg.width)
        expect = np.frombuffer(bytes(want['depth/image'].data), np.float32).reshape(got.shape)
        assert (depth_msg.height, depth_msg.width) == (image.height, image.width)
        np.testing.assert_array_equal(got, expect)          # metric depth, REP 117 marks
        assert np.isfinite(got).mean() > 0.5 and 0.5 < np.nanmedian(got) < 20
        for field in ('k', 'd', 'r', 'p'):
            np.testing.assert_allclose(np.asarray(getattr(info_msg, field)),
                                       np.asarray(getattr(want['depth/camera_info'], field)))
        assert info_msg.distortion_model == want['depth/camera_info'].distortion_model
        assert (info_msg.width, info_msg.height) == (image.width, image.height)
        assert (cloud.width, cloud.height) == (image.width, image.height)
        assert bytes(cloud.data) == bytes(want['points'].data)


# -- the T265 fisheye pair ------------------------------------------------------------------
def t265_frames(factory):
    """``{camera: [(Image, CameraInfo)]}`` of the T265 bag's fisheye frames (rclpy messages)."""
    frames: dict[str, list] = {'fisheye1': [], 'fisheye2': []}
    for name, image, info, _ in t265_fisheye_frames(DATA, factory):
        frames[name].append((image, info))
    return frames


def test_t265_pair_through_one_batched_model(g, model_path, monkeypatch):
    if not (DATA / 'bags' / 't265_trimmed_locoffice_ros2').is_dir():
        pytest.skip('../shared/data has no T265 bag')
    names = ['fisheye1', 'fisheye2']
    node = start(g.depth_node(model=open_tiny(model_path), cameras=names, batch_max_wait=1.0,
                              output_encoding='32FC1', edge_threshold=0.0))
    spy = BatchSpy(node, monkeypatch)
    col = collector(g, names)
    cams = {n: ros_graph.Camera(g, namespace=n, name=f'cam_{n}') for n in names}
    for cam in cams.values():
        cam.wait_for_subscribers()
    matched(node, col, names)
    frames = t265_frames(g.factory)
    assert [len(v) for v in frames.values()] == [3, 3]
    for i in range(3):
        for name in names:
            image, info = frames[name][i]
            cams[name].info_pub.publish(info)
            cams[name].image_pub.publish(image)
        for name in names:
            col.wait(f'{name}/points', i + 1, timeout=30)
    for name in names:
        check_outputs(g, node, col, name, frames[name], model_path)
        assert col.messages[f'{name}/depth/image'][0].header.frame_id == \
            f'camera_{name}_optical_frame'
    assert spy.sizes == [2, 2, 2]                      # each round: one batch of both
    assert node.error_counts == {}
    report = node.diagnostics_report().as_dict()
    assert report['cameras'] == 'fisheye1, fisheye2' and report['batch size mean'] == '2.00'
    assert report['batch rounds'] == '3' and report['frames published'] == '6'
    for name, camera in node.camera_reports().items():
        values = camera.as_dict()
        assert values['frames published'] == '3' and values['errors'] == '0', name
        assert values['image topic'] == f'/{name}/image'


# -- TUM split into three namespaces ---------------------------------------------------------
def tum_rgb():
    import cv2
    bgr = cv2.imread(str(DATA / 'rgbd' / 'open3d_tum' / 'TUM_color.png'), cv2.IMREAD_COLOR)
    if bgr is None:
        pytest.skip('../shared/data has no TUM frame')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


CAMS = {  # name: (stamp base seconds, every n-th tick, fx, image transform)
    'front': (1_700_000_000, 1, 525.0, lambda rgb: rgb),
    'left': (1_700_000_100, 2, 480.0, lambda rgb: np.ascontiguousarray(rgb[:, ::-1])),
    'back': (1_600_000_000, 3, 600.0, lambda rgb: np.ascontiguousarray(rgb[::-1])),
}


def tum_frame(g, name, tick):
    base, _, fx, view = CAMS[name]
    rgb = view(tum_rgb())
    stamp = (base + tick, 1000 * tick)
    image = helpers.rgb_image(g.factory, rgb, stamp, f'{name}_optical_frame')
    info = helpers.camera_info(g.factory, stamp, f'{name}_optical_frame',
                               k=[fx, 0.0, 319.5, 0.0, fx, 239.5, 0.0, 0.0, 1.0])
    return image, info


def test_tum_three_namespaces_different_stamps_rates_and_intrinsics(g, model_path,
                                                                    monkeypatch):
    names = list(CAMS)
    node = start(g.depth_node(
        model=open_tiny(model_path), cameras=names, batch_max_wait=0.05,
        **{'back.image_topic': '/rear_cam/color/image_raw',
           'back.camera_info_topic': '/rear_cam/color/camera_info'}))
    spy = BatchSpy(node, monkeypatch)
    col = collector(g, names)
    cams = {n: ros_graph.Camera(g, namespace=n, name=f'cam_{n}') for n in names[:2]}
    cams['back'] = ros_graph.Camera(g, namespace='rear_cam', image_topic='color/image_raw',
                                    info_topic='color/camera_info', name='cam_back')
    for cam in cams.values():
        cam.wait_for_subscribers()
    matched(node, col, names)
    sent: dict[str, list] = {n: [] for n in names}
    for tick in range(6):
        due = [n for n in names if tick % CAMS[n][1] == 0]
        for name in due:
            image, info = tum_frame(g, name, tick)
            cams[name].info_pub.publish(info)
            cams[name].image_pub.publish(image)
            sent[name].append((image, info))
        for name in due:
            col.wait(f'{name}/points', len(sent[name]), timeout=30)
    assert [len(sent[n]) for n in names] == [6, 3, 2]
    for name in names:
        check_outputs(g, node, col, name, sent[name], model_path)
        fx = col.messages[f'{name}/depth/camera_info'][0].k[0]
        assert fx == CAMS[name][2]
    assert max(spy.sizes) >= 2 and sum(spy.sizes) == 11    # batched rounds, no frame twice
    assert node.error_counts == {}


# -- per-camera sparse depth and scale ------------------------------------------------------
SPARSE_SCALES = {'front': 2.0, 'back': 3.5}   # each camera's true metres per model unit


@pytest.mark.parametrize('compressed', [False, True], ids=['raw', 'png'])
def test_each_camera_is_scaled_by_its_own_sparse_depth(g, tmp_path, compressed):
    """A relative model made metric per camera: its own sparse topic, fit and smoother."""
    from depth_node.images import make_compressed, make_image
    from depth_node.pipeline import DepthPipeline
    relative = helpers.build_tiny_onnx(tmp_path / 'tiny_rel.onnx', batch='batch')
    card = tmp_path / 'tiny_rel.card.yaml'
    card.write_text(card.read_text().replace('metric_depth', 'relative_depth'))
    names = list(SPARSE_SCALES)
    node = start(g.depth_node(model=open_tiny(relative), cameras=names, batch_max_wait=1.0,
                              scale_source='sparse_depth', sync_max_wait=2.0,
                              edge_threshold=0.0, output_encoding='32FC1',
                              input_transport='compressed' if compressed else 'raw'))
    col = collector(g, names)
    cams = {n: ros_graph.Camera(g, namespace=n, name=f'cam_{n}', compressed=compressed)
            for n in names}
    for cam in cams.values():
        cam.wait_for_subscribers(sparse=True)
    matched(node, col, names)
    ramp = np.linspace(0, 255, 640, dtype=np.float32)
    rgb = np.repeat(np.tile(ramp, (480, 1))[..., None], 3, axis=2).astype(np.uint8)
    reference = DepthPipeline(open_tiny(relative), node._pipeline.config)
    for i in range(3):
        for name in names:
            stamp = (1_700_000_000 + i, 1000 * names.index(name))
            image = helpers.rgb_image(g.factory, rgb, stamp, f'{name}_optical_frame')
            info = helpers.camera_info(g.factory, stamp, f'{name}_optical_frame')
            unit = np.asarray(reference.process(image, info).relative, np.float32)
            sparse = np.zeros_like(unit)
            sparse[::8, ::8] = SPARSE_SCALES[name] * unit[::8, ::8]   # a sparse LiDAR-like scan
            cams[name].info_pub.publish(info)
            cams[name].image_pub.publish(  # PNG: lossless, the same pixels
                make_compressed(g.factory, image.header, rgb, 'png') if compressed else image)
            cams[name].sparse_pub.publish(make_image(g.factory, image.header, sparse, '32FC1'))
        for name in names:
            col.wait(f'{name}/depth/image', i + 1, timeout=30)
    for name in names:
        for msg in col.messages[f'{name}/depth/image']:
            depth = np.frombuffer(bytes(msg.data), np.float32).reshape(msg.height, msg.width)
            ratio = np.nanmedian(depth / unit)
            assert ratio == pytest.approx(SPARSE_SCALES[name], rel=0.01), name
        values = node.camera_reports()[name].as_dict()
        assert values['frames without sparse depth'] == '0', values
        assert float(values['scale']) == pytest.approx(SPARSE_SCALES[name], rel=0.01)
    assert node.error_counts == {}


# -- a camera that sends bad frames, then stops ----------------------------------------------
def test_bad_then_stopped_camera_costs_the_others_nothing(g, model_path, monkeypatch):
    names = ['front', 'left', 'back']
    node = start(g.depth_node(model=open_tiny(model_path), cameras=names,
                              batch_max_wait=0.3))
    col = collector(g, names)
    diag = ros_graph.Collector(g, {'/diagnostics': 'DiagnosticArray', '/rosout': 'Log'},
                               name='diag_collector')
    cams = {n: ros_graph.Camera(g, namespace=n, name=f'cam_{n}') for n in names}
    for cam in cams.values():
        cam.wait_for_subscribers()
    matched(node, col, names)
    sent: dict[str, list] = {n: [] for n in names}
    for tick in range(8):
        for name in names:
            image, info = tum_frame(g, name if name != 'back' else 'front', tick)
            image.header.frame_id = info.header.frame_id = f'{name}_optical_frame'
            if name == 'back':
                if tick >= 4:
                    continue                       # back stopped
                if tick % 2 == 0:
                    image.data = image.data[:1000]  # truncated: a bad frame
                else:
                    image.encoding = 'yuv_unknown'  # an encoding nobody decodes
            else:
                sent[name].append((image, info))
            cams[name].info_pub.publish(info)
            cams[name].image_pub.publish(image)
        for name in ('front', 'left'):
            col.wait(f'{name}/points', len(sent[name]), timeout=30)
    for name in ('front', 'left'):
        check_outputs(g, node, col, name, sent[name], model_path)
    assert col.count('back/depth/image') == 0
    back = node.cameras['back'].reporter.snapshot()
    # each bad frame is counted for back: as an error, or (a loaded machine) as a stale drop
    # when its next frame replaced it before a round took it
    drops = node.cameras['back'].diagnostics.stale_drops
    assert sum(back.values()) >= 1 and sum(back.values()) + drops == 4, (back, drops)
    assert node.cameras['front'].reporter.snapshot() == {}
    assert node.cameras['left'].reporter.snapshot() == {}
    reports = node.camera_reports()
    assert reports['back'].as_dict()['errors'] == str(sum(back.values()))
    assert reports['front'].as_dict()['frames published'] == '8'
    ros_graph.wait_for(lambda: ros_graph.log_lines(diag, level=30, contains='camera back:'),
                       what='a warning naming camera back')
    lines = ros_graph.log_lines(diag, level=30, contains='camera back:')
    assert lines and not ros_graph.log_lines(diag, level=30, contains='camera front:')
    statuses = diag.wait('/diagnostics', 1, timeout=10,
                         where=lambda m: len(m.status) == 4)[-1].status
    assert [s.name for s in statuses] == ['depth_node: monocular depth', 'depth_node: camera '
                                          'front', 'depth_node: camera left',
                                          'depth_node: camera back']
    values = {kv.key: kv.value for kv in statuses[0].values}
    assert values['cameras'] == 'front, left, back' and float(values['batch size mean']) > 1


def test_invalid_cameras_fail_configure_with_the_reason(g, model_path):
    node = g.depth_node(model=open_tiny(model_path), cameras=['front', 'front', '2nd'])
    assert node.trigger_configure().name == 'FAILURE'
    error = node.diagnostics_report().as_dict()['configure error']
    assert "'front' is listed twice" in error and "'2nd' is not a valid camera name" in error


@pytest.mark.parametrize('name', ['cameras_2.yaml', 'cameras_4.yaml'])
def test_config_examples_declare_every_camera(g, model_path, name):
    import yaml
    path = Path(__file__).resolve().parents[1] / 'config' / name
    values = yaml.safe_load(path.read_text())['/**/depth_node']['ros__parameters']
    node = g.depth_node(model=open_tiny(model_path),
                        cli_args=['--ros-args', '--params-file', str(path)])
    assert list(node.cameras) == values['cameras']
    for camera, stream in node.cameras.items():
        assert stream.topics.image_topic == values[f'{camera}.image_topic']
        assert stream.topics.camera_info_topic == values[f'{camera}.camera_info_topic']
        assert stream.topics.output('points') == f'{camera}/points'
    start(node)
    for camera in values['cameras']:
        assert node.count_subscribers(values[f'{camera}.image_topic']) == 1
        assert node.count_publishers(f'/{camera}/depth/image') == 1
