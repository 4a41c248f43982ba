"""``depth-node bench``: the benchmarks, each in its own module.

``bench core`` (:mod:`depth_node.tools.bench_core`: decoding, clouds, messages, depth
encoding), ``bench model`` (:mod:`depth_node.tools.bench_model`: one network on one backend)
and ``bench node`` (:mod:`depth_node.tools.bench_node`: the node on a real ROS 2 graph).
"""

from __future__ import annotations

import argparse
from typing import Any

from depth_node import parameters
from depth_node.errors import BackendUnavailableError, DepthNodeError
from depth_node.tools.arguments import parse_resolution


def _model_unavailable(reason: str):
    def run(args: argparse.Namespace) -> int:
        raise BackendUnavailableError(f'`depth-node bench model` is not available: {reason}',
                                      'Install the model extras of depth_node.')
    return run


def add_parser(subparsers: Any) -> None:
    """Add the ``bench`` subcommand (with ``core`` and ``model``) to the ``depth-node`` CLI."""
    parser = subparsers.add_parser('bench', help='measure per-stage timings',
                                   description='Measure per-stage timings.')
    from depth_node.tools import bench_core
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    benches = parser.add_subparsers(dest='bench_command', metavar='BENCH')

    core = benches.add_parser(
        'core', help='decode / point cloud / message / depth encoding timings',
        description='Median per-stage milliseconds of the ROS-free core on a synthetic frame.')
    core.add_argument('--resolution', type=parse_resolution, default=(640, 480),
                      metavar='WxH', help='image size (default 640x480)')
    core.add_argument('--fields', choices=parameters.choices('point_cloud_fields'),
                      default=parameters.default('point_cloud_fields'),
                      help='point cloud fields (default xyz)')
    core.add_argument('--repeat', type=int, default=200,
                      help='timed repetitions per stage (default 200)')
    core.add_argument('--decimation', type=int, default=1,
                      help='point cloud decimation (default 1)')
    core.add_argument('--depth-encoding', choices=parameters.choices('output_encoding'),
                      default=parameters.default('output_encoding'),
                      help='depth image encoding for depth_encode_ms (default 32FC1)')
    core.add_argument('--json', action='store_true', help='print one JSON object')
    core.set_defaults(func=bench_core.run_core)

    node = benches.add_parser(
        'node', help='the node on a real ROS 2 graph: latency, overhead vs a plain relay',
        description='Start the node in its own process on an isolated ROS 2 graph and measure '
                    'input stamp to depth/image latency against a plain rclpy relay.')
    from depth_node.tools import bench_cameras, bench_node
    bench_node.add_arguments(node)
    node.set_defaults(func=bench_cameras.run)

    model = benches.add_parser('model', help='model preprocessing / inference timings')
    try:
        from depth_node.tools import bench_model as model_bench
    except (ImportError, DepthNodeError) as exc:
        model.set_defaults(func=_model_unavailable(str(exc)))
    else:
        model_bench.add_arguments(model)
        model.set_defaults(func=model_bench.run_model_bench)
