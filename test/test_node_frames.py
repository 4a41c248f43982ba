"""DepthNode on the rclpy STAND-IN: real frames in, outputs out.

Covers stamps, laziness, staleness, sync policies, transports and diagnostics. Published
messages are real rosbags objects that the stand-in serialized to CDR on the way.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip('rosbags', reason='the rclpy stand-in builds messages with rosbags')
cv2 = pytest.importorskip('cv2')

import rclpy_standin  # noqa: E402
from rclpy_standin import fire_timers, harness  # noqa: E402

OUTPUTS = {'depth/image': 'Image', 'depth/camera_info': 'CameraInfo', 'points': 'PointCloud2',
           'depth/colorized': 'Image', 'depth/relative': 'Image'}


@pytest.fixture(scope='module')
def ros():
    with harness.standin_session() as node_module:
        yield node_module


@pytest.fixture(scope='module')
def tum_rgb(shared_data):
    bgr = cv2.imread(str(shared_data / 'rgbd' / 'open3d_tum' / 'TUM_color.png'),
                     cv2.IMREAD_COLOR)
    assert bgr is not None and bgr.shape == (480, 640, 3)
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture
def world(ros, humble_factory):
    """Create nodes, a camera and collectors; tears everything down."""
    from rclpy import _graph
    from rclpy.parameter import Parameter
    made = []

    class World:
        factory = humble_factory

        def node(self, model=None, cli_args=None, **overrides):
            overrides.setdefault('autostart', False)
            overrides.setdefault('model_file_path', 'zoo-model')
            params = [Parameter(k, value=v) for k, v in overrides.items()]
            opener = harness.opener_for(model) if model is not None else None
            node = ros.DepthNode(parameter_overrides=params, model_opener=opener,
                                 cli_args=cli_args)
            made.append(node)
            return node

        def start(self, node):
            assert node.trigger_configure().name == 'SUCCESS'
            assert node.trigger_activate().name == 'SUCCESS'
            return node

        def camera(self, **kw):
            cam = harness.Camera(**kw)
            made.append(cam.node)
            return cam

        def collector(self, topics, **kw):
            col = harness.Collector(topics, **kw)
            made.append(col.node)
            return col

        def send(self, cam, rgb, stamp, info=True, frame_id='tum_rgb_optical_frame', **kw):
            cam.image_pub.publish(harness.rgb_image(self.factory, rgb, stamp, frame_id))
            if info:
                cam.info_pub.publish(harness.camera_info(self.factory, stamp, frame_id, **kw))

    yield World()
    for n in made:
        n.destroy_node()
    _graph.GRAPH.reset()


def stamp_tuple(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def test_real_onnx_model_outputs_keep_stamp_and_frame(world, tum_rgb, tmp_path):
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    from depth_node.clouds import pointcloud2_to_array
    from depth_node.images import depth_to_metres
    path = harness.build_tiny_onnx(tmp_path / 'tiny.onnx')
    node = world.start(world.node(model_file_path=str(path), backend='onnxruntime',
                                  min_range=0.1, max_range=20.0, edge_threshold=0.0))
    col = world.collector(dict(OUTPUTS))
    cam = world.camera()
    stamp = harness.now_stamp()
    world.send(cam, tum_rgb, stamp)
    depth_msg = col.wait('depth/image')[0]
    info_msg = col.wait('depth/camera_info')[0]
    cloud_msg = col.wait('points')[0]
    colour_msg = col.wait('depth/colorized')[0]
    time.sleep(0.05)
    assert col.messages['depth/relative'] == []        # metric model: no relative output
    for msg in (depth_msg, info_msg, cloud_msg, colour_msg):
        assert stamp_tuple(msg) == stamp
        assert msg.header.frame_id == 'tum_rgb_optical_frame'
    # the tiny network computes depth = 1 + 4 * mean(rgb / 255) at 64x48, resized back
    assert (depth_msg.width, depth_msg.height, depth_msg.encoding) == (640, 480, '32FC1')
    depth = depth_to_metres(depth_msg)
    small = cv2.resize(tum_rgb, (64, 48), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    expected = 1.0 + 4.0 * small.mean(axis=2) / 255.0
    assert np.nanmedian(depth) == pytest.approx(np.median(expected), rel=0.05)
    assert np.isfinite(depth).mean() > 0.99
    assert list(info_msg.k) == pytest.approx(harness.K_TUM)
    assert (cloud_msg.height, cloud_msg.width) == (480, 640)
    points = pointcloud2_to_array(cloud_msg)
    centre = points[240, 320]
    assert centre['z'] == pytest.approx(depth[240, 320], rel=1e-5)
    assert centre['x'] == pytest.approx((320 - 319.5) / 525.0 * depth[240, 320], rel=1e-4)
    assert colour_msg.encoding == 'rgb8'
    # the node built every payload with array.array, rclpy's fast path
    assert rclpy_standin.slow_assignments() == []
    # and a second CDR round trip with the Humble typestore gives the same bytes back
    store = world.factory.typestore
    raw = store.serialize_cdr(depth_msg, depth_msg.__msgtype__)
    again = store.deserialize_cdr(raw, depth_msg.__msgtype__)
    assert np.array_equal(again.data, depth_msg.data)
    assert node.error_counts == {}


def test_outputs_are_lazy(world, tum_rgb, monkeypatch):
    model = harness.FakeModel()
    node = world.start(world.node(model=model))
    cam = world.camera()
    world.send(cam, tum_rgb, (100, 1))
    time.sleep(0.2)
    assert model.calls == 0                 # nobody listens: no inference at all
    wants = []
    original = node._pipeline.outputs

    def spy(result, header, factory, want):
        wants.append(sorted(want))
        return original(result, header, factory, want)
    monkeypatch.setattr(node._pipeline, 'outputs', spy)
    col = world.collector({'depth/image': 'Image'})
    world.send(cam, tum_rgb, (100, 2))
    col.wait('depth/image')
    assert wants == [['depth/image']] and model.calls == 1
    # a points subscriber, but publish_points off: still not computed
    from rclpy.parameter import Parameter
    assert node.set_parameters([Parameter('publish_points', value=False)])[0].successful
    pts = world.collector({'points': 'PointCloud2'}, name='pts')
    world.send(cam, tum_rgb, (100, 3))
    col.wait('depth/image', 2)
    assert wants[-1] == ['depth/image'] and pts.messages['points'] == []
    assert node.set_parameters([Parameter('publish_points', value=True)])[0].successful
    world.send(cam, tum_rgb, (100, 4))
    pts.wait('points')
    assert wants[-1] == ['depth/image', 'points']


def test_stale_frames_are_dropped_and_counted(world, tum_rgb):
    model = harness.FakeModel()
    node = world.start(world.node(model=model))
    col = world.collector({'depth/image': 'Image'})
    cam = world.camera()
    model.release.clear()                   # the model "runs" until released
    world.send(cam, tum_rgb, (200, 0))
    assert model.started.wait(5.0)
    for i in range(1, 5):                   # four frames while the worker is busy
        world.send(cam, tum_rgb, (200, i))
    model.release.set()
    col.wait('depth/image', 2)
    time.sleep(0.1)
    stamps = [stamp_tuple(m) for m in col.messages['depth/image']]
    assert stamps == [(200, 0), (200, 4)]  # the newest survived, three were dropped
    assert node.diagnostics.stale_drops == 3
    assert node.diagnostics_report().as_dict()['stale frames dropped'] == '3'


def test_sync_policies(world, tum_rgb):
    from rclpy.parameter import Parameter
    model = harness.FakeModel()
    node = world.start(world.node(model=model, sync_policy='exact'))
    col = world.collector({'depth/image': 'Image'})
    cam = world.camera()
    # camera_info stamped 5 ms after the image: exact never pairs it
    cam.image_pub.publish(harness.rgb_image(world.factory, tum_rgb, (300, 0)))
    cam.info_pub.publish(harness.camera_info(world.factory, (300, 5_000_000)))
    time.sleep(0.1)
    assert col.messages['depth/image'] == []
    assert node.error_counts == {'no_camera_info': 1}
    assert node.set_parameters([Parameter('sync_policy', value='approximate'),
                                Parameter('sync_tolerance', value=0.01)])[1].successful
    cam.image_pub.publish(harness.rgb_image(world.factory, tum_rgb, (301, 0)))
    cam.info_pub.publish(harness.camera_info(world.factory, (301, 5_000_000)))
    assert stamp_tuple(col.wait('depth/image')[0]) == (301, 0)
    assert node.set_parameters([Parameter('sync_policy', value='latest')])[0].successful
    cam.image_pub.publish(harness.rgb_image(world.factory, tum_rgb, (305, 0)))
    assert stamp_tuple(col.wait('depth/image', 2)[1]) == (305, 0)
    assert node.error_counts == {'no_camera_info': 1}


def test_compressed_transport_follows_image_remapping(world, tum_rgb):
    from depth_node.images import make_compressed
    model = harness.FakeModel(depth_m=3.0)
    node = world.start(world.node(
        model=model, input_transport='compressed',
        cli_args=['--ros-args', '-r', 'image:=/cam/color/image_raw',
                  '-r', 'camera_info:=/cam/color/camera_info']))
    assert sorted(s.topic_name for s in node.subscriptions) == [
        '/cam/color/camera_info', '/cam/color/image_raw/compressed']
    col = world.collector({'depth/image': 'Image'})
    cam = world.camera(compressed=True, image_topic='/cam/color/image_raw',
                       info_topic='/cam/color/camera_info')
    stamp = (400, 7)
    header = world.factory.header(*stamp, 'cam_optical')
    cam.image_pub.publish(make_compressed(world.factory, header, tum_rgb, 'jpeg'))
    cam.info_pub.publish(harness.camera_info(world.factory, stamp, 'cam_optical'))
    msg = col.wait('depth/image')[0]
    assert stamp_tuple(msg) == stamp and msg.header.frame_id == 'cam_optical'
    depth = np.frombuffer(msg.data, dtype=np.float32).reshape(480, 640)
    assert np.nanmedian(depth) == pytest.approx(3.0)


def test_relative_model_publishes_relative_only(world, tum_rgb):
    model = harness.FakeModel(depth_m=7.0, output_kind='relative_depth')
    world.start(world.node(model=model, scale_source='none'))
    col = world.collector({'depth/image': 'Image', 'depth/relative': 'Image'})
    cam = world.camera()
    world.send(cam, tum_rgb, (500, 0))
    rel = col.wait('depth/relative')[0]
    assert rel.encoding == '32FC1' and stamp_tuple(rel) == (500, 0)
    time.sleep(0.05)
    assert col.messages['depth/image'] == []       # never label a relative map as metres


def test_sparse_depth_subscription_follows_scale_source(world):
    from rclpy.parameter import Parameter
    node = world.start(world.node(model=harness.FakeModel(output_kind='relative_depth')))
    assert '/sparse_depth' not in [s.topic_name for s in node.subscriptions]
    assert node.set_parameters([Parameter('scale_source', value='sparse_depth')])[0].successful
    assert '/sparse_depth' in [s.topic_name for s in node.subscriptions]
    assert node.set_parameters([Parameter('scale_source', value='none')])[0].successful
    assert '/sparse_depth' not in [s.topic_name for s in node.subscriptions]


def test_diagnostics_message(world, tum_rgb):
    model = harness.FakeModel()
    node = world.start(world.node(model=model))
    col = world.collector({'depth/image': 'Image', '/diagnostics': 'DiagnosticArray'})
    cam = world.camera()
    for i in range(3):
        stamp = harness.now_stamp()
        world.send(cam, tum_rgb, stamp)
        col.wait('depth/image', i + 1)
    stamp = harness.now_stamp()
    bad = harness.rgb_image(world.factory, tum_rgb, stamp)
    bad.encoding = 'weird8'
    cam.image_pub.publish(bad)
    cam.info_pub.publish(harness.camera_info(world.factory, stamp))
    time.sleep(0.1)
    fire_timers(node)
    msg = col.wait('/diagnostics')[-1]
    status = msg.status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.name == 'depth_node: monocular depth'
    assert status.level in (1, 2)               # a bad frame since the last report
    assert 'unsupported_encoding' in status.message
    assert values['errors: unsupported_encoding'] == '1'
    assert values['frames published'] == '3' and values['images received'] == '4'
    assert float(values['input rate (Hz)']) > 0
    assert 0 <= float(values['latency mean (ms)']) < 5000
    assert float(values['inference mean (ms)']) == pytest.approx(1.0)
    assert values['backend backend'] == 'fake' and values['state'] == 'active'
    assert values['output'] == 'metric depth'
    fire_timers(node)                            # no new errors since: OK
    assert col.wait('/diagnostics', 2)[-1].status[0].level == 0


def test_sparse_depth_is_paired_by_stamp(world, tum_rgb, monkeypatch):
    from depth_node.images import make_image
    model = harness.FakeModel(output_kind='relative_depth')
    node = world.start(world.node(model=model, scale_source='sparse_depth',
                                  sync_tolerance=0.02))
    seen = []
    original = node._pipeline.process

    def spy(image, info, sparse=None):
        seen.append(None if sparse is None else sparse.header.stamp.nanosec)
        return original(image, info, sparse)
    monkeypatch.setattr(node._pipeline, 'process', spy)
    world.collector({'depth/relative': 'Image', 'depth/image': 'Image'})   # wants outputs
    cam = world.camera()
    sparse = np.zeros((480, 640), np.float32)
    for nsec in (0, 10_000_000, 900_000_000):
        cam.sparse_pub.publish(make_image(world.factory, world.factory.header(700, nsec, 'c'),
                                          sparse, '32FC1'))
    for count, nsec in ((1, 15_000_000),          # 5 ms from the 10 ms sample
                        (2, 500_000_000)):        # nothing within 20 ms
        world.send(cam, tum_rgb, (700, nsec))
        deadline = time.time() + 5
        while len(seen) < count and time.time() < deadline:
            time.sleep(0.01)
    assert seen == [10_000_000, None]
