"""DepthNode on a real ROS 2 graph: parameters declared, lifecycle transitions, autostart.

Transitions are watched on the node's real ``~/transition_event`` topic, error messages on
``/rosout``; autostart runs from the node's own timer on the executor.
"""

from __future__ import annotations

import time

import pytest
import ros_graph

ros_graph.require_rclpy()

from depth_node import parameters  # noqa: E402, I100
from depth_node.errors import SelfTestError  # noqa: E402
import node_helpers as helpers  # noqa: E402, I100

ERROR = 40                      # rcl_interfaces/Log level


class Made:
    """A node of a test with what watches it: /rosout lines and its transition events."""

    def __init__(self, graph, node):
        self.node = node
        self.watch = ros_graph.Collector(
            graph, {'/rosout': 'Log', '/depth_node/transition_event': 'TransitionEvent'},
            name='watch')
        self.watch.wait_for_publishers('/depth_node/transition_event')

    def errors_logged(self):
        ros_graph.sync_rosout(self.watch, self.node)
        return ros_graph.log_lines(self.watch, level=ERROR)

    def transitions(self):
        """(start state, goal state) of every transition event so far."""
        with self.watch._cond:
            events = list(self.watch.messages['/depth_node/transition_event'])
        return [(e.start_state.label, e.goal_state.label) for e in events]


@pytest.fixture
def make_node(graph):
    made = []

    def make(model=None, opener=None, spin=True, **overrides):
        node = graph.depth_node(model=model, spin=False, **overrides)
        if opener is not None:
            node._open_model = opener
        watched = Made(graph, node)
        made.append(watched)
        if spin:               # after the watchers are in place: autostart fires on spin
            graph.spin(node)
        return node
    make.made = made
    yield make
    graph.remove_all()


def errors_logged(make_node, node):
    return next(m for m in make_node.made if m.node is node).errors_logged()


def transitions(make_node, node):
    return next(m for m in make_node.made if m.node is node).transitions()


def test_every_parameter_declared_with_descriptor(make_node):
    node = make_node(model_file_path='')
    for spec in parameters.PARAMETERS:
        value = node.get_parameter(spec.name).value
        if spec.name != 'autostart':
            assert value == spec.default, spec.name
        descriptor = node.describe_parameter(spec.name)
        assert descriptor.description == spec.description
        assert descriptor.read_only == spec.read_only, spec.name
        if spec.choices:
            for choice in spec.choices:
                assert repr(choice) in descriptor.additional_constraints
        if spec.min_value is not None and isinstance(spec.default, float):
            rng = descriptor.floating_point_range[0]
            assert (rng.from_value, rng.to_value) == (spec.min_value, spec.max_value)
        elif spec.min_value is not None and not isinstance(spec.default, bool):
            rng = descriptor.integer_range[0]
            assert (rng.from_value, rng.to_value) == (spec.min_value, spec.max_value)
    assert node.get_name() == 'depth_node'
    assert node.state == 'unconfigured'


def test_configure_fails_clearly_on_missing_model_file(make_node, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn
    node = make_node(model_file_path=str(tmp_path / 'nope.onnx'))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.state == 'unconfigured' and node._state_machine.current_state[1] == 'unconfigured'
    assert any('does not exist' in m and 'nope.onnx' in m for m in errors_logged(make_node, node))
    report = node.diagnostics_report()
    assert report.level == 3 and 'unconfigured' in report.message         # STALE
    assert 'nope.onnx' in report.as_dict()['configure error']


def test_configure_fails_on_empty_model_path_with_autostart(make_node):
    node = make_node(autostart=True, model_file_path='')
    # the one-shot autostart timer fires on the executor
    ros_graph.wait_for(lambda: len(transitions(make_node, node)) >= 2, what='autostart')
    assert node.state == 'unconfigured'
    # the autostart error is logged after the transition returned (its event may come first)
    watch = next(m for m in make_node.made if m.node is node).watch
    ros_graph.wait_for(lambda: ros_graph.log_lines(watch, level=ERROR, contains='autostart:'),
                       what='the autostart error on /rosout')
    text = '\n'.join(errors_logged(make_node, node))
    assert 'model_file_path is empty' in text and 'autostart: configure failed' in text
    assert transitions(make_node, node) == [('unconfigured', 'configuring'),
                                            ('configuring', 'unconfigured')]


def test_configure_fails_when_self_test_fails(make_node, tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn

    def opener(path, overrides, **options):
        raise SelfTestError('self-test of tiny failed: max abs error 3.2 > 1e-3.',
                            'Rebuild the engine with force_engine_update.')
    model = tmp_path / 'm.onnx'
    model.write_bytes(b'x')
    node = make_node(opener=opener, model_file_path=str(model))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert any('self-test of tiny failed' in m and 'force_engine_update' in m
               for m in errors_logged(make_node, node))


def test_configure_rejects_invalid_cross_parameter_values(make_node):
    from rclpy.lifecycle import TransitionCallbackReturn
    node = make_node(model=helpers.FakeModel(), model_file_path='zoo-model',
                     scale_source='ground_plane')
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert any('camera_height' in m for m in errors_logged(make_node, node))


def test_lifecycle_with_real_tiny_onnx_model(make_node, tmp_path):
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    from rclpy.lifecycle import TransitionCallbackReturn as R
    path = helpers.build_tiny_onnx(tmp_path / 'tiny.onnx')
    node = make_node(model_file_path=str(path), backend='onnxruntime')
    assert node.trigger_configure() == R.SUCCESS and node.state == 'inactive'
    info = node.diagnostics_report().as_dict()
    assert info['backend backend'] == 'onnxruntime' and info['backend card'] == 'tiny-test-depth'
    assert 'configure error' not in info
    topics = sorted(p.topic_name for p in node.publishers)
    assert topics == sorted(['/diagnostics', '/parameter_events', '/depth/image',
                             '/depth/camera_info', '/points', '/depth/relative',
                             '/depth/colorized'])
    assert not list(node.subscriptions)
    assert node.trigger_activate() == R.SUCCESS and node.state == 'active'
    assert sorted(s.topic_name for s in node.subscriptions) == ['/camera_info', '/image']
    assert node.worker_alive
    assert all(p.is_activated for p in node._outputs.values())
    assert node.trigger_deactivate() == R.SUCCESS and node.state == 'inactive'
    assert not list(node.subscriptions) and not node.worker_alive
    assert not any(p.is_activated for p in node._outputs.values())
    assert node.trigger_activate() == R.SUCCESS and node.worker_alive
    assert node.trigger_deactivate() == R.SUCCESS
    assert node.trigger_cleanup() == R.SUCCESS and node.state == 'unconfigured'
    assert sorted(p.topic_name for p in node.publishers) == ['/diagnostics',
                                                             '/parameter_events']
    assert node._model is None
    assert node.trigger_shutdown() == R.SUCCESS and node.state == 'finalized'


def test_autostart_configures_activates_and_cleanup_frees_model(make_node):
    model = helpers.FakeModel()
    node = make_node(model=model, autostart=True, model_file_path='zoo-model',
                     engine_file_path='/tmp/engines', backend='torch', precision='fp32')
    ros_graph.wait_for(lambda: len(transitions(make_node, node)) >= 4, what='autostart')
    assert node.state == 'active'
    expected = [('unconfigured', 'configuring'), ('configuring', 'inactive'),
                ('inactive', 'activating'), ('activating', 'active')]
    assert transitions(make_node, node) == expected
    time.sleep(0.3)                        # one-shot: no second configure
    assert transitions(make_node, node) == expected
    path, overrides, options = node._open_model.calls[0]
    assert path == 'zoo-model' and overrides == {}
    assert options['backend'] == 'torch' and options['precision'] == 'fp32'
    assert options['engine_cache_dir'] == '/tmp/engines'
    assert options['self_test'] is True and 'card_path' not in options
    assert node.trigger_shutdown().name == 'SUCCESS'
    assert model.backend.closed and not node.worker_alive and node.state == 'finalized'


def test_error_in_transition_releases_everything(make_node, monkeypatch):
    model = helpers.FakeModel()
    node = make_node(model=model, model_file_path='zoo-model')
    assert node.trigger_configure().name == 'SUCCESS'

    def broken(*args, **kwargs):
        raise RuntimeError('boom')
    monkeypatch.setattr(node, 'create_subscription', broken)
    assert node.trigger_activate().name == 'ERROR'
    assert node.state == 'unconfigured' and model.backend.closed
    assert not node.worker_alive
