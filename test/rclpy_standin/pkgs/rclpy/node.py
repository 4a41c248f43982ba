"""STAND-IN of rclpy.node.Node: parameters, publishers, subscriptions, timers, names."""

import array
import math

import rcl_interfaces.msg
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult

from rclpy import _graph
from rclpy.clock import Clock
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterAlreadyDeclaredException,
    ParameterNotDeclaredException,
)
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.timer import Timer

_TYPESTORE = None


def _typestore():
    global _TYPESTORE
    if _TYPESTORE is None:
        import _standin_msgs
        _TYPESTORE = _standin_msgs.TYPESTORE
    return _TYPESTORE


def _qos(qos_profile):
    if isinstance(qos_profile, QoSProfile):
        return qos_profile
    if isinstance(qos_profile, int):
        return QoSProfile(depth=qos_profile)
    raise TypeError(f'Expected QoSProfile or int, but received {type(qos_profile)!r}')


class Publisher:
    """rclpy.publisher.Publisher: publish() serializes to CDR and delivers to subscribers."""

    def __init__(self, node, msg_type, topic_name, qos_profile, event_callbacks):
        self.node = node
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.qos_profile = qos_profile
        self.event_callbacks = event_callbacks
        self.incompatible_count = 0
        self.published = 0
        self.event_handlers = []

    def publish(self, msg):
        """Serialize ``msg`` (must be of msg_type) and deliver it to compatible subscribers."""
        msgtype = self.msg_type.__msgtype__
        if getattr(msg, '__msgtype__', None) != msgtype:
            raise TypeError(f'Expected {msgtype}, got {type(msg)}')
        store = _typestore()
        raw = store.serialize_cdr(msg, msgtype)
        self.published += 1
        for sub in _graph.GRAPH.subscriptions_of(self.topic_name):
            if sub.msg_type.__msgtype__ != msgtype:
                raise TypeError(f'topic {self.topic_name} has subscribers of '
                                f'{sub.msg_type.__msgtype__}, published {msgtype}')
            if _graph.compatible(self.qos_profile, sub.qos_profile):
                sub.deliver(store.deserialize_cdr(raw, msgtype))

    def get_subscription_count(self):
        """Return the number of matched subscriptions (compatible or not, like rmw)."""
        return len(_graph.GRAPH.subscriptions_of(self.topic_name))

    def destroy(self):
        """Leave the graph."""
        _graph.GRAPH.remove(self)


class Subscription:
    """rclpy.subscription.Subscription."""

    def __init__(self, node, msg_type, topic_name, callback, qos_profile, event_callbacks):
        self.node = node
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.callback = callback
        self.qos_profile = qos_profile
        self.event_callbacks = event_callbacks
        self.incompatible_count = 0
        self.event_handlers = []

    def deliver(self, msg):
        """Run the callback (the executor's job in real rclpy)."""
        self.callback(msg)

    def destroy(self):
        """Leave the graph."""
        _graph.GRAPH.remove(self)


def _parse_remaps(cli_args):
    remaps = {}
    args = list(cli_args or [])
    for i, arg in enumerate(args):
        if arg in ('-r', '--remap') and i + 1 < len(args):
            src, _, dst = args[i + 1].partition(':=')
            remaps[src] = dst
    return remaps


class Node:
    """rclpy.node.Node (Humble signature)."""

    def __init__(self, node_name, *, context=None, cli_args=None, namespace=None,
                 use_global_arguments=True, enable_rosout=True, start_parameter_services=True,
                 parameter_overrides=None, allow_undeclared_parameters=False,
                 automatically_declare_parameters_from_overrides=False):
        import rclpy
        if not rclpy.ok():
            raise RuntimeError('rclpy.init() has not been called')
        self._name = node_name
        ns = namespace or '/'
        self._namespace = ns if ns.startswith('/') else '/' + ns
        self._remaps = _parse_remaps(cli_args)
        self._logger = RcutilsLogger(node_name)
        self._clock = Clock()
        self._parameters = {}
        self._descriptors = {}
        self._parameters_callbacks = []
        self._overrides = {}
        for p in parameter_overrides or []:
            value = p.value
            if p.type_ == Parameter.Type.DOUBLE_ARRAY:
                value = array.array('d', value)   # rclpy gives YAML arrays as array.array
            self._overrides[p.name] = Parameter(p.name, p.type_, value)
        # the private names rclpy itself uses: a subclass that reuses them breaks, as in rclpy
        self._publishers = []
        self._subscriptions = []
        self._timers = []
        self.destroyed = False

    @property
    def publishers(self):
        """Return the node's publishers: a list here, rclpy yields them."""
        return list(self._publishers)

    @property
    def subscriptions(self):
        """Return the node's subscriptions: a list here, rclpy yields them."""
        return list(self._subscriptions)

    @property
    def timers(self):
        """Return the node's timers: a list here, rclpy yields them."""
        return list(self._timers)

    # -- names ------------------------------------------------------------------------------
    def get_name(self):
        """Node name."""
        return self._name

    def get_namespace(self):
        """Node namespace."""
        return self._namespace

    def get_fully_qualified_name(self):
        """``/namespace/name``."""
        return f"{self._namespace.rstrip('/')}/{self._name}"

    def get_logger(self):
        """Return the node's logger."""
        return self._logger

    def get_clock(self):
        """Return the node's clock."""
        return self._clock

    def resolve_topic_name(self, topic, *, only_expand=False):
        """Expand a topic name in the namespace and apply remapping rules."""
        if not only_expand and topic in self._remaps:
            topic = self._remaps[topic]
        if topic.startswith('~'):
            topic = f"{self._namespace.rstrip('/')}/{self._name}{topic[1:]}"
        if not topic.startswith('/'):
            topic = f"{self._namespace.rstrip('/')}/{topic}"
        if not only_expand and topic in self._remaps:
            topic = self._remaps[topic]
        return topic

    # -- parameters -------------------------------------------------------------------------
    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        """Declare a parameter (override applied), checked against its descriptor."""
        if name in self._parameters:
            raise ParameterAlreadyDeclaredException(name)
        descriptor = descriptor or ParameterDescriptor()
        if not descriptor.dynamic_typing and value is not None:
            descriptor.type = Parameter.Type.from_parameter_value(value).value
        if not ignore_override and name in self._overrides:
            value = self._overrides[name].value
        ptype = Parameter.Type.from_parameter_value(value)
        if not descriptor.dynamic_typing and descriptor.type != ptype.value and not (
                isinstance(value, (list, tuple, array.array)) and len(value) == 0):
            raise InvalidParameterTypeException(
                f'Trying to set parameter {name} to {value!r} of type {ptype.name}, expecting '
                f'type {Parameter.Type(descriptor.type).name}')
        param = Parameter(name, value=value)
        result = self._check_descriptor(param, descriptor, check_read_only=False)
        if result.successful:
            for callback in self._parameters_callbacks:
                result = callback([param])
                if not result.successful:
                    break
        if not result.successful:
            raise InvalidParameterValueException(f'{name}: {result.reason}')
        self._descriptors[name] = descriptor
        self._parameters[name] = param
        return param

    def has_parameter(self, name):
        """Whether the parameter is declared."""
        return name in self._parameters

    def get_parameter(self, name):
        """Return a declared parameter."""
        if name not in self._parameters:
            raise ParameterNotDeclaredException(name)
        return self._parameters[name]

    def get_parameters(self, names):
        """Several declared parameters."""
        return [self.get_parameter(n) for n in names]

    def describe_parameter(self, name):
        """Return the descriptor of a parameter."""
        if name not in self._descriptors:
            raise ParameterNotDeclaredException(name)
        return self._descriptors[name]

    def add_on_set_parameters_callback(self, callback):
        """Add a callback in front of the list."""
        self._parameters_callbacks.insert(0, callback)

    def set_parameters(self, parameter_list):
        """Set each parameter on its own; returns one SetParametersResult each."""
        for p in parameter_list:
            if p.name not in self._parameters:
                raise ParameterNotDeclaredException(p.name)
        return [self._set_parameters_atomically([p]) for p in parameter_list]

    def set_parameters_atomically(self, parameter_list):
        """Set all or none."""
        for p in parameter_list:
            if p.name not in self._parameters:
                raise ParameterNotDeclaredException(p.name)
        return self._set_parameters_atomically(parameter_list)

    def _set_parameters_atomically(self, parameter_list):
        for p in parameter_list:
            result = self._check_descriptor(p, self._descriptors[p.name], check_read_only=True)
            if not result.successful:
                return result
        for callback in self._parameters_callbacks:
            result = callback(parameter_list)
            if not result.successful:
                return result
        for p in parameter_list:
            self._parameters[p.name] = p
        return SetParametersResult(successful=True)

    @staticmethod
    def _check_descriptor(param, descriptor, check_read_only):
        if check_read_only and descriptor.read_only:
            return SetParametersResult(
                successful=False, reason=f'Trying to set a read-only parameter: {param.name}.')
        empty_array = isinstance(param.value, (list, tuple, array.array)) and \
            len(param.value) == 0 and Parameter.Type(descriptor.type).name.endswith('_ARRAY')
        if not descriptor.dynamic_typing and param.type_.value != descriptor.type and \
                not empty_array:
            return SetParametersResult(
                successful=False,
                reason=f'Wrong parameter type, parameter {param.name} is of type '
                       f'{Parameter.Type(descriptor.type).name}, setting it to '
                       f'{param.type_.name} is not allowed.')
        value = param.value
        if descriptor.integer_range and param.type_ == Parameter.Type.INTEGER:
            rng = descriptor.integer_range[0]
            if not rng.from_value <= value <= rng.to_value:
                return SetParametersResult(
                    successful=False,
                    reason=f'Parameter {param.name} out of range. Min: {rng.from_value}, '
                           f'Max: {rng.to_value}, value: {value}')
        if descriptor.floating_point_range and param.type_ == Parameter.Type.DOUBLE:
            rng = descriptor.floating_point_range[0]
            ok = rng.from_value <= value <= rng.to_value or math.isclose(
                value, rng.from_value) or math.isclose(value, rng.to_value)
            if not ok:
                return SetParametersResult(
                    successful=False,
                    reason=f'Parameter {param.name} out of range. Min: {rng.from_value}, '
                           f'Max: {rng.to_value}, value: {value}')
        return SetParametersResult(successful=True)

    # -- endpoints --------------------------------------------------------------------------
    def create_publisher(self, msg_type, topic, qos_profile, *, callback_group=None,
                         event_callbacks=None, qos_overriding_options=None,
                         publisher_class=Publisher):
        """Create a publisher on a (resolved) topic."""
        pub = publisher_class(self, msg_type, self.resolve_topic_name(topic),
                              _qos(qos_profile), event_callbacks)
        self._publishers.append(pub)
        _graph.GRAPH.add_publisher(pub)
        return pub

    def create_subscription(self, msg_type, topic, callback, qos_profile, *,
                            callback_group=None, event_callbacks=None,
                            qos_overriding_options=None, raw=False):
        """Create a subscription on a (resolved) topic."""
        sub = Subscription(self, msg_type, self.resolve_topic_name(topic), callback,
                           _qos(qos_profile), event_callbacks)
        self._subscriptions.append(sub)
        _graph.GRAPH.add_subscription(sub)
        return sub

    def create_timer(self, timer_period_sec, callback, callback_group=None, clock=None):
        """Create a timer fired by the stand-in executor (or ``timer.fire()`` in tests)."""
        timer = Timer(callback, callback_group, int(float(timer_period_sec) * 1e9),
                      clock or self._clock)
        self._timers.append(timer)
        return timer

    def destroy_publisher(self, publisher):
        """Destroy a publisher."""
        if publisher in self._publishers:
            self._publishers.remove(publisher)
            publisher.destroy()
            return True
        return False

    def destroy_subscription(self, subscription):
        """Destroy a subscription."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            subscription.destroy()
            return True
        return False

    def destroy_timer(self, timer):
        """Destroy a timer."""
        if timer in self._timers:
            self._timers.remove(timer)
            timer.destroy()
            return True
        return False

    def count_subscribers(self, topic_name):
        """Subscriptions on a topic (expanded, not remapped)."""
        return len(_graph.GRAPH.subscriptions_of(
            self.resolve_topic_name(topic_name, only_expand=True)))

    def destroy_node(self):
        """Destroy every entity of the node."""
        for pub in list(self._publishers):
            self.destroy_publisher(pub)
        for sub in list(self._subscriptions):
            self.destroy_subscription(sub)
        for timer in list(self._timers):
            self.destroy_timer(timer)
        self.destroyed = True


__all__ = ['Node', 'Publisher', 'Subscription', 'rcl_interfaces']
