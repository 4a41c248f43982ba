"""DepthNode on a real ROS 2 graph: every class of bad input is counted and the node serves on.

Each is logged (to /rosout) with a hint and throttled; QoS incompatibility is reported by the
middleware's QoS events; unexpected exceptions are contained. Malformed messages come from the
real synthetic rosbags-rs bag and cross DDS like any other.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import ros_graph

ros_graph.require_rclpy()
pytest.importorskip('rosbags', reason='the malformed messages are read from a bag with rosbags')

import node_helpers as helpers  # noqa: E402, I100

WARN, ERROR = 30, 40            # rcl_interfaces/Log levels


@pytest.fixture(scope='module')
def synthetic_bag_messages(shared_data, graph):
    """Return the malformed Image/CompressedImage of the synthetic bag as rclpy messages."""
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    path = shared_data / 'bags' / 'rosbags_rs_synthetic' / 'test_bag_mcap'
    wanted = {'/test/sensor_msgs/image': None, '/test/sensor_msgs/compressed_image': None}
    classes = {'/test/sensor_msgs/image': 'Image',
               '/test/sensor_msgs/compressed_image': 'CompressedImage'}
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        for conn, _, raw in reader.messages(connections=conns):
            if wanted[conn.topic] is None:
                cdr = reader.typestore.serialize_cdr(reader.deserialize(raw, conn.msgtype),
                                                     conn.msgtype)
                wanted[conn.topic] = deserialize_message(
                    bytes(cdr), ros_graph.message_class(classes[conn.topic]))
    assert all(v is not None for v in wanted.values())
    return wanted


@pytest.fixture
def factory(graph):
    return graph.factory


@pytest.fixture
def rig(graph):
    def build(compressed=False, model=None, **overrides):
        if compressed:
            overrides['input_transport'] = 'compressed'
        model = model or helpers.FakeModel()
        node = graph.depth_node(model=model, **overrides)
        assert node.trigger_configure().name == 'SUCCESS'
        assert node.trigger_activate().name == 'SUCCESS'
        col = ros_graph.Collector(graph, {'depth/image': 'Image', '/rosout': 'Log'})
        cam = ros_graph.Camera(graph, compressed=compressed)
        cam.wait_for_subscribers()
        col.wait_for_publishers('depth/image')
        ros_graph.wait_for(lambda: node._outputs['depth/image'].get_subscription_count() > 0)
        return node, cam, col, model
    yield build
    graph.remove_all()


def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)


def warnings_of(node, col, kind, at_least=1):
    """Return the warnings of ``kind`` the node logged (it counts an error, then logs it)."""
    ros_graph.wait_for(lambda: len(ros_graph.log_lines(col, level=WARN, contains=f'[{kind}]'))
                       >= at_least, what=f'a [{kind}] warning on /rosout')
    ros_graph.sync_rosout(col, node)
    return ros_graph.log_lines(col, level=WARN, contains=f'[{kind}]')


def send_good(cam, factory, stamp):
    cam.info_pub.publish(helpers.camera_info(factory, stamp))
    cam.image_pub.publish(helpers.rgb_image(factory, rgb(), stamp))


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


def test_truncated_image_from_real_bag(rig, factory, synthetic_bag_messages):
    node, cam, col, _ = rig()
    bad = synthetic_bag_messages['/test/sensor_msgs/image']    # 640x480 rgb8, 30 bytes
    assert len(bad.data) == 30
    stamp = (bad.header.stamp.sec, bad.header.stamp.nanosec)
    cam.image_pub.publish(bad)
    cam.info_pub.publish(helpers.camera_info(factory, stamp, bad.header.frame_id))
    assert wait_count(node, 'bad_image') == 1
    assert warnings_of(node, col, 'bad_image')
    assert_still_serving(node, cam, col, factory, (stamp[0] + 1, 0))


def test_undecodable_jpeg_from_real_bag(rig, factory, synthetic_bag_messages):
    node, cam, col, _ = rig(compressed=True)
    bad = synthetic_bag_messages['/test/sensor_msgs/compressed_image']
    stamp = (bad.header.stamp.sec, bad.header.stamp.nanosec)
    cam.image_pub.publish(bad)
    cam.info_pub.publish(helpers.camera_info(factory, stamp, bad.header.frame_id))
    assert wait_count(node, 'undecodable_compressed') == 1
    from depth_node.images import make_compressed
    good = (stamp[0] + 1, 0)
    cam.image_pub.publish(make_compressed(factory, factory.header(*good, 'c'),
                                          rgb()))
    cam.info_pub.publish(helpers.camera_info(factory, good, 'c'))
    assert col.wait('depth/image')[-1].header.stamp.sec == good[0]


@pytest.mark.parametrize('case, kind', [
    ('unknown_encoding', 'unsupported_encoding'),
    ('uncalibrated', 'uncalibrated_camera'),
    ('size_mismatch', 'size_mismatch'),
    ('missing_camera_info', 'no_camera_info'),
])
def test_bad_input_classes(rig, factory, case, kind):
    node, cam, col, model = rig(sync_policy='latest' if case == 'missing_camera_info'
                                else 'exact')
    f = factory
    stamp = (1000, 0)
    image = helpers.rgb_image(f, rgb(), stamp)
    info = helpers.camera_info(f, stamp)
    if case == 'unknown_encoding':
        image.encoding = 'weird8'
    elif case == 'uncalibrated':
        info = helpers.camera_info(f, stamp, k=[0.0] * 9)
    elif case == 'size_mismatch':      # 4:3 image, 752x480 camera_info (another aspect)
        info = helpers.camera_info(f, stamp, width=752, height=480)
    cam.image_pub.publish(image)
    if case != 'missing_camera_info':
        cam.info_pub.publish(info)
    assert wait_count(node, kind) == 1, node.error_counts
    logged = warnings_of(node, col, kind)
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
    assert node._reporter._suppressed[kind] == 1       # decided under the reporter's lock
    assert len(warnings_of(node, col, kind)) == 1
    assert col.messages['depth/image'] == []
    assert_still_serving(node, cam, col, f, (1001, 0))
    assert set(node.error_counts) == {kind}


def test_unexpected_exception_is_contained(rig, factory):
    model = helpers.FakeModel()
    node, cam, col, _ = rig(model=model)
    original = model.predict
    model.predict = lambda rgb: (_ for _ in ()).throw(RuntimeError('cuda went away'))
    for i in range(3):
        send_good(cam, factory, (2000, i))
        assert wait_count(node, 'internal_error', i + 1) == i + 1
    ros_graph.wait_for(lambda: ros_graph.log_lines(col, level=ERROR, contains='Traceback'))
    ros_graph.sync_rosout(col, node)
    tracebacks = ros_graph.log_lines(col, level=ERROR, contains='Traceback')
    assert len(tracebacks) == 1 and 'cuda went away' in tracebacks[0]
    assert len(node._internal_seen) == 1          # the same error's traceback is logged once
    model.predict = original
    assert_still_serving(node, cam, col, factory, (2001, 0))


def test_incompatible_qos_is_counted_and_explained(graph, factory):
    node = graph.depth_node(model=helpers.FakeModel(), model_file_path='m',
                            input_qos='reliable', output_qos='sensor_data')
    try:
        logs = ros_graph.Collector(graph, {'/rosout': 'Log'}, name='logs')
        assert node.trigger_configure().name == 'SUCCESS'
        assert node.trigger_activate().name == 'SUCCESS'
        cam = ros_graph.Camera(graph, reliability='best_effort')   # best-effort camera driver
        # the middleware reports the refused match of image and camera_info as QoS events
        ros_graph.wait_for(lambda: node.error_counts.get('incompatible_qos', 0) >= 2,
                           what='the incompatible QoS events of the inputs')
        assert node.error_counts['incompatible_qos'] == 2        # image and camera_info
        assert [p.get_subscription_count() for p in (cam.image_pub, cam.info_pub)] == [0, 0]
        text = '\n'.join(warnings_of(node, logs, 'incompatible_qos'))
        assert 'RELIABILITY' in text and 'input_qos sensor_data' in text
        send_good(cam, factory, (3000, 0))
        col = ros_graph.Collector(graph, {'depth/image': 'Image'})   # reliable subscriber
        ros_graph.wait_for(lambda: node.error_counts['incompatible_qos'] >= 3,
                           what='the incompatible QoS event of the output')
        assert node.error_counts['incompatible_qos'] == 3
        time.sleep(0.1)
        assert col.messages['depth/image'] == []      # nothing gets through, as in ROS
        report = node.diagnostics_report().as_dict()
        assert report['qos incompatible events'] == '3'
    finally:
        graph.remove_all()
