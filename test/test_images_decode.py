"""Decoding of sensor_msgs/Image and CompressedImage: layouts, colour conversions, errors."""

from __future__ import annotations

import array
import struct
import sys
from types import SimpleNamespace

import cv2
from depth_node.errors import CompressedImageError, ImageFormatError, UnsupportedEncodingError
from depth_node.images import (
    COLOR_ENCODINGS,
    colorize_depth,
    compressed_to_rgb,
    depth_to_metres,
    image_to_array,
    image_to_rgb,
    message_to_rgb,
    RAW_ENCODINGS,
)
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

HOST_BIG = sys.byteorder == 'big'

# encoding -> (struct format char of one channel, channels), written out independently of
# the module's table
LAYOUT = {
    'rgb8': ('B', 3), 'bgr8': ('B', 3), 'rgba8': ('B', 4), 'bgra8': ('B', 4),
    'mono8': ('B', 1), 'mono16': ('H', 1), '8UC1': ('B', 1), '8UC3': ('B', 3),
    '16UC1': ('H', 1), '32FC1': ('f', 1), 'yuv422': ('B', 2), 'yuv422_yuy2': ('B', 2),
    'bayer_rggb8': ('B', 1), 'bayer_bggr8': ('B', 1), 'bayer_gbrg8': ('B', 1),
    'bayer_grbg8': ('B', 1),
}


def raw_image(encoding, values, width, height, padding=0, bigendian=False, data_type='array'):
    """Build an Image-like message from a flat list of channel values, row by row with struct.

    ``values`` holds width * height * channels numbers in row-major order.
    """
    fmt, channels = LAYOUT[encoding]
    order = '>' if bigendian else '<'
    per_row = width * channels
    rows = []
    for r in range(height):
        row = struct.pack(f'{order}{per_row}{fmt}', *values[r * per_row:(r + 1) * per_row])
        rows.append(row + bytes([0xAB]) * padding)
    blob = b''.join(rows)
    step = len(rows[0])
    if data_type == 'array':
        data = array.array('B')
        data.frombytes(blob)
    elif data_type == 'numpy':
        data = np.frombuffer(blob, np.uint8).copy()
    else:
        data = blob
    return SimpleNamespace(height=height, width=width, encoding=encoding,
                           is_bigendian=int(bigendian), step=step, data=data)


@st.composite
def images(draw):
    encoding = draw(st.sampled_from(sorted(LAYOUT)))
    fmt, channels = LAYOUT[encoding]
    width = draw(st.integers(1, 9))
    if encoding.startswith('yuv'):
        width = 2 * width
    height = draw(st.integers(1, 7))
    count = width * height * channels
    if fmt == 'B':
        values = draw(st.lists(st.integers(0, 255), min_size=count, max_size=count))
    elif fmt == 'H':
        values = draw(st.lists(st.integers(0, 65535), min_size=count, max_size=count))
    else:
        values = draw(st.lists(st.floats(width=32, allow_nan=False), min_size=count,
                               max_size=count))
    padding = draw(st.integers(0, 7))
    bigendian = draw(st.booleans())
    data_type = draw(st.sampled_from(['array', 'numpy', 'bytes']))
    return encoding, values, width, height, padding, bigendian, data_type


@settings(max_examples=300, deadline=None)
@given(images())
def test_image_to_array_matches_independent_layout(case):
    encoding, values, width, height, padding, bigendian, data_type = case
    msg = raw_image(encoding, values, width, height, padding, bigendian, data_type)
    got = image_to_array(msg)
    fmt, channels = LAYOUT[encoding]
    expected = np.array(values, dtype={'B': np.uint8, 'H': np.uint16, 'f': np.float32}[fmt])
    expected = expected.reshape((height, width) if channels == 1 else (height, width, channels))
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype and got.dtype.isnative
    assert np.array_equal(got, expected)
    assert not got.flags.writeable


@settings(max_examples=100, deadline=None)
@given(images())
def test_image_to_array_is_a_view_unless_byteswapped(case):
    encoding, values, width, height, padding, bigendian, _ = case
    msg = raw_image(encoding, values, width, height, padding, bigendian, 'numpy')
    got = image_to_array(msg)
    swapped = LAYOUT[encoding][0] != 'B' and bigendian != HOST_BIG
    assert np.shares_memory(got, msg.data) != swapped


def test_row_padding_is_skipped_and_strided():
    values = list(range(2 * 3 * 3))
    msg = raw_image('rgb8', values, width=3, height=2, padding=5)
    got = image_to_array(msg)
    assert got.strides[0] == msg.step == 3 * 3 + 5
    assert got[1, 0].tolist() == [9, 10, 11]
    assert image_to_rgb(msg) is not None and np.array_equal(image_to_rgb(msg), got)


def test_16bit_endianness_values():
    little = raw_image('16UC1', [1, 258, 65535, 1000], 2, 2, bigendian=False)
    big = raw_image('16UC1', [1, 258, 65535, 1000], 2, 2, bigendian=True)
    assert bytes(big.data)[:2] == b'\x00\x01'
    assert np.array_equal(image_to_array(little), image_to_array(big))
    assert image_to_array(big).tolist() == [[1, 258], [65535, 1000]]


# --- colour conversions ---------------------------------------------------------------------

def smooth_rgb(height=32, width=48):
    v, u = np.mgrid[0:height, 0:width]
    rgb = np.stack([40 + 3 * u, 60 + 4 * v, 200 - 2 * u], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def from_array(encoding, arr, padding=0):
    """Image-like message from an array in the encoding's layout (little-endian)."""
    height, width = arr.shape[:2]
    rows = arr.reshape(height, -1).astype(arr.dtype.newbyteorder('<'))
    padded = np.zeros((height, rows.nbytes // height + padding), np.uint8)
    padded[:, :rows.nbytes // height] = rows.view(np.uint8).reshape(height, -1)
    data = array.array('B')
    data.frombytes(padded.tobytes())
    return SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=0,
                           step=padded.shape[1], data=data)


@pytest.mark.parametrize('encoding,order', [('rgb8', [0, 1, 2]), ('bgr8', [2, 1, 0]),
                                            ('rgba8', [0, 1, 2, None]),
                                            ('bgra8', [2, 1, 0, None]), ('8UC3', [0, 1, 2])])
def test_colour_orders(encoding, order):
    rgb = smooth_rgb()
    planes = [rgb[..., c] if c is not None else np.full(rgb.shape[:2], 77, np.uint8)
              for c in order]
    msg = from_array(encoding, np.stack(planes, axis=-1), padding=3)
    out = image_to_rgb(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out, rgb)


def test_mono_to_rgb():
    grey = (np.arange(12 * 10) % 256).astype(np.uint8).reshape(12, 10)
    for encoding in ('mono8', '8UC1'):
        out = image_to_rgb(from_array(encoding, grey, padding=2))
        assert np.array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    grey16 = grey.astype(np.uint16) * 256 + 255
    for encoding in ('mono16', '16UC1'):
        out = image_to_rgb(from_array(encoding, grey16))
        assert np.array_equal(out[..., 1], grey)


def bayer_mosaic(rgb, pattern):
    """Return a Bayer mosaic: the 2x2 ``pattern`` (e.g. 'rggb') names the channel of each cell."""
    index = {'r': 0, 'g': 1, 'b': 2}
    mosaic = np.zeros(rgb.shape[:2], np.uint8)
    for cell, name in enumerate(pattern):
        dy, dx = divmod(cell, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, index[name]]
    return mosaic


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_demosaic_recovers_colours(pattern):
    rgb = smooth_rgb(40, 40)
    msg = from_array(f'bayer_{pattern}8', bayer_mosaic(rgb, pattern), padding=4)
    out = image_to_rgb(msg)
    inner = (slice(2, -2), slice(2, -2))
    error = np.abs(out[inner].astype(int) - rgb[inner].astype(int))
    # a wrong pattern swaps red and blue (difference > 100 here); right one is near exact
    assert error.max() <= 3, f'{pattern}: max error {error.max()}'


def yuv_pixels(y0, u, y1, v, encoding):
    if encoding == 'yuv422':   # UYVY
        return [u, y0, v, y1]
    return [y0, u, y1, v]       # YUYV


@pytest.mark.parametrize('encoding', ['yuv422', 'yuv422_yuy2'])
def test_yuv422_byte_orders(encoding):
    # a dark and a bright pixel with a strong red chroma (V high, U neutral)
    values = yuv_pixels(60, 128, 130, 200, encoding) * 4
    msg = raw_image(encoding, values, width=4, height=2)
    out = image_to_rgb(msg).astype(int)
    assert out.shape == (2, 4, 3)
    dark, bright = out[0, 0], out[0, 1]
    assert bright.sum() > dark.sum() + 150       # Y0 and Y1 in the right places
    assert dark[0] > dark[2] + 50 and bright[0] > bright[2] + 50   # V is red, not blue
    # neutral chroma is grey with the luma of each pixel (BT.601 limited-ish range)
    grey = image_to_rgb(raw_image(encoding, yuv_pixels(100, 128, 150, 128, encoding), 2, 1))
    assert np.ptp(grey[0, 0]) <= 2 and np.ptp(grey[0, 1]) <= 2
    assert grey[0, 1, 0] > grey[0, 0, 0]


# --- errors -------------------------------------------------------------------------------

def test_truncated_data():
    msg = raw_image('rgb8', list(range(30)), width=5, height=2)
    msg.data = msg.data[:29]
    with pytest.raises(ImageFormatError) as info:
        image_to_array(msg)
    text = str(info.value)
    assert '29' in text and '30' in text and 'truncated' in text
    assert info.value.kind == 'bad_image'


def test_step_too_small():
    msg = raw_image('rgb8', list(range(30)), width=5, height=2)
    msg.step = 14
    with pytest.raises(ImageFormatError, match='step 14'):
        image_to_rgb(msg)


@pytest.mark.parametrize('width,height', [(0, 4), (4, 0)])
def test_empty_image(width, height):
    msg = SimpleNamespace(height=height, width=width, encoding='mono8', is_bigendian=0,
                          step=width, data=b'')
    with pytest.raises(ImageFormatError, match='no pixels'):
        image_to_array(msg)


def test_unknown_encoding_lists_supported():
    msg = raw_image('mono8', [0] * 4, 2, 2)
    msg.encoding = 'nv12'
    with pytest.raises(UnsupportedEncodingError) as info:
        image_to_rgb(msg)
    assert 'nv12' in str(info.value)
    for name in ('rgb8', 'yuv422', 'bayer_rggb8', '32FC1'):
        assert name in str(info.value)


def test_odd_width_yuv():
    msg = SimpleNamespace(height=1, width=3, encoding='yuv422', is_bigendian=0, step=6,
                          data=bytes(6))
    with pytest.raises(ImageFormatError, match='odd width'):
        image_to_rgb(msg)


def test_depth_is_not_colour():
    msg = raw_image('32FC1', [1.0] * 4, 2, 2)
    with pytest.raises(UnsupportedEncodingError, match='depth'):
        image_to_rgb(msg)


def test_encoding_sets_are_consistent():
    assert COLOR_ENCODINGS <= RAW_ENCODINGS
    assert set(LAYOUT) <= RAW_ENCODINGS


# --- compressed -----------------------------------------------------------------------------

def compressed(fmt, data):
    return SimpleNamespace(format=fmt, data=np.frombuffer(bytes(data), np.uint8))


@pytest.mark.parametrize('fmt', ['jpeg', 'rgb8; jpeg compressed bgr8', 'png',
                                 'bgr8; png compressed bgr8'])
def test_compressed_roundtrip(fmt):
    rgb = smooth_rgb()
    ext = '.png' if 'png' in fmt else '.jpg'
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    out = message_to_rgb(compressed(fmt, buf.tobytes()))
    assert out.shape == rgb.shape
    tol = 0 if ext == '.png' else 6
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= tol


@pytest.mark.parametrize('payload', [b'', b'\xff\xd8\xff\xe0garbage!', bytes(100)])
def test_undecodable_compressed(payload):
    with pytest.raises(CompressedImageError) as info:
        compressed_to_rgb(compressed('jpeg', payload))
    assert info.value.kind == 'undecodable_compressed'


def compressed_depth_message(depth_m, encoding):
    """compressed_depth_image_transport's layout: 12-byte header + 16-bit PNG."""
    if encoding == '16UC1':
        raw = np.where(np.isfinite(depth_m), np.round(depth_m * 1000), 0).astype(np.uint16)
        header = struct.pack('<iff', 0, 0.0, 0.0)
    else:
        quant_a, depth_max = 100.0, 10.0     # the transport's defaults
        quant_b = quant_a / depth_max
        safe_m = np.where(np.isfinite(depth_m), depth_m, 1)
        inv = np.where(np.isfinite(depth_m), quant_a / safe_m + quant_b, 0)
        raw = np.round(inv).astype(np.uint16)
        header = struct.pack('<iff', 0, quant_a, quant_b)
    ok, png = cv2.imencode('.png', raw)
    assert ok
    return compressed(f'{encoding}; compressedDepth png', header + png.tobytes())


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1'])
def test_compressed_depth(encoding):
    depth = np.linspace(0.5, 4.0, 12 * 16, dtype=np.float32).reshape(12, 16)
    depth[3, 4] = np.nan
    out = depth_to_metres(compressed_depth_message(depth, encoding))
    assert out.dtype == np.float32 and out.shape == depth.shape
    assert np.isnan(out[3, 4]) and np.isfinite(np.delete(out.ravel(), 3 * 16 + 4)).all()
    finite = np.isfinite(depth)
    # 16UC1: 1 mm steps; 32FC1: inverse depth A / d rounded (A = 100): half a step of v
    # moves d by at most d * h / (1 - h) with h = 0.5 * d / A
    half = 0.5 * depth[finite] / 100.0
    tol = 0.0006 if encoding == '16UC1' else depth[finite] * half / (1 - half) + 1e-5
    assert (np.abs(out[finite] - depth[finite]) <= tol).all()


def test_compressed_depth_is_not_colour():
    msg = compressed_depth_message(np.ones((2, 2), np.float32), '16UC1')
    with pytest.raises(UnsupportedEncodingError):
        compressed_to_rgb(msg)
    msg.format = '16UC1; compressedDepth rvl'
    with pytest.raises(UnsupportedEncodingError, match='RVL'):
        depth_to_metres(msg)


# --- depth ----------------------------------------------------------------------------------

def test_depth_to_metres_16bit():
    msg = raw_image('16UC1', [0, 1, 1500, 65535], 2, 2, bigendian=True)
    out = depth_to_metres(msg)
    assert out.dtype == np.float32
    assert np.isnan(out[0, 0])
    assert out[0, 1] == pytest.approx(0.001) and out[1, 0] == pytest.approx(1.5)
    assert out[1, 1] == pytest.approx(65.535)
    assert depth_to_metres(msg, scale=1 / 5000)[1, 0] == pytest.approx(0.3)


def test_depth_to_metres_float():
    msg = raw_image('32FC1', [0.0, 2.5, float('inf'), float('-inf')], 2, 2, padding=4)
    out = depth_to_metres(msg)
    assert np.isnan(out[0, 0]) and out[0, 1] == 2.5
    assert out[1, 0] == np.inf and out[1, 1] == -np.inf
    assert out.flags.writeable and not np.shares_memory(out, msg.data)


def test_depth_to_metres_rejects_colour():
    with pytest.raises(UnsupportedEncodingError, match='not a depth'):
        depth_to_metres(raw_image('rgb8', [0] * 12, 2, 2))


def test_colorize_depth():
    depth = np.tile(np.linspace(1.0, 5.0, 50, dtype=np.float32), (10, 1))
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, np.inf, 0.0, -np.inf
    out = colorize_depth(depth)
    assert out.shape == (10, 50, 3) and out.dtype == np.uint8
    assert (out[0, :4] == 0).all()
    near, far = out[5, 5].astype(int), out[5, 45].astype(int)
    assert near[0] > near[2] and far[2] > far[0]    # near is warm (red), far is cold (blue)
    fixed = colorize_depth(depth, 1.0, 5.0)
    assert not np.array_equal(fixed, colorize_depth(depth, 2.0, 3.0))
    assert (colorize_depth(np.full((4, 4), np.nan, np.float32)) == 0).all()
