"""``depth-node bench core``: per-stage timings of the ROS-free core.

``depth-node bench core --resolution 640x480 --json`` times, on a synthetic depth map and
image, what a node pays per frame outside the network: decoding an ``rgb8`` Image, building
the organized cloud buffer, wrapping it in a PointCloud2 the way an rclpy node must
(``array.array('B')``), and encoding the depth image; next to a plain memory copy of the same
number of bytes as the cloud, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from depth_node.clouds import cloud_buffer, depth_to_cloud, make_pointcloud2
from depth_node.images import image_to_rgb, make_depth_image
from depth_node.messages import rclpy_byte_array, rclpy_like_factory
from depth_node.tools.arguments import print_figures
import numpy as np


def synthetic_frame(width: int, height: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return a synthetic ``(depth_m, rays, rgb)``: a tilted plane with noise and invalid pixels.

    About 5 % of the depth is NaN, 2 % zero and 1 % +Inf, as a real metric output has. The
    rays are a read-only pinhole table (fx = fy = 0.8 * width, principal point at the centre),
    like :meth:`depth_node.camera.CameraModel.ray_table` returns.
    """
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = (1.0 + 3.0 * v / max(height - 1, 1) + 0.01 * rng.standard_normal(
        (height, width))).astype(np.float32)
    marks = rng.random((height, width))
    depth[marks < 0.05] = np.nan
    depth[(marks >= 0.05) & (marks < 0.07)] = 0.0
    depth[(marks >= 0.07) & (marks < 0.08)] = np.inf
    focal = 0.8 * width
    rays = np.empty((height, width, 3), np.float32)
    rays[..., 0] = (u - (width - 1) / 2) / focal
    rays[..., 1] = (v - (height - 1) / 2) / focal
    rays[..., 2] = 1.0
    rays.flags.writeable = False
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return depth, rays, rgb


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def run_core_bench(width: int, height: int, fields: str = 'xyz', repeat: int = 200,
                   decimation: int = 1, depth_encoding: str = '32FC1') -> dict[str, Any]:
    """Median milliseconds per core stage at one resolution (see the module docstring).

    :returns: a dict with ``decode_ms``, ``cloud_ms``, ``message_ms``, ``depth_encode_ms``,
        ``memcpy_ms``, ``cloud_ratio`` = (cloud_ms + message_ms) / memcpy_ms, the settings,
        and ``cloud_direct_ms`` / ``cloud_direct_ratio``: buffer allocation + cloud +
        message when the cloud is built inside the message payload
        (:func:`depth_node.clouds.cloud_buffer`), so no copy is left.
    """
    factory = rclpy_like_factory()
    header = factory.header(1_700_000_000, 0, 'camera_optical_frame')
    depth, rays, rgb = synthetic_frame(width, height)
    with_rgb = fields == 'xyzrgb'
    image_msg = factory.Image(header=header, height=height, width=width, encoding='rgb8',
                              is_bigendian=0, step=width * 3, data=rclpy_byte_array(rgb))
    channels = 4 if with_rgb else 3
    out_h = len(range(0, height, decimation))
    out_w = len(range(0, width, decimation))
    cloud = np.empty((out_h, out_w, channels), np.float32)
    cloud_bytes = cloud.nbytes
    src = np.ones(cloud_bytes, np.uint8)
    dst = np.empty_like(src)

    names = ('decode', 'cloud', 'message', 'depth_encode', 'memcpy', 'cloud_direct')
    stages: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for index in range(repeat + max(3, repeat // 20)):   # the first few are warm-up
        t0 = clock()
        colour = np.ascontiguousarray(image_to_rgb(image_msg))
        t1 = clock()
        depth_to_cloud(depth, rays, colour if with_rgb else None, decimation=decimation,
                       out=cloud)
        t2 = clock()
        make_pointcloud2(factory, header, cloud)
        t3 = clock()
        make_depth_image(factory, header, depth, depth_encoding)
        t4 = clock()
        np.copyto(dst, src)
        t5 = clock()
        # the zero-copy variant: the cloud is written straight into the message's payload
        buffer, payload = cloud_buffer(factory, depth.shape, with_rgb, decimation)
        depth_to_cloud(depth, rays, colour if with_rgb else None, decimation=decimation,
                       out=buffer)
        make_pointcloud2(factory, header, buffer, payload)
        t6 = clock()
        if index >= max(3, repeat // 20):
            for name, (start, end) in zip(names, ((t0, t1), (t1, t2), (t2, t3), (t3, t4),
                                                  (t4, t5), (t5, t6))):
                stages[name].append(end - start)
    result: dict[str, Any] = {
        'resolution': f'{width}x{height}', 'fields': fields, 'decimation': decimation,
        'depth_encoding': depth_encoding, 'repeat': repeat, 'cloud_bytes': cloud_bytes,
    }
    for name, samples in stages.items():
        result[f'{name}_ms'] = round(_median_ms(samples), 4)
    memcpy = max(result['memcpy_ms'], 1e-6)
    result['cloud_ratio'] = round((result['cloud_ms'] + result['message_ms']) / memcpy, 3)
    result['cloud_direct_ratio'] = round(result['cloud_direct_ms'] / memcpy, 3)
    return result


def run_core(args: argparse.Namespace) -> int:
    """``depth-node bench core``: print the stage timings (one JSON object with --json)."""
    width, height = args.resolution
    result = run_core_bench(width, height, fields=args.fields, repeat=args.repeat,
                            decimation=args.decimation, depth_encoding=args.depth_encoding)
    print_figures(result, args.json, key_width=16)
    return 0
