"""DepthNode on a real ROS 2 graph: parameter validation (rclpy's and ours) and live updates."""

from __future__ import annotations

import pytest
import ros_graph

ros_graph.require_rclpy()

import node_helpers as helpers  # noqa: E402, I100


@pytest.fixture
def node(graph):
    yield graph.depth_node(model=helpers.FakeModel(), model_file_path='zoo')
    graph.remove_all()


def set_one(node, name, value):
    from rclpy.parameter import Parameter
    return node.set_parameters([Parameter(name, value=value)])[0]


def test_valid_live_update_reaches_pipeline(node):
    assert node.trigger_configure().name == 'SUCCESS'
    result = set_one(node, 'min_range', 0.5)
    assert result.successful, result.reason
    assert node.get_parameter('min_range').value == 0.5 and node.values['min_range'] == 0.5
    pending, reset = node._pending_config
    assert pending.metric.min_range == 0.5 and reset          # metric change: new smoother
    assert set_one(node, 'output_encoding', '16UC1').successful
    pending, reset = node._pending_config
    assert pending.output_encoding == '16UC1' and pending.metric.min_range == 0.5
    assert not reset
    # the worker applies it before the next frame
    frame = type('F', (), {})()
    node._pipeline.config.output_encoding = '32FC1'
    node.process_frame(frame)            # no subscribers: returns early after applying
    assert node._pipeline.config.output_encoding == '16UC1'
    assert node._pending_config is None


@pytest.mark.parametrize('name, value, words', [
    ('output_encoding', '8UC1', ["'32FC1'", "'16UC1'"]),      # choice, by our callback
    ('point_decimation', 0, ['out of range']),                # integer_range, by rclpy
    ('scale_smoothing', 1.5, ['out of range']),               # floating_point_range
    ('max_range', 0.05, ['max_range', 'min_range']),          # cross-parameter check
    ('backend', 'torch', ['read-only']),                      # read_only, by rclpy
    ('min_range', 1, ['type']),                               # int for a double
    ('sync_policy', 'nearest', ['exact', 'approximate', 'latest']),
    ('scale_source', 'ground_plane', ['camera_height']),      # needs camera_height > 0
])
def test_rejected_updates_give_a_reason(node, name, value, words):
    before = node.get_parameter(name).value
    result = set_one(node, name, value)
    assert not result.successful
    for word in words:
        assert word in result.reason, result.reason
    assert node.get_parameter(name).value == before and node.values[name] == before


def test_atomic_update_of_related_parameters(node):
    from rclpy.parameter import Parameter
    result = node.set_parameters_atomically([Parameter('camera_height', value=1.2),
                                             Parameter('scale_source', value='ground_plane')])
    assert result.successful, result.reason
    assert node.values['scale_source'] == 'ground_plane'


def test_sync_settings_update_live(node):
    assert set_one(node, 'sync_policy', 'approximate').successful
    assert set_one(node, 'sync_tolerance', 0.05).successful
    assert node._sync.rule.policy == 'approximate'
    assert node._sync.rule.tolerance_ns == 50_000_000
    assert set_one(node, 'sync_max_wait', 0.3).successful
    assert node._sync.max_wait_ns == 300_000_000


def test_yaml_style_array_overrides_become_card_overrides(graph, tmp_path):
    params = tmp_path / 'depth.yaml'
    params.write_text('depth_node:\n  ros__parameters:\n'
                      '    image_mean: [0.485, 0.456, 0.406]\n'
                      '    network_image_width: 518\n'
                      '    card_file_path: /cards/x.card.yaml\n')
    mean = [0.485, 0.456, 0.406]
    try:
        # a real parameter file, parsed by rcl, as `ros2 run ... --params-file` gives it
        node = graph.depth_node(model=helpers.FakeModel(), model_file_path='zoo',
                                cli_args=['--ros-args', '--params-file', str(params)])
        opener = node._open_model
        assert list(node.get_parameter('image_mean').value) == mean
        assert node.values['image_mean'] == mean
        assert node.trigger_configure().name == 'SUCCESS'
        path, overrides, options = opener.calls[0]
        assert overrides == {'image_mean': tuple(mean), 'network_image_width': 518}
        assert options['card_path'] == '/cards/x.card.yaml'
    finally:
        graph.remove_all()


def test_override_of_wrong_type_is_refused_at_start(graph):
    from rclpy.exceptions import InvalidParameterTypeException
    from rclpy.parameter import Parameter
    with pytest.raises(InvalidParameterTypeException):
        # its own name: the half-made node is never destroyed (its /rosout registration stays)
        graph.node_module.DepthNode('wrong_type_node', context=graph.context,
                                    parameter_overrides=[Parameter('min_range', value=1)])


def test_parameter_services(graph, node):
    """What `ros2 param set/get/describe` does: the node's real parameter services."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    client = AsyncParameterClient(graph.plain_node('param_client'), '/depth_node')
    assert client.wait_for_services(10.0)

    def result(future):
        ros_graph.wait_for(future.done, what='the parameter service')
        return future.result()
    results = result(client.set_parameters([Parameter('min_range', value=0.5),
                                            Parameter('backend', value='torch'),
                                            Parameter('max_range', value=0.05)])).results
    assert results[0].successful and node.values['min_range'] == 0.5
    assert not results[1].successful and 'read-only' in results[1].reason
    assert not results[2].successful and 'max_range' in results[2].reason
    assert node.values['max_range'] != 0.05
    values = result(client.get_parameters(['min_range', 'sync_policy'])).values
    assert (values[0].double_value, values[1].string_value) == (0.5, 'exact')
    descriptor = result(client.describe_parameters(['point_decimation'])).descriptors[0]
    assert descriptor.integer_range[0].from_value == 1


def _refuse_min_range(params):
    from rcl_interfaces.msg import SetParametersResult
    refused = any(p.name == 'min_range' for p in params)
    return SetParametersResult(successful=not refused, reason='refused by another callback')


def test_change_refused_by_another_callback_leaves_the_node_unchanged(node):
    assert node.trigger_configure().name == 'SUCCESS'
    assert node._has_post_set_callback            # Jazzy: applied in the post-set callback
    # rclpy runs the newest callback first: ours must run before the one that refuses
    node.remove_on_set_parameters_callback(node._on_set_parameters)
    node.add_on_set_parameters_callback(_refuse_min_range)
    node.add_on_set_parameters_callback(node._on_set_parameters)
    result = set_one(node, 'min_range', 0.5)
    assert not result.successful and 'another callback' in result.reason
    assert node.get_parameter('min_range').value == 0.1 and node.values['min_range'] == 0.1
    assert node._pending_config is None           # the pipeline was not told either
    assert set_one(node, 'max_range', 15.0).successful       # others still apply
    assert node.values['max_range'] == 15.0 and node._pending_config[0].metric.max_range == 15.0


def test_without_a_post_set_callback_the_change_is_applied_in_the_handler(graph, monkeypatch):
    from rclpy.node import Node
    monkeypatch.delattr(Node, 'add_post_set_parameters_callback')   # as on Humble
    node = graph.depth_node(model=helpers.FakeModel(), model_file_path='zoo')
    try:
        assert not node._has_post_set_callback
        assert set_one(node, 'max_range', 12.0).successful
        assert node.values['max_range'] == 12.0
        assert not set_one(node, 'max_range', 0.05).successful
        assert node.values['max_range'] == 12.0
    finally:
        graph.remove_all()
