"""One depth network ready to run: preprocess -> backend.infer -> postprocess.

:class:`DepthModel` keeps the preprocessing buffers and picks the GPU path (torch on the
device) when the backend runs on CUDA: the image is uploaded once and the image-resolution
result stays a tensor on the device, for the metric layer and the outputs to use there
(:mod:`depth_node.device`); only the published messages come back to the host.
:func:`open_model` goes from a model path to a
:class:`DepthModel`: card (with overrides) -> backend (with self-test).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import time
from typing import Any

from depth_node.backends import load_backend
from depth_node.backends.base import Backend
from depth_node.models.card import card_path_for, load_card, ModelCard
from depth_node.models.preprocess import (
    postprocess,
    postprocess_torch,
    Preprocessor,
    TorchPreprocessor,
    Transform,
)
import numpy as np

MODEL_FILE_SUFFIXES = ('.onnx', '.engine', '.plan', '.trt')


class DepthModel:
    """A depth network with its card: ``predict(rgb)`` -> raw output at image resolution.

    Not thread-safe (it reuses its buffers): call ``predict`` from one thread at a time.
    """

    def __init__(self, backend: Backend, card: ModelCard | None = None, *,
                 output_interpolation: str = 'linear', tensors: bool | None = None) -> None:
        """Wrap a loaded backend and its card.

        :param backend: a loaded backend.
        :param card: its card (default ``backend.card``).
        :param output_interpolation: how the output is resized back to the image.
        :param tensors: the GPU path: preprocess with torch on the backend's device and return
            the raw output as a tensor there (default: when the backend runs on CUDA). True
            with a CPU torch backend runs the same path on CPU tensors (tests, ``check-gpu
            --device cpu``).
        """
        self.backend = backend
        self.card: ModelCard = card if card is not None else backend.card
        self.output_interpolation = output_interpolation
        self.on_gpu = str(backend.device).startswith('cuda')
        self.tensors = self.on_gpu if tensors is None else bool(tensors)
        self._sync: Callable[[], Any] = lambda: None
        if self.tensors:
            self._pre: Any = TorchPreprocessor(self.card, str(backend.device))
            if self.on_gpu:
                import torch
                self._sync = torch.cuda.synchronize
        else:
            self._pre = Preprocessor(self.card)

    def predict(self, rgb: np.ndarray) -> tuple[Any, Transform, dict[str, float]]:
        """Run the network on one RGB image.

        :param rgb: (H, W, 3) uint8 RGB image (ImageFormatError otherwise).
        :returns: the raw model output at image resolution ((H, W) float32 in the units of
            ``card.output_kind``; NaN where ``keep_aspect_crop`` cut the image; a torch
            tensor on the backend's device on the GPU path, see ``tensors``), the
            preprocessing :class:`Transform`, and the timings ``preprocess_ms``,
            ``inference_ms``, ``postprocess_ms``.
        """
        t0 = time.perf_counter()
        tensor, transform = self._pre(rgb)
        t1 = time.perf_counter()
        output = self.backend.infer(tensor)
        self._sync()
        t2 = time.perf_counter()
        if self.tensors:
            raw = postprocess_torch(output, transform, self.output_interpolation,
                                    to_numpy=False)
        else:
            raw = postprocess(output, transform, self.output_interpolation)
        t3 = time.perf_counter()
        timings = {'preprocess_ms': (t1 - t0) * 1e3, 'inference_ms': (t2 - t1) * 1e3,
                   'postprocess_ms': (t3 - t2) * 1e3}
        return raw, transform, timings

    def info(self) -> dict[str, str]:
        """Return the backend's info plus the card's name and output kind."""
        out = dict(self.backend.info())
        out.update(card=self.card.name, output_kind=self.card.output_kind,
                   network_size=f'{self.card.network_image_width}x'
                                f'{self.card.network_image_height}')
        return out

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> DepthModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_model(model_path: Any, overrides: dict[str, Any] | None = None, backend: str = 'auto',
               *, card_path: str | Path | None = None, log: Callable[[str], Any] = print,
               **backend_options: Any) -> DepthModel:
    """Load a model's card and backend (with the golden self-test) as a :class:`DepthModel`.

    :param model_path: ``.onnx``/``.engine`` file, or for the torch backend a zoo name, hub id,
        checkpoint folder or TorchScript file.
    :param overrides: card fields to override (None values are ignored).
    :param backend: ``auto`` | ``tensorrt`` | ``onnxruntime`` | ``torch``.
    :param card_path: explicit card file (default: ``<model>.card.yaml`` beside the model).
    :param backend_options: passed to :func:`depth_node.backends.load_backend` (``precision``,
        ``engine_cache_dir``, ``force_engine_update``, ``allow_engine_build``, ``self_test``...).
    :raises ModelError: a missing model file, a bad card, a failed self-test (SelfTestError),
        a missing dependency (BackendUnavailableError).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = Path(str(model_path))
    if path.suffix.lower() in MODEL_FILE_SUFFIXES and not path.is_file():
        from depth_node.errors import ModelError
        raise ModelError(f'Model file {path} does not exist.',
                         'Check the path, or export one with depth-node export.')
    is_file_model = path.is_file() and path.suffix.lower() in MODEL_FILE_SUFFIXES
    card: ModelCard | None = None
    if is_file_model or card_path is not None or (path.exists() and card_path_for(path).is_file()):
        card = load_card(path, overrides, card_path=card_path)
    card_file = Path(card_path) if card_path is not None else card_path_for(path)
    backend_options.setdefault('card_dir', card_file.parent if card is not None else None)
    instance = load_backend(model_path, card, backend, log=log, **backend_options)
    if card is None:
        card = instance.card.replace(**overrides).validate() if overrides else instance.card
    return DepthModel(instance, card)
