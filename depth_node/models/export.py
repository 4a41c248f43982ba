"""Export a depth network from the zoo, the hub or a checkpoint -> ONNX + card.

Stages (printed on stderr): build the PyTorch model, export a static-shape ONNX graph
(opset >= 17; with ``--dynamic-batch`` the first axis of input and output is a batch axis, so
one call runs the frames of several cameras), check the graph, compare ONNX Runtime with
PyTorch on a fixed input (max/mean absolute difference), then write the card beside the ONNX
file with the golden ``reference`` that every backend checks when it loads the model.

The TorchScript-based exporter of torch (``dynamo=False``) is used first: it needs nothing
beyond torch and works offline. When a future torch drops it, the ``torch.export`` based exporter
is used, which needs the ``onnxscript`` package (part of the ``torch`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
import sys
import time
from typing import Any
import warnings

from depth_node.errors import ModelError, require
from depth_node.models import zoo
import numpy as np

MIN_OPSET = 17
DEFAULT_OPSET = 17
# ONNX Runtime (CPU, fp32) vs PyTorch: max abs difference allowed, relative to the output range.
DEFAULT_TOLERANCE = 1e-3
#: the name of the batch axis of ``--dynamic-batch`` exports
BATCH_AXIS = 'batch'


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fixed_input(card, seed: int = 1234) -> np.ndarray:
    """Return the fixed, normalised network input used to compare ONNX Runtime with PyTorch.

    A smooth colour gradient plus seeded noise, as uint8 RGB, normalised per the card: it is
    image-like (values in the range the network sees) and the same on every machine.
    """
    width, height = card.network_image_width, card.network_image_height
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1),
                     0.5 + 0.5 * np.sin(xx / 7.0 + yy / 11.0)], axis=-1) * 200.0
    rgb = np.clip(base + rng.normal(0.0, 20.0, base.shape), 0, 255).astype(np.uint8)
    x = rgb.astype(np.float32) * np.float32(card.pixel_scale)
    x = (x - np.asarray(card.image_mean, np.float32)) / np.asarray(card.image_stddev, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def torch_export(module, example, output: Path, opset: int, exporter: str = 'auto',
                 input_name: str = 'pixel_values', output_name: str = 'predicted_depth',
                 dynamic_batch: bool = False) -> str:
    """Export ``module`` at the example's static shape; returns the exporter used.

    :param exporter: ``'torchscript'``, ``'dynamo'`` or ``'auto'`` (TorchScript, else dynamo).
    :param dynamic_batch: make the first axis of input and output a batch axis (``batch``).
    """
    torch = require('torch', 'ONNX export')
    kwargs = {'input_names': [input_name], 'output_names': [output_name],
              'opset_version': opset, 'do_constant_folding': True}
    if dynamic_batch:
        kwargs['dynamic_axes'] = {input_name: {0: BATCH_AXIS}, output_name: {0: BATCH_AXIS}}
    errors = []
    order = {'auto': ('torchscript', 'dynamo'), 'torchscript': ('torchscript',),
             'dynamo': ('dynamo',)}.get(exporter)
    if order is None:
        raise ModelError(f'Unknown exporter {exporter!r}.', 'Use auto, torchscript or dynamo.')
    for kind in order:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter('ignore')
                if kind == 'torchscript':
                    torch.onnx.export(module, (example,), str(output), dynamo=False, **kwargs)
                else:
                    require('onnxscript', 'the torch.export based ONNX exporter')
                    torch.onnx.export(module, (example,), str(output), dynamo=True,
                                      external_data=False, **kwargs)
            return kind
        except ModelError as exc:
            errors.append(f'{kind}: {exc}')
        except Exception as exc:  # exporters raise many types; report them all below
            errors.append(f'{kind}: {type(exc).__name__}: {exc}')
    raise ModelError('ONNX export failed: ' + ' | '.join(errors),
                     'Try another --opset, or another torch version; the dynamo exporter needs '
                     "pip install onnxscript (pip install 'depth_node[torch]').")


def set_static_output_shape(path: Path, shape: tuple[int | str, ...]) -> bool:
    """Write the known static shape on the first graph output when the exporter left it symbolic.

    The TorchScript exporter sometimes names the dimensions of a squeezed output instead of
    giving their values; the shape is known from the PyTorch run at this fixed input size, and
    TensorRT and the card need it static. A string in ``shape`` names a symbolic axis (the
    batch axis). Returns True when the file was changed.
    """
    onnx = require('onnx', 'fixing the ONNX output shape')
    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim

    def same(d, v) -> bool:
        return d.dim_param == v if isinstance(v, str) else \
            (d.HasField('dim_value') and d.dim_value == v)
    if len(dims) == len(shape) and all(same(d, v) for d, v in zip(dims, shape)):
        return False
    del dims[:]
    for value in shape:
        if isinstance(value, str):
            dims.add().dim_param = value
        else:
            dims.add().dim_value = int(value)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.save(model, str(path))
    return True


def check_onnx(path: Path, input_shape: tuple[int | str, ...], min_opset: int = MIN_OPSET
               ) -> dict:
    """Check an exported file: valid ONNX, opset, one static input and static outputs.

    ``input_shape`` may start with :data:`BATCH_AXIS` (a ``--dynamic-batch`` export): the
    outputs' first axis is then that batch axis too.

    :returns: ``{'opset', 'input_name', 'input_shape', 'output_name', 'output_shape'}``.
    :raises ModelError: on any problem.
    """
    onnx = require('onnx', 'checking the exported ONNX file')
    try:
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises ValidationError and protobuf errors
        raise ModelError(f'The exported file {path} is not a valid ONNX model: {exc}.',
                         'Report this with the model name and the torch version.') from exc
    opset = max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')),
                default=0)
    if opset < min_opset:
        raise ModelError(f'{path} has opset {opset}, below {min_opset}.',
                         f'Export again with --opset {min_opset} or higher.')

    def dims(value) -> list:
        return [d.dim_value if d.HasField('dim_value') else (d.dim_param or '?')
                for d in value.type.tensor_type.shape.dim]

    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f'{path} has {len(inputs)} inputs, expected one image tensor.',
                         'Report this with the model name.')
    info = {'opset': opset, 'input_name': inputs[0].name, 'input_shape': dims(inputs[0]),
            'output_name': model.graph.output[0].name,
            'output_shape': dims(model.graph.output[0])}
    if info['input_shape'] != list(input_shape):
        raise ModelError(f"{path} input shape is {info['input_shape']}, expected "
                         f'{list(input_shape)} (static).', 'Report this with the model name.')
    batched = bool(input_shape) and input_shape[0] == BATCH_AXIS
    for out in model.graph.output:
        shape = dims(out)
        if batched and shape and shape[0] == BATCH_AXIS:
            shape = shape[1:]
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise ModelError(f'{path} output {out.name!r} has a dynamic shape {shape}.',
                             'Report this with the model name.')
    return info


def compare_with_onnxruntime(path: Path, module, example: np.ndarray,
                             dynamic_batch: bool = False) -> dict[str, float]:
    """Run the ONNX file in ONNX Runtime (CPU) and the torch module on ``example``.

    :param dynamic_batch: also run a batch of 3 (the example, mirrored, inverted) and compare
        each frame with its own batch-1 run (``batch_max_abs_diff``): a batch axis must not
        mix frames.
    :returns: ``max_abs_diff``, ``mean_abs_diff``, ``torch_min``, ``torch_max``, ``torch_std``.
    """
    ort = require('onnxruntime', 'verifying the exported ONNX file')
    torch = require('torch', 'verifying the exported ONNX file')
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: example})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(example)).numpy()
    if got.shape != want.shape:
        raise ModelError(f'ONNX Runtime output shape {got.shape} differs from PyTorch '
                         f'{want.shape}.', 'Report this with the model name.')
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    stats = {'max_abs_diff': float(diff.max()), 'mean_abs_diff': float(diff.mean()),
             'torch_min': float(want.min()), 'torch_max': float(want.max()),
             'torch_std': float(want.std())}
    if dynamic_batch:
        name = session.get_inputs()[0].name
        frames = [example, example[..., ::-1], -example]
        batch = session.run(None, {name: np.ascontiguousarray(np.concatenate(frames))})[0]
        singles = [session.run(None, {name: np.ascontiguousarray(f)})[0][0] for f in frames]
        stats['batch_max_abs_diff'] = float(max(
            np.abs(batch[i].astype(np.float64) - singles[i]).max() for i in range(3)))
    return stats


def _reference(module, card, log: Callable[[str], None]) -> dict | None:
    """Return the golden self-test reference, computed with the PyTorch model."""
    try:
        from depth_node.models.golden import make_reference
    except ImportError as exc:
        log(f'  warning: no reference written (depth_node.models.golden.make_reference: {exc})')
        return None
    torch = require('torch', 'computing the reference output')

    def run(tensor) -> np.ndarray:
        x = tensor if isinstance(tensor, torch.Tensor) else torch.from_numpy(
            np.ascontiguousarray(tensor, dtype=np.float32))
        with torch.no_grad():
            out = module(x.float().cpu())
        return out.reshape(out.shape[-2], out.shape[-1]).numpy()

    return make_reference(run, card)


def export_model(model: str, output: str | Path, input_size: tuple[int, int] | str | None = None,
                 random_weights: bool = False, opset: int = DEFAULT_OPSET,
                 log: Callable[[str], None] = print, *, verify: bool = True,
                 tolerance: float = DEFAULT_TOLERANCE, exporter: str = 'auto',
                 config_overrides: dict[str, Any] | None = None,
                 dynamic_batch: bool = False) -> tuple[Path, Any]:
    """Export a depth network to a static-shape ONNX file and write its card beside it.

    :param model: zoo short name (``depth-anything-v2-small``), hub id or checkpoint directory.
    :param output: the ``.onnx`` file to write (its folder is created).
    :param input_size: network input ``(width, height)`` or ``'WxH'``; default per model.
    :param random_weights: seeded random weights instead of the trained ones (offline).
    :param opset: ONNX opset, at least 17.
    :param log: receives one progress line per stage.
    :param verify: compare ONNX Runtime with PyTorch (and fail beyond ``tolerance``).
    :param tolerance: allowed max abs difference relative to ``max(1, |output|max)``.
    :param exporter: ``'auto'`` | ``'torchscript'`` | ``'dynamo'``.
    :param config_overrides: configuration changes for tiny test models (zoo names only).
    :param dynamic_batch: export with a batch axis (``batch``) so one call runs several
        frames (the node's ``cameras``, ``depth-node bag`` with several cameras).
    :returns: ``(onnx_path, card)``; the card (with ``reference``) is saved at
        ``card_path_for(onnx_path)``.
    """
    require('torch', 'ONNX export')
    from depth_node.models.card import card_path_for

    if int(opset) < MIN_OPSET:
        raise ModelError(f'Opset {opset} is too old: the export needs opset {MIN_OPSET} or newer '
                         '(LayerNormalization, which TensorRT maps to its normalisation layer).',
                         f'Use --opset {MIN_OPSET} or higher.')
    output = Path(output).expanduser()
    if output.suffix.lower() != '.onnx':
        raise ModelError(f'Output {output} does not end in .onnx.',
                         'Name the output file like model.onnx (the card goes beside it).')
    start = time.perf_counter()
    what = 'random weights' if random_weights else 'trained weights'
    log(f'[1/5] building {model} ({what}) ...')
    module, card = zoo.load_torch_model(model, random_weights=random_weights,
                                        input_size=input_size,
                                        config_overrides=config_overrides)
    params = sum(p.numel() for p in module.parameters())
    width, height = card.network_size
    log(f'      {params / 1e6:.1f} M parameters, network input {width}x{height}, output '
        f'{card.output_kind} ({time.perf_counter() - start:.1f} s)')

    example = fixed_input(card)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Work on a temporary file: the output appears only once it passed every check.
    partial = output.with_name(output.stem + '.partial.onnx')
    try:
        card = _export_checked(module, card, example, partial, output, int(opset), exporter,
                               verify, tolerance, log, dynamic_batch)
        log('[5/5] computing the golden self-test reference and writing the card ...')
        reference = _reference(module, card, log)
        if reference is not None:
            card = card.replace(reference=reference)
        os.replace(partial, output)
    finally:
        if partial.exists():
            partial.unlink()
    card_path = card_path_for(output)
    card.save(card_path)
    log(f'      card {card_path}; done in {time.perf_counter() - start:.1f} s')
    return output, card


def _export_checked(module, card, example: np.ndarray, path: Path, output: Path, opset: int,
                    exporter: str, verify: bool, tolerance: float,
                    log: Callable[[str], None], dynamic_batch: bool = False):
    """Stages 2-4: export to ``path``, check the graph, compare with PyTorch; returns the card."""
    width, height = card.network_size
    step = time.perf_counter()
    batch: int | str = BATCH_AXIS if dynamic_batch else 1
    log(f'[2/5] exporting ONNX opset {opset}, input {card.input_name} {batch}x3x{height}x'
        f'{width} -> {output} ...')
    torch = require('torch', 'ONNX export')
    used = torch_export(module, torch.from_numpy(example), path, opset, exporter,
                        card.input_name, card.output_name, dynamic_batch)
    log(f'      {used} exporter, {path.stat().st_size / 2**20:.1f} MiB '
        f'({time.perf_counter() - step:.1f} s)')
    set_static_output_shape(path, (batch, height, width))

    log('[3/5] checking the ONNX graph ...')
    info = check_onnx(path, (batch, 3, height, width))
    log(f"      opset {info['opset']}, input {info['input_name']} {info['input_shape']}, "
        f"output {info['output_name']} {info['output_shape']}")
    card = card.replace(input_name=info['input_name'], output_name=info['output_name'])

    if not verify:
        log('[4/5] comparison with PyTorch skipped (--no-verify)')
        return card
    step = time.perf_counter()
    log('[4/5] comparing ONNX Runtime (CPU) with PyTorch on a fixed input ...')
    stats = compare_with_onnxruntime(path, module, example, dynamic_batch)
    scale = max(1.0, abs(stats['torch_min']), abs(stats['torch_max']))
    log(f"      max abs difference {stats['max_abs_diff']:.3g}, mean abs difference "
        f"{stats['mean_abs_diff']:.3g} (PyTorch output {stats['torch_min']:.4g} .. "
        f"{stats['torch_max']:.4g}; {time.perf_counter() - step:.1f} s)")
    if dynamic_batch:
        log('      batch of 3 vs one by one: max abs difference '
            f"{stats['batch_max_abs_diff']:.3g}")
        if not stats['batch_max_abs_diff'] <= tolerance * scale:
            raise ModelError(
                'The exported batch axis mixes frames: a batch of 3 differs from 3 single runs '
                f"by {stats['batch_max_abs_diff']:.3g} > {tolerance * scale:.3g}; {output} was "
                'not written.', 'Export without --dynamic-batch, and report the model name.')
    if not stats['max_abs_diff'] <= tolerance * scale:
        raise ModelError(
            f'The exported ONNX graph computes something else than the PyTorch model: max abs '
            f"difference {stats['max_abs_diff']:.3g} > {tolerance * scale:.3g}; {output} was "
            'not written.',
            'Try another --opset, --exporter or torch version, and report the model name.')
    return card
