"""DepthNode on a real ROS 2 graph: what the rclpy stand-in could not show (issue 9).

* late sparse depth (a LiDAR projection arrives after its image) makes frames metric, raw and
  compressed input; without any sparse depth a frame goes on after ``sync_max_wait``;
* ``[nothing_to_publish]`` names the scale source that has no fit yet;
* incompatible-QoS hints by policy (durability, reliability);
* a refused subscriber shows in ``/diagnostics``;
* the QoS matrix of the outputs: best-effort, reliable, transient-local subscribers, rviz2's
  default and the Nav2 costmap's PointCloud2 subscription.

No assertion depends on timing: each waits for the event it checks, with generous bounds.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import ros_graph

ros_graph.require_rclpy()

import node_helpers as helpers  # noqa: E402, I100

WARN = 30                       # rcl_interfaces/Log level
SCALE, SHIFT = 2.0, 0.5         # sparse depth = SCALE * relative + SHIFT


@pytest.fixture
def g(graph):
    yield graph
    graph.remove_all()


class RampModel(helpers.FakeModel):
    """A relative-depth model whose prediction is a horizontal ramp (1 to 2): fittable."""

    def __init__(self) -> None:
        super().__init__(output_kind='relative_depth')

    def predict(self, rgb):
        raw, transform, timings = super().predict(rgb)
        h, w = raw.shape
        raw = np.tile(np.linspace(1.0, 2.0, w, dtype=np.float32), (h, 1))
        return raw, transform, timings


def sparse_depth(factory, stamp, width=640, height=480):
    """Return a metric sparse depth image (every 8th pixel) matching :class:`RampModel`."""
    from depth_node.images import make_image
    ramp = np.tile(np.linspace(1.0, 2.0, width, dtype=np.float32), (height, 1))
    depth = np.zeros((height, width), np.float32)
    depth[::8, ::8] = SCALE * ramp[::8, ::8] + SHIFT
    return make_image(factory, factory.header(*stamp, 'tum_rgb_optical_frame'), depth, '32FC1')


def rgb():
    return np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)


def start(node):
    assert node.trigger_configure().name == 'SUCCESS'
    assert node.trigger_activate().name == 'SUCCESS'
    return node


def matched(node, col, topics):
    for topic in topics:
        col.wait_for_publishers(topic)
        pub = node._outputs[topic]
        ros_graph.wait_for(lambda p=pub: p.get_subscription_count() > 0,
                           what=f'the node to see the subscriber of {topic}')


def stamp_of(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def warnings(col, node, contains):
    ros_graph.wait_for(lambda: ros_graph.log_lines(col, level=WARN, contains=contains),
                       what=f'a warning with {contains!r} on /rosout')
    ros_graph.sync_rosout(col, node)
    return ros_graph.log_lines(col, level=WARN, contains=contains)


# -- bug 1: late sparse depth -------------------------------------------------------------
@pytest.mark.parametrize('compressed', [False, True], ids=['raw', 'compressed'])
def test_sparse_depth_60ms_after_its_image_makes_every_frame_metric(g, compressed, monkeypatch):
    from depth_node.images import make_compressed
    # the bound is generous so that a loaded machine cannot make the test flaky: the frame
    # waits until its sparse depth is in (same stamp), then goes on at once
    node = start(g.depth_node(model=RampModel(), scale_source='sparse_depth',
                              input_transport='compressed' if compressed else 'raw',
                              sync_max_wait=2.0))
    paired = []
    original = node._pipeline.process

    def spy(image, info, sparse=None):
        paired.append((stamp_of(image), None if sparse is None else stamp_of(sparse)))
        return original(image, info, sparse)
    monkeypatch.setattr(node._pipeline, 'process', spy)
    col = ros_graph.Collector(g, {'depth/image': 'Image'})
    cam = ros_graph.Camera(g, compressed=compressed)
    cam.wait_for_subscribers(sparse=True)
    matched(node, col, ['depth/image'])
    image = rgb()
    stamps = []
    for i in range(12):
        stamp = helpers.now_stamp()
        stamps.append(stamp)
        header = g.factory.header(*stamp, 'tum_rgb_optical_frame')
        cam.image_pub.publish(make_compressed(g.factory, header, image, 'jpeg') if compressed
                              else helpers.rgb_image(g.factory, image, stamp))
        time.sleep(0.01)
        cam.info_pub.publish(helpers.camera_info(g.factory, stamp))      # 10 ms late
        time.sleep(0.05)
        cam.sparse_pub.publish(sparse_depth(g.factory, stamp))            # 60 ms late
        col.wait('depth/image', i + 1)
    assert [stamp_of(m) for m in col.messages['depth/image']] == stamps   # 12 of 12 metric
    assert paired == [(s, s) for s in stamps]        # each with its own sparse depth
    report = node.diagnostics_report().as_dict()
    assert report['frames without sparse depth'] == '0'
    assert node.error_counts == {}
    assert node._pipeline.process is spy


def test_without_sparse_depth_a_frame_goes_on_after_sync_max_wait(g):
    node = start(g.depth_node(model=RampModel(), scale_source='sparse_depth',
                              sync_max_wait=0.2))
    col = ros_graph.Collector(g, {'depth/relative': 'Image', 'depth/image': 'Image'})
    cam = ros_graph.Camera(g)
    cam.wait_for_subscribers(sparse=True)
    matched(node, col, ['depth/relative', 'depth/image'])
    stamp = helpers.now_stamp()
    cam.image_pub.publish(helpers.rgb_image(g.factory, rgb(), stamp))
    cam.info_pub.publish(helpers.camera_info(g.factory, stamp))
    rel = col.wait('depth/relative')[0]              # no sparse depth ever: it still goes on
    assert stamp_of(rel) == stamp
    assert node.diagnostics_report().as_dict()['frames without sparse depth'] == '1'
    assert col.messages['depth/image'] == []         # no fit: never labelled metres
    assert node._sync.pending == 0


# -- bug 3: [nothing_to_publish] names the scale source -----------------------------------
def test_nothing_to_publish_names_the_scale_source_before_the_first_fit(g):
    node = start(g.depth_node(model=RampModel(), scale_source='sparse_depth',
                              sync_max_wait=0.05))
    col = ros_graph.Collector(g, {'depth/image': 'Image', '/rosout': 'Log'})
    cam = ros_graph.Camera(g)
    cam.wait_for_subscribers(sparse=True)
    matched(node, col, ['depth/image'])            # only a metric output is subscribed
    stamp = helpers.now_stamp()
    cam.image_pub.publish(helpers.rgb_image(g.factory, rgb(), stamp))
    cam.info_pub.publish(helpers.camera_info(g.factory, stamp))
    lines = warnings(col, node, '[nothing_to_publish]')
    assert len(lines) == 1
    assert 'scale_source sparse_depth has no usable scale for this frame yet' in lines[0]
    assert 'without scale_source' not in lines[0]
    assert node.error_counts == {'nothing_to_publish': 1}


# -- bugs 4 and 5: QoS hints by policy; refused subscribers in /diagnostics ----------------
def test_transient_local_subscriber_gets_the_durability_hint(g):
    node = start(g.depth_node(model=helpers.FakeModel()))       # output_qos reliable
    logs = ros_graph.Collector(g, {'/rosout': 'Log'}, name='logs')
    ros_graph.Collector(g, {'depth/image': 'Image'}, reliability='transient_local',
                        name='latched')
    lines = warnings(logs, node, '[incompatible_qos]')
    assert len(lines) == 1
    assert 'depth/image' in lines[0] and 'DURABILITY' in lines[0]
    assert 'transient_local' in lines[0] and 'make the subscriber volatile' in lines[0]
    assert 'output_qos reliable' not in lines[0]     # it is reliable already
    assert node.diagnostics.refused['depth/image'][:2] == ('DURABILITY', 1)


def test_reliable_subscriber_of_best_effort_output_gets_the_reliability_hint(g):
    node = start(g.depth_node(model=helpers.FakeModel(), output_qos='sensor_data'))
    logs = ros_graph.Collector(g, {'/rosout': 'Log'}, name='logs')
    ros_graph.Collector(g, {'points': 'PointCloud2'}, reliability='reliable', name='rviz')
    lines = warnings(logs, node, '[incompatible_qos]')
    assert len(lines) == 1
    assert 'points' in lines[0] and 'RELIABILITY' in lines[0]
    assert 'set output_qos reliable' in lines[0]
    assert 'transient_local' not in lines[0]


def test_refused_subscriber_shows_in_diagnostics(g):
    node = start(g.depth_node(model=helpers.FakeModel(), diagnostics_period=0.2))
    diag = ros_graph.Collector(g, {'/diagnostics': 'DiagnosticArray'}, name='diag')
    ros_graph.Collector(g, {'depth/image': 'Image'}, reliability='transient_local',
                        name='latched')
    ros_graph.wait_for(lambda: 'depth/image' in node.diagnostics.refused,
                       what='the refused subscriber')
    assert node._outputs['depth/image'].get_subscription_count() == 0   # rmw does not count it
    cam = ros_graph.Camera(g)                        # images arrive, nothing is computed
    cam.wait_for_subscribers()
    stamp = helpers.now_stamp()
    cam.image_pub.publish(helpers.rgb_image(g.factory, rgb(), stamp))
    cam.info_pub.publish(helpers.camera_info(g.factory, stamp))
    ros_graph.wait_for(lambda: node.diagnostics_report().as_dict()['images received'] == '1')

    def values(msg):
        return {kv.key: kv.value for kv in msg.status[0].values}
    key = 'subscribers refused (incompatible QoS)'
    msg = diag.wait('/diagnostics', where=lambda m: values(m).get('images received') == '1'
                    and key in values(m))[0]
    status = msg.status[0]
    assert status.level == b'\x01'                   # WARN, not OK "idle"
    assert 'depth/image' in status.message and 'durability' in status.message
    assert 'idle' in status.message                  # and why nothing is computed
    assert values(msg)[key].startswith('depth/image: DURABILITY x1')
    assert values(msg)['output subscribers'] == '0'


# -- the QoS matrix of the outputs --------------------------------------------------------
def subscriber_profiles():
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        qos_profile_sensor_data,
        QoSProfile,
        ReliabilityPolicy,
    )
    return {
        'best_effort': ros_graph.qos('best_effort'),
        'reliable': ros_graph.qos('reliable'),
        'transient_local': ros_graph.qos('transient_local'),
        # rviz2's Image / PointCloud2 displays: reliable, volatile, keep last 5
        'rviz2_default': QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                                    reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.VOLATILE),
        # Nav2 costmap obstacle/voxel layer PointCloud2: rclcpp::SensorDataQoS()
        'nav2_costmap': qos_profile_sensor_data,
    }


#: (output_qos, subscriber) -> None if it receives, else the refusing policy
MATRIX = {
    ('reliable', 'best_effort'): None, ('reliable', 'reliable'): None,
    ('reliable', 'transient_local'): 'DURABILITY', ('reliable', 'rviz2_default'): None,
    ('reliable', 'nav2_costmap'): None,
    ('sensor_data', 'best_effort'): None, ('sensor_data', 'reliable'): 'RELIABILITY',
    ('sensor_data', 'transient_local'): ('RELIABILITY', 'DURABILITY'),
    ('sensor_data', 'rviz2_default'): 'RELIABILITY', ('sensor_data', 'nav2_costmap'): None,
}


@pytest.mark.parametrize('output_qos, kind', sorted(MATRIX))
def test_qos_matrix_on_points(g, output_qos, kind):
    from rclpy.event_handler import SubscriptionEventCallbacks
    node = start(g.depth_node(model=helpers.FakeModel(), output_qos=output_qos))
    sub_node = g.plain_node('subscriber')
    got, refused = [], []
    sub_node.create_subscription(
        ros_graph.message_class('PointCloud2'), 'points', got.append,
        subscriber_profiles()[kind],
        event_callbacks=SubscriptionEventCallbacks(incompatible_qos=refused.append))
    # a witness every output QoS serves: when it has the frame, the subscriber had its chance
    witness = ros_graph.Collector(g, {'points': 'PointCloud2'}, reliability='best_effort',
                                  name='witness')
    cam = ros_graph.Camera(g)
    cam.wait_for_subscribers()
    matched(node, witness, ['points'])
    expected = MATRIX[(output_qos, kind)]
    pub = node._outputs['points']
    if expected is None:
        ros_graph.wait_for(lambda: pub.get_subscription_count() == 2,
                           what='the subscriber to match')
    else:
        ros_graph.wait_for(lambda: refused and 'points' in node.diagnostics.refused,
                           what='the refusal on both sides')
    stamp = helpers.now_stamp()
    cam.image_pub.publish(helpers.rgb_image(g.factory, rgb(), stamp))
    cam.info_pub.publish(helpers.camera_info(g.factory, stamp))
    assert stamp_of(witness.wait('points')[0]) == stamp
    if expected is None:
        ros_graph.wait_for(lambda: got, what=f'{kind} to receive points')
        assert stamp_of(got[0]) == stamp
        assert refused == [] and node.diagnostics.refused == {}
        assert 'incompatible_qos' not in node.error_counts
    else:
        policies = expected if isinstance(expected, tuple) else (expected,)
        assert node.diagnostics.refused['points'][0] in policies
        assert pub.get_subscription_count() == 1     # only the witness
        time.sleep(0.1)
        assert got == []
