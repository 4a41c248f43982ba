"""DepthNode on the rclpy STAND-IN: parameter validation and live updates."""

from __future__ import annotations

import array

import pytest

pytest.importorskip('rosbags', reason='the rclpy stand-in builds messages with rosbags')

from rclpy_standin import harness  # noqa: E402


@pytest.fixture(scope='module')
def ros():
    with harness.standin_session() as node_module:
        yield node_module


@pytest.fixture
def node(ros):
    from rclpy import _graph
    from rclpy.parameter import Parameter
    model = harness.FakeModel()
    n = ros.DepthNode(parameter_overrides=[Parameter('autostart', value=False),
                                           Parameter('model_file_path', value='zoo')],
                      model_opener=harness.opener_for(model))
    yield n
    n.destroy_node()
    _graph.GRAPH.reset()


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
    assert node._sync.policy == 'approximate' and node._sync.tolerance_ns == 50_000_000


def test_yaml_style_array_overrides_become_card_overrides(ros):
    from rclpy import _graph
    from rclpy.parameter import Parameter
    model = harness.FakeModel()
    opener = harness.opener_for(model)
    mean = [0.485, 0.456, 0.406]
    node = ros.DepthNode(parameter_overrides=[
        Parameter('autostart', value=False), Parameter('model_file_path', value='zoo'),
        Parameter('image_mean', value=mean), Parameter('network_image_width', value=518),
        Parameter('card_file_path', value='/cards/x.card.yaml')], model_opener=opener)
    try:
        # the stand-in hands YAML arrays over as array.array('d'), like rclpy
        assert isinstance(node.get_parameter('image_mean').value, array.array)
        assert node.values['image_mean'] == mean
        assert node.trigger_configure().name == 'SUCCESS'
        path, overrides, options = opener.calls[0]
        assert overrides == {'image_mean': tuple(mean), 'network_image_width': 518}
        assert options['card_path'] == '/cards/x.card.yaml'
    finally:
        node.destroy_node()
        _graph.GRAPH.reset()


def test_override_of_wrong_type_is_refused_at_start(ros):
    from rclpy.exceptions import InvalidParameterTypeException
    from rclpy.parameter import Parameter
    with pytest.raises(InvalidParameterTypeException):
        ros.DepthNode(parameter_overrides=[Parameter('min_range', value=1)])
