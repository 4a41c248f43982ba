"""The ``depth-node`` command: tools that share the node's ROS-free pipeline.

Subcommands: ``bag`` (offline processing of recorded bags, images and videos), ``export``
(ONNX export of depth networks with their model card), ``build-engine`` (TensorRT engines),
``evaluate`` (depth metrics against ground truth), ``bench`` (per-stage timings) and
``check-gpu`` (the GPU path measured, one JSON object).
Each subcommand lives in its own module, imported only when the command line asks for it, so
``depth-node --help`` needs neither torch nor TensorRT nor rosbags.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from depth_node import __version__
from depth_node.errors import DepthNodeError

# subcommand -> (module, one-line help); each module provides add_parser(subparsers)
SUBCOMMANDS = {
    'bag': ('depth_node.bag', 'add depth images and point clouds to a recorded bag'),
    'export': ('depth_node.tools.export', 'export a depth network to ONNX with its card'),
    'build-engine': ('depth_node.tools.build_engine', 'build a TensorRT engine from an ONNX file'),
    'evaluate': ('depth_node.evaluate', 'compare predicted depth with ground truth'),
    'bench': ('depth_node.tools.bench', 'measure per-stage timings'),
    'check-gpu': ('depth_node.tools.check_gpu', 'measure the GPU path (one JSON object)'),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Return the argument parser; only the subcommand named in ``argv`` is imported."""
    parser = argparse.ArgumentParser(
        prog='depth-node',
        description='Monocular metric depth tools (the ROS 2 node itself is `depth_node`).')
    parser.add_argument('--version', action='version', version=f'depth_node {__version__}')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    chosen = next((a for a in (argv or []) if not a.startswith('-')), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``depth-node``; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, 'func', None)
    if func is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(func(args) or 0)
    except DepthNodeError as exc:
        print(f'depth-node {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:   # Ctrl-C, or SIGTERM/SIGHUP where a tool turns them so
        name = getattr(exc, 'signal_name', 'SIGINT')
        print(f'depth-node {args.command}: interrupted ({name})', file=sys.stderr)
        return 128 + int(getattr(signal, name, signal.SIGINT))


if __name__ == '__main__':
    sys.exit(main())
