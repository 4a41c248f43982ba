"""``depth-node build-engine``: the command line of :mod:`depth_node.models.engine`."""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from depth_node.errors import EngineError, ModelError
from depth_node.models.engine import (
    cache_decision,
    compute_key,
    default_engine_path,
    DEFAULT_PRECISION,
    DEFAULT_WORKSPACE_MIB,
    engine_input_shapes,
    ENGINE_SUFFIXES,
    ensure_engine,
    PRECISIONS,
)
from depth_node.tools.arguments import HelpFormatter


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_parser(subparsers) -> None:
    """Add the ``build-engine`` subcommand."""
    parser = subparsers.add_parser(
        'build-engine', help='build a TensorRT engine from an ONNX file',
        description='Build a TensorRT engine from an ONNX file (export one with depth-node '
                    'export). The engine is cached: a key file <engine>.json records the ONNX '
                    'sha256, TensorRT version, GPU, precision and input shape, and a matching '
                    'engine is reused instead of rebuilt.',
        formatter_class=HelpFormatter)
    parser.add_argument('onnx', metavar='FILE.onnx', help='the ONNX model (static shape)')
    parser.add_argument('--output', '-o', metavar='FILE.engine', default=None,
                        help='engine to write (default: beside the ONNX file, '
                             'MODEL.PRECISION.engine, where the node looks for it)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--precision', choices=PRECISIONS, default=DEFAULT_PRECISION,
                       help="compute precision (the node's default is the same)")
    group.add_argument('--fp16', dest='precision', action='store_const', const='fp16',
                       help='same as --precision fp16')
    group.add_argument('--fp32', dest='precision', action='store_const', const='fp32',
                       help='same as --precision fp32')
    parser.add_argument('--workspace', type=int, default=DEFAULT_WORKSPACE_MIB, metavar='MiB',
                        help='workspace memory pool limit')
    parser.add_argument('--timing-cache', metavar='PATH', default=None,
                        help='timing cache file (read if present, written after the build)')
    parser.add_argument('--fp32-layers', choices=('auto', 'none'), default='auto',
                        help='auto: keep normalisation/softmax/reduce layers in FP32 in FP16 '
                             'engines (ViT accuracy); none: let TensorRT choose')
    parser.add_argument('--max-batch', type=int, default=1, metavar='N',
                        help='ONNX file with a batch axis (export --dynamic-batch): the largest '
                             'batch the engine takes, e.g. the number of cameras of the node '
                             '(default 1)')
    parser.add_argument('--force', action='store_true',
                        help='rebuild even when a matching engine exists')
    parser.add_argument('--check', action='store_true',
                        help='only report whether the cached engine matches; exit 1 if not')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``depth-node build-engine``; returns the exit status."""
    onnx_path = Path(args.onnx).expanduser()
    if onnx_path.suffix.lower() in ENGINE_SUFFIXES:
        raise ModelError(f'{onnx_path} is already an engine.',
                         'Give the ONNX file it was built from.')
    engine = (Path(args.output).expanduser() if args.output
              else default_engine_path(onnx_path, None, args.precision))
    if engine.suffix.lower() not in ENGINE_SUFFIXES:
        raise ModelError(f'Engine output {engine} should end in .engine (or .plan/.trt).',
                         'Name it like model.engine.')
    if args.check:
        if not onnx_path.is_file():
            raise EngineError(f'ONNX file {onnx_path} does not exist.', 'Check the path.')
        key = compute_key(onnx_path, args.precision,
                          input_shapes=engine_input_shapes(onnx_path, args.max_batch))
        action, reasons = cache_decision(engine, key)
        print(f'{engine}: ' + ('up to date' if action == 'use' else '; '.join(reasons)))
        return 0 if action == 'use' else 1
    path, key = ensure_engine(onnx_path, engine, precision=args.precision,
                              max_batch=max(1, args.max_batch),
                              workspace_mib=args.workspace, timing_cache=args.timing_cache,
                              force=args.force, fp32_layers=args.fp32_layers, log=_stderr)
    print(path)
    return 0
