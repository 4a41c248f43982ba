"""STAND-IN of rclpy.clock.Clock and rclpy.time.Time (system time)."""

import time as _time

import builtin_interfaces.msg


class Time:
    """A point in time in integer nanoseconds."""

    def __init__(self, *, seconds=0, nanoseconds=0, clock_type=None):
        self._ns = int(seconds * 1_000_000_000) + int(nanoseconds)

    @property
    def nanoseconds(self):
        """Integer nanoseconds."""
        return self._ns

    def seconds_nanoseconds(self):
        """(sec, nanosec)."""
        return self._ns // 1_000_000_000, self._ns % 1_000_000_000

    def to_msg(self):
        """builtin_interfaces/Time."""
        sec, nanosec = self.seconds_nanoseconds()
        return builtin_interfaces.msg.Time(sec=sec, nanosec=nanosec)

    @classmethod
    def from_msg(cls, msg, clock_type=None):
        """From builtin_interfaces/Time."""
        return cls(seconds=msg.sec, nanoseconds=msg.nanosec)


class Clock:
    """ROS time = wall-clock time here (use_sim_time is not simulated)."""

    offset_ns = 0

    def now(self):
        """Return the current time."""
        return Time(nanoseconds=_time.time_ns() + Clock.offset_ns)
