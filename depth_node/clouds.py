"""Organized point clouds (``sensor_msgs/PointCloud2``) from depth maps and ray tables.

Layout as rviz and depth_image_proc expect it: float32 ``x``, ``y``, ``z`` at offsets 0, 4, 8
(``point_step`` 12), optionally a float32 ``rgb`` field at 12 holding the packed bytes
``0x00RRGGBB`` (``point_step`` 16); ``height`` = rows, ``width`` = columns, NaN points where
the depth is invalid and ``is_dense = False``.

The cloud is built in one ``(H, W, C)`` float32 buffer: the validity mask and the x/y planes
are computed on contiguous planes (SIMD-friendly), then OpenCV's ``merge`` interleaves them
straight into the buffer. The message wraps that buffer with ``factory.byte_array`` (one
copy into ``array.array('B')`` for rclpy, none for rosbags).
"""

from __future__ import annotations

from collections import OrderedDict
import os
import sys
import threading
from typing import Any

import cv2
from depth_node.device import is_torch, payload_array
from depth_node.errors import ImageFormatError, SizeMismatchError
from depth_node.messages import POINTFIELD_FLOAT32, with_payload
import numpy as np

#: device ray tables kept (camera x device x decimation), least recently used dropped
DEVICE_RAY_CACHE_SIZE = 16

_RAYS: OrderedDict[tuple, tuple[np.ndarray, tuple]] = OrderedDict()
_RAYS_LOCK = threading.Lock()

_HOST_BIG_ENDIAN = sys.byteorder == 'big'

# sensor_msgs/PointField datatype -> numpy dtype (one table, as sensor_msgs_py has it)
POINTFIELD_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.int8), 2: np.dtype(np.uint8), 3: np.dtype(np.int16),
    4: np.dtype(np.uint16), 5: np.dtype(np.int32), 6: np.dtype(np.uint32),
    7: np.dtype(np.float32), 8: np.dtype(np.float64),
}

# smallest positive float32 (a denormal) and the largest finite one: the default valid range
_TINY = float(np.nextafter(np.float32(0), np.float32(1)))
_HUGE = float(np.finfo(np.float32).max)


def cloud_fields(with_rgb: bool) -> list[tuple[str, int, int, int]]:
    """``(name, offset, datatype, count)`` of the cloud's PointFields.

    :param with_rgb: add the packed float32 ``rgb`` field (point_step 16 instead of 12).
    """
    fields = [('x', 0, POINTFIELD_FLOAT32, 1), ('y', 4, POINTFIELD_FLOAT32, 1),
              ('z', 8, POINTFIELD_FLOAT32, 1)]
    if with_rgb:
        fields.append(('rgb', 12, POINTFIELD_FLOAT32, 1))
    return fields


class _Scratch(threading.local):
    """Per-thread reusable planes (avoids page-faulting fresh buffers on every frame)."""

    def __init__(self) -> None:
        self.planes: dict[tuple[str, tuple[int, int], str], np.ndarray] = {}
        self.rays: tuple[Any, int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None \
            = None

    def plane(self, name: str, shape: tuple[int, int], dtype: Any) -> np.ndarray:
        key = (name, shape, np.dtype(dtype).str)
        found = self.planes.get(key)
        if found is None:
            if len(self.planes) > 32:
                self.planes.clear()
            found = self.planes[key] = np.empty(shape, dtype)
        return found


_scratch = _Scratch()


def ray_planes(rays: np.ndarray, decimation: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Contiguous x/z, y/z (and z, unless all ones) planes of a (decimated) ray table.

    Camera ray tables are read-only and cached per camera, so their planes are computed once
    per camera and decimation; a writeable table is converted on every call.
    """
    cached = _scratch.rays
    if cached is not None and cached[0] is rays and cached[1] == decimation:
        return cached[2]
    sub = rays[::decimation, ::decimation]
    ray_x = np.ascontiguousarray(sub[..., 0], dtype=np.float32)
    ray_y = np.ascontiguousarray(sub[..., 1], dtype=np.float32)
    ray_z = np.ascontiguousarray(sub[..., 2], dtype=np.float32)
    # rays are (x/z, y/z, 1); a ray that is NaN (undistortion undefined) must void z as well
    planes = (ray_x, ray_y, None if bool(np.all(ray_z == 1)) else ray_z)
    if not rays.flags.writeable:
        _scratch.rays = (rays, decimation, planes)
    return planes


def device_ray_planes(rays: np.ndarray, device: Any, decimation: int
                      ) -> tuple[Any, Any, Any | None]:
    """Return the (decimated) x/z, y/z (and z, unless all ones) ray planes on ``device``.

    Uploaded once per ray table, device and decimation: camera ray tables are read-only and
    cached per camera (:meth:`depth_node.camera.CameraModel.ray_table`), so each camera's
    distortion-aware rays stay on the device; a writeable table is uploaded on every call.
    """
    import torch
    key = (id(rays), str(device), int(decimation))
    with _RAYS_LOCK:
        hit = _RAYS.get(key)
        if hit is not None and hit[0] is rays:
            _RAYS.move_to_end(key)
            return hit[1]
    planes = tuple(None if p is None else torch.from_numpy(np.array(p)).to(device)
                   for p in ray_planes(rays, decimation))
    if not rays.flags.writeable:
        with _RAYS_LOCK:
            _RAYS[key] = (rays, planes)
            while len(_RAYS) > DEVICE_RAY_CACHE_SIZE:
                _RAYS.popitem(last=False)
    return planes


def clear_device_rays() -> None:
    """Forget the device ray tables (tests, or to free device memory)."""
    with _RAYS_LOCK:
        _RAYS.clear()


def _pack_rgb(rgb: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Pack ``(H, W, 3)`` uint8 RGB into ``out`` (H, W) uint32 as 0x00RRGGBB."""
    if _HOST_BIG_ENDIAN:
        np.left_shift(rgb[..., 0], 16, out=out, dtype=np.uint32)
        out |= rgb[..., 1].astype(np.uint32) << 8
        out |= rgb[..., 2]
        return out
    # little-endian 0x00RRGGBB is the byte sequence B, G, R, 0 = BGRA with alpha cleared
    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA, dst=out.view(np.uint8).reshape(out.shape + (4,)))
    np.bitwise_and(out, np.uint32(0x00FFFFFF), out=out)
    return out


def _checked_rays_and_rgb(depth: Any, rays: Any, rgb: Any) -> tuple[np.ndarray, Any]:
    """Return the ray table and colour image as arrays; SizeMismatchError if they do not fit."""
    rays = np.asarray(rays)
    if rays.ndim != 3 or rays.shape[2] != 3 or rays.shape[:2] != tuple(depth.shape):
        raise SizeMismatchError(
            f'Ray table shape {rays.shape} does not match the depth map {depth.shape}.',
            'Build the rays from the camera model at the depth map resolution '
            '(CameraModel.resized / matched_to_image).')
    if rgb is not None:
        rgb = rgb if is_torch(rgb) else np.asarray(rgb)
        if tuple(rgb.shape) != tuple(depth.shape) + (3,) or str(rgb.dtype).split('.')[-1] \
                != 'uint8':
            raise SizeMismatchError(
                f'Colour image {rgb.dtype} {rgb.shape} does not match the depth map '
                f'{depth.shape}: need (H, W, 3) uint8 RGB.',
                'Use the RGB image the depth was computed from, or xyz fields only.')
    return rays, rgb


def _valid_depth(sub: np.ndarray, shape: tuple[int, int],
                 valid_range: tuple[float, float] | None) -> np.ndarray:
    """Return the depth with every invalid value NaN, in a reused scratch plane."""
    z = _scratch.plane('z', shape, np.float32)
    if valid_range is None:
        # valid = finite and > 0, without a mask: negatives (and -Inf) -> 0, then
        # z * (z / z) is NaN for 0, +Inf and NaN and z itself elsewhere (two SIMD passes)
        np.maximum(sub, 0, out=z)
        ones = _scratch.plane('ones', shape, np.float32)
        with np.errstate(invalid='ignore', divide='ignore'):
            np.divide(z, z, out=ones)
        np.multiply(z, ones, out=z)
    else:
        # low <= d <= high (NaN compares false: invalid) keeps d, everything else is NaN
        low, high = valid_range
        valid = cv2.inRange(sub, low, high, dst=_scratch.plane('valid', shape, np.uint8))
        z.fill(np.nan)
        cv2.copyTo(sub, valid, z)
    return z


def depth_to_cloud(depth_m: np.ndarray, rays: np.ndarray, rgb: np.ndarray | None = None,
                   decimation: int = 1, min_range: float | None = None,
                   max_range: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Return an organized point cloud buffer from a depth map and a ray table.

    Point = ray * depth, with rays ``(x/z, y/z, 1)`` from
    :meth:`depth_node.camera.CameraModel.ray_table`, so ``z`` is the depth itself.

    :param depth_m: ``(H, W)`` depth along the optical axis in metres; NaN, +-Inf and <= 0
        are invalid (REP 117).
    :param rays: ``(H, W, 3)`` float32 ray table of the same camera and resolution.
    :param rgb: optional ``(H, W, 3)`` uint8 RGB image aligned with the depth.
    :param decimation: keep every k-th row and column (``depth[::k, ::k]``).
    :param min_range: depths below this (metres) become NaN points.
    :param max_range: depths above this (metres) become NaN points.
    :param out: optional preallocated ``(H', W', 3|4)`` float32 C-contiguous buffer.
    :returns: ``(H', W', 3)`` (xyz) or ``(H', W', 4)`` (xyz + packed rgb) float32; invalid
        points have NaN x, y, z. A torch ``depth_m`` (the GPU path) is processed on its
        device (:func:`depth_node.device.cloud`, same bytes) and the cloud copied once into
        ``out`` (a new host array when None).
    :raises SizeMismatchError: depth, rays and rgb sizes differ.
    """
    on_device = is_torch(depth_m)
    depth = depth_m if on_device else np.asarray(depth_m)
    if depth.ndim != 2 or (depth.numel() if on_device else depth.size) == 0:
        raise ImageFormatError(f'Depth map has shape {tuple(depth.shape)}, expected (H, W) > 0.',
                               'Pass a non-empty single-channel depth map.')
    rays, rgb = _checked_rays_and_rgb(depth, rays, rgb)
    decimation = int(decimation)
    if decimation < 1:
        raise ValueError(f'decimation must be >= 1, got {decimation}')
    channels = 3 if rgb is None else 4
    shape = cloud_shape(depth.shape, decimation)
    if out is not None:
        _check_out(out, shape + (channels,))
    ranged = min_range is not None or max_range is not None
    low = _TINY if min_range is None else max(float(min_range), _TINY)
    high = _HUGE if max_range is None else min(float(max_range), _HUGE)
    if on_device:
        from depth_node import device
        planes = device_ray_planes(rays, depth.device, decimation)
        points = device.cloud(depth, planes, rgb, decimation, *((low, high) if ranged else ()))
        return device.to_host(points, out)
    if out is None:
        out = np.empty(shape + (channels,), np.float32)
    sub = depth[::decimation, ::decimation]
    if sub.dtype != np.float32 or not sub.flags.c_contiguous:
        sub = np.ascontiguousarray(sub, dtype=np.float32)
    z = _valid_depth(sub, shape, (low, high) if ranged else None)
    ray_x, ray_y, ray_z = ray_planes(rays, decimation)
    x = np.multiply(ray_x, z, out=_scratch.plane('x', shape, np.float32))
    y = np.multiply(ray_y, z, out=_scratch.plane('y', shape, np.float32))
    if ray_z is not None:   # NaN rays (or a general ray table): z = ray_z * depth
        np.multiply(ray_z, z, out=z)
    planes = [x, y, z]
    if rgb is not None:
        packed = _pack_rgb(rgb[::decimation, ::decimation],
                           _scratch.plane('rgb', shape, np.uint32))
        planes.append(packed.view(np.float32))
    cv2.merge(planes, dst=out)
    return out


def _check_out(out: np.ndarray, shape: tuple[int, ...]) -> None:
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f'out must be a C-contiguous float32 array of shape {shape}, got '
                         f'{out.dtype} {out.shape}')


def cloud_shape(depth_shape: tuple[int, ...], decimation: int = 1) -> tuple[int, int]:
    """``(H', W')`` of the cloud of a depth map of ``depth_shape`` at a decimation."""
    height, width = int(depth_shape[0]), int(depth_shape[1])
    return len(range(0, height, decimation)), len(range(0, width, decimation))


def cloud_buffer(factory: Any, depth_shape: tuple[int, ...], with_rgb: bool = False,
                 decimation: int = 1) -> tuple[np.ndarray, Any]:
    """Return a new cloud buffer that *is* the message payload, so publishing copies nothing.

    For an rclpy factory the payload is an ``array.array('B')`` (what rclpy stores without
    validation) and the buffer a numpy view of it; for a rosbags factory the payload is the
    buffer's own uint8 view. Fill it with ``depth_to_cloud(..., out=buffer)`` and pass
    ``payload`` to :func:`make_pointcloud2`. Use a fresh pair per message: the message owns
    the payload once published.

    :returns: ``(buffer (H', W', 3|4) float32, payload)``; payload is None for an unknown
        factory (then make_pointcloud2 copies with ``factory.byte_array``).
    """
    channels = 4 if with_rgb else 3
    return payload_array(factory, cloud_shape(depth_shape, decimation) + (channels,),
                         np.float32)


def make_pointcloud2(factory: Any, header: Any, cloud: np.ndarray, payload: Any = None) -> Any:
    """Return a ``sensor_msgs/PointCloud2`` holding an organized cloud buffer.

    :param factory: a :class:`depth_node.messages.MessageFactory`.
    :param header: the header (the depth image's stamp and optical frame_id).
    :param cloud: ``(H, W, 3|4)`` float32 from :func:`depth_to_cloud`, or ``(N, 3|4)``
        (unorganized: height 1).
    :param payload: the payload from :func:`cloud_buffer` that shares ``cloud``'s memory
        (no copy); None copies ``cloud`` with ``factory.byte_array``.
    """
    cloud = np.asarray(cloud)
    if cloud.ndim == 2:
        cloud = cloud[np.newaxis]
    if cloud.ndim != 3 or cloud.shape[2] not in (3, 4) or cloud.dtype != np.float32:
        raise ImageFormatError(
            f'Cloud buffer {cloud.dtype} {cloud.shape} is not (H, W, 3|4) float32.',
            'Build it with depth_to_cloud().')
    height, width, channels = cloud.shape
    point_step = 4 * channels
    if payload is None:
        data = factory.byte_array(cloud)
    elif len(payload) != cloud.nbytes or not np.may_share_memory(
            np.frombuffer(payload, np.uint8), cloud):
        raise ValueError('payload must be the one cloud_buffer() returned with this cloud')
    else:
        data = payload
    fields = [factory.PointField(name=name, offset=offset, datatype=datatype, count=count)
              for name, offset, datatype, count in cloud_fields(channels == 4)]
    return with_payload(
        factory, factory.PointCloud2, data, header=header, height=int(height),
        width=int(width), fields=fields, is_bigendian=_HOST_BIG_ENDIAN,
        point_step=point_step, row_step=int(width * point_step), is_dense=False)


def pointcloud2_dtype(msg: Any) -> np.dtype:
    """Return the structured numpy dtype of one point of a PointCloud2 (padding kept)."""
    names, formats, offsets = [], [], []
    order = '>' if msg.is_bigendian else '<'
    for field in msg.fields:
        base = POINTFIELD_DTYPES.get(int(field.datatype))
        if base is None:
            raise ImageFormatError(
                f'PointField {field.name!r} has unknown datatype {field.datatype}.',
                'Use the sensor_msgs/PointField datatype constants 1..8.')
        base = base.newbyteorder(order)
        count = int(field.count) or 1
        names.append(field.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(field.offset))
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                     'itemsize': int(msg.point_step)})


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """Return a PointCloud2 as an ``(H, W)`` structured array (a view of its data; tests/tools).

    Honours ``row_step`` padding and the declared byte order.

    :raises ImageFormatError: truncated data or inconsistent steps.
    """
    from depth_node.images import message_bytes
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    dtype = pointcloud2_dtype(msg)
    if row_step < width * point_step:
        raise ImageFormatError(
            f'PointCloud2 row_step {row_step} < width x point_step = {width} x {point_step}.',
            'The message header is inconsistent; fix the publisher.')
    data = message_bytes(msg.data)
    if data.size < row_step * height:
        raise ImageFormatError(
            f'PointCloud2 data has {data.size} bytes, row_step x height = {row_step * height}'
            ' are needed: the message is truncated.', 'Check the publisher or the recording.')
    rows = data[:row_step * height].reshape(height, row_step)[:, :width * point_step]
    return rows.view(dtype).reshape(height, width)


def write_ply(path: str | os.PathLike, cloud: np.ndarray) -> None:
    """Write the finite points of a cloud buffer as a binary little-endian PLY file.

    :param path: output file.
    :param cloud: ``(..., 3)`` xyz or ``(..., 4)`` xyz + packed rgb float32 buffer.
    """
    cloud = np.asarray(cloud, dtype=np.float32)
    channels = cloud.shape[-1]
    if channels not in (3, 4):
        raise ImageFormatError(f'Cloud buffer shape {cloud.shape} is not (..., 3|4).',
                               'Build it with depth_to_cloud().')
    points = cloud.reshape(-1, channels)
    points = points[np.isfinite(points[:, :3]).all(axis=1)]
    props = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    if channels == 4:
        props += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
    rows = np.empty(len(points), dtype=props)
    rows['x'], rows['y'], rows['z'] = points[:, 0], points[:, 1], points[:, 2]
    if channels == 4:
        packed = np.ascontiguousarray(points[:, 3]).view(np.uint32)
        rows['red'] = (packed >> 16) & 0xFF
        rows['green'] = (packed >> 8) & 0xFF
        rows['blue'] = packed & 0xFF
    header = ['ply', 'format binary_little_endian 1.0', 'comment written by depth_node',
              f'element vertex {len(points)}']
    header += [f'property float {name}' for name in ('x', 'y', 'z')]
    if channels == 4:
        header += [f'property uchar {name}' for name in ('red', 'green', 'blue')]
    header.append('end_header')
    with open(path, 'wb') as handle:
        handle.write(('\n'.join(header) + '\n').encode('ascii'))
        handle.write(rows.tobytes())
