"""TensorRT backend: a serialized engine bound by tensor name to torch CUDA tensors.

Uses only the name-based I/O API present in TensorRT 8.5+, 10.x and 11.x (``num_io_tensors``,
``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_shape``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``; the full list, checked before use, is the 'run'
part of :data:`depth_node.models.engine.TENSORRT_API`). Input and output live in preallocated
torch CUDA tensors; the engine runs on a dedicated torch CUDA stream ordered after the caller's
stream.

``infer`` with a torch CUDA tensor returns the output as a torch CUDA tensor (no host copy: the
consumer stays on the GPU); with a numpy array it copies the input up, and the output down once
into a pinned host buffer, returned as a numpy view. Either result is a buffer reused by the next
``infer`` call (see :class:`~depth_node.backends.base.Backend`).

Given an ``.onnx`` file, the engine comes from the cache in :mod:`depth_node.models.engine`
(rebuilt when the ONNX file, TensorRT version, GPU, precision or input shape changed). Given an
``.engine`` file, its sidecar (if any) must match this machine.

An engine built from an ONNX file with a batch axis (``depth-node export --dynamic-batch``) has
an optimization profile from batch 1 to ``max_batch``: ``infer_batch`` then runs up to that
many frames in one ``execute_async_v3`` (buffers are allocated once at the maximum; a call sets
the input shape of its batch and uses the first rows).

Importing this module needs neither TensorRT nor torch; constructing the backend does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from depth_node.backends.base import Backend
from depth_node.errors import EngineError, ModelError, require
from depth_node.models import engine as engines

# TensorRT data type name -> torch dtype name (TensorRT 8.6 and 10.x names)
_TORCH_DTYPES = {'FLOAT': 'float32', 'HALF': 'float16', 'INT32': 'int32', 'INT8': 'int8',
                 'BOOL': 'bool', 'UINT8': 'uint8', 'INT64': 'int64', 'BF16': 'bfloat16'}


def torch_dtype(trt_dtype: Any, torch: Any) -> Any:
    """Return the torch dtype of a TensorRT ``DataType`` (by name: 8.6, 10.x and 11.x)."""
    name = getattr(trt_dtype, 'name', str(trt_dtype)).split('.')[-1]
    if name not in _TORCH_DTYPES:
        raise EngineError(f'Engine tensor type {name} is not supported by the TensorRT backend.',
                          'Export the model with float32 input and output.')
    return getattr(torch, _TORCH_DTYPES[name])


class TensorRTBackend(Backend):
    """Run a TensorRT engine on a CUDA GPU."""

    name = 'tensorrt'
    device = 'cuda'

    def __init__(self, model_path: str | Path, card: Any, *, precision: str = 'fp16',
                 engine_cache_dir: str | Path | None = None, force_engine_update: bool = False,
                 allow_engine_build: bool = True, log: Callable[[str], Any] = print,
                 workspace_mib: int | None = None, timing_cache: str | Path | None = None,
                 device_index: int = 0, key_source: Any = None, max_batch: int = 1) -> None:
        """Load (and if needed build) the engine.

        :param model_path: ``.onnx`` (engine cached beside it or in ``engine_cache_dir``) or a
            serialized ``.engine``/``.plan``/``.trt`` file.
        :param card: the model card (input/output names and network size).
        :param precision: ``fp16`` or ``fp32`` (engines built from ONNX).
        :param engine_cache_dir: folder of cached engines (default: beside the ONNX file), or
            an engine file path (``.engine``/``.plan``/``.trt``).
        :param force_engine_update: rebuild even if the cached engine matches.
        :param allow_engine_build: False: only use a matching cached engine, else EngineError.
        :param log: progress and TensorRT warnings.
        :param workspace_mib: builder workspace limit.
        :param timing_cache: timing cache file (default ``<cache dir>/timing.cache``).
        :param device_index: CUDA device.
        :param key_source: engine-key machine facts (tests); default the real GPU.
        :param max_batch: for an ONNX file with a batch axis: the largest batch the engine is
            built for (e.g. the number of cameras of the node).
        """
        super().__init__(model_path, card)
        self._trt = require('tensorrt', 'the tensorrt backend')
        engines.check_api(self._trt, ('run',))
        self._torch = torch = require('torch', 'the tensorrt backend (CUDA buffers and streams)')
        if not torch.cuda.is_available():
            raise EngineError('The tensorrt backend needs a CUDA GPU, and torch sees none.',
                              'Use the onnxruntime or torch backend on this machine.')
        self.device = f'cuda:{device_index}' if device_index else 'cuda'
        self._device = torch.device('cuda', device_index)
        self._log = log
        self.context = self.engine = None
        key_source = key_source or engines.TensorRTKeySource(device_index)
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelError(f'Model file {path} does not exist.',
                             'Check model_file_path / engine_file_path.')
        if path.suffix.lower() in engines.ENGINE_SUFFIXES:
            engines.check_engine_for_machine(path, key_source)
            sidecar = engines.read_sidecar(path)
            self.precision = sidecar['key'].precision if sidecar else 'unknown'
            self.engine_path = path
        else:
            if precision == 'fp16' and not engines.weak_typing_fp16(self._trt):
                log(f'TensorRT {self._trt.__version__} builds an FP32 ONNX file only as FP32 '
                    '(weak typing was removed in TensorRT 11): using precision fp32 instead of '
                    'fp16. Set precision: fp32 to silence this, or use TensorRT 10.x/8.6 for '
                    'FP16 engines.')
                precision = 'fp32'
            engine_path = engines.resolve_engine_path(path, engine_cache_dir, precision)
            if timing_cache is None:
                timing_cache = engine_path.parent / 'timing.cache'
            with torch.cuda.device(self._device):
                self.engine_path, key = engines.ensure_engine(
                    path, engine_path, precision=precision, workspace_mib=workspace_mib,
                    timing_cache=timing_cache, force=force_engine_update,
                    allow_build=allow_engine_build, key_source=key_source,
                    max_batch=max_batch, log=log)
            self.precision = key.precision
        self._load()

    # --- loading ----------------------------------------------------------------------------
    def _load(self) -> None:
        trt, torch = self._trt, self._torch
        blob = self.engine_path.read_bytes()
        # warnings to our log; errors kept for the messages below
        self._trt_logger = logger = engines.tensorrt_logger(trt, self._log)
        with torch.cuda.device(self._device):
            # a runtime that logged a CUDA failure crashes the process when used or freed
            self._runtime = engines.tensorrt_object(trt.Runtime, logger, 'a runtime', logger)
            before = len(logger.errors)
            self.engine = self._runtime.deserialize_cuda_engine(blob)
            if self.engine is None:
                why = ' | '.join(logger.errors[before:]) or 'no reason given'
                raise EngineError(
                    f'TensorRT {trt.__version__} cannot deserialize {self.engine_path} ({why}): '
                    'the file is corrupt, truncated, or was built by another TensorRT version or '
                    'for another GPU.',
                    'Delete it and rebuild it on this machine (depth-node build-engine, or give '
                    'the .onnx file and allow engine builds).')
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise EngineError(f'TensorRT cannot create an execution context for '
                                  f'{self.engine_path} (out of GPU memory?).',
                                  'Free GPU memory or use a smaller model.')
            self._bind()
            self._stream = torch.cuda.Stream(device=self._device)
        self._log(f'tensorrt {trt.__version__}: {self.engine_path.name} on '
                  f'{torch.cuda.get_device_name(self._device)} ({self.precision}); input '
                  f'{self._input_name} {tuple(self._input.shape)}, output {self._output_name} '
                  f'{tuple(self._output.shape)}')

    def _bind(self) -> None:
        trt, torch, card = self._trt, self._torch, self.card
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise EngineError(f"{self.engine_path} has {len(inputs)} inputs ({', '.join(inputs)})"
                              '; the backend runs single-image networks.',
                              'Export the model with one image input.')
        self._input_name = inputs[0]
        if card.input_name and card.input_name != self._input_name:
            raise ModelError(f'The engine input is {self._input_name!r}, the card says '
                             f'{card.input_name!r}.', 'Fix input_name in the model card.')
        want = tuple(card.input_shape())
        shape = tuple(engine.get_tensor_shape(self._input_name))
        self.max_batch = 1
        if shape and shape[0] == -1:
            # a batch axis: buffers for the profile's largest batch, run with the first rows
            top = tuple(engine.get_tensor_profile_shape(self._input_name, 0)[2])
            self.max_batch = max(1, int(top[0]))
            want = (self.max_batch, *want[1:])
        if any(d == -1 for d in shape):
            if not self.context.set_input_shape(self._input_name, want):
                raise EngineError(f'The engine does not accept the input shape {want} '
                                  f'(profile {shape}).', "Rebuild it for the card's size.")
        elif shape != want:
            raise ModelError(f'The engine input {self._input_name!r} has shape {shape}, the card '
                             f'implies {want}.',
                             'Fix network_image_width/height/layout in the card, or rebuild.')
        self._output_name = card.output_name or outputs[0]
        if self._output_name not in outputs:
            raise ModelError(f'The engine has no output {self._output_name!r} (it has '
                             f"{', '.join(outputs)}).", 'Fix output_name in the model card.')
        self._buffers = {}
        for name in names:
            dims = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in dims):
                raise EngineError(f'Engine tensor {name!r} has an unresolved shape {dims}.',
                                  'Export the model with static shapes.')
            dtype = torch_dtype(engine.get_tensor_dtype(name), torch)
            buf = torch.empty(dims, dtype=dtype, device=self._device)
            self._buffers[name] = buf
            if not self.context.set_tensor_address(name, buf.data_ptr()):
                raise EngineError(f'TensorRT refused the buffer of tensor {name!r} {dims} '
                                  f'{dtype}: ' + ' | '.join(self._trt_logger.errors[-3:]),
                                  'Rebuild the engine on this machine.')
        self._input = self._buffers[self._input_name]
        self._output = self._buffers[self._output_name]
        self._batch = self.max_batch      # the batch the input shape is set for
        # (batch, [1,] H, W); a 2-D (H, W) output has no batch axis
        dims = tuple(self._output.shape)
        out2d = [d for d in (dims[1:] if len(dims) > 2 else dims) if d != 1]
        if len(out2d) != 2:
            raise ModelError(f'The engine output {self._output_name!r} has shape '
                             f'{tuple(self._output.shape)}, not one depth map.',
                             'Export the model so it outputs (1, H, W).')
        self._out_hw = tuple(out2d)
        self._host_in = self._pinned(tuple(self._input.shape), self._input.dtype)
        self._host_out = self._pinned((self.max_batch, *self._out_hw), torch.float32)

    def _pinned(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Allocate a page-locked host buffer (fast, asynchronous copies to and from the GPU)."""
        return self._torch.empty(shape, dtype=dtype, pin_memory=True)

    # --- inference ---------------------------------------------------------------------------
    def infer(self, tensor: Any) -> Any:
        """Run one input; torch CUDA in -> torch CUDA out, numpy in -> numpy out (see module)."""
        return self._execute(tensor, 1)[0]

    def infer_batch(self, tensor: Any) -> Any:
        """Run N inputs (N <= :attr:`max_batch` in one call, else in chunks); (N, H_n, W_n)."""
        n = int(tensor.shape[0])
        if n > self.max_batch:
            return super().infer_batch(tensor)
        return self._execute(tensor, n)

    def _execute(self, tensor: Any, n: int) -> Any:
        """Run a batch of ``n`` in the first rows of the buffers; returns (n, H_n, W_n)."""
        torch = self._torch
        if self.context is None:
            raise ModelError('The tensorrt backend is closed.', 'Load the model again.')
        if n != self._batch:
            shape = (n, *tuple(self._input.shape)[1:])
            if not self.context.set_input_shape(self._input_name, shape):
                raise EngineError(f'The engine does not accept the input shape {shape} (batch '
                                  f'1 to {self.max_batch}).', 'Rebuild it for a larger batch.')
            self._batch = n
        want = (n, *tuple(self._input.shape)[1:])
        on_gpu = isinstance(tensor, torch.Tensor) and tensor.is_cuda
        stream = self._stream
        # after the caller's queued work: the input it produced, its reads of the last output
        stream.wait_stream(torch.cuda.current_stream(self._device))
        rows = self._input[:n]
        if on_gpu:
            if tuple(tensor.shape) != want:
                raise ModelError(f'Input tensor shape {tuple(tensor.shape)} differs from the '
                                 f'engine input {want}.', 'Preprocess with the same model card.')
            with torch.cuda.stream(stream):
                rows.copy_(tensor, non_blocking=True)
        else:
            host = tensor if isinstance(tensor, torch.Tensor) else torch.from_numpy(
                _as_float32(tensor))
            if tuple(host.shape) != want:
                raise ModelError(f'Input tensor shape {tuple(host.shape)} differs from the '
                                 f'engine input {want}.', 'Preprocess with the same model card.')
            self._host_in[:n].copy_(host)
            with torch.cuda.stream(stream):
                rows.copy_(self._host_in[:n], non_blocking=True)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f'TensorRT execution failed for {self.engine_path.name}: '
                              + ' | '.join(self._trt_logger.errors[-3:]),
                              'See the TensorRT messages in the log.')
        out = (self._output[:n] if self._output.dim() > 2 else self._output).reshape(
            (n, *self._out_hw))
        if out.dtype != torch.float32:
            with torch.cuda.stream(stream):
                out = out.float()
        if on_gpu:
            torch.cuda.current_stream(self._device).wait_stream(stream)
            return out
        host_out = self._host_out[:n]
        with torch.cuda.stream(stream):
            host_out.copy_(out, non_blocking=True)
        stream.synchronize()
        return host_out.numpy()

    def info(self) -> dict[str, str]:
        """Backend, device (GPU name), engine, precision, model, TensorRT version."""
        out = super().info()
        out.update(device=f'{self.device} ({self._torch.cuda.get_device_name(self._device)})',
                   engine=str(self.engine_path), tensorrt=str(self._trt.__version__))
        return out

    def close(self) -> None:
        """Release the context, engine and buffers (idempotent)."""
        self.context = None
        self.engine = None
        self._buffers = {}
        self._input = self._output = None


def _as_float32(array: Any) -> Any:
    import numpy as np
    return np.ascontiguousarray(array, dtype=np.float32)
