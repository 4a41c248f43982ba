"""The output stages on torch tensors (the GPU path), and copies into message payloads.

The pipeline passes numpy arrays *or* torch tensors through the same functions:
:func:`depth_node.clouds.depth_to_cloud`, :func:`depth_node.images.encode_depth`,
:func:`depth_node.images.colorize_depth` and :func:`depth_node.images.make_image` hand a
tensor to the functions here, which compute on the tensor's device (CUDA, or the CPU in tests)
with the same float32 operations as the numpy code, so both give the same bytes. The only
device-to-host copy of a published result goes straight into its message payload
(:func:`payload_array`, :func:`to_host`). Ray tables go to the device once per camera and
decimation (:func:`depth_node.clouds.device_ray_planes`). torch is imported only when a
tensor arrives.
"""

from __future__ import annotations

import array
import math
from typing import Any
import warnings

from depth_node.messages import numpy_byte_array, rclpy_byte_array
import numpy as np

_LUTS: dict[tuple[str, str], Any] = {}


def is_torch(x: Any) -> bool:
    """Return whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.split('.')[0] == 'torch'


def float32_of(x: Any) -> Any:
    """Return ``x`` as a C-contiguous float32 array or tensor (no copy when it already is)."""
    if is_torch(x):
        import torch
        return x.to(torch.float32).contiguous()
    return np.ascontiguousarray(x, dtype=np.float32)


def reciprocal(x: Any) -> Any:
    """Return ``1 / x`` as a new float32 array or tensor (1/0 = Inf, no warnings)."""
    if is_torch(x):
        import torch
        return torch.reciprocal(x.to(torch.float32))
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.reciprocal(x, dtype=np.float32)


def payload_array(factory: Any, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, Any]:
    """Return a new host array that *is* a message payload, and that payload.

    rclpy factories get an ``array.array('B')`` payload (what rclpy stores without validation)
    and a numpy view of it; rosbags factories a numpy array and its uint8 view. Fill the array
    (e.g. with :func:`to_host`) and put the payload into the message: no copy on publish.

    :returns: ``(array, payload)``; payload is None for an unknown factory (then wrap the
        array with ``factory.byte_array``, one copy).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if factory.byte_array is rclpy_byte_array:
        payload = array.array('B', b'\0') * nbytes     # malloc + memset, no Python loop
        return np.frombuffer(payload, dtype).reshape(shape), payload
    out = np.empty(shape, dtype)
    if factory.byte_array is numpy_byte_array:
        return out, numpy_byte_array(out)
    return out, None


def host_array(array: Any) -> np.ndarray:
    """Return ``array`` as a numpy array: as it is if it is one, else copied from its device."""
    return array if isinstance(array, np.ndarray) else to_host(array)


def to_host(tensor: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Copy a tensor into the host array ``out`` (one copy) and return it.

    :param out: a writeable C-contiguous array of the tensor's shape and dtype; None returns
        a new array.
    """
    import torch
    tensor = tensor.detach()
    if out is None:
        return tensor.contiguous().cpu().numpy()
    torch.from_numpy(out).copy_(tensor)
    return out


def _on_device(x: Any, device: Any) -> Any:
    """Return ``x`` (numpy or tensor) as a tensor on ``device`` (only read afterwards)."""
    import torch
    if is_torch(x):
        return x.to(device, non_blocking=True)
    with warnings.catch_warnings():   # a read-only array (a message view) is only read
        warnings.simplefilter('ignore', UserWarning)
        return torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)


def cloud(depth: Any, ray_planes: tuple[Any, Any, Any], rgb: Any = None, decimation: int = 1,
          low: float | None = None, high: float | None = None) -> Any:
    """Build the organized cloud of :func:`depth_node.clouds.depth_to_cloud` on the device.

    ``ray_planes`` are the decimated x/z, y/z (and z or None) planes on the depth's device
    (:func:`depth_node.clouds.device_ray_planes`).
    Same float32 operations as the numpy path (bit-identical results). Arguments are
    checked by the caller; ``low``/``high`` are the inclusive valid range (None = finite and
    > 0).

    :returns: ``(H', W', 3|4)`` float32 tensor on the depth's device.
    """
    import torch
    nan = float('nan')
    sub = depth[::decimation, ::decimation].to(torch.float32)
    if low is None:
        z = torch.clamp(sub, min=0.0)   # negatives and -Inf -> 0; NaN stays NaN
        z = z * (z / z)                 # 0, +Inf, NaN -> NaN
    else:
        z = torch.where((sub >= low) & (sub <= high), sub, nan)
    ray_x, ray_y, ray_z = ray_planes
    planes = [ray_x * z, ray_y * z, z if ray_z is None else ray_z * z]
    if rgb is not None:
        colour = _on_device(rgb, depth.device)[::decimation, ::decimation].to(torch.int32)
        packed = (colour[..., 0] << 16) | (colour[..., 1] << 8) | colour[..., 2]
        planes.append(packed.view(torch.float32))
    return torch.stack(planes, dim=-1)


def encode_depth(depth: Any, encoding: str, tiny: float, huge: float) -> Any:
    """REP 118 encoding of :func:`depth_node.images.encode_depth` on the depth's device.

    ``32FC1``: contiguous float32. ``16UC1``: uint16 millimetres, 0 = invalid (not in
    [``tiny``, ``huge``]), valid values clipped to 1..65535 and rounded to nearest like
    OpenCV's saturating conversion (which scales in float64).
    """
    import torch
    depth = depth.to(torch.float32)
    if encoding == '32FC1':
        return depth.contiguous()
    valid = (depth >= tiny) & (depth <= huge)
    millimetres = torch.round(depth.clamp(0.001, 65.535).to(torch.float64) * 1000.0)
    return torch.where(valid, millimetres, 0.0).to(torch.int32).to(torch.uint16)


def _colormap_lut(name: str, code: int, device: Any) -> Any:
    """(256, 3) uint8 RGB lookup table of an OpenCV colormap, cached per device."""
    key = (name, str(device))
    lut = _LUTS.get(key)
    if lut is None:
        import cv2
        import torch
        bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), code)
        rgb = np.ascontiguousarray(bgr[:, 0, ::-1])
        lut = _LUTS[key] = torch.from_numpy(rgb).to(device)
    return lut


def colorize(depth: Any, min_depth: float | None, max_depth: float | None, name: str,
             code: int) -> Any:
    """Colour a depth map like :func:`depth_node.images.colorize_depth`, on its device.

    The automatic range takes the 2nd/98th percentiles of the same strided sample with
    ``np.percentile`` (only the sample leaves the device), so both paths pick the same range.

    :returns: ``(H, W, 3)`` uint8 RGB tensor.
    """
    import torch
    depth = depth.to(torch.float32)
    valid = (depth > 0) & (depth < math.inf)
    out = torch.zeros(tuple(depth.shape) + (3,), dtype=torch.uint8, device=depth.device)
    if not bool(valid.any()):
        return out
    if not min_depth and not max_depth:
        min_depth = max_depth = None
    if min_depth is None or max_depth is None:
        step = max(1, int(np.sqrt(depth.numel() / 65536)))
        sample = depth[::step, ::step][valid[::step, ::step]]
        if sample.numel() == 0:
            sample = depth[valid]
        lo, hi = np.percentile(to_host(sample), [2.0, 98.0])
        min_depth = float(lo) if min_depth is None else min_depth
        max_depth = float(hi) if max_depth is None else max_depth
    span = max(float(max_depth) - float(min_depth), 1e-6)
    # the same float32 arithmetic as the numpy path: scalars rounded to float32 first
    level = (float(np.float32(max_depth)) - depth) * float(np.float32(255.0 / span))
    level = torch.where(valid, level.clamp(0, 255), 0.0).to(torch.uint8)
    colour = _colormap_lut(name, code, depth.device)[level.long()]
    return torch.where(valid[..., None], colour, out)
