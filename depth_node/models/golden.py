"""The golden self-test: a card's ``reference`` and its check against a running model.

A card's ``reference`` describes a deterministic input and a small but discriminating digest of
the expected output, written at export time by :func:`make_reference`. :func:`run_self_test`
runs the input through a backend and compares digests; a mismatch beyond tolerance raises
:class:`SelfTestError` naming the model, the backend and the error figures, so a wrong engine
(e.g. a broken FP16 build) never starts.

The reference belongs to the model description (it is written into the card and read from it),
so this module sits with the card, below the backends: it runs anything with an ``infer``
method (a :class:`~depth_node.backends.base.Backend`) or a plain callable.

Reference schema (``reference:`` in the card)::

    version: 1
    input: {kind: smooth, seed: 0}   # or {kind: uniform, seed: 0} or {kind: image, path: x.png}
    input_shape: [1, 3, 518, 518]    # the network input it was made for
    output_shape: [518, 518]
    grid: [[...16 floats...], ...]   # the output resized to 16x16 with area averaging
    mean: 1.23
    std: 0.45
    rtol: 0.0002                     # tolerances for fp32; scaled by PRECISION_FACTORS
    atol: 0.0009                     # absolute, in output units (set from the output's std)

A digest matches when ``|got - expected| <= atol * f + rtol * f * |expected|`` holds for every
grid cell, for the mean and for the std, with ``f = PRECISION_FACTORS[precision]`` (fp32 on a
GPU counts as tf32, which convolution and matmul libraries use by default there).
"""

from __future__ import annotations

from collections.abc import Callable
import math
from pathlib import Path
from typing import Any

import cv2
from depth_node.errors import CardError, require, SelfTestError
from depth_node.models.preprocess import normalise_into, output_to_2d
import numpy as np

GRID = 16
DEFAULT_RTOL = 2e-4
DEFAULT_ATOL_STD = 2e-3        # atol = this * std of the reference output
# how much looser the comparison is per compute precision (fp16 has ~3 decimal digits)
PRECISION_FACTORS = {'fp32': 1.0, 'tf32': 10.0, 'fp16': 40.0, 'bf16': 100.0, 'int8': 200.0}


# --- deterministic reference input --------------------------------------------------------------
def reference_image(spec: dict, width: int, height: int,
                    base_dir: str | Path | None = None) -> np.ndarray:
    """Return the (height, width, 3) uint8 RGB image a reference input spec describes.

    ``uniform``: independent uniform bytes per pixel from PCG64(seed); ``smooth``: the same at
    1/16 resolution, resized bilinearly (image-like low frequencies); ``image``: an image file
    (relative paths are relative to ``base_dir``), resized to the network size.
    """
    kind = spec.get('kind', 'smooth')
    seed = int(spec.get('seed', 0))
    if kind in ('uniform', 'smooth'):
        rng = np.random.Generator(np.random.PCG64(seed))
        if kind == 'uniform':
            return np.frombuffer(rng.bytes(width * height * 3), np.uint8).reshape(height, width, 3)
        sw, sh = max(2, math.ceil(width / 16)), max(2, math.ceil(height / 16))
        small = np.frombuffer(rng.bytes(sw * sh * 3), np.uint8).reshape(sh, sw, 3)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if kind == 'image':
        path = Path(spec['path'])
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CardError(f'The self-test reference image {path} cannot be read.',
                            'Put the image beside the card or remove the reference.')
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    raise CardError(f'Unknown self-test input kind {kind!r} in the card reference.',
                    'Use uniform, smooth or image.')


def reference_input(card: Any, spec: dict | None = None,
                    base_dir: str | Path | None = None) -> np.ndarray:
    """Return the normalised network input tensor (card layout, batch 1) of a reference spec."""
    spec = spec if spec is not None else (card.reference or {}).get('input', {})
    w, h = card.network_image_width, card.network_image_height
    img = reference_image(spec, w, h, base_dir)
    tensor = np.zeros(card.input_shape(), np.float32)
    normalise_into(img, tensor[0], card)
    return tensor


def _to_numpy_2d(output: Any) -> np.ndarray:
    if hasattr(output, 'detach'):
        output = output.detach().float().cpu().numpy()
    return np.array(output_to_2d(np.asarray(output)), dtype=np.float32)


def output_digest(output: Any) -> dict[str, Any]:
    """Digest of a network output: 16x16 area-averaged grid, mean, std, shape."""
    out = _to_numpy_2d(output)
    finite = np.isfinite(out)
    if not finite.all():
        return {'grid': None, 'mean': float('nan'), 'std': float('nan'),
                'output_shape': list(out.shape), 'nonfinite': int((~finite).sum())}
    grid = cv2.resize(out.astype(np.float64), (GRID, GRID), interpolation=cv2.INTER_AREA)
    return {'grid': grid, 'mean': float(out.mean(dtype=np.float64)),
            'std': float(out.std(dtype=np.float64)), 'output_shape': list(out.shape),
            'nonfinite': 0}


def _round(v: float) -> float:
    return float(f'{v:.7g}')


def make_reference(backend_or_callable: Any, card: Any, *,
                   kind: str = 'smooth', seed: int = 0, rtol: float = DEFAULT_RTOL,
                   atol: float | None = None, image_path: str | Path | None = None,
                   base_dir: str | Path | None = None) -> dict[str, Any]:
    """Compute the ``reference`` entry of a card by running a trusted implementation.

    :param backend_or_callable: a backend (anything with ``infer``), or a callable mapping the
        normalised input (numpy, card layout) to the output (numpy or torch, squeezable to
        (H_n, W_n)), e.g. a
        wrapper around the PyTorch model at export time.
    :param card: the model card (network size, normalisation, layout).
    :param kind: ``smooth``, ``uniform`` or ``image`` input.
    :param rtol: relative tolerance at fp32.
    :param atol: absolute tolerance at fp32 (default: 2e-3 x the output's std).
    :param image_path: the image for ``kind='image'`` (stored as given: make it relative to the
        card's folder, ``base_dir``, so card and image can move together).
    """
    spec: dict[str, Any] = {'kind': kind, 'seed': int(seed)}
    if kind == 'image':
        if image_path is None:
            raise CardError('A reference of kind image needs image_path.', 'Pass image_path.')
        spec = {'kind': 'image', 'path': str(image_path)}
    tensor = reference_input(card, spec, base_dir)
    fn = getattr(backend_or_callable, 'infer', backend_or_callable)
    digest = output_digest(fn(tensor))
    if digest['grid'] is None:
        raise SelfTestError(f"The reference output of {card.name or 'the model'} has "
                            f"{digest['nonfinite']} NaN/Inf values.",
                            'The model itself is broken; a reference cannot be made from it.')
    if atol is None:
        atol = DEFAULT_ATOL_STD * max(digest['std'], 1e-12 + 1e-6 * abs(digest['mean']))
    return {
        'version': 1,
        'input': spec,
        'input_shape': list(card.input_shape()),
        'output_shape': digest['output_shape'],
        'grid': [[_round(v) for v in row] for row in digest['grid'].tolist()],
        'mean': _round(digest['mean']),
        'std': _round(digest['std']),
        'rtol': float(rtol),
        'atol': _round(float(atol)),
    }


def compare_digest(reference: dict, digest: dict, precision: str = 'fp32') -> dict[str, Any]:
    """Compare an output digest with a reference; returns the error figures and ``passed``."""
    factor = PRECISION_FACTORS.get(precision, PRECISION_FACTORS['fp16'])
    rtol = float(reference.get('rtol', DEFAULT_RTOL)) * factor
    atol = float(reference['atol']) * factor
    result: dict[str, Any] = {'precision': precision, 'rtol': rtol, 'atol': atol}
    if digest['grid'] is None:
        result.update(passed=False, nonfinite=digest['nonfinite'],
                      reason=f"{digest['nonfinite']} NaN/Inf values in the output")
        return result
    exp = np.asarray(reference['grid'], np.float64)
    got = np.asarray(digest['grid'], np.float64)
    if list(digest['output_shape']) != list(reference.get('output_shape', digest['output_shape'])):
        result.update(passed=False, reason=f"output shape {digest['output_shape']} instead of "
                      f"{reference['output_shape']}")
        return result
    err = np.abs(got - exp)
    ratio_grid = err / (atol + rtol * np.abs(exp))
    exp_stats = np.array([reference['mean'], reference['std']], np.float64)
    got_stats = np.array([digest['mean'], digest['std']], np.float64)
    ratio_stats = np.abs(got_stats - exp_stats) / (atol + rtol * np.abs(exp_stats))
    worst = float(max(ratio_grid.max(), ratio_stats.max()))
    scale = max(float(reference['std']), 1e-30)
    result.update(
        passed=bool(worst <= 1.0),
        max_abs_error=float(err.max()),
        mean_abs_error=float(err.mean()),
        max_error_over_std=float(err.max() / scale),
        mean_error=float(got_stats[0] - exp_stats[0]),
        std_error=float(got_stats[1] - exp_stats[1]),
        worst_tolerance_ratio=worst,
    )
    if not result['passed']:
        result['reason'] = (f"max |error| {result['max_abs_error']:.4g} "
                            f"({result['max_error_over_std']:.3g} x output std), "
                            f'{worst:.3g} x the {precision} tolerance')
    return result


def run_self_test(backend: Any, card: Any = None, *, log: Callable[[str], Any] | None = print,
                  base_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the card's reference input through the backend and compare with the reference.

    :returns: the error figures (``passed``, ``max_abs_error``, ...) or ``{'skipped': reason}``
        when the card has no reference or it was made for another input shape.
    :raises SelfTestError: the outputs differ beyond tolerance (message names model, backend
        and the error figures).
    """
    card = card if card is not None else backend.card
    ref = card.reference
    model = card.name or str(backend.model_path)
    if not ref:
        if log:
            log(f'self-test skipped for {model}: the model card has no reference '
                '(re-export the model to add one)')
        return {'skipped': 'no reference in the card'}
    for key in ('grid', 'mean', 'std', 'atol'):
        if key not in ref:
            raise CardError(f'The self-test reference of {model} lacks {key!r}.',
                            'Re-export the model or remove the reference from the card.')
    if list(ref.get('input_shape', card.input_shape())) != list(card.input_shape()):
        reason = (f"the reference was made for input {ref['input_shape']}, the card now says "
                  f'{list(card.input_shape())}')
        if log:
            log(f'self-test skipped for {model}: {reason}')
        return {'skipped': reason}
    tensor = reference_input(card, ref.get('input', {}), base_dir)
    if backend.device != 'cpu':
        torch = require('torch', 'the self-test on a GPU backend')
        tensor = torch.from_numpy(tensor).to(backend.device)
    digest = output_digest(backend.infer(tensor))
    precision = getattr(backend, 'precision', 'fp32') or 'fp32'
    if precision == 'fp32' and str(backend.device).startswith('cuda'):
        precision = 'tf32'   # GPU "fp32" convolutions and matmuls commonly run in TF32
    result = compare_digest(ref, digest, precision)
    info = backend.info()
    where = f"{info.get('backend')} on {info.get('device')}"
    if not result['passed']:
        raise SelfTestError(
            f'Self-test failed for model {model!r} with backend {where} ({precision}): '
            f"{result['reason']}.",
            'The backend computes something else than the reference: rebuild the engine '
            '(--force-engine-update), try fp32 precision or another backend, and check that the '
            'card belongs to this model file.')
    if log:
        log(f'self-test passed for {model} with {where} ({precision}): max |error| '
            f"{result['max_abs_error']:.3g} = {result['max_error_over_std']:.3g} x output std")
    return result
