"""The backend interface.

A :class:`Backend` runs one depth network: ``infer(tensor)`` takes the preprocessed input
(numpy on the CPU, or a torch tensor on the backend's device) and returns the network output as
one (H_n, W_n) float32 map: a numpy array on the CPU, a torch tensor on CUDA. The returned
map may be a buffer the backend reuses: it is valid until the next ``infer`` call.
``infer_batch(tensor)`` runs N inputs stacked on axis 0 in one network call and returns
(N, H_n, W_n) when the model has a batch dimension (:attr:`Backend.max_batch`); a model exported
with a fixed batch of 1 runs them one call each.

Every backend is checked against its card's golden reference when it loads
(:mod:`depth_node.models.golden`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Backend(ABC):
    """One loaded depth network behind a uniform interface."""

    name: str = 'backend'
    device: str = 'cpu'
    precision: str = 'fp32'
    #: the largest batch one network call takes: None = any (a dynamic batch axis), 1 = the
    #: model has a fixed batch of one (``infer_batch`` then runs one call per input)
    max_batch: int | None = 1

    def __init__(self, model_path: Any, card: Any) -> None:
        """:param model_path: what was loaded. :param card: the model card."""
        self.model_path = model_path
        self.card = card

    @abstractmethod
    def infer(self, tensor: Any) -> Any:
        """Run the network on one preprocessed input; return the (H_n, W_n) float32 output."""

    def infer_batch(self, tensor: Any) -> Any:
        """Run N inputs stacked on axis 0; return the (N, H_n, W_n) float32 outputs.

        This default runs one :meth:`infer` call per input and copies each output out of the
        reused buffer; backends whose model has a batch axis override it with one call.
        """
        result: Any = None
        for i in range(len(tensor)):
            output = self.infer(tensor[i:i + 1])
            if result is None:
                result = (output.new_empty((len(tensor),) + tuple(output.shape))
                          if hasattr(output, 'new_empty') else
                          np.empty((len(tensor),) + output.shape, np.float32))
            result[i] = output      # a copy: the backend reuses its output buffer
        return result

    def info(self) -> dict[str, str]:
        """Describe what runs: backend, device, provider or engine, precision, model."""
        return {'backend': self.name, 'device': self.device, 'precision': self.precision,
                'model': str(self.model_path)}

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release the session/engine and device memory (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.info()})'
