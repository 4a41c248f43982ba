"""ONNX -> serialized TensorRT engine, and the engine cache (``depth-node build-engine``).

An engine only runs on the TensorRT version and the GPU model that built it, and only computes
what its ONNX file says at the precision and input shape it was built for. Every engine
therefore gets a sidecar ``<engine>.json`` holding its :class:`EngineKey` (ONNX sha256,
TensorRT version, GPU name and compute capability, precision, input shapes). Before an engine
is used the key of the current machine and ONNX file is computed and compared: a mismatch
rebuilds the engine, or raises :class:`EngineError` naming every differing field when building
is disabled.

The pure-Python parts (key, sidecar, decision) need neither TensorRT nor a GPU; the key's
machine facts come from a *key source* (:class:`TensorRTKeySource` on a GPU host, a fake one in
tests). The TensorRT parts use only the API listed in :data:`TENSORRT_API` (8.6, 10.x and 11.x):
``Builder`` -> ``create_network`` (explicit batch flag on 8.x, the default on 10.x, gone in
11.x) -> ``OnnxParser`` -> ``BuilderConfig`` (FP16 flag and FP32 layer pins on 8.6/10.x,
workspace memory pool limit, timing cache, progress monitor on 10.x+) ->
``build_serialized_network``. TensorRT 11 removed weak typing (``BuilderFlag.FP16``, layer
precisions): it builds an FP32 ONNX file only as FP32, so ``fp16`` is refused there with what to
do instead. Without a usable CUDA GPU TensorRT does not fail cleanly (``Builder`` raises a bare
``TypeError``; ``Runtime`` is created, logs a CUDA error and crashes the process when used or
freed), so the driver is probed first (:func:`cuda_devices`), TensorRT's own errors are
collected by :func:`tensorrt_logger` and checked by :func:`tensorrt_object`.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from dataclasses import asdict, dataclass, field
import hashlib
import json
import os
from pathlib import Path
import shutil
import sys
import threading
import time
from typing import Any, Protocol

from depth_node import parameters
from depth_node.errors import EngineError, require

PRECISIONS = parameters.choices('precision')
DEFAULT_PRECISION = parameters.default('precision')
DEFAULT_WORKSPACE_MIB = 2048
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')
SIDECAR_VERSION = 1
KEY_FIELDS = ('onnx_sha256', 'tensorrt_version', 'gpu_name', 'compute_capability', 'precision',
              'input_shapes')
# Layer kinds kept in FP32 in FP16 engines of ViT models (``--fp32-layers auto``):
# LayerNorm (NORMALIZATION from opset-17 LayerNormalization; REDUCE + elementwise when it is
# decomposed), softmax of attention. TensorRT 10.x warns that LayerNorm after self-attention
# overflows in FP16 and ViT depth models were reported to compute wrong FP16 results.
FP32_LAYER_TYPES = ('NORMALIZATION', 'SOFTMAX', 'REDUCE')


# --- the TensorRT Python API this package uses -------------------------------------------------
def _api(purpose: str, names: tuple[str, ...], since: int = 8,
         until: int | None = None) -> tuple[tuple[str, str, int, int | None], ...]:
    return tuple((purpose, name, since, until) for name in names)


# Rows (purpose, dotted name under the ``tensorrt`` module, first major version that needs it,
# first major version that no longer needs it or None). Purposes: 'build' (build_engine), 'fp16'
# (weakly typed FP16 builds with FP32 layer pins: 8.6 and 10.x; TensorRT 11 removed them),
# 'progress' (IProgressMonitor, 10.x+), 'run' (the TensorRT backend). build_engine and the backend
# check these names before use (API drift -> a clear EngineError, not an AttributeError halfway
# through), and test/test_models_engine_api.py checks them against an installed TensorRT.
_LOGGING = ('__version__', 'Logger', 'Logger.WARNING', 'ILogger', 'ILogger.Severity',
            'ILogger.Severity.ERROR', 'ILogger.Severity.WARNING', 'ILogger.log')
TENSORRT_API: tuple[tuple[str, str, int, int | None], ...] = (
    _api('build', _LOGGING + (
        'Builder', 'Builder.create_network', 'Builder.create_builder_config',
        'Builder.build_serialized_network', 'NetworkDefinitionCreationFlag', 'OnnxParser',
        'OnnxParser.parse_from_file', 'OnnxParser.num_errors', 'OnnxParser.get_error',
        'IBuilderConfig', 'IBuilderConfig.set_memory_pool_limit',
        'IBuilderConfig.create_timing_cache', 'IBuilderConfig.set_timing_cache',
        'IBuilderConfig.get_timing_cache', 'ITimingCache.serialize', 'MemoryPoolType.WORKSPACE',
        'INetworkDefinition.num_inputs', 'INetworkDefinition.get_input', 'ITensor.name',
        'ITensor.shape', 'IHostMemory'))
    # create_network(1 << EXPLICIT_BATCH) on 8.x; implied on 10.x, removed in 11.x
    + _api('build', ('NetworkDefinitionCreationFlag.EXPLICIT_BATCH',), 8, 10)
    + _api('fp16', (
        'BuilderFlag.FP16', 'BuilderFlag.OBEY_PRECISION_CONSTRAINTS', 'IBuilderConfig.set_flag',
        'INetworkDefinition.num_layers', 'INetworkDefinition.get_layer', 'ILayer.type',
        'ILayer.num_outputs', 'ILayer.get_output', 'ILayer.precision', 'ILayer.set_output_type',
        'ITensor.dtype', 'float32', 'float16')
        + tuple(f'LayerType.{name}' for name in FP32_LAYER_TYPES), 8, 11)
    + _api('progress', ('IProgressMonitor', 'IProgressMonitor.phase_start',
                        'IProgressMonitor.step_complete', 'IProgressMonitor.phase_finish',
                        'IBuilderConfig.progress_monitor'), 10)
    + _api('run', _LOGGING + (
        'Runtime', 'Runtime.deserialize_cuda_engine', 'ICudaEngine.num_io_tensors',
        'ICudaEngine.get_tensor_name', 'ICudaEngine.get_tensor_mode',
        'ICudaEngine.get_tensor_shape', 'ICudaEngine.get_tensor_dtype',
        'ICudaEngine.create_execution_context', 'TensorIOMode.INPUT',
        'IExecutionContext.set_input_shape', 'IExecutionContext.get_tensor_shape',
        'IExecutionContext.set_tensor_address', 'IExecutionContext.execute_async_v3',
        'DataType.FLOAT', 'DataType.HALF',
        # engines with a batch axis: the profile's largest batch
        'ICudaEngine.get_tensor_profile_shape'))
    # building an engine with a batch axis (ONNX exported with --dynamic-batch): an
    # optimization profile from batch 1 to max_batch
    + _api('batch', ('Builder.create_optimization_profile', 'IOptimizationProfile.set_shape',
                     'IBuilderConfig.add_optimization_profile'))
)
API_PURPOSES = ('build', 'fp16', 'progress', 'run', 'batch')
# Parameter names of the TensorRT functions called with several arguments or overridden here,
# as their pybind11 signatures spell them (the same in 8.6, 10.x and 11.x).
TENSORRT_SIGNATURES: dict[str, tuple[str, ...]] = {
    'Builder.create_network': ('flags',),
    'OnnxParser.parse_from_file': ('model',),
    'IBuilderConfig.set_memory_pool_limit': ('pool', 'pool_size'),
    'IBuilderConfig.create_timing_cache': ('serialized_timing_cache',),
    'IBuilderConfig.set_timing_cache': ('cache', 'ignore_mismatch'),
    'ILayer.set_output_type': ('index', 'dtype'),
    'IProgressMonitor.phase_start': ('phase_name', 'parent_phase', 'num_steps'),
    'IProgressMonitor.step_complete': ('phase_name', 'step'),
    'IProgressMonitor.phase_finish': ('phase_name',),
    'Runtime.deserialize_cuda_engine': ('serialized_engine',),
    'IExecutionContext.set_input_shape': ('name', 'shape'),
    'IExecutionContext.set_tensor_address': ('name', 'memory'),
    'IExecutionContext.execute_async_v3': ('stream_handle',),
    'IOptimizationProfile.set_shape': ('input', 'min', 'opt', 'max'),
    'ICudaEngine.get_tensor_profile_shape': ('name', 'profile_index'),
}


# --- the cache key --------------------------------------------------------------------------
@dataclass
class EngineKey:
    """What an engine was built from and for; equal keys mean the engine can be reused."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shapes: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (JSON)."""
        data = asdict(self)
        data['input_shapes'] = {k: [int(d) for d in v] for k, v in self.input_shapes.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineKey:
        """Inverse of :meth:`to_dict`; :class:`EngineError` if fields are missing."""
        missing = [k for k in KEY_FIELDS if k not in data]
        if missing:
            raise EngineError(f"Engine key lacks {', '.join(missing)}.",
                              'Rebuild the engine with depth-node build-engine.')
        shapes = {str(k): [int(d) for d in v] for k, v in dict(data['input_shapes']).items()}
        return cls(str(data['onnx_sha256']), str(data['tensorrt_version']),
                   str(data['gpu_name']), str(data['compute_capability']),
                   str(data['precision']), shapes)

    def differences(self, current: EngineKey) -> list[str]:
        """Human-readable list of the fields where this (stored) key differs from ``current``."""
        out = []
        for name in KEY_FIELDS:
            mine, theirs = getattr(self, name), getattr(current, name)
            if name == 'input_shapes':
                mine = {k: list(v) for k, v in mine.items()}
                theirs = {k: list(v) for k, v in theirs.items()}
            if mine != theirs:
                if name == 'onnx_sha256':
                    out.append(f'ONNX file changed (sha256 {str(mine)[:12]}... when built, '
                               f'{str(theirs)[:12]}... now)')
                else:
                    out.append(f"{name.replace('_', ' ')}: built for {mine}, now {theirs}")
        return out


class KeySource(Protocol):
    """Where the machine-dependent parts of an :class:`EngineKey` come from."""

    def tensorrt_version(self) -> str:
        """Return the TensorRT version string."""

    def gpu(self) -> tuple[str, str]:
        """``(GPU name, compute capability 'major.minor')``."""


class TensorRTKeySource:
    """The real key source: ``tensorrt.__version__`` and the CUDA device from the NVIDIA driver.

    The driver is asked directly (:func:`cuda_device`), so ``depth-node build-engine`` works
    where torch has no CUDA (a CPU torch wheel on a Jetson); the name and compute capability are
    the ones torch reports for the same device.
    """

    def __init__(self, device: int = 0) -> None:
        """:param device: CUDA device index."""
        self.device = device

    def tensorrt_version(self) -> str:
        """Return the installed TensorRT version."""
        return str(require('tensorrt', 'TensorRT engines').__version__)

    def gpu(self) -> tuple[str, str]:
        """Name and compute capability of the CUDA device."""
        return cuda_device(self.device)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, plus of its ONNX external-data files when there are any."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open('rb') as handle:
            for block in iter(lambda: handle.read(chunk), b''):
                digest.update(block)
    except OSError as exc:
        raise EngineError(f'Cannot read {path}: {exc}.', 'Check the path.') from exc
    data = path.with_name(path.name + '.data')
    if data.is_file():
        with data.open('rb') as handle:
            for block in iter(lambda: handle.read(chunk), b''):
                digest.update(block)
    return digest.hexdigest()


def onnx_input_shapes(onnx_path: str | Path) -> dict[str, list[int]]:
    """``{input name: shape}`` of an ONNX graph (dynamic dimensions as -1)."""
    onnx = require('onnx', 'reading the ONNX input shapes for the engine key')
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise EngineError(f'{onnx_path} is not a readable ONNX file: {exc}.',
                          'Export it again with depth-node export.') from exc
    initializers = {i.name for i in model.graph.initializer}
    return {i.name: [d.dim_value if d.HasField('dim_value') else -1
                     for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input if i.name not in initializers}


def engine_input_shapes(onnx_path: str | Path, max_batch: int = 1) -> dict[str, list[int]]:
    """Return the input shapes an engine is built for (a batch axis -1 becomes max_batch)."""
    return {name: ([max(1, int(max_batch))] + shape[1:] if shape and shape[0] == -1 else shape)
            for name, shape in onnx_input_shapes(onnx_path).items()}


def compute_key(onnx_path: str | Path, precision: str = DEFAULT_PRECISION,
                key_source: KeySource | None = None,
                input_shapes: dict[str, list[int]] | None = None) -> EngineKey:
    """Compute the key an engine built now from ``onnx_path`` would have.

    :param input_shapes: the shapes to build for; default the ONNX file's (static) shapes.
    """
    check_precision(precision)
    source = key_source or TensorRTKeySource()
    shapes = input_shapes if input_shapes is not None else onnx_input_shapes(onnx_path)
    version = source.tensorrt_version()
    gpu_name, capability = source.gpu()
    return EngineKey(file_sha256(onnx_path), version, gpu_name, capability,
                     precision, {k: [int(d) for d in v] for k, v in shapes.items()})


def check_precision(precision: str) -> str:
    """Return ``precision`` or raise :class:`EngineError` listing the supported ones."""
    if precision not in PRECISIONS:
        raise EngineError(f'Unsupported engine precision {precision!r}.',
                          f"Use one of: {', '.join(PRECISIONS)}.")
    return precision


# --- sidecar and cache decision ---------------------------------------------------------------
def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + '.json')


def write_sidecar(engine_path: str | Path, key: EngineKey, **extra: Any) -> Path:
    """Write the key (and build facts in ``extra``) beside the engine, atomically."""
    path = sidecar_path(engine_path)
    data = {'version': SIDECAR_VERSION, 'key': key.to_dict(),
            'built_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), **extra}
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + '\n')
    os.replace(tmp, path)
    return path


def read_sidecar(engine_path: str | Path) -> dict[str, Any] | None:
    """Read the sidecar mapping (``key`` as an :class:`EngineKey`); None when there is none.

    :raises EngineError: the sidecar exists but is not a valid one.
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get('key'), dict):
            raise ValueError('no "key" mapping')
    except (OSError, ValueError) as exc:
        raise EngineError(f'The engine sidecar {path} is unreadable: {exc}.',
                          f'Delete {path} and the engine, and build again.') from exc
    data['key'] = EngineKey.from_dict(data['key'])
    return data


def cache_decision(engine_path: str | Path, key: EngineKey,
                   force: bool = False) -> tuple[str, list[str]]:
    """Whether the engine at ``engine_path`` can be used for ``key``.

    :returns: ``('use', [])``, ``('build', [why])`` (no engine yet) or ``('rebuild', reasons)``
        (forced, no or bad sidecar, or a key mismatch with one reason per differing field).
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return 'build', [f'no engine at {engine_path}']
    if force:
        return 'rebuild', ['a rebuild was forced (force_engine_update)']
    try:
        sidecar = read_sidecar(engine_path)
    except EngineError as exc:
        return 'rebuild', [str(exc)]
    if sidecar is None:
        return 'rebuild', [f'the engine has no key file {sidecar_path(engine_path).name}, so '
                           'what it was built for is unknown']
    reasons = sidecar['key'].differences(key)
    return ('rebuild', reasons) if reasons else ('use', [])


def default_engine_path(onnx_path: str | Path, cache_dir: str | Path | None = None,
                        precision: str = DEFAULT_PRECISION) -> Path:
    """``x/model.onnx`` -> ``x/model.fp16.engine`` (or in ``cache_dir``).

    One file per precision, so FP16 and FP32 engines coexist; a new TensorRT version, GPU or
    ONNX file rebuilds that file in place (its sidecar says what it was built for).
    """
    onnx_path = Path(onnx_path)
    folder = Path(cache_dir).expanduser() if cache_dir else onnx_path.parent
    return folder / f'{onnx_path.stem}.{check_precision(precision)}.engine'


def resolve_engine_path(onnx_path: str | Path, engine_file_or_dir: str | Path | None = None,
                        precision: str = DEFAULT_PRECISION) -> Path:
    """Return the engine path for an ONNX file.

    That is an explicit ``.engine``/``.plan``/``.trt`` file, else :func:`default_engine_path` in
    the given folder (or beside the ONNX file).
    """
    if engine_file_or_dir and Path(engine_file_or_dir).suffix.lower() in ENGINE_SUFFIXES:
        return Path(engine_file_or_dir).expanduser()
    return default_engine_path(onnx_path, engine_file_or_dir, precision)


def _copy_card(onnx_path: Path, engine_path: Path) -> None:
    """Put the ONNX file's card beside the engine when they live apart."""
    from depth_node.models.card import card_path_for
    src, dst = card_path_for(onnx_path), card_path_for(engine_path)
    if src.is_file() and src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)


Builder = Callable[..., Any]


def ensure_engine(onnx_path: str | Path, engine_path: str | Path | None = None, *,
                  precision: str = DEFAULT_PRECISION, workspace_mib: int | None = None,
                  timing_cache: str | Path | None = None, force: bool = False,
                  allow_build: bool = True, key_source: KeySource | None = None,
                  builder: Builder | None = None, fp32_layers: str = 'auto',
                  max_batch: int = 1,
                  log: Callable[[str], Any] = print) -> tuple[Path, EngineKey]:
    """Provide an engine for ``onnx_path`` that fits this machine: the cached one or a new build.

    :param engine_path: engine file, or a folder for :func:`default_engine_path`; default
        beside the ONNX file.
    :param force: rebuild even when the cached engine matches.
    :param allow_build: False raises :class:`EngineError` instead of building.
    :param key_source: machine facts (default :class:`TensorRTKeySource`).
    :param builder: ``builder(onnx_path, engine_path, precision=..., workspace_mib=...,
        timing_cache=..., fp32_layers=..., log=...)`` writes the engine (and gets
        ``max_batch=`` for an ONNX file with a batch axis); default :func:`build_engine`.
    :param max_batch: for an ONNX file with a batch axis: the largest batch the engine takes
        (part of the cache key: another value rebuilds it); ignored for a fixed batch.
    :returns: ``(engine path, key)``; the sidecar and (if any) the ONNX card are beside it.
    """
    onnx_path = Path(onnx_path).expanduser()
    if not onnx_path.is_file():
        raise EngineError(f'ONNX file {onnx_path} does not exist.',
                          'Export one with depth-node export, or check the path.')
    engine_path = resolve_engine_path(onnx_path, engine_path, precision)
    shapes = engine_input_shapes(onnx_path, max_batch)
    batched = shapes != onnx_input_shapes(onnx_path)
    key = compute_key(onnx_path, precision, key_source, input_shapes=shapes)
    action, reasons = cache_decision(engine_path, key, force)
    if action == 'use':
        log(f'engine cache hit: {engine_path} ({key.precision}, TensorRT '
            f'{key.tensorrt_version}, {key.gpu_name})')
        _copy_card(onnx_path, engine_path)
        return engine_path, key
    if not allow_build:
        if action == 'build':
            reasons += _other_engines(onnx_path, engine_path, key)
        raise EngineError(
            f'The TensorRT engine {engine_path} cannot be used for {onnx_path.name}: '
            + '; '.join(reasons) + '.',
            f'Build it on this machine with: depth-node build-engine {onnx_path} --output '
            f'{engine_path} --precision {precision} (or allow engine builds).')
    log(f'building TensorRT engine {engine_path}: ' + '; '.join(reasons))
    _check_writable(engine_path)
    extra = {'max_batch': max(1, int(max_batch))} if batched else {}
    (builder or build_engine)(onnx_path, engine_path, precision=precision,
                              workspace_mib=workspace_mib, timing_cache=timing_cache,
                              fp32_layers=fp32_layers, log=log, **extra)
    if not engine_path.is_file() or engine_path.stat().st_size == 0:
        raise EngineError(f'The engine build wrote no engine at {engine_path}.',
                          'See the TensorRT messages above.')
    write_sidecar(engine_path, key, onnx=str(onnx_path),
                  workspace_mib=workspace_mib or DEFAULT_WORKSPACE_MIB, fp32_layers=fp32_layers)
    _copy_card(onnx_path, engine_path)
    return engine_path, key


def _check_writable(engine_path: Path) -> None:
    """Fail before a minutes-long build when the engine cannot be written."""
    try:
        engine_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(f'Cannot create the engine folder {engine_path.parent}: {exc}.',
                          'Set engine_file_path (--engine-cache-dir) to a writable folder.'
                          ) from exc
    if not os.access(engine_path.parent, os.W_OK) or (
            engine_path.exists() and not os.access(engine_path, os.W_OK)):
        raise EngineError(f'Cannot write the engine {engine_path} (read-only location).',
                          'Set engine_file_path (--engine-cache-dir) to a writable folder.')


def _other_engines(onnx_path: Path, engine_path: Path, key: EngineKey) -> list[str]:
    """Why the other engines of this model in the same folder do not fit (for the message)."""
    notes = []
    for other in sorted(engine_path.parent.glob(f'{onnx_path.stem}.*')):
        if other == engine_path or other.suffix.lower() not in ENGINE_SUFFIXES:
            continue
        try:
            sidecar = read_sidecar(other)
        except EngineError:
            sidecar = None
        if sidecar is not None:
            notes.append(f'{other.name} does not fit: '
                         + ', '.join(sidecar['key'].differences(key)))
    return notes


def check_engine_for_machine(engine_path: str | Path, key_source: KeySource | None = None) -> None:
    """For an engine given without its ONNX file: refuse one built elsewhere (if the sidecar says).

    :raises EngineError: TensorRT version or GPU differ from this machine's.
    """
    sidecar = read_sidecar(engine_path)
    if sidecar is None:
        return
    stored = sidecar['key']
    source = key_source or TensorRTKeySource()
    gpu_name, capability = source.gpu()
    here = EngineKey(stored.onnx_sha256, source.tensorrt_version(), gpu_name, capability,
                     stored.precision, stored.input_shapes)
    reasons = stored.differences(here)
    if reasons:
        raise EngineError(f'The TensorRT engine {engine_path} was built elsewhere: '
                          + '; '.join(reasons) + '.',
                          'Rebuild it here from its ONNX file with depth-node build-engine, or '
                          'give the .onnx file so it is rebuilt automatically.')


# --- TensorRT API checks, GPU probe, logger -----------------------------------------------
def tensorrt_major(trt: Any) -> int:
    """Major version of a ``tensorrt`` module (``'10.13.3.9'`` -> 10)."""
    try:
        return int(str(trt.__version__).split('.')[0])
    except (AttributeError, ValueError) as exc:
        raise EngineError(f'Cannot read the TensorRT version ({exc}).',
                          'Reinstall TensorRT (pip install tensorrt, or JetPack).') from exc


def required_api(major: int, purposes: tuple[str, ...] = API_PURPOSES) -> list[str]:
    """List the dotted ``tensorrt`` names used on TensorRT ``major`` for ``purposes``."""
    names = [name for purpose, name, since, until in TENSORRT_API
             if purpose in purposes and since <= major and (until is None or major < until)]
    return list(dict.fromkeys(names))


def resolve_api(trt: Any, name: str) -> Any:
    """Return ``trt.ILayer.precision`` for ``'ILayer.precision'``; AttributeError if absent."""
    obj = trt
    for part in name.split('.'):
        obj = getattr(obj, part)
    return obj


def missing_api(trt: Any, purposes: tuple[str, ...] = API_PURPOSES,
                major: int | None = None) -> list[str]:
    """List the names of :func:`required_api` that ``trt`` lacks (empty: API as expected)."""
    major = tensorrt_major(trt) if major is None else major
    missing = []
    for name in required_api(major, purposes):
        try:
            resolve_api(trt, name)
        except AttributeError:
            missing.append(name)
    return missing


def check_api(trt: Any, purposes: tuple[str, ...]) -> None:
    """:class:`EngineError` naming every missing TensorRT name this package needs."""
    missing = missing_api(trt, purposes)
    if missing:
        raise EngineError(f'TensorRT {trt.__version__} lacks API that depth_node uses: '
                          f"{', '.join(missing)}.",
                          'Use a TensorRT version depth_node supports (8.6, 10.x, 11.x) or '
                          'the onnxruntime / torch backend, and report the version.')


def weak_typing_fp16(trt: Any) -> bool:
    """Tell whether TensorRT builds FP32 ONNX as FP16 with ``BuilderFlag.FP16`` (only < 11)."""
    return tensorrt_major(trt) < 11 and not missing_api(trt, ('fp16',))


_CUDA_ERRORS = {100: 'the NVIDIA driver reports no CUDA GPU',
                34: 'only the CUDA stub library is installed, not a real NVIDIA driver',
                35: 'the NVIDIA driver is older than this CUDA runtime needs',
                999: 'unknown CUDA error (is the GPU in use by another container, or resetting?)'}


def _cuda_driver() -> tuple[Any, str]:
    """Load and initialise the NVIDIA driver library (ctypes); ``(None, why not)`` if absent."""
    import ctypes
    names = ('nvcuda.dll',) if sys.platform.startswith('win') else ('libcuda.so.1', 'libcuda.so')
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return None, 'no NVIDIA driver is installed (libcuda not found)'
    rc = lib.cuInit(0)
    if rc != 0:
        return None, f"cuInit failed: CUDA error {rc}, {_CUDA_ERRORS.get(rc, 'see cuda.h')}"
    return lib, ''


def cuda_devices() -> tuple[int, str]:
    """How many CUDA GPUs the NVIDIA driver reports, and why none when 0.

    Uses the driver API through ctypes (``cuInit``/``cuDeviceGetCount``): no torch needed, and
    it cannot crash or hang the way TensorRT does without a GPU.
    """
    import ctypes
    lib, why = _cuda_driver()
    if lib is None:
        return 0, why
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        return 0, f'cuDeviceGetCount failed: CUDA error {rc}'
    return count.value, '' if count.value else 'the NVIDIA driver reports no CUDA GPU'


def cuda_device(index: int = 0) -> tuple[str, str]:
    """``(name, 'major.minor' compute capability)`` of CUDA device ``index``, from the driver.

    :raises EngineError: no usable GPU, or no device ``index``.
    """
    import ctypes
    count, why = cuda_devices()
    if count == 0:
        raise EngineError(f'No CUDA GPU is usable ({why}), so no TensorRT engine can be built '
                          'or run.', 'Run on a host with an NVIDIA GPU and driver (on Jetson: '
                          'JetPack), or use the onnxruntime / torch backend.')
    if not 0 <= index < count:
        raise EngineError(f'There is no CUDA device {index} (the driver reports {count}).',
                          f'Use a device index from 0 to {count - 1}.')
    lib, _ = _cuda_driver()
    device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    # 75/76: CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/_MINOR
    codes = [lib.cuDeviceGet(ctypes.byref(device), index),
             lib.cuDeviceGetName(name, len(name), device),
             lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device),
             lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)]
    if any(codes):
        raise EngineError(f'The NVIDIA driver cannot describe CUDA device {index} (CUDA errors '
                          f'{codes}).', 'Check the GPU with nvidia-smi.')
    return name.value.decode(errors='replace'), f'{major.value}.{minor.value}'


def require_gpu(what: str) -> None:
    """:class:`EngineError` when no CUDA GPU is usable (TensorRT itself would crash or hang)."""
    count, why = cuda_devices()
    if count == 0:
        raise EngineError(f'{what} needs a CUDA GPU, and there is none usable here: {why}.',
                          'Run on a host with an NVIDIA GPU and driver (on Jetson: JetPack), '
                          'or use the onnxruntime / torch backend.')


def tensorrt_logger(trt: Any, log: Callable[[str], Any] | None = None) -> Any:
    """Make a ``trt.ILogger`` keeping TensorRT's errors (``.errors``), warnings sent to ``log``.

    TensorRT reports failures (no CUDA, parse and build errors, an engine from another version)
    through its logger, often while still returning an object: callers check ``.errors``.
    """
    severity = trt.ILogger.Severity
    error_level, warning_level = int(severity.ERROR), int(severity.WARNING)

    class _Logger(trt.ILogger):

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level, message):  # called by TensorRT, from any thread
            level = int(level)
            if level <= error_level:
                self.errors.append(str(message))
                if len(self.errors) > 200:  # repeated per-frame failures: keep the latest
                    del self.errors[:100]
            if level <= warning_level and log is not None:
                log(f"  TensorRT {'error' if level <= error_level else 'warning'}: {message}")

    return _Logger()


_LEAKED: list[Any] = []


def _leak(obj: Any) -> None:
    """Never free ``obj`` (a TensorRT object created while CUDA failed).

    A TensorRT runtime created without a working CUDA segfaults in its destructor (seen with
    TensorRT 10.16 and 11.4 without a GPU), so it must outlive the process.
    """
    import ctypes
    try:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    except (AttributeError, OSError):  # no CPython API (other interpreters): keep a reference
        _LEAKED.append(obj)


def tensorrt_object(factory: Callable[..., Any], logger: Any, what: str, *args: Any) -> Any:
    """``factory(*args)`` (``trt.Builder(logger)``, ``trt.Runtime(logger)``), or EngineError.

    Without a usable GPU ``trt.Builder`` raises ``TypeError: pybind11::init(): factory function
    returned nullptr``, and ``trt.Runtime`` logs a CUDA error and returns an object that crashes
    the process when used or freed: both become a clear error here (such an object is never
    freed). Call :func:`require_gpu` first where possible.
    """
    before = len(logger.errors)
    try:
        obj = factory(*args)
    except (TypeError, RuntimeError) as exc:
        obj, errors = None, [*logger.errors[before:], str(exc)]
    else:
        errors = logger.errors[before:]
    if obj is not None and errors:
        _leak(obj)
    if obj is None or errors:
        raise EngineError(f'TensorRT cannot create {what}: '
                          + ' | '.join(errors or ['no reason given']),
                          'Check the NVIDIA driver and GPU (nvidia-smi) and that the TensorRT '
                          'and CUDA versions match it, or use the onnxruntime / torch backend.')
    return obj


# --- TensorRT build ----------------------------------------------------------------------
class Heartbeat:
    """Log ``message (N s)`` every ``interval_s`` until the block ends (TensorRT < 10)."""

    def __init__(self, log: Callable[[str], Any], message: str, interval_s: float = 30.0) -> None:
        """:param log: where to write. :param message: the text. :param interval_s: period."""
        self.log, self.message, self.interval_s = log, message, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self.interval_s):
            self.beats += 1
            self.log(f'{self.message} ({time.monotonic() - start:.0f} s)')

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name='engine-build-heartbeat',
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _progress_monitor(trt: Any, log: Callable[[str], Any]) -> Any:
    """Make a ``trt.IProgressMonitor`` logging top-level phases (TensorRT >= 10), else None."""
    base = getattr(trt, 'IProgressMonitor', None)
    if base is None:
        return None

    class _Monitor(base):

        def __init__(self) -> None:
            base.__init__(self)
            self.started: dict[str, float] = {}
            self.last_log = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.started[phase_name] = time.monotonic()
            if parent_phase is None:
                log(f'  TensorRT: {phase_name} ({num_steps} steps)')

        def step_complete(self, phase_name, step):
            now = time.monotonic()
            if now - self.last_log > 15.0:
                self.last_log = now
                log(f'  TensorRT: {phase_name}: step {step + 1}')
            return True

        def phase_finish(self, phase_name):
            begun = self.started.pop(phase_name, None)
            if begun is not None and time.monotonic() - begun > 5.0:
                log(f'  TensorRT: {phase_name} done ({time.monotonic() - begun:.0f} s)')

    return _Monitor()


def mark_fp32_layers(network: Any, trt: Any, types: tuple[str, ...] = FP32_LAYER_TYPES) -> int:
    """Pin normalisation/softmax/reduce layers (and their outputs) to FP32; returns how many.

    Only layers computing floating-point tensors are pinned (a REDUCE over integer shape
    tensors must keep its type, or an FP32 constraint would fail the build). Works on anything
    with ``num_layers``/``get_layer(i)`` whose layers have ``type``, ``precision``,
    ``num_outputs``, ``get_output(i).dtype`` and ``set_output_type`` (TensorRT 8.6 and 10.x).
    """
    wanted = {getattr(trt.LayerType, name) for name in types if hasattr(trt.LayerType, name)}
    floats = (trt.float32, trt.float16)
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in wanted and all(layer.get_output(j).dtype in floats
                                        for j in range(layer.num_outputs)):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            count += 1
    return count


def _network_flags(trt: Any) -> int:
    """Explicit batch: required on TensorRT 8.x, the only mode (flag deprecated) on 10.x."""
    if tensorrt_major(trt) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _check_fp16_build(trt: Any) -> None:
    """Raise EngineError where this TensorRT cannot build FP16 from an FP32 ONNX file."""
    if weak_typing_fp16(trt):
        return
    if tensorrt_major(trt) < 11:  # API drift on 8.6/10.x: name what is missing
        check_api(trt, ('fp16',))
    raise EngineError(
        f'TensorRT {trt.__version__} cannot build an FP16 engine from an FP32 ONNX file: '
        'TensorRT 11 removed weak typing (BuilderFlag.FP16); engines compute in the ONNX '
        "file's types.",
        'Use precision fp32 (--precision fp32) with TensorRT 11, or TensorRT 10.x or 8.6 for '
        'FP16 engines. (An ONNX file converted to FP16 beforehand, e.g. with NVIDIA ModelOpt '
        'AutoCast, builds as FP16 on TensorRT 11 with --precision fp32.)')


def _load_timing_cache(config: Any, timing_cache: str | Path,
                       log: Callable[[str], Any]) -> Any:
    """Set the builder's timing cache from ``timing_cache`` (a new one if absent or foreign)."""
    path = Path(timing_cache).expanduser()
    blob = path.read_bytes() if path.is_file() else b''
    cache = config.create_timing_cache(blob)
    # False: refuse a cache from another TensorRT version or GPU instead of misusing it
    if blob and (cache is None or not config.set_timing_cache(cache, False)):
        log(f'timing cache {path} is from another TensorRT version or GPU; starting a new one')
        blob = b''
        cache = config.create_timing_cache(blob)
    if not blob:
        config.set_timing_cache(cache, False)
    log(f"timing cache {path} ({'loaded' if blob else 'new'})")
    return cache


def build_engine(onnx_path: str | Path, engine_path: str | Path, *,
                 precision: str = DEFAULT_PRECISION, workspace_mib: int | None = None,
                 timing_cache: str | Path | None = None, fp32_layers: str = 'auto',
                 max_batch: int = 1, log: Callable[[str], Any] = print) -> Path:
    """Build a TensorRT engine from an ONNX file with the TensorRT Python API.

    :param precision: ``fp16`` (with FP32 normalisation/softmax when ``fp32_layers='auto'``)
        or ``fp32``.
    :param workspace_mib: workspace memory pool limit (default 2048 MiB).
    :param timing_cache: file to load the timing cache from and save it back to.
    :param fp32_layers: ``auto`` (keep LayerNorm/softmax/reduce in FP32 in FP16 builds) or
        ``none``.
    :param max_batch: an ONNX input with a batch axis (first dimension dynamic) gets an
        optimization profile from batch 1 to ``max_batch`` (optimised for ``max_batch``).
    :raises EngineError: parse or build failure (with TensorRT's messages).
    """
    trt = require('tensorrt', 'building TensorRT engines')
    check_precision(precision)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    version = trt.__version__
    check_api(trt, ('build', 'progress'))
    if precision == 'fp16':
        _check_fp16_build(trt)
    require_gpu(f'Building a TensorRT engine (TensorRT {version})')
    start = time.monotonic()
    logger = tensorrt_logger(trt, log)
    builder = tensorrt_object(trt.Builder, logger, 'a builder', logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    log(f'parsing {onnx_path} (TensorRT {version}) ...')
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors
        raise EngineError(f'TensorRT cannot parse {onnx_path}: ' + ' | '.join(errors),
                          'Export the model again (opset 17+) or use the onnxruntime backend.')
    config = builder.create_builder_config()
    _batch_profile(trt, builder, network, config, max_batch)
    workspace = int(workspace_mib or DEFAULT_WORKSPACE_MIB)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace << 20)
    pinned = 0
    if precision == 'fp16':
        if not getattr(builder, 'platform_has_fast_fp16', True):
            log('warning: this GPU has no fast FP16; the FP16 engine may not be faster')
        config.set_flag(trt.BuilderFlag.FP16)
        if fp32_layers == 'auto':
            pinned = mark_fp32_layers(network, trt)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    cache = _load_timing_cache(config, timing_cache, log) if timing_cache else None
    monitor = _progress_monitor(trt, log)
    if monitor is not None:
        config.progress_monitor = monitor
    log(f'building {precision} engine for input '
        + ', '.join(f'{network.get_input(i).name} {tuple(network.get_input(i).shape)}'
                    for i in range(network.num_inputs))
        + f', workspace {workspace} MiB'
        + (f', {pinned} normalisation/softmax layers kept in FP32' if pinned else '')
        + ' (this can take minutes) ...')
    waiting = (Heartbeat(log, f'  still building {engine_path.name}') if monitor is None
               else contextlib.nullcontext())
    with waiting:
        serialized = builder.build_serialized_network(network, config)
    plan = memoryview(serialized) if serialized is not None else memoryview(b'')
    if not plan.nbytes:
        raise EngineError(f'TensorRT failed to build an engine from {onnx_path}'
                          + (': ' + ' | '.join(logger.errors[-5:]) if logger.errors else '.'),
                          'See the TensorRT messages above; try --precision fp32 or a larger '
                          '--workspace.')
    tmp = engine_path.with_name(engine_path.name + '.tmp')
    with tmp.open('wb') as handle:
        handle.write(plan)
    os.replace(tmp, engine_path)
    if cache is not None:
        try:
            Path(timing_cache).expanduser().write_bytes(
                memoryview(config.get_timing_cache().serialize()))
        except OSError as exc:
            log(f'warning: timing cache not saved to {timing_cache}: {exc}')
    log(f'engine {engine_path} written ({engine_path.stat().st_size / 2**20:.1f} MiB, '
        f'{time.monotonic() - start:.0f} s)')
    return engine_path


def _batch_profile(trt: Any, builder: Any, network: Any, config: Any, max_batch: int) -> None:
    """Add the optimization profile of inputs with a batch axis (batch 1 .. ``max_batch``)."""
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if not shape or shape[0] != -1:
            continue
        if any(d == -1 for d in shape[1:]):
            raise EngineError(f'ONNX input {tensor.name!r} has dynamic dimensions {shape} '
                              'besides the batch axis.',
                              'Export the model with a static image size (depth-node export).')
        if profile is None:
            check_api(trt, ('batch',))
            profile = builder.create_optimization_profile()
        top = max(1, int(max_batch))
        profile.set_shape(tensor.name, (1, *shape[1:]), (top, *shape[1:]), (top, *shape[1:]))
    if profile is not None:
        config.add_optimization_profile(profile)
