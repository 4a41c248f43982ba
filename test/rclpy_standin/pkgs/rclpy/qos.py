"""STAND-IN of rclpy.qos (the policies and profiles depth_node uses)."""

from enum import IntEnum


class QoSPolicyKind(IntEnum):
    """Mirrors rmw_qos_policy_kind_t."""

    INVALID = 1 << 0
    DURABILITY = 1 << 1
    DEADLINE = 1 << 2
    LIVELINESS = 1 << 3
    RELIABILITY = 1 << 4
    HISTORY = 1 << 5
    LIFESPAN = 1 << 6


class HistoryPolicy(IntEnum):
    """rmw history policy."""

    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2
    UNKNOWN = 3


class ReliabilityPolicy(IntEnum):
    """rmw reliability policy."""

    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2
    UNKNOWN = 3


class DurabilityPolicy(IntEnum):
    """rmw durability policy."""

    SYSTEM_DEFAULT = 0
    TRANSIENT_LOCAL = 1
    VOLATILE = 2
    UNKNOWN = 3


QoSHistoryPolicy = HistoryPolicy
QoSReliabilityPolicy = ReliabilityPolicy
QoSDurabilityPolicy = DurabilityPolicy


class InvalidQoSProfileException(Exception):
    """Raised for an inconsistent profile."""


class QoSProfile:
    """Keyword-only construction like rclpy: history and/or depth required."""

    _KEYS = ('history', 'depth', 'reliability', 'durability')

    def __init__(self, **kwargs):
        assert all(k in self._KEYS for k in kwargs), \
            f'Invalid arguments passed to constructor: {list(kwargs)!r}'
        if 'history' not in kwargs:
            if 'depth' not in kwargs:
                raise InvalidQoSProfileException('History and/or depth settings are required.')
            kwargs['history'] = HistoryPolicy.KEEP_LAST
        self.history = HistoryPolicy(kwargs['history'])
        if self.history == HistoryPolicy.KEEP_LAST and 'depth' not in kwargs:
            raise InvalidQoSProfileException('History set to KEEP_LAST without a depth setting.')
        self.depth = kwargs.get('depth', 10)
        self.reliability = ReliabilityPolicy(kwargs.get('reliability',
                                                        ReliabilityPolicy.RELIABLE))
        self.durability = DurabilityPolicy(kwargs.get('durability', DurabilityPolicy.VOLATILE))

    def __repr__(self):
        return (f'QoSProfile(history={self.history.name}, depth={self.depth}, '
                f'reliability={self.reliability.name}, durability={self.durability.name})')


qos_profile_sensor_data = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                                     reliability=ReliabilityPolicy.BEST_EFFORT,
                                     durability=DurabilityPolicy.VOLATILE)
qos_profile_system_default = QoSProfile(history=HistoryPolicy.SYSTEM_DEFAULT,
                                        reliability=ReliabilityPolicy.SYSTEM_DEFAULT,
                                        durability=DurabilityPolicy.SYSTEM_DEFAULT)
