"""Every parameter of depth_node, with its one default, in one place.

The rclpy node declares its ROS parameters from :data:`PARAMETERS` (with descriptors, ranges and
read-only flags), the ``depth-node bag`` tool turns the same table into command-line flags
(``min_range`` -> ``--min-range``), and the README's parameter table is generated from it
(``python -m depth_node.parameters``), so a default can never differ between them.

It is also the one place for a range, a choice or a default: :func:`validate` /
:func:`validate_all` / :func:`check` are the only validator (the node, the tools, and the
pipeline's and metric layer's configs use them), and other modules read choices and defaults
from here (:func:`choices`, :func:`default`).

Card overrides (``network_image_width``, ``image_mean``, ...) use an "unset" value (the
default: ``''``, ``0`` or ``[0.0]``) meaning "take it from the model card"; ROS parameters
cannot be ``None`` (:func:`card_overrides`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import math
from typing import Any

from depth_node.errors import DepthNodeError


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: name, default (its type is the parameter's type), meaning and limits."""

    name: str
    default: Any
    description: str
    group: str
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    read_only: bool = False
    node_only: bool = False      # meaningful only for the live node (QoS, sync, lifecycle)
    card_field: bool = False     # overrides the model card field of the same name
    array_of: str = 'double'     # the item type of a list parameter: double or string

    @property
    def type_name(self) -> str:
        """Return the parameter's type as the README shows it."""
        if isinstance(self.default, bool):
            return 'bool'
        if isinstance(self.default, int):
            return 'int'
        if isinstance(self.default, float):
            return 'double'
        if isinstance(self.default, list):
            return f'{self.array_of}[]'
        return 'string'

    @property
    def flag(self) -> str:
        """Return the command-line flag of the parameter (dashes instead of underscores)."""
        return '--' + self.name.replace('_', '-')


def _param(name: str, default: Any, description: str, group: str, **kw: Any) -> ParameterSpec:
    return ParameterSpec(name, default, description, group, **kw)


_MODEL = 'model'
_CARD = CARD_GROUP = 'model card override'
_METRIC = 'metric scale and validity'
_OUTPUT = 'outputs'
_ROS = 'topics, QoS and timing'

PARAMETERS: tuple[ParameterSpec, ...] = (
    # -- model and engine
    _param('model_file_path', '', 'ONNX model (with its <model>.card.yaml beside it), a TensorRT '
           '.engine, or for the torch backend a zoo name / hub id / checkpoint directory.', _MODEL,
           read_only=True),
    _param('card_file_path', '', 'Model card to use when it is not beside the model file.', _MODEL,
           read_only=True),
    _param('engine_file_path', '', 'TensorRT engine file (or folder) for the ONNX model; empty = '
           '<model>.<precision>.engine beside the model, with its cache key in <engine>.json.',
           _MODEL, read_only=True),
    _param('backend', 'auto', 'Inference backend; auto picks tensorrt > onnxruntime > torch by '
           'what '
           'is installed and whether a GPU is present, and logs why.', _MODEL,
           choices=('auto', 'tensorrt', 'onnxruntime', 'torch'), read_only=True),
    _param('precision', 'fp16', 'Engine precision on GPU (CPU backends always run fp32).', _MODEL,
           choices=('fp16', 'fp32'), read_only=True),
    _param('force_engine_update', False, 'Rebuild the TensorRT engine even if a matching cached '
           'engine exists.', _MODEL, read_only=True),
    _param('allow_engine_build', True, 'Build the engine when none matches; false = refuse to '
           'start '
           'with a clear message instead (for fleets that ship prebuilt engines).', _MODEL,
           read_only=True),
    _param('self_test', True, "Run the model card's golden self-test when the model loads and "
           'refuse to start on a mismatch.', _MODEL, read_only=True),
    # -- card overrides (unset = from the card)
    _param('name', '', 'Model name (used in messages).', _CARD, read_only=True, card_field=True),
    _param('source', '', 'Hub id or URL of the weights.', _CARD, read_only=True, card_field=True),
    _param('license', '', 'Licence of the weights.', _CARD, read_only=True, card_field=True),
    _param('input_name', '', 'Network input tensor name.', _CARD, read_only=True, card_field=True),
    _param('output_name', '', 'Network output tensor name.', _CARD, read_only=True,
           card_field=True),
    _param('network_image_width', 0, 'Network input width in pixels.', _CARD, read_only=True,
           card_field=True, min_value=0, max_value=8192),
    _param('network_image_height', 0, 'Network input height in pixels.', _CARD, read_only=True,
           card_field=True, min_value=0, max_value=8192),
    _param('layout', '', 'Input tensor layout.', _CARD, choices=('', 'nchw', 'nhwc'),
           read_only=True, card_field=True),
    _param('input_encoding', '', 'Channel order the network expects.', _CARD,
           choices=('', 'rgb8', 'bgr8'), read_only=True, card_field=True),
    _param('pixel_scale', 0.0, "Factor from 8-bit pixel values to the network's range "
           '(0 = from the card, usually 1/255).', _CARD, read_only=True, card_field=True,
           min_value=0.0, max_value=1.0),
    _param('image_mean', [0.0], 'Per-channel mean subtracted after scaling (3 values).',
           _CARD, read_only=True, card_field=True),
    _param('image_stddev', [0.0], 'Per-channel standard deviation divided by (3 values).', _CARD,
           read_only=True, card_field=True),
    _param('resize', '', 'How the image is fitted to the network input.', _CARD,
           choices=('', 'stretch', 'keep_aspect_pad', 'keep_aspect_crop'), read_only=True,
           card_field=True),
    _param('interpolation', '', 'Resize interpolation.', _CARD,
           choices=('', 'nearest', 'linear', 'cubic', 'area'), read_only=True, card_field=True),
    _param('output_kind', '', 'What the network outputs.', _CARD,
           choices=('', 'metric_depth', 'relative_depth', 'relative_inverse_depth'),
           read_only=True, card_field=True),
    _param('canonical_focal_px', 0.0, 'Metric models: focal length (px at network resolution) for '
           'which the output is metric; metres = output x f_network / canonical_focal_px.', _CARD,
           read_only=True, card_field=True, min_value=0.0, max_value=100000.0),
    _param('max_depth', 0.0, 'Largest depth the model can output, metres.', _CARD, read_only=True,
           card_field=True, min_value=0.0, max_value=10000.0),
    # -- metric scale and validity (names match depth_node.metric.MetricConfig)
    _param('scale_source', 'none', 'How a relative model becomes metric: sparse_depth (a metric '
           'depth topic aligned to the camera), ground_plane (known camera height), fixed (scale '
           'and shift below) or none (published on depth/relative only). Ignored for metric '
           'models.', _METRIC, choices=('none', 'sparse_depth', 'ground_plane', 'fixed')),
    _param('fixed_scale', 1.0, "scale_source fixed: scale in the model's own space (depth = "
           'scale x output + shift; inverse-depth models: 1/depth = scale x output + shift).',
           _METRIC, min_value=1e-9, max_value=1e6),
    _param('fixed_shift', 0.0, "scale_source fixed: shift in the model's own space.", _METRIC,
           min_value=-1e6, max_value=1e6),
    _param('camera_height', 0.0, 'scale_source ground_plane: height of the optical centre above '
           'a flat floor, metres.', _METRIC, min_value=0.0, max_value=100.0),
    _param('ground_max_tilt_deg', 15.0, 'ground_plane: largest accepted angle between the fitted '
           'floor normal and the expected up direction.', _METRIC, min_value=0.1, max_value=89.9),
    _param('ground_up', [0.0, -1.0, 0.0], 'ground_plane: the up direction in the camera optical '
           'frame (x right, y down, z forward): 0 -1 0 for a level camera; pitched down by p '
           'degrees: 0 -cos(p) -sin(p) (20 deg: 0 -0.940 -0.342; 35 deg: 0 -0.819 -0.574). '
           'ground_max_tilt_deg is measured from it.', _METRIC),
    _param('ground_region', 0.4, 'ground_plane: lower fraction of the image searched for the '
           'floor.', _METRIC, min_value=0.05, max_value=1.0),
    _param('sparse_min_points', 50, 'sparse_depth: fewest valid points for a scale fit.', _METRIC,
           min_value=3, max_value=10_000_000),
    _param('sparse_outlier_threshold', 3.0, 'sparse_depth: outlier rejection threshold in robust '
           'standard deviations.', _METRIC, min_value=0.5, max_value=100.0),
    _param('scale_smoothing', 0.3, 'Weight of a new scale fit in the exponential smoothing '
           '(1 = no smoothing).', _METRIC, min_value=0.01, max_value=1.0),
    _param('scale_max_jump', 0.25, 'Reject a scale fit that differs by more than this fraction '
           'from the smoothed scale.', _METRIC, min_value=0.01, max_value=10.0),
    _param('scale_reinit_frames', 5, 'After this many rejected fits in a row the smoother '
           'restarts '
           'from the new fits (a real change of scale is followed).', _METRIC, min_value=1,
           max_value=1000),
    _param('scale_hold_frames', 30, 'Frames without a usable fit for which the last scale is '
           'kept; after that the output is no longer metric.', _METRIC, min_value=0,
           max_value=100000),
    _param('min_range', 0.1, 'Nearer depths are marked too close (-Inf, REP 117).', _METRIC,
           min_value=0.0, max_value=1000.0),
    _param('max_range', 20.0, 'Farther depths are marked out of range (+Inf, REP 117).', _METRIC,
           min_value=0.0, max_value=10000.0),
    _param('too_close', 'neg_inf', 'How depths below min_range are marked.', _METRIC,
           choices=('neg_inf', 'nan')),
    _param('edge_threshold', 0.1, 'Flying-pixel filter: relative depth jump to a neighbour above '
           'which a pixel is invalidated (0 = off).', _METRIC, min_value=0.0, max_value=10.0),
    # -- outputs
    _param('output_encoding', '32FC1', 'depth/image encoding: 32FC1 metres (NaN/±Inf per REP 117) '
           'or 16UC1 millimetres (0 = invalid).', _OUTPUT, choices=('32FC1', '16UC1')),
    _param('point_cloud_fields', 'xyz', 'Fields of the points cloud.', _OUTPUT,
           choices=('xyz', 'xyzrgb')),
    _param('point_decimation', 1, 'Keep every k-th row and column in the points cloud.', _OUTPUT,
           min_value=1, max_value=64),
    _param('publish_points', True, 'Publish the points cloud (also needs a subscriber).', _OUTPUT),
    _param('publish_colorized', True, 'Publish depth/colorized (also needs a subscriber).',
           _OUTPUT),
    _param('colorize_min_depth', 0.0, 'depth/colorized range start, metres (0 and 0 = auto).',
           _OUTPUT, min_value=0.0, max_value=10000.0),
    _param('colorize_max_depth', 0.0, 'depth/colorized range end, metres (0 and 0 = auto).',
           _OUTPUT, min_value=0.0, max_value=10000.0),
    _param('image_is_rectified', False, 'The input image is rectified (image_rect): use '
           'camera_info P and no distortion; false = raw image, K and D.', _OUTPUT),
    # -- node only
    _param('input_transport', 'raw', 'raw subscribes image (sensor_msgs/Image); compressed '
           'subscribes image/compressed (sensor_msgs/CompressedImage).', _ROS,
           choices=('raw', 'compressed'), read_only=True, node_only=True),
    _param('input_qos', 'sensor_data', 'QoS of the image, camera_info and sparse_depth '
           'subscriptions (sensor_data = best effort, receives from any publisher).', _ROS,
           choices=('sensor_data', 'reliable', 'system_default'), read_only=True, node_only=True),
    _param('output_qos', 'reliable', 'QoS of the published topics (reliable serves best-effort '
           'and reliable subscribers).', _ROS,
           choices=('sensor_data', 'reliable', 'system_default'), read_only=True, node_only=True),
    _param('input_qos_depth', 5, 'History depth of the input subscriptions.', _ROS, min_value=1,
           max_value=100, read_only=True, node_only=True),
    _param('output_qos_depth', 2, 'History depth of the publishers (keep small for big '
           'messages).', _ROS, min_value=1, max_value=100, read_only=True, node_only=True),
    _param('sync_policy', 'exact', 'Pairing of an image with its camera_info and sparse depth '
           '(the same rule in the node, depth-node bag and evaluate): exact stamps, approximate '
           '(nearest within sync_tolerance), latest received, or latest_before (largest stamp '
           'not after the '
           'image).', _ROS, choices=('exact', 'approximate', 'latest', 'latest_before')),
    _param('sync_tolerance', 0.02, 'approximate sync: largest stamp difference, seconds.', _ROS,
           min_value=0.0, max_value=10.0),
    _param('sync_max_wait', 0.1, 'Longest an image waits for a camera_info or sparse depth that '
           'may still arrive (a LiDAR projection often comes after its image), seconds; then it '
           'goes on with the best partner received (without sparse depth the last scale is held).',
           _ROS, min_value=0.0, max_value=5.0, node_only=True),
    _param('cameras', [], 'Several cameras through one node and one batched model: their names '
           '(e.g. [front, back]); each has <name>.image_topic, <name>.camera_info_topic, '
           '<name>.sparse_depth_topic and <name>.output_namespace (defaults <name>/image, '
           '<name>/camera_info, <name>/sparse_depth, <name>). Empty = one camera on image and '
           'camera_info.', _ROS, read_only=True, node_only=True, array_of='string'),
    _param('batch_max_wait', 0.01, "cameras: longest a round waits, after the first camera's "
           'frame, for the other cameras to fill the batch, seconds; a camera without a frame by '
           'then is left out of that round.', _ROS, min_value=0.0, max_value=1.0, node_only=True),
    _param('autostart', True, 'Configure and activate the lifecycle node at start-up.', _ROS,
           read_only=True, node_only=True),
    _param('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', _ROS,
           min_value=0.1, max_value=60.0, read_only=True, node_only=True),
)

BY_NAME: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETERS}

#: the metric layer's parameters (a change restarts the per-camera scale state)
METRIC_PARAMETERS = frozenset(spec.name for spec in PARAMETERS if spec.group == _METRIC)


#: per-camera parameters of ``cameras`` (declared as ``<camera>.<name>``) and their defaults
#: (``{camera}`` is replaced by the camera's name)
CAMERA_PARAMETERS: dict[str, tuple[str, str]] = {
    'image_topic': ('{camera}/image', 'image topic (input_transport compressed: '
                    '<image_topic>/compressed)'),
    'camera_info_topic': ('{camera}/camera_info', 'camera_info topic'),
    'sparse_depth_topic': ('{camera}/sparse_depth', 'sparse depth topic (scale_source '
                           'sparse_depth)'),
    'output_namespace': ('{camera}', 'namespace of the outputs: <output_namespace>/depth/image, '
                         '<output_namespace>/points, ...'),
}


@dataclass(frozen=True)
class NodeCameraTopics:
    """One camera of the node: its name, input topics and output namespace (relative names)."""

    name: str
    image_topic: str = 'image'
    camera_info_topic: str = 'camera_info'
    sparse_depth_topic: str = 'sparse_depth'
    output_namespace: str = ''

    def output(self, suffix: str) -> str:
        """Return the topic of output ``suffix`` (``depth/image``) in this camera's namespace."""
        return f'{self.output_namespace.rstrip("/")}/{suffix}' if self.output_namespace \
            else suffix


def camera_defaults(camera: str) -> dict[str, str]:
    """Return the per-camera parameters of ``camera`` with their defaults (unprefixed names)."""
    return {name: default.format(camera=camera)
            for name, (default, _) in CAMERA_PARAMETERS.items()}


def validate_cameras(names: Iterable[str]) -> list[str]:
    """Reasons the ``cameras`` list is unusable (names must be unique ROS name tokens)."""
    import re
    reasons, seen = [], set()
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r'[A-Za-z][A-Za-z0-9_]*', name):
            reasons.append(f'cameras: {name!r} is not a valid camera name (letters, digits and '
                           'underscores, starting with a letter)')
        elif name in seen:
            reasons.append(f'cameras: {name!r} is listed twice')
        seen.add(name)
    return reasons


def defaults() -> dict[str, Any]:
    """All parameters with their defaults."""
    return {spec.name: (list(spec.default) if isinstance(spec.default, list) else spec.default)
            for spec in PARAMETERS}


def validate(name: str, value: Any) -> str | None:
    """Check one value; return the reason it is rejected, or None if it is fine."""
    spec = BY_NAME.get(name)
    if spec is None:
        return f'unknown parameter {name!r}'
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is list and spec.array_of == 'string':
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return f'{name} must be a list of strings, got {value!r}'
        return '; '.join(validate_cameras(value) if name == 'cameras' else []) or None
    if expected is list:
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in value):
            return f'{name} must be a list of finite numbers, got {value!r}'
    elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        return f'{name} must be a {spec.type_name}, got {type(value).__name__} {value!r}'
    if expected is float and not math.isfinite(value):
        return f'{name} must be a finite number, got {value!r}'
    if spec.choices and value not in spec.choices:
        allowed = ', '.join(repr(c) for c in spec.choices if c)
        return f'{name} must be one of {allowed}, got {value!r}'
    if spec.min_value is not None and isinstance(value, (int, float)) and value < spec.min_value:
        return f'{name} must be >= {spec.min_value}, got {value!r}'
    if spec.max_value is not None and isinstance(value, (int, float)) and value > spec.max_value:
        return f'{name} must be <= {spec.max_value}, got {value!r}'
    if spec.card_field and expected is list and list(value) not in ([], [0.0]) \
            and len(value) != 3:
        return f'{name} must have 3 values (one per channel), got {len(value)}'
    if name == 'ground_up' and (len(value) != 3 or not any(value)):
        return f'ground_up must be a non-zero 3-vector (x, y, z), got {list(value)!r}'
    return None


def validate_all(values: Mapping[str, Any]) -> list[str]:
    """Reasons for every invalid value, plus cross-parameter checks."""
    reasons = [r for name, value in values.items() if (r := validate(name, value))]
    lo, hi = values.get('min_range'), values.get('max_range')
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and hi <= lo:
        reasons.append(f'max_range ({hi}) must be greater than min_range ({lo})')
    if values.get('scale_source') == 'ground_plane' and not values.get('camera_height'):
        reasons.append('scale_source ground_plane needs camera_height > 0 (metres above the '
                       'floor)')
    lo, hi = values.get('colorize_min_depth'), values.get('colorize_max_depth')
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and hi and lo >= hi:
        reasons.append(f'colorize_max_depth ({hi}) must be greater than colorize_min_depth '
                       f'({lo}) (0 and 0 = automatic range)')
    return reasons


def default(name: str) -> Any:
    """Return the default of one parameter (a fresh list for list parameters)."""
    value = BY_NAME[name].default
    return list(value) if isinstance(value, list) else value


def choices(name: str) -> tuple[str, ...]:
    """Return the choices of one parameter, without the '' that means "from the card"."""
    return tuple(c for c in BY_NAME[name].choices if c)


def check(values: Mapping[str, Any], hint: str) -> None:
    """Raise :class:`~depth_node.errors.DepthNodeError` naming every invalid value.

    The one validator of every parameter: the node's set-parameters callback, the tools'
    flags and the pipeline's and metric layer's configs all come here.
    """
    reasons = validate_all(values)
    if reasons:
        raise DepthNodeError('Invalid parameters: ' + '; '.join(reasons) + '.', hint)


def card_overrides(values: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    """Return the card fields set in ``values``: parameter values or a command line's namespace.

    Unset is ``None`` (a flag not given) or the parameter's default (``''``, ``0``, ``[0.0]``:
    ROS parameters cannot be None); other keys are ignored. Lists become tuples.
    """
    data = vars(values) if isinstance(values, argparse.Namespace) else values
    out: dict[str, Any] = {}
    for spec in PARAMETERS:
        value = data.get(spec.name) if spec.card_field else None
        if value is None or value == spec.default or (
                isinstance(value, (list, tuple)) and list(value) in ([], spec.default)):
            continue
        out[spec.name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return out


def model_options(values: Mapping[str, Any], log: Any = print) -> dict[str, Any]:
    """Return the keyword arguments of ``runner.open_model`` from parameter values.

    The node and the bag tool both load their model through this, so a parameter means the
    same in both. Card overrides are separate: :func:`card_overrides`.
    """
    options: dict[str, Any] = {
        'backend': values['backend'],
        'precision': values['precision'],
        'force_engine_update': values['force_engine_update'],
        'allow_engine_build': values['allow_engine_build'],
        'self_test': values['self_test'],
        'log': log,
    }
    if values['engine_file_path']:
        options['engine_cache_dir'] = values['engine_file_path']
    if values['card_file_path']:
        options['card_path'] = values['card_file_path']
    if values.get('cameras'):
        # a TensorRT engine of an ONNX file with a batch axis takes one frame per camera
        options['max_batch'] = len(values['cameras'])
    return options


def markdown_table(include_node_only: bool = True) -> str:
    """Return the README's parameter table."""
    lines = ['| parameter | type | default | meaning |', '| --- | --- | --- | --- |']
    for spec in PARAMETERS:
        if spec.node_only and not include_node_only:
            continue
        default = spec.default
        shown = ('(from card)' if spec.card_field else
                 f'`{default!r}`' if not isinstance(default, str) else f"`'{default}'`")
        extra = []
        if spec.choices:
            extra.append('one of ' + ', '.join(f'`{c}`' for c in spec.choices if c))
        if spec.read_only:
            extra.append('read-only at run time')
        meaning = spec.description + (f" ({'; '.join(extra)})" if extra else '')
        lines.append(f'| `{spec.name}` | {spec.type_name} | {shown} | {meaning} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    print(markdown_table())
