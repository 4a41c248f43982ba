"""Model cards: what a depth network expects as input and what its output means.

A card is a small YAML file stored beside the model (``model.onnx`` -> ``model.card.yaml``),
written by ``depth-node export`` or by hand. It is the single source of truth for pre- and
post-processing: nothing about a model is hard-coded elsewhere. Every field except
``reference`` can be overridden by a CLI flag (``--network-image-width``) or a ROS parameter of
the same name, so a card-less ONNX file runs when enough fields are given that way.

Schema (the README and ``doc/model_card.md`` carry the same table):

====================== ============ ============== ============================================
field                  type         default        meaning
====================== ============ ============== ============================================
name                   str          ''             model name
source                 str          ''             hub id or URL the weights came from
license                str          ''             licence of the weights (say if research-only)
input_name             str          from the ONNX  name of the network's input tensor
output_name            str          first output   name of the depth output tensor
network_image_width    int          from the ONNX  network input width, pixels
network_image_height   int          from the ONNX  network input height, pixels
layout                 str          nchw           nchw | nhwc (input tensor layout)
input_encoding         str          rgb8           rgb8 | bgr8 (channel order of the input)
pixel_scale            float        1/255          uint8 value x pixel_scale before mean/std
image_mean             3 floats     0, 0, 0        subtracted after scaling (network ch. order)
image_stddev           3 floats     1, 1, 1        divides after the mean is subtracted
resize                 str          stretch        stretch | keep_aspect_pad | keep_aspect_crop
interpolation          str          linear         nearest | linear | cubic | area
output_kind            str          relative_      metric_depth (metres) | relative_depth
                                    inverse_depth  (larger = farther) | relative_inverse_depth
                                                   (larger = nearer); required without a card
canonical_focal_px     float|null   null           metric output holds for this focal length
                                                   (network px): m = out x f_net / this
max_depth              float|null   null           largest depth the model outputs, metres
reference              mapping      null           golden self-test input and output digest
                                                   (see depth_node.backends.base); no flag
====================== ============ ============== ============================================

Every field but ``reference`` is also a CLI flag (``--network-image-width``) and a ROS
parameter. Numbers may be written as fractions (``1/255``), triples as ``0.5,0.5,0.5``; a ROS
parameter of 0 means null for ``canonical_focal_px`` and ``max_depth``.

Input normalisation: ``x = (pixel * pixel_scale - image_mean) / image_stddev`` per channel, in
the channel order of ``input_encoding``. ``keep_aspect_pad`` fills the border with 0 *after*
normalisation (the dataset mean colour for mean/std models, black otherwise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Any

from depth_node import parameters
from depth_node.errors import CardError
import yaml

# the choices of the card fields live in the parameter table (the card fields are parameters)
LAYOUTS = parameters.choices('layout')
INPUT_ENCODINGS = parameters.choices('input_encoding')
RESIZE_MODES = parameters.choices('resize')
INTERPOLATIONS = parameters.choices('interpolation')
OUTPUT_KINDS = parameters.choices('output_kind')

_CHOICES = {
    'layout': LAYOUTS,
    'input_encoding': INPUT_ENCODINGS,
    'resize': RESIZE_MODES,
    'interpolation': INTERPOLATIONS,
    'output_kind': OUTPUT_KINDS,
}


@dataclass
class ModelCard:
    """Description of a depth network's input and output; see the module docstring."""

    name: str = ''
    source: str = ''
    license: str = ''  # noqa: A003
    input_name: str = ''
    output_name: str = ''
    network_image_width: int = 0
    network_image_height: int = 0
    layout: str = 'nchw'
    input_encoding: str = 'rgb8'
    pixel_scale: float = 1 / 255
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_stddev: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = 'stretch'
    interpolation: str = 'linear'
    output_kind: str = 'relative_inverse_depth'
    canonical_focal_px: float | None = None
    max_depth: float | None = None
    reference: dict | None = field(default=None, repr=False)

    @property
    def is_metric(self) -> bool:
        """Return True when the output is metric depth in metres."""
        return self.output_kind == 'metric_depth'

    @property
    def network_size(self) -> tuple[int, int]:
        """``(width, height)`` of the network input."""
        return self.network_image_width, self.network_image_height

    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of the network input tensor per ``layout`` (batch 1)."""
        w, h = self.network_image_width, self.network_image_height
        return (1, 3, h, w) if self.layout == 'nchw' else (1, h, w, 3)

    # --- conversion -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, validate: bool = True) -> ModelCard:
        """Build a card from a mapping (as read from YAML); unknown keys are a CardError.

        :param data: field name -> value; values are converted to the field's type.
        :param validate: check the result with :meth:`validate`.
        """
        if not isinstance(data, dict):
            raise CardError(f'A model card must be a mapping, got {type(data).__name__}.',
                            'Write the card as YAML "field: value" lines (see doc/model_card.md).')
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardError(f"Unknown model card field(s): {', '.join(unknown)}.",
                            f"Allowed fields: {', '.join(sorted(known))}.")
        values = {k: coerce_field(k, v) for k, v in data.items()}
        card = cls(**values)
        if validate:
            card.validate()
        return card

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping with YAML-friendly values (lists instead of tuples)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [float(v) for v in value]
            out[f.name] = value
        return out

    @classmethod
    def load(cls, path: str | Path, *, validate: bool = True) -> ModelCard:
        """Read a card from a YAML file.

        :param path: the ``.card.yaml`` file.
        :param validate: check the result with :meth:`validate`.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise CardError(f'Cannot read model card {path}: {exc}.',
                            'Check the path, or give the card fields as overrides.') from exc
        except yaml.YAMLError as exc:
            raise CardError(f'Model card {path} is not valid YAML: {exc}.',
                            'Fix the YAML syntax (see doc/model_card.md).') from exc
        try:
            return cls.from_dict(data or {}, validate=validate)
        except CardError as exc:
            raise CardError(f'Model card {path}: {exc.message}', exc.hint) from exc

    def save(self, path: str | Path) -> Path:
        """Write the card as YAML (fields in schema order) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None,
                                       width=99))
        return path

    def replace(self, **changes: Any) -> ModelCard:
        """Return a copy with fields changed (values converted like overrides, not validated)."""
        values = {k: coerce_field(k, v) for k, v in changes.items()}
        return dataclasses.replace(self, **values)

    # --- validation -------------------------------------------------------------------------
    def validate(self, complete: bool = True) -> ModelCard:
        """Check every field; raise :class:`CardError` naming the field and what is allowed.

        :param complete: also require the fields a backend needs (input/output names and the
            network size); a card that relies on the ONNX graph for those is checked with
            ``complete=False`` first.
        :returns: self, for chaining.
        """
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise CardError(f'Model card field {name!r} is {value!r}.',
                                f"Allowed values: {', '.join(allowed)}.")
        for name in ('network_image_width', 'network_image_height'):
            value = getattr(self, name)
            if value < 0 or (complete and value == 0):
                raise CardError(f'Model card field {name!r} is {value}.',
                                'Give a positive number of pixels (the network input size).')
        if complete:
            for name in ('input_name', 'output_name'):
                if not getattr(self, name):
                    raise CardError(f'Model card field {name!r} is empty.',
                                    'Give the tensor name (see the ONNX graph, e.g. with '
                                    'netron or onnx.load(...).graph).')
        if not (math.isfinite(self.pixel_scale) and self.pixel_scale > 0):
            raise CardError(f"Model card field 'pixel_scale' is {self.pixel_scale}.",
                            'Give a positive finite factor, e.g. 0.00392156862745098 (1/255).')
        for name in ('image_mean', 'image_stddev'):
            value = getattr(self, name)
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise CardError(f'Model card field {name!r} is {value!r}.',
                                'Give three finite numbers, one per colour channel.')
        if any(v <= 0 for v in self.image_stddev):
            raise CardError(f"Model card field 'image_stddev' is {self.image_stddev!r}.",
                            'Every standard deviation must be positive.')
        for name in ('canonical_focal_px', 'max_depth'):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise CardError(f'Model card field {name!r} is {value}.',
                                'Give a positive number or leave it out (null).')
        if self.canonical_focal_px is not None and not self.is_metric:
            raise CardError(
                f'Model card sets canonical_focal_px={self.canonical_focal_px} but output_kind is '
                f'{self.output_kind!r}.',
                'canonical_focal_px applies only to output_kind metric_depth; remove one of them.')
        if self.reference is not None and not isinstance(self.reference, dict):
            raise CardError(f"Model card field 'reference' is a {type(self.reference).__name__}.",
                            'It must be a mapping written by the export tool, or null.')
        return self


# The fields a CLI flag or ROS parameter can override (everything but the reference data).
CARD_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ModelCard) if f.name != 'reference')

_FIELD_TYPES = {
    'network_image_width': int, 'network_image_height': int,
    'pixel_scale': float, 'canonical_focal_px': float, 'max_depth': float,
    'image_mean': tuple, 'image_stddev': tuple, 'reference': dict,
}


def _parse_float(text: str) -> float:
    """Return a float, also written as a fraction such as ``1/255``."""
    text = text.strip()
    if '/' in text:
        num, den = text.split('/', 1)
        return float(num) / float(den)
    return float(text)


def coerce_field(name: str, value: Any) -> Any:
    """Convert a card field value (from YAML, the CLI or a ROS parameter) to its type.

    Strings are accepted everywhere: ``'1/255'`` for floats, ``'0.5,0.5,0.5'`` for triples,
    ``''``/``'none'``/``'null'`` for optional numbers. Raises :class:`CardError` naming the field.
    """
    kind = _FIELD_TYPES.get(name, str)
    try:
        if name in ('canonical_focal_px', 'max_depth'):
            if value is None or (isinstance(value, str) and value.strip().lower() in
                                 ('', 'none', 'null')):
                return None
            # a ROS parameter cannot be null: 0 means "not set" there
            value = _parse_float(value) if isinstance(value, str) else float(value)
            return None if value == 0 else value
        if value is None:
            if kind is dict:
                return None
            if kind is str:
                return ''
            raise ValueError('no value')
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError('not an integer')
            return int(value)
        if kind is float:
            return _parse_float(value) if isinstance(value, str) else float(value)
        if kind is tuple:
            items = value.replace('[', '').replace(']', '').split(',') if isinstance(
                value, str) else list(value)
            items = [_parse_float(v) if isinstance(v, str) else float(v) for v in items]
            if len(items) != 3:
                raise ValueError(f'{len(items)} values')
            return tuple(items)
        if kind is dict:
            if not isinstance(value, dict):
                raise ValueError('not a mapping')
            return value
        return str(value).strip()
    except (TypeError, ValueError) as exc:
        what = {int: 'an integer', float: 'a number', tuple: 'three numbers',
                dict: 'a mapping', str: 'a string'}[kind]
        raise CardError(f'Model card field {name!r} has the value {value!r} ({exc}).',
                        f'It must be {what}.') from None


def card_path_for(model_path: str | Path) -> Path:
    """Where the card of a model lives: ``x/model.onnx`` -> ``x/model.card.yaml``.

    Works for ``.onnx``, ``.engine``, ``.pt`` and any other suffix; a directory (a checkpoint
    folder) holds ``model.card.yaml``.
    """
    path = Path(model_path)
    if path.is_dir():
        return path / 'model.card.yaml'
    if path.name.endswith('.card.yaml'):
        return path
    return path.with_name(path.stem + '.card.yaml') if path.suffix else path.with_name(
        path.name + '.card.yaml')


def onnx_graph_fields(model_path: str | Path) -> dict[str, Any]:
    """Card fields readable from an ONNX file's graph (via an onnxruntime CPU session).

    Returns ``input_name`` (single input only), ``output_name`` (first output), ``layout`` and
    the network size when the input shape is static 4-D with 3 channels on one side, plus
    ``_outputs`` (all output names) for messages.
    """
    from depth_node.errors import require
    ort = require('onnxruntime', 'reading input/output names from an ONNX file')
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model_path), opts, providers=['CPUExecutionProvider'])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise CardError(f'Cannot open {model_path} as an ONNX model: {exc}.',
                        'Check that the file is a complete ONNX model.') from exc
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    found: dict[str, Any] = {'_outputs': [o.name for o in outputs],
                             '_inputs': [i.name for i in inputs]}
    if len(inputs) == 1:
        found['input_name'] = inputs[0].name
        shape = inputs[0].shape
        if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape):
            if shape[1] == 3 and shape[3] != 3:
                found.update(layout='nchw', network_image_height=shape[2],
                             network_image_width=shape[3])
            elif shape[3] == 3 and shape[1] != 3:
                found.update(layout='nhwc', network_image_height=shape[1],
                             network_image_width=shape[2])
    if outputs:
        found['output_name'] = outputs[0].name
    return found


def load_card(model_path: str | Path, overrides: dict[str, Any] | None = None, *,
              card_path: str | Path | None = None) -> ModelCard:
    """Return the card of a model: its card file, overridden by non-None ``overrides``.

    The card file is ``card_path`` if given, else :func:`card_path_for` beside the model.
    Without a card file the overrides must say at least ``output_kind`` (what the output
    means is never guessed); for an ``.onnx`` file the input/output names, the layout and the
    network size are read from the graph when the card and the overrides leave them out.

    :param model_path: the model file (``.onnx``, ``.engine``, ...).
    :param overrides: field -> value (CLI flags, ROS parameters); None and '' are ignored.
    :param card_path: explicit card file (e.g. ``config/models/pydnet_pp.card.yaml``).
    :raises CardError: no card and not enough overrides, or invalid values.
    """
    model_path = Path(model_path)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None and v != ''}
    unknown = sorted(set(overrides) - set(CARD_FIELDS))
    if unknown:
        raise CardError(f"Unknown model card override(s): {', '.join(unknown)}.",
                        f"Overridable fields: {', '.join(CARD_FIELDS)}.")
    path = Path(card_path) if card_path is not None else card_path_for(model_path)
    if path.is_file():
        card = ModelCard.load(path, validate=False)
    elif card_path is not None:
        raise CardError(f'Model card {path} does not exist.',
                        'Check the card path, or leave it out to use the card beside the model.')
    elif 'output_kind' not in overrides:
        raise CardError(
            f'No model card for {model_path} (looked for {path}) and no output_kind override.',
            'Write the card (see doc/model_card.md) or give at least --output-kind '
            '(metric_depth | relative_depth | relative_inverse_depth) and the preprocessing '
            'fields (--image-mean, --image-stddev, ...) as overrides.')
    else:
        card = ModelCard(name=model_path.stem)
    card = card.replace(**overrides)
    card.validate(complete=False)
    missing = [n for n in ('input_name', 'output_name') if not getattr(card, n)]
    if not card.network_image_width or not card.network_image_height:
        missing.append('network_image_width/height')
    if missing and model_path.suffix.lower() == '.onnx' and model_path.is_file():
        graph = onnx_graph_fields(model_path)
        fill: dict[str, Any] = {}
        if not card.input_name and 'input_name' in graph:
            fill['input_name'] = graph['input_name']
        if not card.output_name and 'output_name' in graph:
            fill['output_name'] = graph['output_name']
        if (not card.network_image_width or not card.network_image_height) and \
                'network_image_width' in graph:
            fill['network_image_width'] = card.network_image_width or graph[
                'network_image_width']
            fill['network_image_height'] = card.network_image_height or graph[
                'network_image_height']
            if 'layout' not in overrides and not path.is_file():
                fill['layout'] = graph['layout']
            elif card.layout != graph['layout']:
                raise CardError(
                    f'Model card says layout {card.layout!r} but the ONNX input of {model_path} '
                    f"is {graph['layout']!r}.", 'Fix the layout field of the card.')
        card = card.replace(**fill)
        try:
            card.validate()
        except CardError as exc:
            raise CardError(
                f'{exc.message} (the ONNX graph of {model_path} has inputs '
                f"{graph['_inputs']} and outputs {graph['_outputs']}; dynamic sizes cannot be "
                'read from it)', exc.hint) from None
        return card
    return card.validate()
