"""Building ROS messages without importing ROS.

The core reads messages by their fields, so rclpy messages and ``rosbags`` messages both work
as input. To *build* messages it takes a :class:`MessageFactory` from the caller: the rclpy node
makes one from ``sensor_msgs.msg`` (see ``node.py``), the bag tool and the tests make one from a
``rosbags`` typestore with :func:`rosbags_factory`. The two differ only in how a ``uint8[]`` /
``float64[]`` payload is stored (``array.array`` for rclpy, numpy arrays for rosbags), which the
factory's ``byte_array`` / ``float64_array`` callables handle.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from depth_node.errors import require
import numpy as np

#: PointField datatype constants (sensor_msgs/PointField), identical in every ROS 2 distro.
POINTFIELD_FLOAT32 = 7


def rclpy_byte_array(data: np.ndarray) -> array.array:
    """Wrap a contiguous uint8 buffer as ``array.array('B')``, which rclpy stores unvalidated.

    One memcpy, no per-element Python work (see ROS2_NOTES: assigning bytes, lists or numpy
    arrays to a ``uint8[]`` field of an rclpy message is validated element by element).
    """
    out = array.array('B')
    out.frombytes(np.ascontiguousarray(data).reshape(-1).view(np.uint8).data)
    return out


def rclpy_float64_array(values: Any) -> array.array:
    """Wrap float64 values as ``array.array('d')`` for an rclpy ``float64[]`` field."""
    out = array.array('d')
    out.frombytes(np.ascontiguousarray(values, dtype=np.float64).reshape(-1).view(np.uint8))
    return out


def with_payload(factory: Any, cls: type, data: Any, **fields: Any) -> Any:
    """Build ``cls(data=data, **fields)`` without copying the payload ``data``.

    rclpy's generated classes copy a ``uint8[]`` value in the constructor and, on Jazzy and
    newer with unchecked fields (the default), again in the setter: two copies of a 4 MB cloud
    per frame. Their checking setter stores an ``array.array('B')`` as it is, so the payload
    goes in through it (Humble's setter always checks). Other factories' classes (rosbags)
    take the payload in the constructor.
    """
    if getattr(factory, 'byte_array', None) is not rclpy_byte_array \
            or not isinstance(data, array.array):
        return cls(data=data, **fields)
    msg = cls(**fields)
    unchecked = getattr(msg, '_check_fields', True) is False
    if unchecked:
        msg._check_fields = True
    try:
        msg.data = data
    finally:
        if unchecked:
            msg._check_fields = False
    return msg


def numpy_byte_array(data: np.ndarray) -> np.ndarray:
    """View a buffer as a flat uint8 numpy array (the ``rosbags`` representation), no copy."""
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8)


def numpy_float64_array(values: Any) -> np.ndarray:
    """float64 numpy array (the ``rosbags`` representation of ``float64[]``)."""
    return np.ascontiguousarray(values, dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class MessageFactory:
    """Message classes and payload wrappers of one ROS message implementation.

    Every class is called with keyword arguments only, which both rclpy and rosbags accept.
    """

    Header: type
    Time: type
    Image: type
    CompressedImage: type
    CameraInfo: type
    RegionOfInterest: type
    PointCloud2: type
    PointField: type
    byte_array: Callable[[np.ndarray], Any]
    float64_array: Callable[[Any], Any]
    #: fixed-size float64 arrays (CameraInfo k, r, p): numpy for both implementations
    fixed_float64_array: Callable[[Any], Any] = numpy_float64_array
    #: the typestore, for rosbags factories (CDR serialization); None for rclpy
    typestore: Any = None

    def header(self, stamp_sec: int, stamp_nanosec: int, frame_id: str) -> Any:
        """Build a std_msgs/Header."""
        return self.Header(stamp=self.Time(sec=int(stamp_sec), nanosec=int(stamp_nanosec)),
                           frame_id=frame_id)


def rosbags_factory(distro: str = 'humble') -> MessageFactory:
    """Return a :class:`MessageFactory` of ``rosbags`` message classes for a ROS 2 distro.

    :param distro: ``'humble'``, ``'jazzy'`` or any ``rosbags.typesys.Stores`` ROS 2 name.
    """
    typesys = require('rosbags.typesys', 'building ROS messages without ROS')
    store = typesys.get_typestore(getattr(typesys.Stores, f'ROS2_{distro.upper()}'))
    types = store.types
    return MessageFactory(
        Header=types['std_msgs/msg/Header'],
        Time=types['builtin_interfaces/msg/Time'],
        Image=types['sensor_msgs/msg/Image'],
        CompressedImage=types['sensor_msgs/msg/CompressedImage'],
        CameraInfo=types['sensor_msgs/msg/CameraInfo'],
        RegionOfInterest=types['sensor_msgs/msg/RegionOfInterest'],
        PointCloud2=types['sensor_msgs/msg/PointCloud2'],
        PointField=types['sensor_msgs/msg/PointField'],
        byte_array=numpy_byte_array,
        float64_array=numpy_float64_array,
        typestore=store,
    )


def stamp_of(msg: Any) -> tuple[int, int]:
    """``(sec, nanosec)`` of a message's ``header.stamp``."""
    stamp = msg.header.stamp
    return int(stamp.sec), int(stamp.nanosec)


def stamp_ns(msg: Any) -> int:
    """Return a message's ``header.stamp`` in integer nanoseconds."""
    sec, nanosec = stamp_of(msg)
    return sec * 1_000_000_000 + nanosec


class NamespaceMessage(SimpleNamespace):
    """A stand-in message class: keyword construction and attribute fields, like rclpy's."""


def rclpy_like_factory() -> MessageFactory:
    """Return a factory with rclpy's payload representation (``array.array``) but no ROS import.

    Building messages with it costs what a real rclpy node pays for the payload copy.
    """
    names = ('Header', 'Time', 'Image', 'CompressedImage', 'CameraInfo', 'RegionOfInterest',
             'PointCloud2', 'PointField')
    return MessageFactory(**dict.fromkeys(names, NamespaceMessage), byte_array=rclpy_byte_array,
                          float64_array=rclpy_float64_array)
