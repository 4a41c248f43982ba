"""The model description: cards, pre/post-processing, the golden reference, export and engines.

``card`` (the model card schema), ``preprocess`` (card-driven resize/normalise and the exact
geometric :class:`~depth_node.models.preprocess.Transform`), ``golden`` (the self-test
reference), ``zoo``/``export``/``engine`` (export to ONNX, TensorRT engines and their cache).
This layer sits below :mod:`depth_node.backends`, which run what it describes; the object that
loads and runs a model is :class:`depth_node.runner.DepthModel`. Only numpy, OpenCV and
PyYAML are imported here; torch, onnxruntime and TensorRT are imported when needed.
"""

from depth_node.models.card import (
    CARD_FIELDS,
    card_path_for,
    load_card,
    ModelCard,
)

__all__ = ['CARD_FIELDS', 'ModelCard', 'card_path_for',
           'load_card']
