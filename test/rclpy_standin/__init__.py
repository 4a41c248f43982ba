"""A STAND-IN for rclpy and the ROS 2 message packages, for testing depth_node without ROS.

This is NOT ROS. ``pkgs/`` holds minimal packages named ``rclpy``, ``sensor_msgs``,
``std_msgs``, ``builtin_interfaces``, ``diagnostic_msgs`` and ``rcl_interfaces`` that provide
exactly the API surface ``depth_node/node.py`` uses, with the signatures of rclpy on Humble
(checked against ros2/rclpy, branch humble). Message classes are ``rosbags`` classes behind
rclpy-style keyword construction and type checks, and every published message goes through a
real CDR serialization.

:func:`install` puts ``pkgs/`` first on ``sys.path``; it refuses when a real rclpy is already
imported (on a ROS machine the real thing is tested by the ROS-only tests instead).
"""

from __future__ import annotations

import importlib
from pathlib import Path
import sys

PKGS = Path(__file__).resolve().parent / 'pkgs'


def real_ros_available() -> bool:
    """Whether a real (sourced) rclpy is importable, without importing the stand-in."""
    if 'rclpy' in sys.modules:
        return not getattr(sys.modules['rclpy'], 'STANDIN', False)
    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != PKGS]
        import importlib.util
        return importlib.util.find_spec('rclpy') is not None
    finally:
        sys.path[:] = saved


def install() -> None:
    """Make ``import rclpy`` (and the message packages) resolve to the stand-in."""
    if 'rclpy' in sys.modules and not getattr(sys.modules['rclpy'], 'STANDIN', False):
        raise RuntimeError('a real rclpy is already imported; the stand-in cannot replace it')
    if str(PKGS) not in sys.path:
        sys.path.insert(0, str(PKGS))
    importlib.invalidate_caches()
    node_module = sys.modules.get('depth_node.node')
    if node_module is not None and getattr(node_module, 'rclpy', None) is None:
        importlib.reload(node_module)   # imported earlier without ROS: bind the stand-in now


def graph():
    """Return the stand-in's in-process topic graph."""
    from rclpy import _graph
    return _graph.GRAPH


def slow_assignments() -> list[tuple[str, str]]:
    """(message type, field) of every slow-path sequence assignment (should stay empty)."""
    import _standin_msgs
    return _standin_msgs.SLOW_ASSIGNMENTS


def log_records() -> list[tuple[str, str, str]]:
    """Every (logger, severity, message) logged through stand-in loggers."""
    from rclpy.impl import rcutils_logger
    return rcutils_logger.RECORDS


def fire_timers(node) -> int:
    """Run every live timer of ``node`` once (what spinning would do); returns how many."""
    fired = 0
    for timer in list(node.timers):
        if not timer.is_canceled() and not timer.destroyed:
            timer.fire()
            fired += 1
    return fired
