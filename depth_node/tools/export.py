"""``depth-node export``: the command line of :mod:`depth_node.models.export`."""

from __future__ import annotations

import argparse
import contextlib
import sys

from depth_node.errors import ModelError
from depth_node.models import zoo
from depth_node.models.card import card_path_for
from depth_node.models.export import DEFAULT_OPSET, DEFAULT_TOLERANCE, export_model, MIN_OPSET
from depth_node.tools.arguments import HelpFormatter


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_parser(subparsers) -> None:
    """Add the ``export`` subcommand."""
    names = ', '.join(zoo.ZOO)
    parser = subparsers.add_parser(
        'export', help='export a depth network to ONNX with its card',
        description='Export a depth network (zoo short name, Hugging Face hub id or local '
                    'transformers checkpoint) to a static-shape ONNX file plus its model card, '
                    'verified against PyTorch. Short names: ' + names + '.',
        formatter_class=HelpFormatter)
    parser.add_argument('model', nargs='?', metavar='MODEL',
                        help='zoo short name, hub id (owner/name) or checkpoint directory')
    parser.add_argument('--output', '-o', metavar='FILE.onnx',
                        help='ONNX file to write; the card goes beside it (FILE.card.yaml)')
    parser.add_argument('--input-size', metavar='WIDTHxHEIGHT', default=None,
                        help='network input size (multiple of 14 for DINOv2/Depth Anything, of '
                             "32 for DPT and ZoeDepth); default: the model's own")
    parser.add_argument('--random-weights', action='store_true',
                        help='seeded random weights, same architecture, no download (for '
                             'benchmarks and tests)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset (>= {MIN_OPSET})')
    parser.add_argument('--exporter', choices=('auto', 'torchscript', 'dynamo'), default='auto',
                        help='torch ONNX exporter')
    parser.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE,
                        help='allowed ONNX Runtime vs PyTorch max abs difference, relative to '
                             'max(1, |output|)')
    parser.add_argument('--no-verify', dest='verify', action='store_false',
                        help='skip the ONNX Runtime vs PyTorch comparison')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='give input and output a batch axis, so one network call runs '
                             'the frames of several cameras (node parameter cameras, '
                             'depth-node bag with several image topics)')
    parser.add_argument('--list', action='store_true', help='list the zoo and exit')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``depth-node export``; returns the exit status."""
    if args.list:
        for entry in zoo.list_models():
            width, height = entry.default_size
            print(f'{entry.name:40s} {width}x{height}  {entry.hub_id}\n    {entry.description}'
                  f"; licence {entry.card.get('license', '?')}")
        return 0
    if not args.model or not args.output:
        raise ModelError('export needs MODEL and --output FILE.onnx.',
                         'Example: depth-node export depth-anything-v2-small --output '
                         'da2s.onnx --input-size 518x392 (see --list for the names).')
    with contextlib.redirect_stdout(sys.stderr):
        path, card = export_model(args.model, args.output, args.input_size,
                                  args.random_weights, args.opset, log=_stderr,
                                  verify=args.verify, tolerance=args.tolerance,
                                  exporter=args.exporter, dynamic_batch=args.dynamic_batch)
    print(f'{path}\n{card_path_for(path)}')
    return 0
