"""Inference backends behind one interface: TensorRT, ONNX Runtime, PyTorch.

:func:`load_backend` opens a model with the requested backend (or the best available one for
``'auto'``: TensorRT for engine files or when TensorRT and a GPU are present, else ONNX
Runtime for ONNX files, else PyTorch for zoo names, checkpoints and TorchScript files), logs
which one and why, and runs the golden self-test of the card
(:mod:`depth_node.models.golden`).
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
import importlib.util
from pathlib import Path
from typing import Any

from depth_node import parameters
from depth_node.backends.base import Backend
from depth_node.errors import BackendUnavailableError, ModelError, SelfTestError
from depth_node.models.golden import run_self_test

__all__ = ['BACKENDS', 'Backend', 'load_backend', 'select_backend']

BACKENDS = parameters.choices('backend')


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> tuple[bool, str]:
    if not _has_module('torch'):
        return False, 'torch is not installed (the TensorRT backend binds torch CUDA tensors)'
    import torch
    if not torch.cuda.is_available():
        return False, 'no CUDA GPU visible to torch'
    return True, torch.cuda.get_device_name(0)


def select_backend(model_path: str | Path) -> tuple[str, str]:
    """Return the backend ``'auto'`` picks for a model, and why.

    :returns: ``(backend name, reason)``.
    :raises BackendUnavailableError: nothing installed can run this model.
    """
    path = Path(str(model_path))
    suffix = path.suffix.lower() if path.is_file() else ''
    if suffix in ('.engine', '.plan', '.trt'):
        return 'tensorrt', 'the model is a serialized TensorRT engine'
    if suffix == '.onnx':
        has_trt = _has_module('tensorrt')
        gpu, gpu_text = _cuda_available()
        if has_trt and gpu:
            return 'tensorrt', f'TensorRT is installed and a GPU is present ({gpu_text})'
        why_not = 'TensorRT is not installed' if not has_trt else f'TensorRT unusable: {gpu_text}'
        if _has_module('onnxruntime'):
            return 'onnxruntime', f'{why_not}; onnxruntime runs the ONNX file'
        raise BackendUnavailableError(
            f'Nothing installed can run the ONNX file {path} ({why_not}; onnxruntime is not '
            'installed).',
            "Install it with: pip install 'depth_node[onnxruntime]' (or onnxruntime-gpu), or "
            'install TensorRT on a GPU host.')
    if _has_module('torch'):
        kind = 'a TorchScript file' if path.is_file() else 'a zoo name, hub id or checkpoint'
        return 'torch', f'the model is {kind}, which only the torch backend runs'
    raise BackendUnavailableError(
        f'The model {model_path} needs the torch backend, but torch is not installed.',
        "Install it with: pip install 'depth_node[torch]', or export the model to ONNX.")


def _tensorrt_class() -> Any:
    try:
        module = importlib.import_module('depth_node.backends.tensorrt')
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == 'tensorrt':
            raise BackendUnavailableError(
                f"Python module 'tensorrt' is not installed (needed for the tensorrt backend): "
                f'{exc}.', "Install it with: pip install 'depth_node[tensorrt]' (on Jetson it "
                'comes with JetPack).') from exc
        raise BackendUnavailableError(f'The TensorRT backend cannot be imported: {exc}.',
                                      'Use the onnxruntime or torch backend.') from exc
    return module.TensorRTBackend


def load_backend(model_path: Any, card: Any, backend: str = 'auto', *, precision: str = 'fp16',
                 engine_cache_dir: str | Path | None = None, force_engine_update: bool = False,
                 allow_engine_build: bool = True, self_test: bool = True,
                 log: Callable[[str], Any] = print, **options: Any) -> Backend:
    """Open a model with a backend and run its golden self-test.

    :param model_path: ``.onnx``/``.engine`` file, TorchScript file, zoo name, hub id or
        checkpoint folder (the last three need the torch backend).
    :param card: the model card (may be None for the torch backend with a zoo model).
    :param backend: ``auto`` | ``tensorrt`` | ``onnxruntime`` | ``torch``.
    :param precision: ``fp16`` or ``fp32`` (TensorRT, ONNX Runtime's TensorRT provider, torch on
        CUDA); CPUs always compute fp32.
    :param engine_cache_dir: engine cache folder (TensorRT backend and TensorRT provider).
    :param force_engine_update: rebuild the TensorRT engine even if a cached one matches.
    :param allow_engine_build: False refuses to build an engine (only cached ones are used).
    :param self_test: run the card's golden self-test (strongly recommended).
    :param log: where to write what was chosen and why.
    :param options: backend-specific extras (``max_batch``: the largest batch a TensorRT
        engine of an ONNX file with a batch axis is built for; ``providers``,
        ``intra_op_threads``; torch:
        ``device``, ``random_weights``, ``threads``, ``channels_last``, ``warmup``,
        ``compile``).
    :raises BackendUnavailableError: the backend's dependencies are missing.
    :raises SelfTestError: the self-test failed (the backend is closed).
    """
    if backend not in BACKENDS:
        raise ModelError(f'Unknown backend {backend!r}.', f"Use one of: {', '.join(BACKENDS)}.")
    if backend == 'auto':
        backend, reason = select_backend(model_path)
        log(f'backend auto -> {backend}: {reason}')
    if backend == 'tensorrt':
        cls = _tensorrt_class()
        instance = cls(model_path, card, precision=precision, engine_cache_dir=engine_cache_dir,
                       force_engine_update=force_engine_update,
                       allow_engine_build=allow_engine_build, log=log,
                       max_batch=int(options.get('max_batch', 1)))
    elif backend == 'onnxruntime':
        from depth_node.backends.onnxruntime import OnnxRuntimeBackend
        keep = {k: options[k] for k in ('providers', 'intra_op_threads') if k in options}
        instance = OnnxRuntimeBackend(model_path, card, precision=precision,
                                      engine_cache_dir=engine_cache_dir, log=log, **keep)
    else:
        from depth_node.backends.torch import TorchBackend
        keep = {k: options[k] for k in ('device', 'random_weights', 'threads', 'channels_last',
                                        'warmup', 'compile') if k in options}
        instance = TorchBackend(model_path, card, precision=precision, log=log, **keep)
    if self_test:
        try:
            run_self_test(instance, getattr(instance, 'card', None) or card, log=log,
                          base_dir=options.get('card_dir'))
        except (SelfTestError, ModelError):
            instance.close()
            raise
    return instance
