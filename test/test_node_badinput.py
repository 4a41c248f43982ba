"""DepthNode on the rclpy STAND-IN: every class of bad input is counted and the node serves on.

Each is logged with a hint and throttled; QoS incompatibility is reported; unexpected
exceptions are contained. Malformed messages come from the real synthetic rosbags-rs bag.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip('rosbags', reason='the rclpy stand-in builds messages with rosbags')

from rclpy_standin import harness  # noqa: E402


@pytest.fixture(scope='module')
def ros():
    with harness.standin_session() as node_module:
        yield node_module


@pytest.fixture(scope='module')
def synthetic_bag_messages(shared_data):
    """Return the malformed Image/CompressedImage of the synthetic rosbags-rs bag (real file)."""
    from rosbags.highlevel import AnyReader
    path = shared_data / 'bags' / 'rosbags_rs_synthetic' / 'test_bag_mcap'
    wanted = {'/test/sensor_msgs/image': None, '/test/sensor_msgs/compressed_image': None}
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        for conn, _, raw in reader.messages(connections=conns):
            if wanted[conn.topic] is None:
                wanted[conn.topic] = reader.deserialize(raw, conn.msgtype)
    assert all(v is not None for v in wanted.values())
    return wanted


@pytest.fixture
def rig(ros, humble_factory):
    from rclpy import _graph
    from rclpy.parameter import Parameter
    made = []

    def build(compressed=False, model=None, **overrides):
        overrides.setdefault('autostart', False)
        overrides.setdefault('model_file_path', 'zoo-model')
        if compressed:
            overrides['input_transport'] = 'compressed'
        model = model or harness.FakeModel()
        node = ros.DepthNode(parameter_overrides=[Parameter(k, value=v)
                                                  for k, v in overrides.items()],
                             model_opener=harness.opener_for(model))
        assert node.trigger_configure().name == 'SUCCESS'
        assert node.trigger_activate().name == 'SUCCESS'
        col = harness.Collector({'depth/image': 'Image'})
        cam = harness.Camera(compressed=compressed)
        made.extend([node, col.node, cam.node])
        return node, cam, col, model
    yield build
    for n in made:
        n.destroy_node()
    _graph.GRAPH.reset()


def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)


def warnings_of(node, kind):
    return [m for _, sev, m in node.get_logger().records if sev == 'WARN' and f'[{kind}]' in m]


def send_good(cam, factory, stamp):
    cam.info_pub.publish(harness.camera_info(factory, stamp))
    cam.image_pub.publish(harness.rgb_image(factory, rgb(), stamp))


def assert_still_serving(node, cam, col, factory, stamp):
    before = len(col.messages['depth/image'])
    send_good(cam, factory, stamp)
    msg = col.wait('depth/image', before + 1)[-1]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == stamp
    assert node.worker_alive


def wait_count(node, kind, count=1, timeout=5.0):
    deadline = time.monotonic() + timeout
    while node.error_counts.get(kind, 0) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return node.error_counts.get(kind, 0)


def test_truncated_image_from_real_bag(rig, humble_factory, synthetic_bag_messages):
    node, cam, col, _ = rig()
    bad = synthetic_bag_messages['/test/sensor_msgs/image']    # 640x480 rgb8, 30 bytes
    assert len(bad.data) == 30
    stamp = (bad.header.stamp.sec, bad.header.stamp.nanosec)
    cam.image_pub.publish(bad)
    cam.info_pub.publish(harness.camera_info(humble_factory, stamp, bad.header.frame_id))
    assert wait_count(node, 'bad_image') == 1
    assert warnings_of(node, 'bad_image')
    assert_still_serving(node, cam, col, humble_factory, (stamp[0] + 1, 0))


def test_undecodable_jpeg_from_real_bag(rig, humble_factory, synthetic_bag_messages):
    node, cam, col, _ = rig(compressed=True)
    bad = synthetic_bag_messages['/test/sensor_msgs/compressed_image']
    stamp = (bad.header.stamp.sec, bad.header.stamp.nanosec)
    cam.image_pub.publish(bad)
    cam.info_pub.publish(harness.camera_info(humble_factory, stamp, bad.header.frame_id))
    assert wait_count(node, 'undecodable_compressed') == 1
    from depth_node.images import make_compressed
    good = (stamp[0] + 1, 0)
    cam.image_pub.publish(make_compressed(humble_factory, humble_factory.header(*good, 'c'),
                                          rgb()))
    cam.info_pub.publish(harness.camera_info(humble_factory, good, 'c'))
    assert col.wait('depth/image')[-1].header.stamp.sec == good[0]


@pytest.mark.parametrize('case, kind', [
    ('unknown_encoding', 'unsupported_encoding'),
    ('uncalibrated', 'uncalibrated_camera'),
    ('size_mismatch', 'size_mismatch'),
    ('missing_camera_info', 'no_camera_info'),
])
def test_bad_input_classes(rig, humble_factory, case, kind):
    node, cam, col, model = rig(sync_policy='latest' if case == 'missing_camera_info'
                                else 'exact')
    f = humble_factory
    stamp = (1000, 0)
    image = harness.rgb_image(f, rgb(), stamp)
    info = harness.camera_info(f, stamp)
    if case == 'unknown_encoding':
        image.encoding = 'weird8'
    elif case == 'uncalibrated':
        info = harness.camera_info(f, stamp, k=[0.0] * 9)
    elif case == 'size_mismatch':      # 4:3 image, 752x480 camera_info (another aspect)
        info = harness.camera_info(f, stamp, width=752, height=480)
    cam.image_pub.publish(image)
    if case != 'missing_camera_info':
        cam.info_pub.publish(info)
    assert wait_count(node, kind) == 1, node.error_counts
    logged = warnings_of(node, kind)
    assert len(logged) == 1
    # the message says what is wrong and what to do (more than one sentence)
    assert len(logged[0]) > 60
    # the same again is counted but not logged again (throttled)
    image.header.stamp.nanosec = 1
    info.header.stamp.nanosec = 1
    cam.image_pub.publish(image)
    if case != 'missing_camera_info':
        cam.info_pub.publish(info)
    assert wait_count(node, kind, 2) == 2
    assert len(warnings_of(node, kind)) == 1
    assert col.messages['depth/image'] == []
    assert_still_serving(node, cam, col, f, (1001, 0))
    assert set(node.error_counts) == {kind}


def test_unexpected_exception_is_contained(rig, humble_factory):
    model = harness.FakeModel()
    node, cam, col, _ = rig(model=model)
    original = model.predict
    model.predict = lambda rgb: (_ for _ in ()).throw(RuntimeError('cuda went away'))
    for i in range(3):
        send_good(cam, humble_factory, (2000, i))
        assert wait_count(node, 'internal_error', i + 1) == i + 1
    tracebacks = [m for _, sev, m in node.get_logger().records
                  if sev == 'ERROR' and 'Traceback' in m]
    assert len(tracebacks) == 1 and 'cuda went away' in tracebacks[0]
    model.predict = original
    assert_still_serving(node, cam, col, humble_factory, (2001, 0))


def test_incompatible_qos_is_counted_and_explained(ros, humble_factory):
    from rclpy import _graph
    from rclpy.parameter import Parameter
    node = ros.DepthNode(parameter_overrides=[Parameter('autostart', value=False),
                                              Parameter('model_file_path', value='m'),
                                              Parameter('input_qos', value='reliable'),
                                              Parameter('output_qos', value='sensor_data')],
                         model_opener=harness.opener_for(harness.FakeModel()))
    try:
        assert node.trigger_configure().name == 'SUCCESS'
        assert node.trigger_activate().name == 'SUCCESS'
        cam = harness.Camera(reliable=False)           # best-effort camera driver
        counts = node.error_counts
        assert counts['incompatible_qos'] == 2        # image and camera_info
        text = '\n'.join(warnings_of(node, 'incompatible_qos'))
        assert 'RELIABILITY' in text and 'input_qos sensor_data' in text
        send_good(cam, humble_factory, (3000, 0))
        col = harness.Collector({'depth/image': 'Image'})   # reliable subscriber
        assert node.error_counts['incompatible_qos'] == 3
        time.sleep(0.1)
        assert col.messages['depth/image'] == []      # nothing gets through, as in ROS
        report = node.diagnostics_report().as_dict()
        assert report['qos incompatible events'] == '3'
        cam.node.destroy_node()
        col.node.destroy_node()
    finally:
        node.destroy_node()
        _graph.GRAPH.reset()
