"""PyTorch backend: for development, for hosts without ONNX Runtime, and the CUDA path.

The network comes from :func:`depth_node.models.zoo.load_torch_model` (a zoo short name such as
``depth-anything-v2-small``, a hub id, or a local checkpoint folder) or from a TorchScript file
(``.pt``, ``.ts``, ``.torchscript``, ``.jit``), or is given as a ``torch.nn.Module``. It runs on
CUDA when available, else on the CPU.

On CUDA: ``fp16`` runs under ``torch.autocast`` (matmuls and convolutions in fp16, the
numerically sensitive ops - softmax, layer norm, reductions - kept in fp32 by autocast, as the
engine builder keeps them), weights and activations in channels-last layout, cuDNN
autotuning, a few warm-up runs when the model is loaded (at configure, not on the first frame),
and numpy inputs uploaded through a pinned host buffer. ``compile=True`` wraps the module in
``torch.compile`` (opt-in: long first run, not measured yet).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from depth_node.backends.base import Backend
from depth_node.errors import ModelError, require

TORCHSCRIPT_SUFFIXES = ('.pt', '.pth', '.ts', '.torchscript', '.jit')


def _first_tensor(output: Any) -> Any:
    """Return the depth map of a model output (tensor, tuple/list, dict or ModelOutput)."""
    if hasattr(output, 'predicted_depth'):
        return output.predicted_depth
    if isinstance(output, dict):
        for key in ('predicted_depth', 'depth', 'output'):
            if key in output:
                return output[key]
        return next(iter(output.values()))
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


class TorchBackend(Backend):
    """Run a PyTorch module eagerly."""

    name = 'torch'
    max_batch = None    # an nn.Module takes any batch

    def __init__(self, model: Any, card: Any = None, *, device: str | None = None,
                 precision: str = 'fp32', random_weights: bool = False,
                 threads: int | None = None, channels_last: bool | None = None,
                 warmup: int | None = None, compile: bool = False,  # noqa: A002
                 log: Callable[[str], Any] = print) -> None:
        """Load the module.

        :param model: zoo short name, hub id, checkpoint folder, TorchScript file, or an
            ``nn.Module`` mapping the normalised (1, 3, H, W) input to (1, H, W) depth.
        :param card: the model card; None takes the card the zoo returns.
        :param device: ``cuda`` or ``cpu`` (default: cuda when available).
        :param precision: ``fp16`` runs the module under fp16 autocast on CUDA (sensitive ops
            stay fp32); the CPU runs fp32.
        :param random_weights: zoo models only: random weights (benchmarks, offline tests).
        :param threads: torch CPU threads (default: torch's own choice).
        :param channels_last: channels-last memory format (default: on CUDA).
        :param warmup: inference runs at load time (default: 3 on CUDA, 0 on the CPU).
        :param compile: wrap the module in ``torch.compile`` (opt-in).
        """
        torch = require('torch', 'the torch backend')
        self._torch = torch
        module, label, zoo_card = _load_module(torch, model, card, random_weights)
        if card is None:
            if zoo_card is None:
                raise ModelError(f'No model card for the torch model {label}.',
                                 'Give the card fields as overrides or a card file.')
            card = zoo_card
        super().__init__(model if not isinstance(model, torch.nn.Module) else label, card)
        if device is None:
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise ModelError('The torch backend was asked for CUDA but torch sees no GPU.',
                             'Use device cpu, or install a CUDA build of torch.')
        if threads:
            torch.set_num_threads(threads)
        self.device = 'cuda' if device.startswith('cuda') else 'cpu'
        self._device = torch.device(device)
        self.precision = 'fp16' if (precision == 'fp16' and self.device == 'cuda') else 'fp32'
        on_cuda = self.device == 'cuda'
        self.channels_last = on_cuda if channels_last is None else bool(channels_last)
        scripted = isinstance(module, torch.jit.ScriptModule)
        module = module.eval().to(self._device)
        if not scripted:
            module = module.float()
            if self.channels_last:
                module = module.to(memory_format=torch.channels_last)
        if on_cuda:
            torch.backends.cudnn.benchmark = True   # fixed input shape: autotune once
        self.module = torch.compile(module) if compile else module
        self._staging: Any = None
        log(f'torch {torch.__version__}: {label} on {self.device} ({self.precision}'
            f"{', channels-last' if self.channels_last else ''}"
            f"{', compiled' if compile else ''})")
        runs = (3 if on_cuda else 0) if warmup is None else int(warmup)
        if runs > 0:
            import numpy as np
            dummy = np.zeros(tuple(self.card.input_shape()), np.float32)
            for _ in range(runs):
                self.infer(dummy)
            if on_cuda:
                torch.cuda.synchronize()

    def _upload(self, array: Any) -> Any:
        """Return a numpy input as a float32 tensor on the device (via a pinned buffer on CUDA)."""
        torch = self._torch
        src = torch.from_numpy(array)
        if self.device != 'cuda':
            return src.float()
        if self._staging is None or self._staging.shape != src.shape:
            self._staging = torch.empty(src.shape, dtype=torch.float32, pin_memory=True)
        self._staging.copy_(src)
        return self._staging.to(self._device, non_blocking=True)

    def infer(self, tensor: Any) -> Any:
        """Run one input: a tensor stays a tensor on the device; numpy gives numpy on the CPU.

        On CUDA the output is always a float32 tensor on the device.
        """
        from depth_node.models.preprocess import output_to_2d
        return self._run(tensor, output_to_2d)

    def infer_batch(self, tensor: Any) -> Any:
        """Run N inputs stacked on axis 0 in one module call; (N, H_n, W_n) (see :meth:`infer`)."""
        from depth_node.models.preprocess import output_to_batch
        n = int(tensor.shape[0])
        return self._run(tensor, lambda out: output_to_batch(out, n))

    def _run(self, tensor: Any, shape_output: Callable[[Any], Any]) -> Any:
        torch = self._torch
        from_numpy = not isinstance(tensor, torch.Tensor)
        x = self._upload(tensor) if from_numpy else tensor.to(
            self._device, dtype=torch.float32, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(
                device_type=self._device.type, dtype=torch.float16,
                enabled=self.precision == 'fp16'):
            out = _first_tensor(self.module(x))
        out = shape_output(out).float()
        if from_numpy and self.device == 'cpu':
            return out.numpy()
        return out

    def info(self) -> dict[str, str]:
        """Backend, device, precision, model, torch version."""
        out = super().info()
        out.update(torch=self._torch.__version__)
        return out

    def close(self) -> None:
        """Drop the module (and free cached CUDA memory)."""
        self.module = None
        if self.device == 'cuda':
            self._torch.cuda.empty_cache()


def _load_module(torch: Any, model: Any, card: Any, random_weights: bool) -> tuple[Any, str, Any]:
    """Return ``(module, label, card from the zoo or None)`` of what the torch backend runs."""
    if isinstance(model, torch.nn.Module):
        return model, type(model).__name__, None
    path = Path(str(model))
    if path.is_file() and path.suffix.lower() in TORCHSCRIPT_SUFFIXES:
        try:
            return torch.jit.load(str(path), map_location='cpu'), str(model), None
        except Exception as exc:  # torch raises RuntimeError and others
            raise ModelError(f'Cannot load TorchScript file {path}: {exc}.',
                             'Give a file saved with torch.jit.save, or a zoo name.') from exc
    if path.is_file():
        raise ModelError(f'The torch backend cannot run {path} ({path.suffix} file).',
                         'Use the onnxruntime or tensorrt backend for ONNX/engine files; the '
                         'torch backend takes zoo names, hub ids, checkpoint folders or '
                         'TorchScript files.')
    try:
        from depth_node.models import zoo
    except ImportError as exc:
        raise ModelError(f'The model zoo is not available: {exc}.',
                         'Give a TorchScript file instead.') from exc
    size = (card.network_image_width, card.network_image_height) if (
        card is not None and card.network_image_width) else None
    module, zoo_card = zoo.load_torch_model(str(model), random_weights=random_weights,
                                            input_size=size)
    return module, str(model), zoo_card
