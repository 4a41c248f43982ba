"""``depth-node bench model``: per-stage timings of one depth network on one backend.

Prints the medians of ``preprocess_ms``, ``inference_ms``, ``postprocess_ms``, ``total_ms``
(the whole :meth:`DepthModel.predict` call) and ``overhead_ms = total_ms - inference_ms`` over
``--repeat`` frames after ``--warmup`` frames, as a table or as JSON (``--json``).

``--batch N`` (N cameras through one model) also times rounds of N different images: one
:meth:`DepthModel.predict_batch` call (one batched network call when the model has a batch
axis) against N separate ``predict`` calls, and reports the median round time of both, the
per-camera frame time (round / N) and their ratio ``batched_over_separate``; both run on the
one loaded model instance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import cv2
from depth_node import parameters
from depth_node.backends import BACKENDS
from depth_node.errors import DepthNodeError, InputError
from depth_node.parameters import card_overrides
from depth_node.tools.arguments import add_card_arguments, parse_resolution
import numpy as np

STAGES = ('preprocess_ms', 'inference_ms', 'postprocess_ms', 'total_ms', 'overhead_ms')


def _positive(text: str) -> int:
    try:
        value = int(text)
        if value < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number >= 1') from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``bench model`` (and the card override flags) to ``parser``."""
    parser.add_argument('--model', required=True,
                        help='model: .onnx or .engine file (torch backend: zoo name, hub id, '
                             'checkpoint folder or TorchScript file)')
    parser.add_argument('--backend', default=parameters.default('backend'), choices=BACKENDS,
                        help='inference backend (default: auto, logs which and why)')
    parser.add_argument('--resolution', type=parse_resolution, default=(640, 480), metavar='WxH',
                        help='camera image size (default 640x480)')
    parser.add_argument('--repeat', type=int, default=30, help='timed frames (default 30)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed frames first (default 3)')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--batch', type=_positive, default=1, metavar='N',
                        help='also time rounds of N cameras: one batched call vs N separate '
                             'calls (default 1: single frames only)')
    parser.add_argument('--image', default=None,
                        help='image file to use, resized to --resolution (default: a '
                             'deterministic synthetic image)')
    parser.add_argument('--precision', choices=parameters.choices('precision'),
                        default=parameters.default('precision'),
                        help='GPU precision (TensorRT, ORT TensorRT provider, torch on CUDA)')
    parser.add_argument('--engine-cache-dir', default=None, help='TensorRT engine cache folder')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads for onnxruntime/torch (default: all usable cores)')
    parser.add_argument('--random-weights', action='store_true',
                        help='torch backend with a zoo name: random weights (no download)')
    parser.add_argument('--no-self-test', dest='self_test', action='store_false',
                        help='skip the golden self-test')
    add_card_arguments(parser)
    parser.set_defaults(func=run_model_bench)


def _image(args: argparse.Namespace) -> np.ndarray:
    w, h = args.resolution
    if args.image:
        bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f'Cannot read the image {args.image}.', 'Give a PNG or JPEG file.')
        return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (w, h),
                          interpolation=cv2.INTER_AREA)
    from depth_node.models.golden import reference_image
    return reference_image({'kind': 'smooth', 'seed': 1}, w, h)


def measure(model: Any, rgb: np.ndarray, repeat: int, warmup: int) -> dict[str, Any]:
    """Run ``model.predict`` and return per-stage medians (and total p90) in milliseconds."""
    for _ in range(max(0, warmup)):
        model.predict(rgb)
    rows: dict[str, list[float]] = {k: [] for k in STAGES}
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        _, _, timings = model.predict(rgb)
        total = (time.perf_counter() - t0) * 1e3
        for k in ('preprocess_ms', 'inference_ms', 'postprocess_ms'):
            rows[k].append(timings[k])
        rows['total_ms'].append(total)
        rows['overhead_ms'].append(total - timings['inference_ms'])
    out: dict[str, Any] = {k: round(statistics.median(v), 3) for k, v in rows.items()}
    totals = sorted(rows['total_ms'])
    out['total_p90_ms'] = round(totals[min(len(totals) - 1, int(0.9 * len(totals)))], 3)
    out['fps'] = round(1e3 / out['total_ms'], 2) if out['total_ms'] > 0 else None
    return out


def measure_batch(model: Any, images: list[np.ndarray], repeat: int, warmup: int
                  ) -> dict[str, Any]:
    """Time rounds of ``len(images)`` cameras: one ``predict_batch`` vs separate ``predict`` calls.

    The two kinds of round alternate, so a change of machine load affects both alike.
    :returns: median round times, per-camera frame times, their ratio, and what ran.
    """
    n = len(images)
    for _ in range(max(0, warmup)):
        model.predict_batch(images)
        for rgb in images:
            model.predict(rgb)
    batched: list[float] = []
    separate: list[float] = []
    inference: list[float] = []
    calls = 0.0
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        _, timings = model.predict_batch(images)
        t1 = time.perf_counter()
        for rgb in images:
            model.predict(rgb)
        t2 = time.perf_counter()
        batched.append((t1 - t0) * 1e3)
        separate.append((t2 - t1) * 1e3)
        inference.append(timings['inference_ms'])
        calls = timings['model_calls']
    b, s = statistics.median(batched), statistics.median(separate)
    return {'batch': n, 'model_calls_per_round': int(calls),
            'batched_round_ms': round(b, 3), 'separate_round_ms': round(s, 3),
            'batched_per_camera_ms': round(b / n, 3), 'separate_per_camera_ms': round(s / n, 3),
            'batched_inference_ms': round(statistics.median(inference), 3),
            'batched_over_separate': round(b / s, 3) if s > 0 else None,
            'model_instances': 1}


def _batch_images(first: np.ndarray, n: int) -> list[np.ndarray]:
    """``first`` and n - 1 other deterministic images of its size (different cameras)."""
    from depth_node.models.golden import reference_image
    h, w = first.shape[:2]
    return [first] + [reference_image({'kind': 'smooth', 'seed': 2 + i}, w, h)
                      for i in range(n - 1)]


def run_model_bench(args: argparse.Namespace) -> int:
    """Benchmark one model; prints a table or JSON. Returns the exit status."""
    from depth_node.runner import open_model
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    options: dict[str, Any] = {'precision': args.precision, 'self_test': args.self_test,
                               'engine_cache_dir': args.engine_cache_dir}
    if args.threads:
        options.update(intra_op_threads=args.threads, threads=args.threads)
    if args.random_weights:
        options['random_weights'] = True
    model = open_model(args.model, card_overrides(args), args.backend,
                       card_path=getattr(args, 'card_path', None), log=log, **options)
    try:
        rgb = _image(args)
        stats = measure(model, rgb, args.repeat, args.warmup)
        if args.batch > 1:
            stats.update(measure_batch(model, _batch_images(rgb, args.batch), args.repeat,
                                       args.warmup))
    except DepthNodeError:
        model.close()
        raise
    result = {'model': str(args.model), **model.info(),
              'resolution': f'{rgb.shape[1]}x{rgb.shape[0]}', 'repeat': args.repeat,
              'warmup': args.warmup, **stats}
    model.close()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']}: {result['backend']} on {result['device']} "
              f"({result['precision']}), image {result['resolution']} -> network "
              f"{result['network_size']}, median of {args.repeat} frames")
        for k in STAGES + ('total_p90_ms',):
            print(f'  {k:<16}{stats[k]:10.3f}')
        print(f"  {'fps':<16}{stats['fps']:10.2f}")
        if args.batch > 1:
            n = args.batch
            print(f"rounds of {n} cameras ({stats['model_calls_per_round']} network call(s) "
                  f"per batched round, max_batch {result.get('max_batch', '?')}, one model "
                  'instance):')
            for k in ('batched_round_ms', 'separate_round_ms', 'batched_per_camera_ms',
                      'separate_per_camera_ms', 'batched_inference_ms',
                      'batched_over_separate'):
                print(f'  {k:<24}{stats[k]:10.3f}')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m depth_node.tools.bench_model``)."""
    parser = argparse.ArgumentParser(prog='depth-node bench model', description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_model_bench(args)
    except DepthNodeError as exc:
        print(f'depth-node bench model: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
