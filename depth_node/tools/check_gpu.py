"""``depth-node check-gpu``: the GPU path measured, in one prepared command.

Builds Depth Anything V2 Small with seeded random weights on the machine itself (transformers,
through the model zoo: no download; no ONNX file is written since the torch backend runs the
module), makes its golden reference on the CPU in fp32 and self-tests every backend on its
device, then runs the node's own pipeline (:class:`~depth_node.pipeline.DepthPipeline`: an
``rgb8`` Image and a distorted camera_info in, depth/image, depth/camera_info, points and
depth/colorized out) on the GPU path (torch tensors on the device from preprocessing to the
payload copies) and prints ONE JSON object::

    {"device": ..., "fp32": {"640x480@518x518": {...}, ...}, "fp16": {...}, "goals": {...}}

Per precision and configuration (input resolution @ network size): ``inference_ms`` (the
network alone; CUDA events on a GPU), ``frame_ms`` (image message in -> messages out, every
stage), ``frame_over_inference``, ``stages`` (per-stage medians as the pipeline reports them;
on CUDA, asynchronous work shows up in the stage that waits for it), ``gpu_vs_cpu_max_abs_diff``
for depth and cloud (the GPU path against the numpy CPU path from the same network output,
with ``nonfinite_mismatch``: pixels where NaN/+-Inf differ), the self-test figures, and for
fp16 ``fp16_vs_fp32_abs_rel`` (AbsRel of the fp16 depth against the fp32 depth on the real
TUM RGB-D frame of ``../shared/data`` when present, else on a synthetic image, as ``image``
says). ``--device cpu`` runs everything on the CPU (torch CPU tensors stand in for the GPU;
fp16 then computes fp32, as ``precision_effective`` says); ``--quick`` uses a tiny network
configuration and few frames (the CI test).

Relative Depth Anything output becomes metres with ``scale_source: fixed`` (scale 1, shift 0):
meaningless values from random weights, but every stage runs as on a robot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

import cv2
from depth_node.errors import DepthNodeError, require
import numpy as np

MODEL = 'depth-anything-v2-small'
RESOLUTIONS = ((640, 480), (1280, 720))
NETWORK_SIZES = (518, 308)
PRECISIONS = ('fp32', 'fp16')
#: --quick: a tiny Depth Anything V2 (same architecture, far fewer channels and layers)
QUICK_CONFIG = {'backbone_config': {'hidden_size': 32, 'num_hidden_layers': 4,
                                    'num_attention_heads': 2, 'out_indices': [1, 2, 3, 4]},
                'reassemble_hidden_size': 32, 'neck_hidden_sizes': [8, 8, 16, 16],
                'fusion_hidden_size': 16, 'head_hidden_size': 8}
QUICK_RESOLUTIONS = ((160, 120), (192, 108))
QUICK_NETWORK_SIZES = (70, 42)
TUM_FRAME = Path('rgbd') / 'open3d_tum' / 'TUM_color.png'
GOALS = {'frame_over_inference_max': 1.1, 'fp16_vs_fp32_abs_rel_max': 1e-3,
         'gpu_vs_cpu_cloud_max_abs_diff_max': 1e-4}


class _FixedOutput:
    """A DepthModel stand-in returning a given raw output (the CPU vs GPU comparison)."""

    def __init__(self, card: Any, raw: Any, transform: Any) -> None:
        self.card, self.raw, self.transform = card, raw, transform

    def predict(self, rgb: np.ndarray) -> tuple[Any, Any, dict[str, float]]:
        return self.raw, self.transform, {}


def shared_data() -> Path | None:
    """Return the shared test-data folder (``$DEPTH_NODE_SHARED_DATA`` or ../shared/data)."""
    env = os.environ.get('DEPTH_NODE_SHARED_DATA')
    root = Path(__file__).resolve().parents[2]   # the repository (this is depth_node/tools/)
    for path in ([Path(env)] if env else []) + [root.parent / 'shared' / 'data']:
        if (path / 'README.md').is_file():
            return path
    return None


def frame_image(path: str | None) -> tuple[np.ndarray, str]:
    """Return the RGB frame the check uses and a description of where it came from."""
    if path is None:
        data = shared_data()
        if data is not None and (data / TUM_FRAME).is_file():
            path = str(data / TUM_FRAME)
    if path is not None:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DepthNodeError(f'Cannot read the image {path}.', 'Give a PNG or JPEG file.')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f'real: {path}'
    from depth_node.models.golden import reference_image
    return (reference_image({'kind': 'smooth', 'seed': 1}, 640, 480),
            f'synthetic (smooth random image): the TUM frame {TUM_FRAME} was not found in '
            '../shared/data or $DEPTH_NODE_SHARED_DATA')


def _camera(width: int, height: int) -> Any:
    """Return a plumb_bob camera at this resolution (distortion-aware rays on the device)."""
    from depth_node.camera import CameraModel
    f = 0.8 * width
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    return CameraModel(width=width, height=height, K=K,
                       D=np.array([-0.05, 0.01, 0.0005, -0.0005, 0.0]), R=np.eye(3),
                       P=np.hstack([K, np.zeros((3, 1))]), distortion_model='plumb_bob',
                       frame_id='camera_optical_frame')


def _on_cpu(torch: Any, module: Any) -> Any:
    """Return ``input -> output`` of the module on the CPU (the golden reference run)."""
    return lambda x: module(torch.from_numpy(x))


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4) if values else float('nan')


class _Timer:
    """Milliseconds of the network alone: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, torch: Any, cuda: bool) -> None:
        self.torch, self.cuda = torch, cuda

    def __call__(self, fn: Any) -> float:
        if not self.cuda:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
        start = self.torch.cuda.Event(enable_timing=True)
        end = self.torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))


def _compare(expected: np.ndarray, got: np.ndarray) -> tuple[float, int]:
    """Return (max |difference| where both are finite, pixels whose NaN/+-Inf differ)."""
    finite = np.isfinite(expected) & np.isfinite(got)
    same_special = (np.isnan(expected) == np.isnan(got)) & np.where(
        np.isinf(expected) | np.isinf(got), expected == got, True)
    mismatch = int(np.count_nonzero(~(finite | same_special)))
    diff = float(np.max(np.abs(expected[finite] - got[finite]))) if finite.any() else 0.0
    return diff, mismatch


def gpu_vs_cpu(card: Any, raw: Any, transform: Any, image_msg: Any, info_msg: Any,
               config: Any, factory: Any, header: Any) -> dict[str, Any]:
    """Compare the GPU path with the numpy path after inference, from the same raw output."""
    from depth_node.clouds import pointcloud2_to_array
    from depth_node.device import to_host
    from depth_node.images import image_to_array
    from depth_node.pipeline import DepthPipeline
    out = {}
    for name, value in (('cpu', to_host(raw).copy()), ('gpu', raw)):
        pipeline = DepthPipeline(_FixedOutput(card, value, transform), config,
                                 log=lambda msg: None)
        result = pipeline.process(image_msg, info_msg)
        out[name] = pipeline.outputs(result, header, factory,
                                     ('depth/image', 'points'))
    report: dict[str, Any] = {}
    if 'depth/image' not in out['cpu']:
        return {'skipped': 'no metric depth for this frame'}
    depth = _compare(image_to_array(out['cpu']['depth/image']),
                     image_to_array(out['gpu']['depth/image']))
    clouds = [pointcloud2_to_array(out[k]['points']) for k in ('cpu', 'gpu')]
    xyz = [np.stack([c[n] for n in ('x', 'y', 'z')], axis=-1) for c in clouds]
    cloud = _compare(*xyz)
    report['gpu_vs_cpu_max_abs_diff'] = {'depth': depth[0], 'cloud': cloud[0]}
    report['nonfinite_mismatch'] = {'depth': depth[1], 'cloud': cloud[1]}
    return report


def abs_rel(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean of ``|other - reference| / reference`` over pixels finite and > 0 in both."""
    valid = np.isfinite(reference) & np.isfinite(other) & (reference > 0) & (other > 0)
    if not valid.any():
        return float('nan')
    return float(np.mean(np.abs(other[valid] - reference[valid]) / reference[valid]))


def _measure(context: Any, backend: Any, model: Any, pre: Any, width: int,
             height: int) -> tuple[dict[str, Any], Any]:
    """Time the pipeline and the bare network at one resolution; compare with the CPU path."""
    from depth_node.images import make_image
    from depth_node.pipeline import DepthPipeline
    factory, header, config = context.factory, context.header, context.config
    rgb = np.ascontiguousarray(cv2.resize(context.base_rgb, (width, height),
                                          interpolation=cv2.INTER_AREA))
    image_msg = make_image(factory, header, rgb, 'rgb8')
    info_msg = _camera(width, height).to_camera_info(factory, header)
    pipeline = DepthPipeline(model, config, log=lambda msg: None)
    frame_ms: list[float] = []
    stages: dict[str, list[float]] = {}
    for index in range(context.warmup + context.frames):
        t0 = time.perf_counter()
        frame = pipeline.process(image_msg, info_msg)
        pipeline.outputs(frame, header, factory)
        elapsed = (time.perf_counter() - t0) * 1e3
        if index >= context.warmup:
            frame_ms.append(elapsed)
            for name, value in frame.timings.items():
                stages.setdefault(name, []).append(value)
    tensor, transform = pre(rgb)
    inference = [context.timer(lambda: backend.infer(tensor))
                 for _ in range(max(context.frames, 3))]
    entry: dict[str, Any] = {
        'precision_effective': backend.precision,
        'inference_ms': _median(inference), 'frame_ms': _median(frame_ms),
    }
    entry['frame_over_inference'] = round(entry['frame_ms'] / max(entry['inference_ms'], 1e-9),
                                          3)
    entry['stages'] = {k: _median(v) for k, v in stages.items()}
    raw = model.predict(rgb)[0]
    with np.errstate(invalid='ignore'):   # inf - inf in the numpy edge filter
        entry.update(gpu_vs_cpu(model.card, raw, transform, image_msg, info_msg, config,
                                factory, header))
    return entry, frame


def _result_header(torch: Any, transformers: Any, device: str, quick: bool, image_note: str,
                   frames: int, warmup: int) -> dict[str, Any]:
    """Return what the result says about the run before any figure."""
    cuda = device.startswith('cuda')
    return {
        'command': 'check-gpu', 'device': device,
        'device_name': torch.cuda.get_device_name(0) if cuda else 'cpu',
        'torch': torch.__version__, 'transformers': transformers.__version__,
        'model': f"{MODEL} (random weights{', tiny --quick configuration' if quick else ''})",
        'image': image_note, 'frames': frames, 'warmup': warmup,
        'pipeline': 'GPU path: torch tensors on the device from preprocessing to the payload '
                    'copies; outputs depth/image 32FC1, depth/camera_info, points xyz, '
                    'depth/colorized',
    }


def run_check(device: str = 'cuda', quick: bool = False, frames: int | None = None,
              warmup: int | None = None, image: str | None = None,
              resolutions: tuple[tuple[int, int], ...] | None = None,
              network_sizes: tuple[int, ...] | None = None,
              precisions: tuple[str, ...] = PRECISIONS, compile: bool = False,  # noqa: A002
              log: Any = None) -> dict[str, Any]:
    """Run the check and return the JSON-ready result (see the module docstring)."""
    torch = require('torch', 'check-gpu')
    transformers = require('transformers', 'check-gpu (it builds the network)')
    from depth_node.backends.torch import TorchBackend
    from depth_node.device import to_host
    from depth_node.messages import rclpy_like_factory
    from depth_node.metric import MetricConfig
    from depth_node.models import zoo
    from depth_node.models.golden import make_reference, run_self_test
    from depth_node.models.preprocess import TorchPreprocessor
    from depth_node.pipeline import PipelineConfig
    from depth_node.runner import DepthModel

    log = log or (lambda msg: print(msg, file=sys.stderr))
    cuda = device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        raise DepthNodeError('check-gpu was asked for CUDA but torch sees no GPU.',
                             'Run it on a GPU host, or use --device cpu for the dry run.')
    started = time.perf_counter()
    frames = frames if frames is not None else (3 if quick else 50)
    warmup = warmup if warmup is not None else (1 if quick else 5)
    resolutions = resolutions or (QUICK_RESOLUTIONS if quick else RESOLUTIONS)
    network_sizes = network_sizes or (QUICK_NETWORK_SIZES if quick else NETWORK_SIZES)
    base_rgb, image_note = frame_image(image)
    factory = rclpy_like_factory()
    header = factory.header(1_700_000_000, 0, 'camera_optical_frame')
    config = PipelineConfig(metric=MetricConfig(scale_source='fixed'))
    timer = _Timer(torch, cuda)
    context = SimpleNamespace(factory=factory, header=header, config=config, base_rgb=base_rgb,
                              frames=frames, warmup=warmup, timer=timer)
    result = _result_header(torch, transformers, device, quick, image_note, frames, warmup)
    for precision in precisions:
        result[precision] = {}
    fp32_depth: dict[str, np.ndarray] = {}
    for size in network_sizes:
        module, card = zoo.load_torch_model(MODEL, True, (size, size),
                                            config_overrides=QUICK_CONFIG if quick else None)
        # the golden reference: fp32 on the CPU, before the module moves to the device
        with torch.inference_mode():
            reference = make_reference(_on_cpu(torch, module), card)
        card = card.replace(reference=reference)
        for precision in precisions:
            backend = TorchBackend(module, card, device=device, precision=precision,
                                   compile=compile, log=log)
            self_test = run_self_test(backend, card, log=log)
            model = DepthModel(backend, card, tensors=True)
            pre = TorchPreprocessor(card, device)
            for width, height in resolutions:
                key = f'{width}x{height}@{size}x{size}'
                log(f'check-gpu: {precision} {key}')
                entry, frame = _measure(context, backend, model, pre, width, height)
                entry['self_test'] = {k: self_test[k] for k in
                                      ('passed', 'precision', 'max_error_over_std')
                                      if k in self_test}
                depth = to_host(frame.depth).copy() if frame.depth is not None else None
                if precision == 'fp32' and depth is not None:
                    fp32_depth[key] = depth
                elif key in fp32_depth and depth is not None:
                    entry['fp16_vs_fp32_abs_rel'] = abs_rel(fp32_depth[key], depth)
                    if backend.precision != 'fp16':
                        entry['fp16_vs_fp32_abs_rel'] = None
                        entry['fp16_note'] = 'fp16 runs only on CUDA: this row computed fp32'
                result[precision][key] = entry
            backend.close()
    result['goals'] = _goals(result, resolutions, network_sizes, cuda)
    result['wall_s'] = round(time.perf_counter() - started, 1)
    return result


def _goals(result: dict[str, Any], resolutions: Any, network_sizes: Any,
           cuda: bool) -> dict[str, Any]:
    """Return the goals, judged on the first resolution and network size (on CUDA only)."""
    key = f'{resolutions[0][0]}x{resolutions[0][1]}@{network_sizes[0]}x{network_sizes[0]}'
    fp16 = result.get('fp16', {}).get(key, {})
    clouds = [entry.get('gpu_vs_cpu_max_abs_diff', {}).get('cloud', math.nan)
              for precision in PRECISIONS for entry in result.get(precision, {}).values()]
    goals = dict(GOALS, judged_on=key)
    goals['frame_over_inference'] = fp16.get('frame_over_inference')
    goals['fp16_vs_fp32_abs_rel'] = fp16.get('fp16_vs_fp32_abs_rel')
    goals['gpu_vs_cpu_cloud_max_abs_diff'] = max(clouds) if clouds else None
    if not cuda:
        goals['met'] = None
        goals['note'] = 'goals are judged on a GPU only; this was the CPU dry run'
        return goals
    goals['met'] = {
        'frame_over_inference': _at_most(goals['frame_over_inference'],
                                         GOALS['frame_over_inference_max']),
        'fp16_vs_fp32_abs_rel': _at_most(goals['fp16_vs_fp32_abs_rel'],
                                         GOALS['fp16_vs_fp32_abs_rel_max']),
        'gpu_vs_cpu_cloud': _at_most(goals['gpu_vs_cpu_cloud_max_abs_diff'],
                                     GOALS['gpu_vs_cpu_cloud_max_abs_diff_max']),
    }
    return goals


def _at_most(value: Any, limit: float) -> bool | None:
    return None if value is None or not math.isfinite(value) else bool(value <= limit)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.replace(',', ' ').split())
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a list of sizes, e.g. 518,308'
                                         ) from None
    if not sizes or any(s % 14 or s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f'{text!r}: sizes must be positive multiples of 14')
    return sizes


def _resolutions(text: str) -> tuple[tuple[int, int], ...]:
    from depth_node.tools.arguments import parse_resolution
    return tuple(parse_resolution(v) for v in text.replace(',', ' ').split())


def add_parser(subparsers: Any) -> None:
    """Add the ``check-gpu`` subcommand to the ``depth-node`` CLI."""
    parser = subparsers.add_parser(
        'check-gpu', help='measure the GPU path (one JSON object)',
        description=__doc__.split('\n\n')[0] + ' Builds Depth Anything V2 Small with random '
        'weights, runs the pipeline on the device and prints one JSON object.')
    parser.add_argument('--device', default='cuda',
                        help="'cuda' (default) or 'cpu' (the dry run: torch CPU tensors)")
    parser.add_argument('--quick', action='store_true',
                        help='tiny network configuration, small images, 3 frames (CI)')
    parser.add_argument('--frames', type=int, default=None,
                        help='timed frames per configuration (default 50; --quick 3)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed frames first (default 5; --quick 1)')
    parser.add_argument('--resolutions', type=_resolutions, default=None, metavar='WxH,...',
                        help='input sizes (default 640x480,1280x720)')
    parser.add_argument('--network-sizes', type=_sizes, default=None, metavar='N,...',
                        help='square network input sizes (default 518,308)')
    parser.add_argument('--precisions', default='fp32,fp16',
                        help='precisions to run, fp32 first (default fp32,fp16)')
    parser.add_argument('--image', default=None,
                        help='RGB image to use (default: the TUM frame of ../shared/data)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the network (opt-in, slow first run)')
    parser.add_argument('--output', default=None, help='also write the JSON to this file')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``depth-node check-gpu``: print the JSON (exit 0) or an error (exit 2)."""
    precisions = tuple(p for p in args.precisions.replace(',', ' ').split())
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise DepthNodeError(f'--precisions {args.precisions!r} is not a list of fp32, fp16.',
                             'Use e.g. --precisions fp32,fp16.')
    result = run_check(args.device, args.quick, args.frames, args.warmup, args.image,
                       args.resolutions, args.network_sizes, precisions, args.compile)
    text = json.dumps(result)
    if args.output:
        Path(args.output).write_text(text + '\n')
    print(text)
    return 0
