"""Decoding and encoding of ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage``.

Messages are read by their fields, so rclpy messages (``data`` is ``array.array('B')``) and
``rosbags`` messages (``data`` is a numpy array) both work. Raw images are returned as views
of the message buffer whenever the layout allows (``step`` padding is a row stride, not a
copy); only a byte order that differs from the host's costs a copy.

Depth follows REP 118 / REP 117: ``32FC1`` in metres (NaN = no measurement, +Inf = beyond
the maximum range, -Inf = too close) or ``16UC1`` in millimetres with 0 = no measurement.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import cv2
from depth_node.device import is_torch
from depth_node.errors import CompressedImageError, ImageFormatError, UnsupportedEncodingError
from depth_node.messages import with_payload
import numpy as np

# encoding -> (numpy dtype of one channel, number of channels)
_LAYOUTS: dict[str, tuple[np.dtype, int]] = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4),
    'bgra8': (np.dtype(np.uint8), 4),
    'mono8': (np.dtype(np.uint8), 1),
    'mono16': (np.dtype(np.uint16), 1),
    '8UC1': (np.dtype(np.uint8), 1),
    '8UC3': (np.dtype(np.uint8), 3),
    '16UC1': (np.dtype(np.uint16), 1),
    '32FC1': (np.dtype(np.float32), 1),
    # YUV 4:2:2, two bytes per pixel: 'yuv422' is U Y0 V Y1 (UYVY), 'yuv422_yuy2' is
    # Y0 U Y1 V (YUYV). 'uyvy' / 'yuyv' are the newer sensor_msgs names of the same layouts.
    'yuv422': (np.dtype(np.uint8), 2),
    'uyvy': (np.dtype(np.uint8), 2),
    'yuv422_yuy2': (np.dtype(np.uint8), 2),
    'yuyv': (np.dtype(np.uint8), 2),
    'bayer_rggb8': (np.dtype(np.uint8), 1),
    'bayer_bggr8': (np.dtype(np.uint8), 1),
    'bayer_gbrg8': (np.dtype(np.uint8), 1),
    'bayer_grbg8': (np.dtype(np.uint8), 1),
}

#: every encoding :func:`image_to_array` understands
RAW_ENCODINGS: frozenset[str] = frozenset(_LAYOUTS)

# OpenCV names a Bayer pattern after the second row's second and third pixels, not after the
# top-left 2x2 block as ROS does, so ROS 'rggb' is OpenCV 'BG' (checked by demosaicing a
# synthetic mosaic of a known image, see test/test_images_decode.py).
_BAYER_CODES = {
    'bayer_rggb8': cv2.COLOR_BayerBG2RGB,
    'bayer_bggr8': cv2.COLOR_BayerRG2RGB,
    'bayer_gbrg8': cv2.COLOR_BayerGR2RGB,
    'bayer_grbg8': cv2.COLOR_BayerGB2RGB,
}
_YUV_CODES = {
    'yuv422': cv2.COLOR_YUV2RGB_UYVY,
    'uyvy': cv2.COLOR_YUV2RGB_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2,
    'yuyv': cv2.COLOR_YUV2RGB_YUY2,
}
_TO_RGB_CODES = {
    'bgr8': cv2.COLOR_BGR2RGB,
    'rgba8': cv2.COLOR_RGBA2RGB,
    'bgra8': cv2.COLOR_BGRA2RGB,
    'mono8': cv2.COLOR_GRAY2RGB,
    '8UC1': cv2.COLOR_GRAY2RGB,
    **_YUV_CODES,
    **_BAYER_CODES,
}

#: encodings :func:`image_to_rgb` turns into an RGB image ('8UC3' is taken as RGB order;
#: 16-bit mono is scaled to 8 bits by keeping the high byte)
COLOR_ENCODINGS: frozenset[str] = frozenset(
    {'rgb8', '8UC3', 'mono16', '16UC1', *_TO_RGB_CODES})

#: encodings :func:`depth_to_metres` reads: millimetres (16-bit) or metres (32FC1)
DEPTH_ENCODINGS: tuple[str, ...] = ('16UC1', '32FC1', 'mono16')

_HOST_BIG_ENDIAN = sys.byteorder == 'big'
# smallest positive float32 (a denormal) and the largest finite one
_TINY = float(np.nextafter(np.float32(0), np.float32(1)))
_HUGE = float(np.finfo(np.float32).max)

_COLORMAPS = {
    'turbo': cv2.COLORMAP_TURBO,
    'viridis': cv2.COLORMAP_VIRIDIS,
    'inferno': cv2.COLORMAP_INFERNO,
    'magma': cv2.COLORMAP_MAGMA,
    'plasma': cv2.COLORMAP_PLASMA,
    'jet': cv2.COLORMAP_JET,
}


def _supported(encodings: Any) -> str:
    return ', '.join(sorted(encodings))


def message_bytes(data: Any) -> np.ndarray:
    """Return a flat uint8 view of a message's ``data`` field, without copying when possible.

    :param data: ``array.array('B')`` (rclpy), a numpy array (rosbags), ``bytes`` or a list.
    """
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def layout_of(encoding: str) -> tuple[np.dtype, int]:
    """``(dtype, channels)`` of a raw image encoding.

    :raises UnsupportedEncodingError: for an encoding this package does not decode.
    """
    try:
        return _LAYOUTS[encoding]
    except KeyError:
        raise UnsupportedEncodingError(
            f'Image encoding {encoding!r} is not supported.',
            f'Publish one of: {_supported(RAW_ENCODINGS)} (e.g. with image_proc or a '
            'driver setting).') from None


def image_to_array(msg: Any) -> np.ndarray:
    """Return the pixels of a ``sensor_msgs/Image`` as an array in the encoding's own layout.

    ``(H, W)`` for one channel, ``(H, W, C)`` otherwise, in native byte order. The result is
    a read-only view of ``msg.data`` (row padding skipped by strides) unless the message's
    byte order differs from the host's, in which case it is a byte-swapped copy.

    :param msg: a ``sensor_msgs/Image`` (rclpy or rosbags).
    :raises UnsupportedEncodingError: unknown encoding.
    :raises ImageFormatError: zero size, ``step`` too small, truncated data, odd YUV width.
    """
    encoding = str(msg.encoding)
    dtype, channels = layout_of(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(
            f'Image ({encoding}) has size {width}x{height}: no pixels.',
            'Check the camera driver; empty images are skipped.')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(
            f'Image step {step} is smaller than width x bytes per pixel = {width} x '
            f'{channels * dtype.itemsize} = {row_bytes} for {encoding}.',
            'The message header is inconsistent: fix step/width/encoding in the publisher.')
    if channels == 2 and width % 2:
        raise ImageFormatError(
            f'{encoding} (YUV 4:2:2) image has an odd width {width}; pixels come in pairs.',
            'Configure the camera for an even width.')
    buf = message_bytes(msg.data)
    if buf.size < step * height:
        raise ImageFormatError(
            f'Image data has {buf.size} bytes but step x height = {step} x {height} = '
            f'{step * height} are needed ({width}x{height} {encoding}): the message is '
            'truncated or its header is wrong.',
            'Check the publisher (step, height, encoding) or the recording.')
    rows = buf[:step * height].reshape(height, step)[:, :row_bytes]
    array = rows.view(dtype)
    array = array.reshape(height, width) if channels == 1 else \
        array.reshape(height, width, channels)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
        array = array.byteswap()   # a copy with the values in native order
    array.flags.writeable = False
    return array


def _mono16_to_rgb(array: np.ndarray) -> np.ndarray:
    high = (array >> 8).astype(np.uint8)
    return cv2.cvtColor(high, cv2.COLOR_GRAY2RGB)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Return a ``sensor_msgs/Image`` as an ``(H, W, 3)`` uint8 RGB array.

    ``rgb8`` and ``8UC3`` are returned as a view of the message (rows may be strided); the
    other encodings are converted with OpenCV (demosaicing for Bayer, YUV 4:2:2 conversion).

    :param msg: a ``sensor_msgs/Image``.
    :raises UnsupportedEncodingError: for encodings without a colour meaning (32FC1 depth).
    :raises ImageFormatError: for inconsistent messages, see :func:`image_to_array`.
    """
    encoding = str(msg.encoding)
    if encoding in RAW_ENCODINGS and encoding not in COLOR_ENCODINGS:
        raise UnsupportedEncodingError(
            f'Image encoding {encoding!r} is depth, not a colour or grey image.',
            f'Subscribe the colour stream (one of {_supported(COLOR_ENCODINGS)}); depth '
            'images go through depth_to_metres().')
    array = image_to_array(msg)
    if encoding in ('rgb8', '8UC3'):
        return array
    if encoding in ('mono16', '16UC1'):
        return _mono16_to_rgb(array)
    return cv2.cvtColor(array, _TO_RGB_CODES[encoding])


def _compressed_payload(msg: Any) -> tuple[np.ndarray, str]:
    fmt = str(msg.format)
    data = message_bytes(msg.data)
    if data.size == 0:
        raise CompressedImageError(
            f'CompressedImage (format {fmt!r}) has no data.',
            'Check the publisher; empty frames are skipped.')
    return data, fmt


def _imdecode(data: np.ndarray, fmt: str, flags: int) -> np.ndarray:
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:
        image = None
        detail = f': {str(exc).strip().splitlines()[-1]}'
    else:
        detail = ''
    if image is None or image.size == 0:
        raise CompressedImageError(
            f'CompressedImage (format {fmt!r}, {data.size} bytes) could not be decoded by '
            f'OpenCV{detail}; the data is corrupt or not a JPEG/PNG stream.',
            'Check the compressed transport of the publisher, or subscribe the raw image.')
    return image


def is_compressed_depth(msg: Any) -> bool:
    """Whether a CompressedImage uses the ``compressedDepth`` transport."""
    return 'compresseddepth' in str(getattr(msg, 'format', '')).lower()


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to ``(H, W, 3)`` uint8 RGB.

    The ``format`` string may be plain (``'jpeg'``) or image_transport's
    (``'rgb8; jpeg compressed bgr8'``); OpenCV detects the codec from the data.

    :raises CompressedImageError: empty or undecodable data.
    :raises UnsupportedEncodingError: a ``compressedDepth`` message (use
        :func:`depth_to_metres`).
    """
    if is_compressed_depth(msg):
        raise UnsupportedEncodingError(
            f'CompressedImage format {msg.format!r} is a depth image, not a colour image.',
            'Subscribe the colour stream; compressed depth goes through depth_to_metres().')
    data, fmt = _compressed_payload(msg)
    image = _imdecode(data, fmt, cv2.IMREAD_COLOR)
    # imdecode gives BGR; image_transport compresses colour images as bgr8 too
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg: Any) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 of an Image or a CompressedImage (told apart by ``format``)."""
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


# compressed_depth_image_transport prefixes its PNG with a ConfigHeader: int32 format and
# float32 depthQuantA, depthQuantB (32FC1 is stored as inverse depth v = A / d + B).
_DEPTH_HEADER = struct.Struct('<iff')


def compressed_depth_to_metres(msg: Any, scale: float | None = None) -> np.ndarray:
    """Decode a ``compressedDepth`` CompressedImage (PNG) to ``(H, W)`` float32 metres.

    ``'16UC1; compressedDepth png'`` holds millimetres (0 = invalid); ``'32FC1;
    compressedDepth png'`` holds quantized inverse depth. Invalid pixels become NaN.

    :param scale: metres per unit for 16-bit data (default 0.001).
    :raises CompressedImageError: undecodable data.
    :raises UnsupportedEncodingError: the RVL codec or an unknown depth format.
    """
    data, fmt = _compressed_payload(msg)
    lower = fmt.lower()
    if 'rvl' in lower:
        raise UnsupportedEncodingError(
            f'compressedDepth format {fmt!r} uses the RVL codec, which is not supported.',
            "Set the publisher's compressedDepth format to png.")
    depth_format = fmt.split(';')[0].strip()
    if depth_format not in ('16UC1', '32FC1', 'mono16'):
        raise UnsupportedEncodingError(
            f'compressedDepth format {fmt!r}: depth encoding {depth_format!r} is not '
            f'supported.', f'Publish depth as one of {_supported(DEPTH_ENCODINGS)}.')
    png_magic = b'\x89PNG'
    offset = 0 if data[:4].tobytes() == png_magic else _DEPTH_HEADER.size
    if data.size <= offset:
        raise CompressedImageError(
            f'compressedDepth message ({fmt!r}) has only {data.size} bytes.',
            'Check the publisher; the message is truncated.')
    raw = _imdecode(data[offset:], fmt, cv2.IMREAD_UNCHANGED)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise CompressedImageError(
            f'compressedDepth payload ({fmt!r}) decoded to {raw.dtype} with shape '
            f'{raw.shape}, expected one 16-bit channel.',
            'Check the publisher; this is not a compressed_depth_image_transport stream.')
    if depth_format == '32FC1':
        if offset == 0:
            raise CompressedImageError(
                f'compressedDepth 32FC1 message ({fmt!r}) has no quantization header.',
                'Re-record with a current compressed_depth_image_transport.')
        _, quant_a, quant_b = _DEPTH_HEADER.unpack(data[:offset].tobytes())
        out = raw.astype(np.float32)
        with np.errstate(divide='ignore', invalid='ignore'):
            np.subtract(out, np.float32(quant_b), out=out)
            np.divide(np.float32(quant_a), out, out=out)
        out[raw == 0] = np.nan
        if scale is not None:
            out *= np.float32(scale)
        return out
    return _millimetres_to_metres(raw, 0.001 if scale is None else scale)


_LUT_CACHE: dict[float, np.ndarray] = {}


def _millimetres_to_metres(array: np.ndarray, scale: float) -> np.ndarray:
    # a 65536-entry float32 table (0 -> NaN) is twice as fast as multiply + mask
    lut = _LUT_CACHE.get(scale)
    if lut is None:
        lut = np.arange(65536, dtype=np.float32) * np.float32(scale)
        lut[0] = np.nan
        lut.flags.writeable = False
        if len(_LUT_CACHE) > 8:
            _LUT_CACHE.clear()
        _LUT_CACHE[scale] = lut
    return lut.take(array)


def depth_to_metres(msg: Any, scale: float | None = None) -> np.ndarray:
    """Return a depth image as a new ``(H, W)`` float32 array in metres, NaN where invalid.

    ``16UC1`` / ``mono16`` are millimetres (0 -> NaN); ``32FC1`` is metres (0 -> NaN, NaN
    and +-Inf kept as REP 117 says). A ``compressedDepth`` CompressedImage is accepted too.

    :param msg: a ``sensor_msgs/Image`` (or compressedDepth ``CompressedImage``).
    :param scale: metres per stored unit, overriding the default (0.001 for 16-bit, 1 for
        32FC1), e.g. 0.0002 for TUM's 1/5000 m depth PNGs.
    :raises UnsupportedEncodingError: a non-depth encoding.
    """
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        if is_compressed_depth(msg):
            return compressed_depth_to_metres(msg, scale)
        raise UnsupportedEncodingError(
            f'CompressedImage format {msg.format!r} is not a compressedDepth stream.',
            'Subscribe a raw depth image or its compressedDepth transport.')
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        if encoding not in RAW_ENCODINGS:
            layout_of(encoding)   # raises the "unknown encoding" error
        raise UnsupportedEncodingError(
            f'Image encoding {encoding!r} is not a depth encoding.',
            f'Depth images must be one of {_supported(DEPTH_ENCODINGS)} (REP 118).')
    array = image_to_array(msg)
    if encoding == '32FC1':
        out = np.array(array, dtype=np.float32, copy=True)
        if scale is not None and scale != 1.0:
            out *= np.float32(scale)
        out[array == 0] = np.nan
        return out
    return _millimetres_to_metres(array, 0.001 if scale is None else scale)


def encode_depth(depth_m: np.ndarray, encoding: str = '32FC1') -> np.ndarray:
    """Metres -> the array of a REP 118 depth image.

    ``32FC1``: float32 metres, NaN / +Inf / -Inf kept (no copy when already float32 and
    contiguous). ``16UC1``: millimetres rounded to the nearest integer; NaN, +-Inf and
    values <= 0 become 0 (invalid); valid values are clipped to 1..65535.

    :param depth_m: ``(H, W)`` depth in metres; a torch tensor is encoded on its device
        (the same values) and returned as a tensor.
    :param encoding: ``'32FC1'`` or ``'16UC1'``.
    """
    depth = depth_m if is_torch(depth_m) else np.asarray(depth_m)
    if depth.ndim != 2:
        raise ImageFormatError(f'Depth map has shape {tuple(depth.shape)}, expected (H, W).',
                               'Pass a single-channel depth image.')
    if encoding not in ('32FC1', '16UC1'):
        raise UnsupportedEncodingError(
            f'Depth output encoding {encoding!r} is not supported.',
            "Use '32FC1' (metres) or '16UC1' (millimetres).")
    if is_torch(depth):
        from depth_node import device
        return device.encode_depth(depth, encoding, _TINY, _HUGE)
    if encoding == '32FC1':
        return np.ascontiguousarray(depth, dtype=np.float32)
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    if depth.size == 0:
        return np.zeros(depth.shape, np.uint16)
    # valid = finite and > 0 (NaN compares false); clamp valid depths to 1 mm .. 65.535 m,
    # then OpenCV scales, rounds to nearest and saturates into uint16 in one pass
    valid = cv2.inRange(depth, _TINY, _HUGE)
    clamped = np.clip(depth, np.float32(0.001), np.float32(65.535))
    millimetres = cv2.multiply(clamped, 1000.0, dtype=cv2.CV_16U)
    out = np.zeros(depth.shape, np.uint16)
    cv2.copyTo(millimetres, valid, out)
    return out


def make_image(factory: Any, header: Any, array: np.ndarray, encoding: str) -> Any:
    """Build a ``sensor_msgs/Image`` holding ``array`` (one copy for rclpy, none for rosbags).

    :param factory: a :class:`depth_node.messages.MessageFactory`.
    :param header: the ``std_msgs/Header`` (keep the input's stamp and frame_id).
    :param array: ``(H, W)`` or ``(H, W, C)`` matching the encoding's dtype and channels; a
        torch tensor (any device) is copied once, straight into the message payload.
    :param encoding: a supported raw encoding.
    """
    dtype, channels = layout_of(encoding)
    tensor = array if is_torch(array) else None
    if tensor is None:
        array = np.asarray(array)
        given = array.dtype
    else:
        given = np.dtype(str(tensor.dtype).split('.')[-1])
    shape = tuple(array.shape)
    shape_ok = (len(shape) == 2 and channels == 1) or \
        (len(shape) == 3 and shape[2] == channels) or \
        (len(shape) == 3 and channels == 1 and shape[2] == 1)
    if not shape_ok or given.kind != dtype.kind or given.itemsize != dtype.itemsize:
        raise ImageFormatError(
            f'Array {given} {shape} does not fit encoding {encoding!r} '
            f'({channels} x {dtype}).', 'Convert the array or choose the matching encoding.')
    if shape[0] == 0 or shape[1] == 0:
        raise ImageFormatError(f'Array shape {shape} has no pixels.',
                               'Pass a non-empty image.')
    height, width = array.shape[:2]
    if tensor is not None:
        from depth_node.device import payload_array, to_host
        host, data = payload_array(factory, tuple(tensor.shape), dtype.newbyteorder('='))
        to_host(tensor, host)
        if data is None:
            data = factory.byte_array(host)
    else:
        data = factory.byte_array(np.ascontiguousarray(array, dtype=dtype.newbyteorder('=')))
    return with_payload(
        factory, factory.Image, data, header=header, height=int(height), width=int(width),
        encoding=encoding, is_bigendian=int(_HOST_BIG_ENDIAN),
        step=int(width * channels * dtype.itemsize))


def make_depth_image(factory: Any, header: Any, depth_m: np.ndarray,
                     encoding: str = '32FC1') -> Any:
    """Return a REP 118 depth ``sensor_msgs/Image`` from metres (see :func:`encode_depth`)."""
    return make_image(factory, header, encode_depth(depth_m, encoding), encoding)


def make_compressed(factory: Any, header: Any, rgb: np.ndarray, fmt: str = 'jpeg',
                    quality: int = 95) -> Any:
    """Return a ``sensor_msgs/CompressedImage`` of an RGB image, as image_transport would build it.

    :param fmt: ``'jpeg'`` or ``'png'``.
    :param quality: JPEG quality 1..100.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageFormatError(f'Array {rgb.dtype} {rgb.shape} is not an RGB image.',
                               'Pass an (H, W, 3) uint8 array.')
    if fmt not in ('jpeg', 'png'):
        raise UnsupportedEncodingError(f'Compression format {fmt!r} is not supported.',
                                       "Use 'jpeg' or 'png'.")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    ok, encoded = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png',
                               cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise CompressedImageError(f'OpenCV could not encode a {fmt} image.',
                                   'Check the OpenCV build.')
    return with_payload(factory, factory.CompressedImage, factory.byte_array(encoded),
                        header=header, format=f'rgb8; {fmt} compressed bgr8')


def colorize_depth(depth_m: np.ndarray, min_depth: float | None = None,
                   max_depth: float | None = None, colormap: str = 'turbo') -> np.ndarray:
    """Return a false-colour ``(H, W, 3)`` uint8 RGB view of a depth map: near warm, far cold.

    :param depth_m: ``(H, W)`` depth (metres or relative); NaN, +-Inf and <= 0 are black. A
        torch tensor is coloured on its device and returned as a tensor (the same bytes).
    :param min_depth: depth shown warmest; None (or with max_depth 0, 0) = 2nd percentile.
    :param max_depth: depth shown coldest; None = 98th percentile of the valid values.
    :param colormap: ``turbo`` (default), ``viridis``, ``inferno``, ``magma``, ``plasma``,
        ``jet``.
    """
    if colormap not in _COLORMAPS:
        raise ValueError(f'Unknown colormap {colormap!r}; use one of {_supported(_COLORMAPS)}.')
    depth = depth_m if is_torch(depth_m) else np.asarray(depth_m, dtype=np.float32)
    if depth.ndim != 2:
        raise ImageFormatError(f'Depth map has shape {tuple(depth.shape)}, expected (H, W).',
                               'Pass a single-channel depth image.')
    if is_torch(depth):
        from depth_node import device
        return device.colorize(depth, min_depth, max_depth, colormap, _COLORMAPS[colormap])
    with np.errstate(invalid='ignore'):
        valid = (depth > 0) & (depth < np.inf)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    if not min_depth and not max_depth:
        min_depth = max_depth = None
    if min_depth is None or max_depth is None:
        step = max(1, int(np.sqrt(depth.size / 65536)))
        sample = depth[::step, ::step][valid[::step, ::step]]
        if sample.size == 0:
            sample = depth[valid]
        low, high = np.percentile(sample, [2.0, 98.0])
        min_depth = float(low) if min_depth is None else min_depth
        max_depth = float(high) if max_depth is None else max_depth
    span = max(float(max_depth) - float(min_depth), 1e-6)
    # near (small depth) -> 255 -> the warm end of the colormap
    with np.errstate(invalid='ignore'):
        level = (np.float32(max_depth) - depth) * np.float32(255.0 / span)
    np.clip(level, 0, 255, out=level)
    np.copyto(level, 0, where=~valid)
    coloured = cv2.applyColorMap(level.astype(np.uint8), _COLORMAPS[colormap])
    cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB, dst=out)
    out[~valid] = 0
    return out
