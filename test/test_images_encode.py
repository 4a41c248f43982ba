"""Depth encoding per REP 118 / REP 117 and Image message building."""

from __future__ import annotations

from types import SimpleNamespace

from depth_node.errors import ImageFormatError, UnsupportedEncodingError
from depth_node.images import (
    depth_to_metres,
    encode_depth,
    image_to_array,
    make_depth_image,
    make_image,
)
from depth_node.messages import numpy_byte_array, rclpy_byte_array
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import numpy as np
import pytest

depth_values = st.one_of(
    st.floats(min_value=-10, max_value=100, width=32),
    st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1e-4, 0.0004999, 0.0005, 65.535,
                     65.5355, 70.0]))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
                  elements=depth_values))
def test_encode_16uc1_rules(depth):
    out = encode_depth(depth, '16UC1')
    assert out.dtype == np.uint16 and out.shape == depth.shape
    for metres, mm in zip(depth.ravel().tolist(), out.ravel().tolist()):
        if not np.isfinite(metres) or metres <= 0:
            assert mm == 0, metres
        else:
            expected = min(max(round(metres * 1000.0), 1), 65535)
            # float32 multiplication may land on the other side of a .5 boundary
            assert abs(mm - expected) <= 1 and 1 <= mm <= 65535, (metres, mm)


def test_encode_16uc1_examples():
    depth = np.array([[0.0, np.nan, np.inf, -np.inf, -1.0, 1e-5, 1.2344, 1.2346, 70.0]],
                     np.float32)
    assert encode_depth(depth, '16UC1').tolist() == [[0, 0, 0, 0, 0, 1, 1234, 1235, 65535]]


def test_encode_32fc1_keeps_special_values_without_copy():
    depth = np.array([[np.nan, np.inf, -np.inf, 1.5]], np.float32)
    out = encode_depth(depth)
    assert out is depth or np.shares_memory(out, depth)
    assert np.array_equal(out, depth, equal_nan=True)
    as64 = encode_depth(depth.astype(np.float64))
    assert as64.dtype == np.float32 and np.array_equal(as64, depth, equal_nan=True)


def test_encode_empty():
    assert encode_depth(np.zeros((0, 3), np.float32), '16UC1').shape == (0, 3)


def test_encode_errors():
    with pytest.raises(UnsupportedEncodingError):
        encode_depth(np.ones((2, 2)), '8UC1')
    with pytest.raises(ImageFormatError):
        encode_depth(np.ones((2, 2, 1)))


def rclpy_like():
    from depth_node.messages import rclpy_like_factory
    return rclpy_like_factory()


@pytest.mark.parametrize('byte_array', [rclpy_byte_array, numpy_byte_array])
@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_make_depth_image_roundtrip(byte_array, encoding):
    factory = rclpy_like()
    factory = type(factory)(**{**factory.__dict__, 'byte_array': byte_array})
    header = SimpleNamespace(stamp=SimpleNamespace(sec=5, nanosec=7), frame_id='cam')
    depth = np.array([[0.5, np.nan, 2.25], [np.inf, 3.0, 0.0]], np.float32)
    msg = make_depth_image(factory, header, depth, encoding)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (2, 3, encoding, 0)
    assert msg.step == 3 * (4 if encoding == '32FC1' else 2)
    assert msg.header is header
    back = depth_to_metres(msg)
    if encoding == '32FC1':
        expected = np.where(depth == 0, np.nan, depth)
    else:   # 16UC1: every invalid value (NaN, +Inf, 0) reads back as NaN
        expected = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    assert np.allclose(back, expected, equal_nan=True, atol=5e-4)


def test_make_image_checks_the_array():
    factory = rclpy_like()
    header = SimpleNamespace()
    with pytest.raises(ImageFormatError):
        make_image(factory, header, np.zeros((2, 2), np.uint8), 'rgb8')
    with pytest.raises(ImageFormatError):
        make_image(factory, header, np.zeros((2, 2, 3), np.float32), 'rgb8')
    with pytest.raises(UnsupportedEncodingError):
        make_image(factory, header, np.zeros((2, 2), np.uint8), 'weird')
    rgb = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)[:, ::2]   # non-contiguous
    msg = make_image(factory, header, rgb, 'rgb8')
    assert msg.step == 6 and np.array_equal(image_to_array(msg), rgb)
    big = np.array([[1, 258]], dtype='>u2')
    msg = make_image(factory, header, big, 'mono16')
    assert msg.is_bigendian == 0 and image_to_array(msg).tolist() == [[1, 258]]
