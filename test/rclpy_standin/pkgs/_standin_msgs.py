"""STAND-IN message classes: rosbags classes behind rclpy's keyword construction.

rclpy message classes take keyword arguments with defaults for every field and check each
value's type on assignment (``AssertionError`` on a wrong type). These wrappers do the same,
then store the value in a real ``rosbags`` message object, so what the node publishes can be
serialized to CDR and compared with what a ROS 2 middleware would carry.

rclpy storage of ``uint8[]`` / ``float64[]`` is ``array.array``: handing such an array over is
the fast path. Anything else (bytes, numpy, list) is accepted like rclpy accepts it, but counted
in :data:`SLOW_ASSIGNMENTS` (rclpy validates those element by element in Python), so tests can
assert that the node never takes the slow path.
"""

from __future__ import annotations

import array

import numpy as np
from rosbags.typesys import get_typestore, Stores
from rosbags.typesys.store import Nodetype

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)

#: (message type, field) of every slow-path sequence assignment seen
SLOW_ASSIGNMENTS: list[tuple[str, str]] = []

_DTYPES = {
    'bool': np.bool_, 'byte': np.uint8, 'char': np.uint8, 'octet': np.uint8,
    'uint8': np.uint8, 'int8': np.int8, 'uint16': np.uint16, 'int16': np.int16,
    'uint32': np.uint32, 'int32': np.int32, 'uint64': np.uint64, 'int64': np.int64,
    'float32': np.float32, 'float64': np.float64,
}
_INT_RANGES = {
    'uint8': (0, 2**8), 'int8': (-2**7, 2**7), 'uint16': (0, 2**16), 'int16': (-2**15, 2**15),
    'uint32': (0, 2**32), 'int32': (-2**31, 2**31), 'uint64': (0, 2**64),
    'int64': (-2**63, 2**63), 'char': (0, 2**8), 'octet': (0, 2**8),
}
_ARRAY_CODES = {'uint8': 'B', 'float64': 'd', 'float32': 'f', 'int32': 'i', 'uint32': 'I'}

_CLASSES: dict[str, MessageClass] = {}


def message_class(name: str) -> MessageClass:
    """Return the stand-in class of a message type such as ``'sensor_msgs/msg/Image'``."""
    cls = _CLASSES.get(name)
    if cls is None:
        cls = _CLASSES[name] = MessageClass(name)
    return cls


def _default(node: tuple) -> object:
    kind, detail = node
    if kind == Nodetype.BASE:
        base = detail[0]
        if base == 'string' or base == 'wstring':
            return ''
        if base == 'bool':
            return False
        if base in ('float32', 'float64'):
            return 0.0
        return 0
    if kind == Nodetype.NAME:
        return message_class(detail)()
    sub, size = detail
    if sub[0] == Nodetype.BASE and sub[1][0] in _DTYPES:
        return np.zeros(size if kind == Nodetype.ARRAY else 0, dtype=_DTYPES[sub[1][0]])
    if kind == Nodetype.ARRAY:
        return [_default(sub) for _ in range(size)]
    return []


class MessageClass:
    """Callable like an rclpy message class; builds the rosbags message object."""

    def __init__(self, name: str) -> None:
        self.__msgtype__ = name
        self._cls = TYPESTORE.types[name]
        consts, self._fields = TYPESTORE.fielddefs[name]
        self.__name__ = name.rsplit('/', 1)[-1]
        for cname, ctype, cvalue in consts:
            # rclpy exposes `byte` constants as bytes of length 1 (DiagnosticStatus.OK == b'\0')
            setattr(self, cname, bytes([cvalue]) if ctype == 'byte' else cvalue)

    def __repr__(self) -> str:
        return f'<stand-in message class {self.__msgtype__}>'

    def __call__(self, **kwargs: object) -> object:
        values = {}
        names = [f[0] for f in self._fields]
        unknown = set(kwargs) - set(names)
        assert not unknown, f'Invalid arguments passed to constructor: {sorted(unknown)}'
        for fname, node in self._fields:
            if fname in kwargs:
                values[fname] = self._check(fname, node, kwargs[fname])
            else:
                values[fname] = _default(node)
        return self._cls(**values)

    def _check(self, fname: str, node: tuple, value: object) -> object:
        kind, detail = node
        where = f"The '{fname}' field of {self.__msgtype__}"
        if kind == Nodetype.BASE:
            base = detail[0]
            if base in ('string', 'wstring'):
                assert isinstance(value, str), f'{where} must be of type str, got {value!r}'
            elif base == 'bool':
                assert isinstance(value, bool), f'{where} must be of type bool, got {value!r}'
            elif base == 'byte':
                assert isinstance(value, bytes) and len(value) == 1, \
                    f'{where} must be of type bytes of length 1, got {value!r}'
                return value[0]
            elif base in ('float32', 'float64'):
                assert isinstance(value, float), f'{where} must be of type float, got {value!r}'
            else:
                assert isinstance(value, int) and not isinstance(value, bool), \
                    f'{where} must be of type int, got {type(value).__name__} {value!r}'
                lo, hi = _INT_RANGES[base]
                assert lo <= value < hi, f'{where} must be in [{lo}, {hi}), got {value}'
            return value
        if kind == Nodetype.NAME:
            assert getattr(value, '__msgtype__', None) == detail, \
                f'{where} must be a {detail}, got {type(value).__name__}'
            return value
        sub, size = detail
        if sub[0] == Nodetype.BASE and sub[1][0] in _DTYPES:
            base = sub[1][0]
            dtype = _DTYPES[base]
            code = _ARRAY_CODES.get(base)
            if kind == Nodetype.SEQUENCE:
                if isinstance(value, array.array) and value.typecode == code:
                    out = np.frombuffer(value, dtype=dtype) if len(value) else \
                        np.zeros(0, dtype=dtype)
                else:
                    SLOW_ASSIGNMENTS.append((self.__msgtype__, fname))
                    out = np.asarray(bytearray(value) if isinstance(value, bytes) else value,
                                     dtype=dtype).reshape(-1)
                if size:
                    assert out.size <= size, f'{where} must have at most {size} elements'
                return out
            out = np.asarray(value, dtype=dtype).reshape(-1)
            assert out.size == size, f'{where} must have exactly {size} elements'
            return out
        items = list(value)
        for item in items:
            self._check(fname, sub, item)
        if kind == Nodetype.ARRAY:
            assert len(items) == size, f'{where} must have exactly {size} elements'
        return items


def install(module_globals: dict, package: str, names: list[str]) -> None:
    """Put the stand-in classes of ``package/msg/<name>`` into a ``msg`` module."""
    for name in names:
        module_globals[name] = message_class(f'{package}/msg/{name}')
