"""``depth-node bench``: per-stage timings of the ROS-free core and of the models.

``depth-node bench core --resolution 640x480 --json`` times, on a synthetic depth map and
image, what a node pays per frame outside the network: decoding an ``rgb8`` Image, building
the organized cloud buffer, wrapping it in a PointCloud2 the way an rclpy node must
(``array.array('B')``), and encoding the depth image; next to a plain memory copy of the same
number of bytes as the cloud, measured in the same run. ``bench model`` is provided by
:mod:`depth_node.models.bench`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from types import SimpleNamespace
from typing import Any

from depth_node.clouds import cloud_buffer, depth_to_cloud, make_pointcloud2
from depth_node.errors import BackendUnavailableError, DepthNodeError
from depth_node.images import image_to_rgb, make_depth_image
from depth_node.messages import MessageFactory, rclpy_byte_array, rclpy_float64_array
import numpy as np


class _Message(SimpleNamespace):
    """A stand-in message class: keyword construction and attribute fields, like rclpy's."""


def rclpy_like_factory() -> MessageFactory:
    """Return a factory with rclpy's payload representation (``array.array``) but no ROS import.

    Building messages with it costs what a real rclpy node pays for the payload copy.
    """
    return MessageFactory(
        Header=_Message, Time=_Message, Image=_Message, CompressedImage=_Message,
        CameraInfo=_Message, RegionOfInterest=_Message, PointCloud2=_Message,
        PointField=_Message, byte_array=rclpy_byte_array, float64_array=rclpy_float64_array)


def parse_resolution(text: str) -> tuple[int, int]:
    """``'640x480'`` -> ``(640, 480)``."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'resolution {text!r} is not WIDTHxHEIGHT, e.g. 640x480') from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f'resolution {text!r} must be positive')
    return width, height


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
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f'{key:>16}: {value}')
    return 0


def _model_unavailable(reason: str):
    def run(args: argparse.Namespace) -> int:
        raise BackendUnavailableError(f'`depth-node bench model` is not available: {reason}',
                                      'Install the model extras of depth_node.')
    return run


def add_parser(subparsers: Any) -> None:
    """Add the ``bench`` subcommand (with ``core`` and ``model``) to the ``depth-node`` CLI."""
    parser = subparsers.add_parser('bench', help='measure per-stage timings',
                                   description='Measure per-stage timings.')
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    benches = parser.add_subparsers(dest='bench_command', metavar='BENCH')

    core = benches.add_parser(
        'core', help='decode / point cloud / message / depth encoding timings',
        description='Median per-stage milliseconds of the ROS-free core on a synthetic frame.')
    core.add_argument('--resolution', type=parse_resolution, default=(640, 480),
                      metavar='WxH', help='image size (default 640x480)')
    core.add_argument('--fields', choices=('xyz', 'xyzrgb'), default='xyz',
                      help='point cloud fields (default xyz)')
    core.add_argument('--repeat', type=int, default=200,
                      help='timed repetitions per stage (default 200)')
    core.add_argument('--decimation', type=int, default=1,
                      help='point cloud decimation (default 1)')
    core.add_argument('--depth-encoding', choices=('32FC1', '16UC1'), default='32FC1',
                      help='depth image encoding for depth_encode_ms (default 32FC1)')
    core.add_argument('--json', action='store_true', help='print one JSON object')
    core.set_defaults(func=run_core)

    node = benches.add_parser(
        'node', help='the node on a real ROS 2 graph: latency, overhead vs a plain relay',
        description='Start the node in its own process on an isolated ROS 2 graph and measure '
                    'input stamp to depth/image latency against a plain rclpy relay.')
    from depth_node import bench_node
    bench_node.add_arguments(node)
    node.set_defaults(func=bench_node.run)

    model = benches.add_parser('model', help='model preprocessing / inference timings')
    try:
        from depth_node.models import bench as model_bench
    except (ImportError, DepthNodeError) as exc:
        model.set_defaults(func=_model_unavailable(str(exc)))
    else:
        model_bench.add_arguments(model)
        model.set_defaults(func=model_bench.run_model_bench)
