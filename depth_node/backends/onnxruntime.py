"""ONNX Runtime backend: TensorRT execution provider, else CUDA, else CPU.

On CUDA the input and output are bound to torch CUDA tensors with I/O binding (no host round
trip); on the CPU the input numpy buffer and a preallocated output buffer are bound, so a
frame allocates nothing. Only the card's ``output_name`` is computed.

A model exported with a dynamic batch axis (``depth-node export --dynamic-batch``: the first
input dimension is symbolic) runs N frames in one ``infer_batch`` call
(:attr:`~depth_node.backends.base.Backend.max_batch` is None); one with a fixed batch of 1 runs
them one call each.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
from typing import Any

from depth_node.backends.base import Backend
from depth_node.errors import BackendUnavailableError, ModelError, require
import numpy as np

TRT_EP = 'TensorrtExecutionProvider'
CUDA_EP = 'CUDAExecutionProvider'
CPU_EP = 'CPUExecutionProvider'


def default_threads() -> int:
    """intra-op threads: every core this process may use (2 on a 2-core host), at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


class OnnxRuntimeBackend(Backend):
    """Run an ONNX file with onnxruntime."""

    name = 'onnxruntime'

    def __init__(self, model_path: str | Path, card: Any, *, providers: list[str] | None = None,
                 precision: str = 'fp16', engine_cache_dir: str | Path | None = None,
                 intra_op_threads: int | None = None, log: Callable[[str], Any] = print) -> None:
        """Open an ONNX session.

        :param model_path: the ``.onnx`` file.
        :param card: its model card (input/output names, network size).
        :param providers: execution providers to try, best first (default: TensorRT, CUDA, CPU
            as far as this onnxruntime build has them).
        :param precision: ``fp16`` enables FP16 in the TensorRT provider; CUDA and CPU run fp32.
        :param engine_cache_dir: where the TensorRT provider caches its engines (default:
            ``<model dir>/trt_cache``).
        :param intra_op_threads: CPU threads (default :func:`default_threads`).
        """
        super().__init__(model_path, card)
        ort = require('onnxruntime', 'the onnxruntime backend')
        self._ort = ort
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f'ONNX model {path} does not exist.',
                             'Check model_file_path, or export one with depth-node export.')
        available = ort.get_available_providers()
        wanted = providers or [p for p in (TRT_EP, CUDA_EP, CPU_EP) if p in available]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime {ort.__version__} has no {', '.join(missing)} (it has "
                f"{', '.join(available)}).",
                'Install onnxruntime-gpu for CUDA/TensorRT, or use the CPU provider.')
        cache = Path(engine_cache_dir) if engine_cache_dir else path.parent / 'trt_cache'
        provider_list: list[Any] = []
        for p in wanted:
            if p == TRT_EP:
                cache.mkdir(parents=True, exist_ok=True)
                provider_list.append((p, {
                    'trt_fp16_enable': precision == 'fp16',
                    'trt_engine_cache_enable': True,
                    'trt_engine_cache_path': str(cache),
                    'trt_timing_cache_enable': True,
                    'trt_timing_cache_path': str(cache),
                }))
            else:
                provider_list.append(p)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = intra_op_threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=provider_list)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f'onnxruntime cannot load {path}: {exc}',
                             'Check that the file is a complete ONNX model for this '
                             'onnxruntime version (opset).') from exc
        active = self.session.get_providers()
        self.provider = active[0]
        self.device = 'cuda' if self.provider in (TRT_EP, CUDA_EP) else 'cpu'
        self.precision = 'fp16' if (self.provider == TRT_EP and precision == 'fp16') else 'fp32'
        self._check_io()
        self._binding = self.session.io_binding()
        self._output: Any = None
        self._prepare_output()
        log(f'onnxruntime {ort.__version__}: {path.name} on {self.provider} '
            f'({self.precision}, {opts.intra_op_num_threads} CPU threads)')

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        card = self.card
        if card.input_name not in inputs:
            raise ModelError(f'The ONNX model has no input {card.input_name!r} '
                             f"(it has {', '.join(inputs)}).",
                             'Fix input_name in the model card.')
        if card.output_name not in outputs:
            raise ModelError(f'The ONNX model has no output {card.output_name!r} '
                             f"(it has {', '.join(outputs)}).",
                             'Fix output_name in the model card.')
        shape = inputs[card.input_name].shape
        want = card.input_shape()
        # a symbolic (or -1) first dimension: a batch axis, any number of frames per call
        self.max_batch = 1 if isinstance(shape[0], int) and shape[0] > 0 else None
        if len(shape) != 4 or any(isinstance(d, int) and d > 0 and d != w
                                  for d, w in zip(shape[1:], want[1:])) or \
                (self.max_batch is not None and shape[0] != 1):
            raise ModelError(f'The ONNX input {card.input_name!r} has shape {shape}, the card '
                             f'implies {list(want)} ({card.layout}).',
                             'Fix network_image_width/height or layout in the model card.')
        self._input_shape = want
        out_shape = list(outputs[card.output_name].shape)
        if self.max_batch is None and out_shape:
            out_shape[0] = 1        # the batch axis: one frame per infer() call
        self._output_shape = tuple(out_shape) if all(
            isinstance(d, int) and d > 0 for d in out_shape) else None
        self._batch_outputs: dict[int, np.ndarray] = {}

    def _prepare_output(self) -> None:
        """Bind a preallocated output buffer when the output shape is static."""
        self._bound_batch = 1
        if self._output_shape is None:
            return
        self._output = self._batch_output(1)
        self._bind_buffer(self._output)

    def infer(self, tensor: Any) -> Any:
        """Run one input (numpy float32, or a torch tensor on CUDA); see :class:`Backend`."""
        from depth_node.models.preprocess import output_to_2d
        return output_to_2d(self._run(tensor, 1))

    def infer_batch(self, tensor: Any) -> Any:
        """Run N inputs stacked on axis 0 in one call (batch-axis models); (N, H_n, W_n)."""
        from depth_node.models.preprocess import output_to_batch
        n = int(tensor.shape[0])
        if self.max_batch is not None and n > self.max_batch:
            return super().infer_batch(tensor)
        return output_to_batch(self._run(tensor, n), n)

    def _run(self, tensor: Any, n: int) -> Any:
        """Bind the input (batch ``n``) and the output buffer, run, return the raw output."""
        name = self.card.input_name
        want = (n, *tuple(self._input_shape)[1:])
        if hasattr(tensor, 'data_ptr') and getattr(tensor, 'is_cuda', False):
            import torch
            tensor = tensor.contiguous()
            # onnxruntime runs on its own CUDA stream: the producer's kernels must be done
            torch.cuda.current_stream(tensor.device).synchronize()
            self._binding.bind_input(name, 'cuda', 0, np.float32, tuple(tensor.shape),
                                     tensor.data_ptr())
        else:
            if hasattr(tensor, 'detach'):
                tensor = tensor.detach().cpu().numpy()
            tensor = np.ascontiguousarray(tensor, dtype=np.float32)
            if tensor.shape != want:
                raise ModelError(f'Input tensor shape {tensor.shape} differs from the network '
                                 f'input {want}.', 'Preprocess with the same model card.')
            if self.device == 'cpu':
                self._binding.bind_input(name, 'cpu', 0, np.float32, tensor.shape,
                                         tensor.ctypes.data)
            else:
                self._binding.bind_cpu_input(name, tensor)
        output = self._output if n == 1 else self._batch_output(n)
        if output is None:
            self._binding.bind_output(self.card.output_name,
                                      'cuda' if self.device == 'cuda' else 'cpu')
        elif n > 1 or self._bound_batch != 1:
            self._bind_buffer(output)
        self._bound_batch = n
        self.session.run_with_iobinding(self._binding)
        if output is None:
            out = self._binding.get_outputs()[0]
            if self.device == 'cuda':
                torch = require('torch', 'GPU I/O of the onnxruntime backend')
                return torch.from_dlpack(out.to_dlpack()) if hasattr(out, 'to_dlpack') else \
                    torch.as_tensor(out.numpy(), device='cuda')
            return out.numpy()
        return output

    def _batch_output(self, n: int) -> Any:
        """Return the reused output buffer for a batch of ``n`` (None: shape not static)."""
        if self._output_shape is None:
            return None
        buffer = self._batch_outputs.get(n)
        if buffer is None:
            shape = (n, *self._output_shape[1:])
            if self.device == 'cuda':
                torch = require('torch', 'GPU I/O binding of the onnxruntime backend')
                buffer = torch.empty(shape, dtype=torch.float32, device='cuda')
            else:
                buffer = np.empty(shape, np.float32)
            self._batch_outputs[n] = buffer
        return buffer

    def _bind_buffer(self, buffer: Any) -> None:
        """Bind a preallocated output buffer (numpy on the CPU, torch on CUDA)."""
        if self.device == 'cuda':
            self._binding.bind_output(self.card.output_name, 'cuda', 0, np.float32,
                                      tuple(buffer.shape), buffer.data_ptr())
        else:
            self._binding.bind_output(self.card.output_name, 'cpu', 0, np.float32,
                                      buffer.shape, buffer.ctypes.data)

    def info(self) -> dict[str, str]:
        """Backend, device, provider, precision, model, onnxruntime version."""
        out = super().info()
        out.update(provider=self.provider, onnxruntime=self._ort.__version__,
                   threads=str(self.session.get_session_options().intra_op_num_threads))
        return out

    def close(self) -> None:
        """Drop the session and buffers."""
        self.session = None
        self._binding = None
        self._output = None
        self._batch_outputs = {}
