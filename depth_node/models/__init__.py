"""Depth networks: model cards, pre/post-processing, the runner, export and engines.

``card`` (the model card schema), ``preprocess`` (card-driven resize/normalise and the exact
geometric :class:`~depth_node.models.preprocess.Transform`), ``runner``
(:class:`~depth_node.models.runner.DepthModel`, :func:`~depth_node.models.runner.open_model`),
``bench`` (``depth-node bench model``), ``zoo``/``export``/``engine`` (export to ONNX and
TensorRT engines). Only numpy, OpenCV and PyYAML are imported here; torch, onnxruntime and
TensorRT are imported when a backend needs them.
"""

from depth_node.models.card import (
    add_card_arguments,
    CARD_FIELDS,
    card_overrides,
    card_path_for,
    load_card,
    ModelCard,
)

__all__ = ['CARD_FIELDS', 'ModelCard', 'add_card_arguments', 'card_overrides', 'card_path_for',
           'load_card']
