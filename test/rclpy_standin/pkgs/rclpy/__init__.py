"""STAND-IN for rclpy (tests only; NOT the real ROS 2 client library).

Implements exactly the rclpy API surface that ``depth_node/node.py`` uses, with the signatures
of rclpy on Humble (checked against ros2/rclpy, branch humble): init/ok/shutdown/try_shutdown,
Node, LifecycleNode, QoS profiles and events, parameters with descriptors, timers, executors.

Topics are delivered in-process by :mod:`rclpy._graph`: every published message is serialized
to CDR with rosbags and deserialized for each subscriber, like a middleware would.
"""

from rclpy import _graph

STANDIN = True

_context = {'ok': False, 'args': None}


def init(*, args=None, context=None, domain_id=None, signal_handler_options=None):
    """Initialise the (stand-in) context."""
    if _context['ok']:
        raise RuntimeError('Context.init() must only be called once')
    _context['ok'] = True
    _context['args'] = args
    _graph.GRAPH.reset()


def ok(*, context=None):
    """Whether init() was called and shutdown() not yet."""
    return _context['ok']


def shutdown(*, context=None, uninstall_handlers=None):
    """Shut the context down; raises if it is not initialised (like rclpy)."""
    if not _context['ok']:
        raise RuntimeError('Context must be initialized before it can be shutdown')
    _context['ok'] = False


def try_shutdown(*, context=None, uninstall_handlers=None):
    """Shut down if not already shut down."""
    _context['ok'] = False


def spin(node, executor=None):
    """Spin ``node`` until shutdown."""
    from rclpy.executors import SingleThreadedExecutor
    executor = executor or SingleThreadedExecutor()
    executor.add_node(node)
    executor.spin()
