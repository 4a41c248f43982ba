"""DepthNode on a real ROS 2 graph (rclpy, Fast DDS): real frames in, outputs out.

Covers stamps, laziness, staleness, sync policies, transports and diagnostics. The node, a
camera and collectors are nodes of one in-process graph (:mod:`ros_graph`): every message
crosses DDS, callbacks run on executor threads and timers fire on their own.
"""

from __future__ import annotations

import array
import time

import numpy as np
import pytest
import ros_graph

ros_graph.require_rclpy()
cv2 = pytest.importorskip('cv2')

import node_helpers as helpers  # noqa: E402, I100

OUTPUTS = {'depth/image': 'Image', 'depth/camera_info': 'CameraInfo', 'points': 'PointCloud2',
           'depth/colorized': 'Image', 'depth/relative': 'Image'}


@pytest.fixture(scope='module')
def tum_rgb(shared_data):
    bgr = cv2.imread(str(shared_data / 'rgbd' / 'open3d_tum' / 'TUM_color.png'),
                     cv2.IMREAD_COLOR)
    assert bgr is not None and bgr.shape == (480, 640, 3)
    return np.ascontiguousarray(bgr[:, :, ::-1])


class World:
    """The nodes of one test on the module's graph."""

    def __init__(self, graph):
        self.graph = graph
        self.factory = graph.factory

    def node(self, model=None, **overrides):
        return self.graph.depth_node(model=model, **overrides)

    def start(self, node):
        assert node.trigger_configure().name == 'SUCCESS'
        assert node.trigger_activate().name == 'SUCCESS'
        return node

    def camera(self, **kw):
        return ros_graph.Camera(self.graph, **kw)

    def collector(self, topics, **kw):
        return ros_graph.Collector(self.graph, topics, **kw)

    def connect(self, node, cam=None, col=None, sparse=False):
        """Wait for discovery: the camera reaches the node, the node's outputs the collector."""
        if cam is not None:
            cam.wait_for_subscribers(sparse=sparse)
        if col is not None:
            for topic in col.subs:
                if topic in node._outputs:
                    col.wait_for_publishers(topic)
                    pub = node._outputs[topic]
                    ros_graph.wait_for(lambda p=pub: p.get_subscription_count() > 0,
                                       what=f'the node to see the subscriber of {topic}')

    def send(self, cam, rgb, stamp, info=True, frame_id='tum_rgb_optical_frame', **kw):
        cam.image_pub.publish(helpers.rgb_image(self.factory, rgb, stamp, frame_id))
        if info:
            cam.info_pub.publish(helpers.camera_info(self.factory, stamp, frame_id, **kw))


@pytest.fixture
def world(graph):
    """Create nodes, a camera and collectors; tears everything down."""
    yield World(graph)
    graph.remove_all()


def stamp_tuple(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def images_received(node):
    return int(node.diagnostics_report().as_dict()['images received'])


class SlowAssignments:
    """Record payload assignments of anything but ``array.array``.

    That is rclpy's slow path: element-by-element validation and a copy.
    """

    FIELDS = (('Image', 'data'), ('PointCloud2', 'data'), ('CameraInfo', 'd'))

    def __init__(self, monkeypatch):
        self.slow = []
        for cls_name, field in self.FIELDS:
            cls = ros_graph.message_class(cls_name)
            prop = getattr(cls, field)

            def setter(msg, value, prop=prop, where=(cls_name, field)):
                if not isinstance(value, array.array):
                    self.slow.append((*where, type(value).__name__))
                prop.fset(msg, value)
            monkeypatch.setattr(cls, field, property(prop.fget, setter))


def test_real_onnx_model_outputs_keep_stamp_and_frame(world, tum_rgb, tmp_path, monkeypatch):
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    from depth_node.clouds import pointcloud2_to_array
    from depth_node.images import depth_to_metres
    path = helpers.build_tiny_onnx(tmp_path / 'tiny.onnx')
    node = world.start(world.node(model_file_path=str(path), backend='onnxruntime',
                                  min_range=0.1, max_range=20.0, edge_threshold=0.0))
    col = world.collector(dict(OUTPUTS))
    cam = world.camera()
    world.connect(node, cam, col)
    slow = SlowAssignments(monkeypatch)
    published = []
    for suffix, pub in node._outputs.items():
        original = pub.publish
        monkeypatch.setattr(pub, 'publish', lambda msg, s=suffix, o=original:
                            (published.append((s, msg)), o(msg))[1])
    stamp = helpers.now_stamp()
    world.send(cam, tum_rgb, stamp)
    depth_msg = col.wait('depth/image')[0]
    info_msg = col.wait('depth/camera_info')[0]
    cloud_msg = col.wait('points')[0]
    colour_msg = col.wait('depth/colorized')[0]
    time.sleep(0.1)
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
    assert list(info_msg.k) == pytest.approx(helpers.K_TUM)
    assert (cloud_msg.height, cloud_msg.width) == (480, 640)
    points = pointcloud2_to_array(cloud_msg)
    centre = points[240, 320]
    assert centre['z'] == pytest.approx(depth[240, 320], rel=1e-5)
    assert centre['x'] == pytest.approx((320 - 319.5) / 525.0 * depth[240, 320], rel=1e-4)
    assert colour_msg.encoding == 'rgb8'
    # the node built every payload with array.array, rclpy's fast path
    assert sorted(s for s, _ in published) == sorted(['depth/image', 'depth/camera_info',
                                                      'points', 'depth/colorized'])
    for suffix, msg in published:
        payload = msg.d if suffix == 'depth/camera_info' else msg.data
        assert isinstance(payload, array.array), suffix
    assert slow.slow == []
    # and what crossed DDS is byte for byte what the node published
    sent = dict(published)
    assert bytes(depth_msg.data) == bytes(sent['depth/image'].data)
    assert bytes(cloud_msg.data) == bytes(sent['points'].data)
    assert node.error_counts == {}


def test_outputs_are_lazy(world, tum_rgb, monkeypatch):
    from rclpy.parameter import Parameter
    model = helpers.FakeModel()
    node = world.start(world.node(model=model))
    cam = world.camera()
    world.connect(node, cam)
    world.send(cam, tum_rgb, (100, 1))
    ros_graph.wait_for(lambda: images_received(node) == 1, what='the first image')
    time.sleep(0.2)
    assert model.calls == 0                 # nobody listens: no inference at all
    wants = []
    original = node._pipeline.outputs

    def spy(result, header, factory, want):
        wants.append(sorted(want))
        return original(result, header, factory, want)
    monkeypatch.setattr(node._pipeline, 'outputs', spy)
    col = world.collector({'depth/image': 'Image'})
    world.connect(node, col=col)
    world.send(cam, tum_rgb, (100, 2))
    col.wait('depth/image')
    assert wants == [['depth/image']] and model.calls == 1
    # a points subscriber, but publish_points off: still not computed
    assert node.set_parameters([Parameter('publish_points', value=False)])[0].successful
    pts = world.collector({'points': 'PointCloud2'}, name='pts')
    world.connect(node, col=pts)
    world.send(cam, tum_rgb, (100, 3))
    col.wait('depth/image', 2)
    assert wants[-1] == ['depth/image'] and pts.messages['points'] == []
    assert node.set_parameters([Parameter('publish_points', value=True)])[0].successful
    world.send(cam, tum_rgb, (100, 4))
    pts.wait('points')
    assert wants[-1] == ['depth/image', 'points']


def test_stale_frames_are_dropped_and_counted(world, tum_rgb):
    model = helpers.FakeModel()
    node = world.start(world.node(model=model))
    col = world.collector({'depth/image': 'Image'})
    cam = world.camera()
    world.connect(node, cam, col)
    model.release.clear()                   # the model "runs" until released
    world.send(cam, tum_rgb, (200, 0))
    assert model.started.wait(5.0)
    for i in range(1, 5):                   # four frames while the worker is busy
        world.send(cam, tum_rgb, (200, i))
    # all four paired (nothing waits in the sync) before the model is released
    ros_graph.wait_for(lambda: images_received(node) == 5 and node._sync.pending == 0,
                       what='the four frames')
    model.release.set()
    col.wait('depth/image', 2)
    time.sleep(0.1)
    stamps = [stamp_tuple(m) for m in col.messages['depth/image']]
    assert stamps == [(200, 0), (200, 4)]  # the newest survived, three were dropped
    assert node.diagnostics.stale_drops == 3
    assert node.diagnostics_report().as_dict()['stale frames dropped'] == '3'


def test_sync_policies(world, tum_rgb):
    from rclpy.parameter import Parameter
    model = helpers.FakeModel()
    node = world.start(world.node(model=model, sync_policy='exact'))
    col = world.collector({'depth/image': 'Image'})
    cam = world.camera()
    world.connect(node, cam, col)
    # camera_info stamped 5 ms after the image: exact never pairs it
    cam.image_pub.publish(helpers.rgb_image(world.factory, tum_rgb, (300, 0)))
    cam.info_pub.publish(helpers.camera_info(world.factory, (300, 5_000_000)))
    ros_graph.wait_for(lambda: node.error_counts.get('no_camera_info') == 1,
                       what='the unpaired image to be given up')
    time.sleep(0.1)
    assert col.messages['depth/image'] == []
    assert node.error_counts == {'no_camera_info': 1}
    assert node.set_parameters([Parameter('sync_policy', value='approximate'),
                                Parameter('sync_tolerance', value=0.01)])[1].successful
    cam.image_pub.publish(helpers.rgb_image(world.factory, tum_rgb, (301, 0)))
    cam.info_pub.publish(helpers.camera_info(world.factory, (301, 5_000_000)))
    assert stamp_tuple(col.wait('depth/image')[0]) == (301, 0)
    assert node.set_parameters([Parameter('sync_policy', value='latest')])[0].successful
    cam.image_pub.publish(helpers.rgb_image(world.factory, tum_rgb, (305, 0)))
    assert stamp_tuple(col.wait('depth/image', 2)[1]) == (305, 0)
    assert node.error_counts == {'no_camera_info': 1}


def test_latest_sync_first_image_before_first_camera_info(world, tum_rgb):
    # two topics have no common delivery order: a camera's first image may reach the node
    # before its first camera_info; with latest sync that frame must not be lost
    node = world.start(world.node(model=helpers.FakeModel(), sync_policy='latest',
                                  sync_max_wait=1.0))
    col = world.collector({'depth/image': 'Image'})
    cam = world.camera()
    world.connect(node, cam, col)
    cam.image_pub.publish(helpers.rgb_image(world.factory, tum_rgb, (400, 0)))
    time.sleep(0.03)
    cam.info_pub.publish(helpers.camera_info(world.factory, (399, 0)))
    assert stamp_tuple(col.wait('depth/image')[0]) == (400, 0)
    assert node.error_counts == {}


def test_compressed_transport_follows_image_remapping(world, tum_rgb):
    from depth_node.images import depth_to_metres, make_compressed
    model = helpers.FakeModel(depth_m=3.0)
    node = world.start(world.node(
        model=model, input_transport='compressed',
        cli_args=['--ros-args', '-r', 'image:=/cam/color/image_raw',
                  '-r', 'camera_info:=/cam/color/camera_info']))
    assert sorted(s.topic_name for s in node.subscriptions) == [
        '/cam/color/camera_info', '/cam/color/image_raw/compressed']
    col = world.collector({'depth/image': 'Image'})
    cam = world.camera(compressed=True, image_topic='/cam/color/image_raw',
                       info_topic='/cam/color/camera_info')
    world.connect(node, cam, col)
    stamp = (400, 7)
    header = world.factory.header(*stamp, 'cam_optical')
    cam.image_pub.publish(make_compressed(world.factory, header, tum_rgb, 'jpeg'))
    cam.info_pub.publish(helpers.camera_info(world.factory, stamp, 'cam_optical'))
    msg = col.wait('depth/image')[0]
    assert stamp_tuple(msg) == stamp and msg.header.frame_id == 'cam_optical'
    depth = depth_to_metres(msg)
    assert depth.shape == (480, 640)
    assert np.nanmedian(depth) == pytest.approx(3.0)


def test_relative_model_publishes_relative_only(world, tum_rgb):
    model = helpers.FakeModel(depth_m=7.0, output_kind='relative_depth')
    node = world.start(world.node(model=model, scale_source='none'))
    col = world.collector({'depth/image': 'Image', 'depth/relative': 'Image'})
    cam = world.camera()
    world.connect(node, cam, col)
    world.send(cam, tum_rgb, (500, 0))
    rel = col.wait('depth/relative')[0]
    assert rel.encoding == '32FC1' and stamp_tuple(rel) == (500, 0)
    time.sleep(0.1)
    assert col.messages['depth/image'] == []       # never label a relative map as metres


def test_sparse_depth_subscription_follows_scale_source(world):
    from rclpy.parameter import Parameter
    node = world.start(world.node(model=helpers.FakeModel(output_kind='relative_depth')))

    def topics():
        return [s.topic_name for s in node.subscriptions]
    assert '/sparse_depth' not in topics()
    assert node.set_parameters([Parameter('scale_source', value='sparse_depth')])[0].successful
    assert '/sparse_depth' in topics()
    assert node.set_parameters([Parameter('scale_source', value='none')])[0].successful
    assert '/sparse_depth' not in topics()


def test_diagnostics_message(world, tum_rgb):
    model = helpers.FakeModel()
    node = world.start(world.node(model=model, diagnostics_period=0.2))
    col = world.collector({'depth/image': 'Image', '/diagnostics': 'DiagnosticArray'})
    cam = world.camera()
    world.connect(node, cam, col)
    col.wait_for_publishers('/diagnostics')
    for i in range(3):
        stamp = helpers.now_stamp()
        world.send(cam, tum_rgb, stamp)
        col.wait('depth/image', i + 1)
    stamp = helpers.now_stamp()
    bad = helpers.rgb_image(world.factory, tum_rgb, stamp)
    bad.encoding = 'weird8'
    cam.image_pub.publish(bad)
    cam.info_pub.publish(helpers.camera_info(world.factory, stamp))

    def values_of(msg):
        return {kv.key: kv.value for kv in msg.status[0].values}
    # the first report after the bad frame (the timer fires on its own)
    msg = col.wait('/diagnostics', where=lambda m: 'errors: unsupported_encoding'
                   in values_of(m), timeout=10.0)[0]
    status = msg.status[0]
    values = values_of(msg)
    assert status.name == 'depth_node: monocular depth'
    assert status.level in (b'\x01', b'\x02')    # a bad frame since the last report
    assert 'unsupported_encoding' in status.message
    assert values['errors: unsupported_encoding'] == '1'
    assert values['frames published'] == '3' and values['images received'] == '4'
    assert float(values['input rate (Hz)']) > 0
    assert 0 <= float(values['latency mean (ms)']) < 5000
    assert float(values['inference mean (ms)']) == pytest.approx(1.0)
    assert values['backend backend'] == 'fake' and values['state'] == 'active'
    assert values['output'] == 'metric depth'
    # the next report: no new errors since, so OK
    index = col.messages['/diagnostics'].index(msg)
    col.wait('/diagnostics', index + 2)
    assert col.messages['/diagnostics'][index + 1].status[0].level == b'\x00'


def test_sparse_depth_is_paired_by_stamp(world, tum_rgb, monkeypatch):
    from depth_node.images import make_image
    model = helpers.FakeModel(output_kind='relative_depth')
    # one pairing rule for camera_info and sparse depth: approximate within 20 ms
    node = world.start(world.node(model=model, scale_source='sparse_depth',
                                  sync_policy='approximate', sync_tolerance=0.02))
    seen = []
    original = node._pipeline.process

    def spy(image, info, sparse=None):
        seen.append(None if sparse is None else sparse.header.stamp.nanosec)
        return original(image, info, sparse)
    monkeypatch.setattr(node._pipeline, 'process', spy)
    col = world.collector({'depth/relative': 'Image', 'depth/image': 'Image'})  # wants outputs
    cam = world.camera()
    world.connect(node, cam, col, sparse=True)
    sparse = np.zeros((480, 640), np.float32)
    for nsec in (0, 10_000_000, 900_000_000):
        cam.sparse_pub.publish(make_image(world.factory, world.factory.header(700, nsec, 'c'),
                                          sparse, '32FC1'))
    ros_graph.wait_for(lambda: len(node._sync._sparse.items) == 3, what='the sparse depth')
    for count, nsec in ((1, 15_000_000),          # 5 ms from the 10 ms sample
                        (2, 500_000_000)):        # nothing within 20 ms
        world.send(cam, tum_rgb, (700, nsec))
        ros_graph.wait_for(lambda c=count: len(seen) >= c, what=f'frame {count}')
    assert seen == [10_000_000, None]
