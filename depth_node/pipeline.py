"""The per-frame pipeline shared by the node, the bag tool and the benchmarks.

image (+ camera_info, + optional sparse depth) -> decode -> model (preprocess, inference,
postprocess) -> metric layer (scale, REP 117 validity, edge filter) -> outputs (depth image,
depth camera_info, organized point cloud, relative map, colorized preview).

No I/O and no ROS here: messages are read by their fields and built with the caller's
:class:`~depth_node.messages.MessageFactory`.

Per-camera state (the camera model at the image resolution, the scale smoother) lives in one
:class:`PipelineCameraState` per camera stream, identified by the camera_info's ``header.frame_id``
(or the calibration file's frame). Cameras that alternate (several image topics through one
pipeline) keep a state each; a camera whose camera_info changes (recalibration, another
resolution, binning or ROI) gets a new state that *replaces* its old one, so the scale
smoother restarts with the new geometry. Bad input raises an
:class:`~depth_node.errors.InputError` before any state is touched.

Several cameras run as one batch with :meth:`DepthPipeline.process_batch`: each frame is
decoded and checked with its own camera state, the good ones go through the model in one call
(:meth:`~depth_node.runner.DepthModel.predict_batch`), and each result is made metric
with its own camera's state; a bad frame gets its error in its place and costs no other frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
import time
from typing import Any, TYPE_CHECKING

from depth_node import parameters
from depth_node.camera import CameraModel
from depth_node.clouds import cloud_buffer, depth_to_cloud, make_pointcloud2
from depth_node.device import float32_of, is_torch, reciprocal
from depth_node.errors import (
    DepthNodeError,
    MalformedMessageError,
    MissingCameraInfoError,
    SizeMismatchError,
)
from depth_node.images import (
    colorize_depth,
    depth_to_metres,
    make_depth_image,
    make_image,
    message_to_rgb,
)
from depth_node.metric import (
    apply_validity,
    edge_filter,
    fill_where,
    MetricConfig,
    MetricConverter,
    ScaleReport,
)
from depth_node.models.preprocess import check_rgb
import numpy as np

if TYPE_CHECKING:   # the seam to the model layer; any DepthPredictor will do
    from depth_node.runner import DepthPredictor

OUTPUTS = ('depth/image', 'depth/camera_info', 'points', 'depth/relative', 'depth/colorized')
OUTPUT_ENCODINGS = parameters.choices('output_encoding')
POINT_CLOUD_FIELDS = parameters.choices('point_cloud_fields')


@dataclass
class PipelineConfig:
    """Settings of the pipeline; field names are the parameter names of ``parameters.py``.

    The defaults equal ``parameters.defaults()`` (a test checks it); build the config of a
    node or tool with :meth:`from_values`.
    """

    output_encoding: str = parameters.default('output_encoding')
    point_cloud_fields: str = parameters.default('point_cloud_fields')
    point_decimation: int = parameters.default('point_decimation')
    image_is_rectified: bool = parameters.default('image_is_rectified')
    colorize_min_depth: float = parameters.default('colorize_min_depth')
    colorize_max_depth: float = parameters.default('colorize_max_depth')
    metric: MetricConfig = field(default_factory=MetricConfig)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """Build from parameter values (a ``parameters.defaults()``-like mapping)."""
        metric_names = {f.name for f in fields(MetricConfig)}
        metric = MetricConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                                 for k, v in values.items() if k in metric_names})
        own = {f.name for f in fields(cls)} - {'metric'}
        return cls(metric=metric, **{k: v for k, v in values.items() if k in own})

    def validate(self) -> PipelineConfig:
        """Check the values with the parameter table; raises DepthNodeError naming them."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != 'metric'}
        parameters.check({**own, **self.metric.values()},
                         'Fix the parameter (see the parameter table in the README).')
        return self


@dataclass
class FrameResult:
    """What the pipeline computed for one frame.

    ``depth`` and ``relative`` are numpy arrays, or torch tensors on the model's device when
    the model runs the GPU path (:attr:`DepthModel.tensors`); :meth:`DepthPipeline.outputs`
    takes both. ``rgb`` is the decoded host image.
    """

    depth: np.ndarray | None
    relative: np.ndarray | None
    rgb: np.ndarray | None
    camera: CameraModel
    scale: ScaleReport | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def metric(self) -> bool:
        """Whether ``depth`` holds metres."""
        return self.depth is not None


@dataclass
class BatchItem:
    """One camera's frame of a batch: image (+ camera_info or camera model, + sparse depth)."""

    image: Any
    camera_info: Any | None = None
    sparse_depth: Any | None = None
    camera: CameraModel | None = None


@dataclass
class PipelineCameraState:
    """Per-camera state: the camera model at image resolution and the scale smoother.

    ``key`` is the identity of the calibration and image size it was made for; ``metric``
    the :class:`MetricConfig` its converter was built with.
    """

    camera: CameraModel
    converter: MetricConverter | None
    key: tuple = ()
    metric: MetricConfig | None = None
    #: True where the camera model has no ray (outside a fisheye's field of view, where the
    #: distortion model cannot be inverted); None when every pixel has one
    no_ray: np.ndarray | None = None
    no_ray_on_device: dict[str, Any] = field(default_factory=dict)


def no_ray_mask(camera: CameraModel) -> np.ndarray | None:
    """Return where ``camera`` has no ray (read-only bool (H, W)), or None if nowhere."""
    if not camera.has_distortion:
        return None
    mask = ~np.isfinite(camera.ray_table()[..., 2])
    if not mask.any():
        return None
    mask.setflags(write=False)
    return mask


def void_where_no_ray(values: Any, state: PipelineCameraState) -> Any:
    """Set ``values`` (numpy or torch, (H, W)) to NaN where the camera has no ray (REP 117).

    A raw fisheye image is black outside its image circle: without this the network's output
    there would be published as the nearest depth.
    """
    if state.no_ray is None or values is None:
        return values
    if is_torch(values):
        key = str(values.device)
        mask = state.no_ray_on_device.get(key)
        if mask is None:
            import torch
            mask = torch.from_numpy(np.array(state.no_ray)).to(values.device)
            state.no_ray_on_device[key] = mask
        return values.masked_fill(mask, float('nan'))
    out = values if values.flags.writeable else np.array(values)
    fill_where(out, state.no_ray, float('nan'))
    return out


def _camera_info_key(msg: Any) -> tuple:
    """Return a cheap identity of a camera_info message's calibration content (stamp excluded)."""
    roi = msg.roi
    return (int(msg.width), int(msg.height), str(msg.distortion_model),
            np.asarray(msg.k, dtype=np.float64).tobytes(),
            np.asarray(msg.d, dtype=np.float64).tobytes(),
            np.asarray(msg.r, dtype=np.float64).tobytes(),
            np.asarray(msg.p, dtype=np.float64).tobytes(),
            int(msg.binning_x), int(msg.binning_y),
            (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height),
             bool(roi.do_rectify)), msg.header.frame_id)


class DepthPipeline:
    """Turn images and their camera_info into metric depth, clouds and previews."""

    def __init__(self, model: DepthPredictor | None, config: PipelineConfig | None = None,
                 log: Callable[[str], None] = print, max_cameras: int = 8,
                 warn: Callable[[str], None] | None = None) -> None:
        """Create the pipeline.

        :param model: a :class:`depth_node.runner.DepthPredictor` (a
            :class:`~depth_node.runner.DepthModel`), or None for depth-only use
            (:meth:`process_depth`).
        :param config: pipeline settings (the defaults of ``parameters.py`` when None);
            validated here and whenever :attr:`config` is assigned.
        :param log: where one-off notices go (an intrinsics rescale, a changed camera_info).
        :param max_cameras: how many camera streams keep their state (oldest dropped).
        :param warn: where once-per-camera warnings go (a raw fisheye image); default ``log``.
        """
        self.model = model
        self.config = config if config is not None else PipelineConfig()
        self._log = log
        self._warn = warn if warn is not None else log
        self._max_cameras = max(1, int(max_cameras))
        self._states: dict[str, PipelineCameraState] = {}
        self._noted: set[tuple] = set()

    @property
    def config(self) -> PipelineConfig:
        """Return the settings; assigning new ones validates them (the node does on live updates).

        Camera states whose converter was built with other metric settings rebuild it on
        their next frame (the smoother restarts), so a changed ``min_range`` or
        ``scale_source`` takes effect even without :meth:`reset`.
        """
        return self._config

    @config.setter
    def config(self, config: PipelineConfig) -> None:
        self._config = config.validate()

    @property
    def states(self) -> dict[str, PipelineCameraState]:
        """Return the camera states by stream (camera frame_id), oldest first (read-only copy)."""
        return dict(self._states)

    # -- per-camera state -------------------------------------------------------------------
    def camera_state(self, camera_info: Any, width: int, height: int) -> PipelineCameraState:
        """Return the state for this camera_info at an image size of ``width`` x ``height``.

        Raises the camera module's errors for an unusable camera_info
        (:class:`~depth_node.errors.CameraInfoError`,
        :class:`~depth_node.errors.UncalibratedCameraError`) and
        :class:`SizeMismatchError` when the image size cannot be reconciled with it.
        """
        rectified = bool(self._config.image_is_rectified)
        key = (_camera_info_key(camera_info), int(width), int(height), rectified)
        stream = str(camera_info.header.frame_id)
        state = self._states.get(stream)
        if state is not None and state.key == key:
            return self._fresh(state)
        camera = CameraModel.from_camera_info(camera_info, rectified=rectified)
        return self._new_state(stream, key, camera, width, height, replaced=state is not None,
                               source='camera_info')

    def state_for_camera(self, camera: CameraModel, width: int,
                         height: int) -> PipelineCameraState:
        """Return the state for a camera model passed in (calibration file, no camera_info)."""
        key = (camera.key, camera.frame_id, int(width), int(height))
        stream = camera.frame_id
        state = self._states.get(stream)
        if state is not None and state.key == key:
            return self._fresh(state)
        return self._new_state(stream, key, camera, width, height, replaced=state is not None,
                               source='calibration')

    def _fresh(self, state: PipelineCameraState) -> PipelineCameraState:
        """Return the state, with its converter rebuilt if the metric settings changed."""
        metric = self._config.metric
        if state.metric is not metric and self.model is not None:
            if state.metric != metric:
                state.converter = MetricConverter(self.model.card, metric)
            state.metric = metric
        return state

    def _note(self, key: tuple, message: str,
              log: Callable[[str], None] | None = None) -> None:
        """Log ``message`` once per ``key`` (bounded memory)."""
        if key in self._noted:
            return
        if len(self._noted) >= 256:
            self._noted.clear()
        self._noted.add(key)
        (log or self._log)(message)

    def _new_state(self, stream: str, key: tuple, camera: CameraModel, width: int,
                   height: int, replaced: bool,
                   source: str = 'camera_info') -> PipelineCameraState:
        matched, rescaled = camera.matched_to_image(width, height)   # may raise: no change
        if rescaled:
            self._note(('rescaled', key),
                       f'{source} of {stream!r} is {camera.image_width}x'
                       f'{camera.image_height} but the images are {width}x{height} (same '
                       'aspect ratio): scaling the intrinsics to the image size. Give a '
                       f'{source} that matches the image to silence this.')
        if replaced:
            self._note(('replaced', key),
                       f'{source} of {stream!r} changed (now {matched!r}): new camera '
                       'state, the metric scale smoother restarts.')
        converter = None
        metric = self._config.metric
        if self.model is not None:
            converter = MetricConverter(self.model.card, metric)
        state = PipelineCameraState(camera=matched, converter=converter, key=key,
                                    metric=metric, no_ray=no_ray_mask(matched))
        self._warn_fisheye(stream, key, state)
        self._states.pop(stream, None)
        while len(self._states) >= self._max_cameras:
            self._states.pop(next(iter(self._states)))
        self._states[stream] = state
        return state

    def _warn_fisheye(self, stream: str, key: tuple, state: PipelineCameraState) -> None:
        """Warn once per camera that a raw fisheye image goes into a pinhole-trained network."""
        camera = state.camera
        if not (camera.has_distortion and camera.distortion_model == 'equidistant'):
            return
        outside = 0.0 if state.no_ray is None else float(state.no_ray.mean()) * 100
        self._note(('fisheye', key), f'WARNING: {stream!r} is a raw equidistant (fisheye) '
                   'image, but depth networks are trained on pinhole images: depth away from '
                   'the image centre is unreliable. Rectify the image first (image_proc '
                   'rectify -> image_rect, image_is_rectified: true). '
                   f'{outside:.1f} % of the pixels have no ray in the camera model (outside '
                   'the image circle) and are published as NaN.', self._warn)

    def reset(self) -> None:
        """Forget every camera's state (ray tables stay cached in the camera module)."""
        self._states.clear()

    # -- frames -----------------------------------------------------------------------------
    def process(self, image_msg: Any, camera_info_msg: Any | None = None,
                sparse_depth_msg: Any | None = None, *,
                camera: CameraModel | None = None) -> FrameResult:
        """Run the model on one image (Image or CompressedImage) with its camera_info.

        :param sparse_depth_msg: metric depth image aligned to the image (any size of the
            same aspect ratio), used when ``scale_source`` is ``sparse_depth``; ignored (not
            even decoded) otherwise.
        :param camera: a camera model to use instead of ``camera_info_msg``.
        :raises depth_node.errors.InputError: for bad input; the caller counts and skips it.
        """
        if self.model is None:
            raise RuntimeError('this pipeline has no model: use process_depth()')
        prepared = self._prepare(BatchItem(image_msg, camera_info_msg, sparse_depth_msg, camera))
        raw, transform, model_timings = self.model.predict(prepared[0])
        return self._finish(prepared, raw, transform, model_timings)

    def process_batch(self, items: list[BatchItem]
                      ) -> tuple[list[FrameResult | DepthNodeError], dict[str, float]]:
        """Run the frames of several cameras through the model as one batch.

        :param items: one :class:`BatchItem` per camera (its image, camera_info or camera
            model, sparse depth), in any order; each camera keeps its own state.
        :returns: per item, in order, its :class:`FrameResult` or the
            :class:`~depth_node.errors.DepthNodeError` its input raised (the other frames
            are not affected), and the batch's timings (``batch_size``, ``model_calls``,
            ``inference_ms``, ...).
        """
        if self.model is None:
            raise RuntimeError('this pipeline has no model: use process_depth()')
        out: list[FrameResult | DepthNodeError] = []
        good: list[tuple[int, tuple]] = []
        for i, item in enumerate(items):
            try:
                good.append((i, self._prepare(item)))
                out.append(None)  # type: ignore[arg-type]
            except DepthNodeError as exc:
                out.append(exc)
            except (ValueError, TypeError, IndexError, AttributeError) as exc:
                # a malformed message past the decoders' checks: still only this frame
                out.append(MalformedMessageError(
                    f'a frame could not be processed ({type(exc).__name__}: {exc}).',
                    'Check the publisher of this camera; the frame is skipped.'))
        if not good:
            return out, {'batch_size': 0.0, 'model_calls': 0.0}
        predicted, timings = self.model.predict_batch([prepared[0] for _, prepared in good])
        shared = {'inference_ms': timings.get('inference_ms', 0.0) / max(1, len(good))}
        for (i, prepared), (raw, transform) in zip(good, predicted):
            try:
                out[i] = self._finish(prepared, raw, transform, dict(shared))
            except DepthNodeError as exc:
                out[i] = exc
            except (ValueError, TypeError, IndexError, AttributeError) as exc:
                out[i] = MalformedMessageError(
                    f'a frame could not be made metric ({type(exc).__name__}: {exc}).',
                    'Check the camera_info and sparse depth of this camera.')
        return out, timings

    def _prepare(self, item: BatchItem) -> tuple:
        """Decode and check one frame; returns ``(rgb, state, sparse, decode_ms)``."""
        t0 = time.perf_counter()
        rgb = check_rgb(message_to_rgb(item.image))
        height, width = rgb.shape[:2]
        state = self._state(item.camera_info, item.camera, width, height)
        sparse = None
        if item.sparse_depth is not None and self._wants_sparse():
            sparse = self._sparse_depth(item.sparse_depth, width, height)
        return rgb, state, sparse, (time.perf_counter() - t0) * 1e3

    def _finish(self, prepared: tuple, raw: Any, transform: Any,
                model_timings: dict[str, float]) -> FrameResult:
        """Make one frame's raw output metric with its camera's state."""
        rgb, state, sparse, decode_ms = prepared
        timings = {'decode_ms': decode_ms, **model_timings}
        t2 = time.perf_counter()
        depth, relative, report = state.converter.convert(raw, state.camera, transform, sparse)
        depth = void_where_no_ray(depth, state)
        relative = void_where_no_ray(relative, state)
        timings['metric_ms'] = (time.perf_counter() - t2) * 1e3
        return FrameResult(depth=depth, relative=relative, rgb=rgb, camera=state.camera,
                           scale=report, timings=timings)

    def _wants_sparse(self) -> bool:
        return self._config.metric.scale_source == 'sparse_depth' and \
            getattr(self.model.card, 'output_kind', '') != 'metric_depth'

    def process_depth(self, depth_msg: Any, camera_info_msg: Any | None = None,
                      image_msg: Any | None = None, *,
                      camera: CameraModel | None = None) -> FrameResult:
        """Use an existing depth image (16UC1 mm / 32FC1 m) instead of a model.

        Applies the REP 117 validity ranges and the edge filter; ``image_msg`` (optional, same
        size) colours an xyzrgb cloud.
        """
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        depth = depth_to_metres(depth_msg)    # a new float32 array: filtered in place below
        if not depth.flags.writeable:
            depth = depth.copy()
        height, width = depth.shape
        state = self._state(camera_info_msg, camera, width, height)
        rgb = None
        if image_msg is not None:
            rgb = message_to_rgb(image_msg)
            if rgb.shape[:2] != depth.shape:
                raise SizeMismatchError(
                    f'colour image is {rgb.shape[1]}x{rgb.shape[0]} but the depth image is '
                    f'{width}x{height}.', "Use a registered colour image of the depth image's "
                    'size, or xyz point clouds.')
        t1 = time.perf_counter()
        timings['decode_ms'] = (t1 - t0) * 1e3
        metric = self._config.metric
        if metric.edge_threshold > 0:
            edge_filter(depth, metric.edge_threshold)
        apply_validity(depth, metric.min_range, metric.max_range, metric.too_close)
        timings['metric_ms'] = (time.perf_counter() - t1) * 1e3
        return FrameResult(depth=depth, relative=None, rgb=rgb, camera=state.camera,
                           scale=None, timings=timings)

    def _state(self, camera_info_msg: Any | None, camera: CameraModel | None, width: int,
               height: int) -> PipelineCameraState:
        if camera is not None:
            return self.state_for_camera(camera, width, height)
        if camera_info_msg is None:
            raise MissingCameraInfoError(
                'no camera_info for this image.',
                'Publish the camera_info topic beside the image topic, or give a calibration '
                'file (--camera-info FILE.yaml).')
        return self.camera_state(camera_info_msg, width, height)

    @staticmethod
    def _sparse_depth(msg: Any, width: int, height: int) -> np.ndarray:
        sparse = depth_to_metres(msg)
        if sparse.shape == (height, width):
            return sparse
        sh, sw = sparse.shape
        if abs(sw / sh - width / height) > 0.01 * (width / height):
            raise SizeMismatchError(
                f'sparse depth is {sw}x{sh} but the image is {width}x{height} (another aspect '
                f'ratio).', 'Project the sparse depth into the image camera before feeding it.')
        import cv2
        return cv2.resize(sparse, (width, height), interpolation=cv2.INTER_NEAREST)

    # -- outputs ----------------------------------------------------------------------------
    def outputs(self, result: FrameResult, header: Any, factory: Any,
                want: Iterable[str] = OUTPUTS) -> dict[str, Any]:
        """Build the output messages for ``result``, only those named in ``want``.

        Metric outputs (depth/image, depth/camera_info, points) are built only when the frame
        is metric; depth/relative only when it is not (a unitless map is never published as
        metres). depth/colorized shows the metric depth, or the relative map (as depth:
        inverse-depth maps are inverted first, so near is warm in both). Adds ``encode_ms``
        and, with points, ``cloud_ms`` to ``result.timings``.

        :param header: the output header: the input image's stamp and frame_id.
        :param factory: the :class:`~depth_node.messages.MessageFactory` to build with.
        :param want: a subset of :data:`OUTPUTS` (ValueError for other names).
        :returns: ``{output suffix: message}``.
        """
        want = set(want)
        unknown = want.difference(OUTPUTS)
        if unknown:
            raise ValueError(f'unknown outputs {sorted(unknown)}; choose from {OUTPUTS}')
        out: dict[str, Any] = {}
        config = self._config
        t0 = time.perf_counter()
        # numpy, or torch tensors on the model's device (the GPU path): the same functions
        # compute on the device and copy each message's payload to the host once
        depth = result.depth
        relative = result.relative if depth is None else None
        if depth is not None:
            if 'depth/image' in want:
                out['depth/image'] = make_depth_image(factory, header, depth,
                                                      config.output_encoding)
            if 'depth/camera_info' in want:
                out['depth/camera_info'] = result.camera.to_camera_info(factory, header)
        elif relative is not None and 'depth/relative' in want:
            out['depth/relative'] = make_image(factory, header, float32_of(relative), '32FC1')
        if 'depth/colorized' in want:
            shown = depth
            if shown is None and relative is not None:
                shown = relative
                kind = getattr(getattr(self.model, 'card', None), 'output_kind', '')
                if kind == 'relative_inverse_depth':
                    shown = reciprocal(relative)
            if shown is not None:
                lo = config.colorize_min_depth or None
                hi = config.colorize_max_depth or None
                colour = colorize_depth(shown, lo, hi)
                out['depth/colorized'] = make_image(factory, header, colour, 'rgb8')
        t1 = time.perf_counter()
        result.timings['encode_ms'] = (t1 - t0) * 1e3
        if depth is not None and 'points' in want:
            rgb = result.rgb if config.point_cloud_fields == 'xyzrgb' else None
            # the cloud is written straight into the message payload: no copy on publish
            buffer, payload = cloud_buffer(factory, depth.shape, with_rgb=rgb is not None,
                                           decimation=config.point_decimation)
            cloud = depth_to_cloud(depth, result.camera.ray_table(), rgb=rgb,
                                   decimation=config.point_decimation, out=buffer)
            out['points'] = make_pointcloud2(factory, header, cloud, payload)
            result.timings['cloud_ms'] = (time.perf_counter() - t1) * 1e3
        return out
