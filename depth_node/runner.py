"""One depth network ready to run: preprocess -> backend.infer -> postprocess.

:class:`DepthModel` keeps the preprocessing buffers and picks the GPU path (torch on the
device) when the backend runs on CUDA: the image is uploaded once and the image-resolution
result stays a tensor on the device, for the metric layer and the outputs to use there
(:mod:`depth_node.device`); only the published messages come back to the host.
:func:`open_model` goes from a model path to a
:class:`DepthModel`: card (with overrides) -> backend (with self-test).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
import time
from typing import Any, Protocol

from depth_node.backends import load_backend
from depth_node.backends.base import Backend
from depth_node.models.card import card_path_for, load_card, ModelCard
from depth_node.models.preprocess import (
    output_to_batch,
    postprocess,
    postprocess_torch,
    Preprocessor,
    TorchPreprocessor,
    Transform,
)
import numpy as np

MODEL_FILE_SUFFIXES = ('.onnx', '.engine', '.plan', '.trt')


class DepthPredictor(Protocol):
    """What the pipeline and the node need of a model (:class:`DepthModel` is one).

    ``card`` says what the output means (``output_kind``, ``max_depth``...); ``predict`` maps
    an (H, W, 3) uint8 RGB image to the raw output at image resolution, the preprocessing
    transform and the stage timings; ``predict_batch`` does the same for the images of
    several cameras in one network call.
    """

    card: ModelCard

    def predict(self, rgb: np.ndarray) -> tuple[Any, Transform, dict[str, float]]:
        """Run the network on one RGB image."""

    def predict_batch(self, rgbs: Sequence[np.ndarray]
                      ) -> tuple[list[tuple[Any, Transform]], dict[str, float]]:
        """Run the network on several RGB images as one batch (several cameras)."""

    def close(self) -> None:
        """Release the model."""


class DepthModel:
    """A depth network with its card: ``predict(rgb)`` -> raw output at image resolution.

    Not thread-safe (it reuses its buffers): call ``predict`` from one thread at a time.
    """

    def __init__(self, backend: Backend, card: ModelCard | None = None, *,
                 output_interpolation: str = 'linear', tensors: bool | None = None,
                 log: Callable[[str], Any] = print) -> None:
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
        self._log = log
        self._batches: dict[int, tuple[Any, list[Any]]] = {}
        self._noted_fixed_batch = False

    @property
    def max_batch(self) -> int | None:
        """The most frames one network call takes (None = any; 1 = one call per frame)."""
        if self.tensors and self.card.layout != 'nchw':
            return 1     # the GPU preprocessing writes batch slots in nchw only
        return getattr(self.backend, 'max_batch', 1)

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

    def predict_batch(self, rgbs: Sequence[np.ndarray]
                      ) -> tuple[list[tuple[Any, Transform]], dict[str, float]]:
        """Run the network on several RGB images (of any sizes) as one batch.

        Each image is preprocessed into its slot of one (N, ...) input tensor, the network runs
        once (in chunks of :attr:`max_batch` when the model limits it), and each output is
        brought back to its own image's resolution. A model with a fixed batch of 1 runs one
        call per image (a one-time notice says how to export one with a batch axis).

        :returns: ``[(raw, transform)]`` in the order of ``rgbs`` (as :meth:`predict`
            returns them), and the batch's timings ``preprocess_ms``, ``inference_ms``,
            ``postprocess_ms`` (summed over its calls), ``batch_size`` and ``model_calls``.
        """
        n = len(rgbs)
        limit = self.max_batch
        if n <= 1 or limit == 1:
            if n > 1 and not self._noted_fixed_batch:
                self._noted_fixed_batch = True
                self._log(f'model {self.card.name or self.backend.model_path}: fixed batch of '
                          f'1, so the {n} frames of a round run one network call each. '
                          'Export it with a batch axis (depth-node export --dynamic-batch) to '
                          'run them as one batch.')
            results, timings = [], {'batch_size': float(n), 'model_calls': float(n)}
            for rgb in rgbs:
                raw, transform, single = self.predict(rgb)
                results.append((raw, transform))
                for key, value in single.items():
                    timings[key] = timings.get(key, 0.0) + value
            return results, timings
        step = n if limit is None else max(1, int(limit))
        timings = {'preprocess_ms': 0.0, 'inference_ms': 0.0, 'postprocess_ms': 0.0,
                   'batch_size': float(n), 'model_calls': 0.0}
        results = []
        for start in range(0, n, step):
            results += self._run_batch(rgbs[start:start + step], timings)
            timings['model_calls'] += 1
        return results, timings

    def _batch_tensor(self, n: int) -> tuple[Any, list[Any]]:
        """Return the reused (n, ...) input tensor and the transform last written per slot."""
        entry = self._batches.get(n)
        if entry is None:
            shape = (n, *tuple(self.card.input_shape())[1:])
            if self.tensors:
                import torch
                shape = (n, 3, self.card.network_image_height, self.card.network_image_width)
                tensor: Any = torch.zeros(shape, dtype=torch.float32,
                                          device=str(self.backend.device))
            else:
                tensor = np.zeros(shape, np.float32)
            entry = self._batches[n] = (tensor, [None] * n)
        return entry

    def _run_batch(self, rgbs: Sequence[np.ndarray], timings: dict[str, float]
                   ) -> list[tuple[Any, Transform]]:
        n = len(rgbs)
        t0 = time.perf_counter()
        tensor, written = self._batch_tensor(n)
        transforms = []
        for i, rgb in enumerate(rgbs):
            slot = tensor[i:i + 1]
            _, transform = self._pre(rgb, out=slot)
            if written[i] is not None and written[i] != transform:
                # another image size in this slot: clear the old content outside the new
                # image (the letterbox border must be 0) and write again
                slot.fill(0) if isinstance(slot, np.ndarray) else slot.zero_()
                self._pre(rgb, out=slot)
            written[i] = transform
            transforms.append(transform)
        t1 = time.perf_counter()
        output = output_to_batch(self.backend.infer_batch(tensor), n)
        self._sync()
        t2 = time.perf_counter()
        results = []
        for i, transform in enumerate(transforms):
            if self.tensors:
                raw = postprocess_torch(output[i], transform, self.output_interpolation,
                                        to_numpy=False)
            else:
                raw = postprocess(output[i], transform, self.output_interpolation)
            results.append((raw, transform))
        t3 = time.perf_counter()
        timings['preprocess_ms'] += (t1 - t0) * 1e3
        timings['inference_ms'] += (t2 - t1) * 1e3
        timings['postprocess_ms'] += (t3 - t2) * 1e3
        return results

    def info(self) -> dict[str, str]:
        """Return the backend's info plus the card's name and output kind."""
        out = dict(self.backend.info())
        limit = self.max_batch
        out.update(card=self.card.name, output_kind=self.card.output_kind,
                   max_batch='any' if limit is None else str(limit),
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
    if isinstance(model_path, (str, Path)) and ('/' in str(model_path) or path.suffix):
        from depth_node.models.model_path import check_model_path
        check_model_path(str(model_path), 'model')   # a path never goes to the hub
    is_file_model = path.is_file() and path.suffix.lower() in MODEL_FILE_SUFFIXES
    card: ModelCard | None = None
    if is_file_model or card_path is not None or (path.exists() and card_path_for(path).is_file()):
        card = load_card(path, overrides, card_path=card_path)
    card_file = Path(card_path) if card_path is not None else card_path_for(path)
    backend_options.setdefault('card_dir', card_file.parent if card is not None else None)
    instance = load_backend(model_path, card, backend, log=log, **backend_options)
    if card is None:
        card = instance.card.replace(**overrides).validate() if overrides else instance.card
    return DepthModel(instance, card, log=log)
