"""ONNX Runtime backend: TensorRT execution provider, else CUDA, else CPU.

On CUDA the input and output are bound to torch CUDA tensors with I/O binding (no host round
trip); on the CPU the input numpy buffer and a preallocated output buffer are bound, so a
frame allocates nothing. Only the card's ``output_name`` is computed.
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
        if len(shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(shape, want)):
            raise ModelError(f'The ONNX input {card.input_name!r} has shape {shape}, the card '
                             f'implies {list(want)} ({card.layout}).',
                             'Fix network_image_width/height or layout in the model card.')
        self._input_shape = want
        out_shape = outputs[card.output_name].shape
        self._output_shape = tuple(out_shape) if all(
            isinstance(d, int) and d > 0 for d in out_shape) else None

    def _prepare_output(self) -> None:
        """Bind a preallocated output buffer when the output shape is static."""
        if self._output_shape is None:
            return
        if self.device == 'cuda':
            torch = require('torch', 'GPU I/O binding of the onnxruntime backend')
            self._output = torch.empty(self._output_shape, dtype=torch.float32,
                                       device='cuda')
            self._binding.bind_output(self.card.output_name, 'cuda', 0, np.float32,
                                      self._output_shape, self._output.data_ptr())
        else:
            self._output = np.empty(self._output_shape, np.float32)
            self._binding.bind_output(self.card.output_name, 'cpu', 0, np.float32,
                                      self._output_shape, self._output.ctypes.data)

    def infer(self, tensor: Any) -> Any:
        """Run one input (numpy float32, or a torch tensor on CUDA); see :class:`Backend`."""
        from depth_node.models.preprocess import output_to_2d
        name = self.card.input_name
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
            if tensor.shape != tuple(self._input_shape):
                raise ModelError(f'Input tensor shape {tensor.shape} differs from the network '
                                 f'input {self._input_shape}.',
                                 'Preprocess with the same model card.')
            if self.device == 'cpu':
                self._binding.bind_input(name, 'cpu', 0, np.float32, tensor.shape,
                                         tensor.ctypes.data)
            else:
                self._binding.bind_cpu_input(name, tensor)
        if self._output is None:
            self._binding.bind_output(self.card.output_name,
                                      'cuda' if self.device == 'cuda' else 'cpu')
        self.session.run_with_iobinding(self._binding)
        if self._output is None:
            out = self._binding.get_outputs()[0]
            if self.device == 'cuda':
                torch = require('torch', 'GPU I/O of the onnxruntime backend')
                result = torch.from_dlpack(out.to_dlpack()) if hasattr(out, 'to_dlpack') else \
                    torch.as_tensor(out.numpy(), device='cuda')
            else:
                result = out.numpy()
            return output_to_2d(result)
        return output_to_2d(self._output)

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
