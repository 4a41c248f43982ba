"""The per-frame pipeline shared by the node, the bag tool and the benchmarks.

image (+ camera_info, + optional sparse depth) -> decode -> model (preprocess, inference,
postprocess) -> metric layer (scale, REP 117 validity, edge filter) -> outputs (depth image,
depth camera_info, organized point cloud, relative map, colorized preview).

No I/O and no ROS here: messages are read by their fields and built with the caller's
:class:`~depth_node.messages.MessageFactory`. Per-camera state (the camera model and its ray
table, the scale smoother) lives in one :class:`CameraState` per distinct camera_info.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
import time
from typing import Any

import numpy as np

from depth_node.camera import CameraModel
from depth_node.clouds import cloud_buffer, depth_to_cloud, make_pointcloud2
from depth_node.errors import SizeMismatchError
from depth_node.images import (colorize_depth, depth_to_metres, make_depth_image, make_image,
                               message_to_rgb)
from depth_node.metric import apply_validity, edge_filter, MetricConfig, MetricConverter, \
    ScaleReport

OUTPUTS = ('depth/image', 'depth/camera_info', 'points', 'depth/relative', 'depth/colorized')


@dataclass
class PipelineConfig:
    """Settings of the pipeline; field names are the parameter names of ``parameters.py``."""

    output_encoding: str = '32FC1'
    point_cloud_fields: str = 'xyz'
    point_decimation: int = 1
    image_is_rectified: bool = False
    colorize_min_depth: float = 0.0
    colorize_max_depth: float = 0.0
    metric: MetricConfig = field(default_factory=MetricConfig)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """Build from parameter values (a ``parameters.defaults()``-like mapping)."""
        metric_names = {f.name for f in fields(MetricConfig)}
        metric = MetricConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                                 for k, v in values.items() if k in metric_names})
        own = {f.name for f in fields(cls)} - {'metric'}
        return cls(metric=metric, **{k: v for k, v in values.items() if k in own})


@dataclass
class FrameResult:
    """What the pipeline computed for one frame."""

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
class CameraState:
    """Per-camera state: the camera model at image resolution and the scale smoother."""

    camera: CameraModel
    converter: MetricConverter | None


def _as_numpy(array: Any) -> np.ndarray:
    """A numpy array from a numpy array or a torch tensor (one device-to-host copy)."""
    if isinstance(array, np.ndarray):
        return array
    return array.detach().cpu().numpy()


def _camera_info_key(msg: Any) -> tuple:
    """A cheap identity of a camera_info message's calibration content."""
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

    def __init__(self, model: Any | None, config: PipelineConfig | None = None,
                 log: Callable[[str], None] = print, max_cameras: int = 8) -> None:
        """Create the pipeline.

        :param model: a :class:`depth_node.models.runner.DepthModel`, or None for depth-only
            use (:meth:`process_depth`).
        :param config: pipeline settings (defaults of ``parameters.py`` when None).
        :param log: where one-off notices go (e.g. an intrinsics rescale).
        :param max_cameras: how many distinct camera_infos keep their state.
        """
        self.model = model
        self.config = config or PipelineConfig()
        self._log = log
        self._max_cameras = max_cameras
        self._states: dict[tuple, CameraState] = {}
        self._noted: set[tuple] = set()

    # -- per-camera state -------------------------------------------------------------------
    def camera_state(self, camera_info: Any, width: int, height: int) -> CameraState:
        """The state for this camera_info at an image size of ``width`` x ``height``.

        Raises the camera module's errors for an unusable camera_info, and
        :class:`SizeMismatchError` when the image size cannot be reconciled with it.
        """
        key = (_camera_info_key(camera_info), width, height, self.config.image_is_rectified)
        state = self._states.get(key)
        if state is not None:
            return state
        camera = CameraModel.from_camera_info(camera_info,
                                              rectified=self.config.image_is_rectified)
        return self._new_state(key, camera, width, height)

    def state_for_camera(self, camera: CameraModel, width: int, height: int) -> CameraState:
        """The state for a camera model given directly (calibration file, no camera_info)."""
        key = (camera.key, width, height, camera.rectified)
        state = self._states.get(key)
        return state if state is not None else self._new_state(key, camera, width, height)

    def _new_state(self, key: tuple, camera: CameraModel, width: int,
                   height: int) -> CameraState:
        matched, rescaled = camera.matched_to_image(width, height)
        if rescaled and key[0] not in self._noted:
            self._noted.add(key[0])
            self._log(f'camera_info is {camera.width}x{camera.height} but the images are '
                      f'{width}x{height} (same aspect ratio): scaling the intrinsics to the '
                      f'image size. Publish a camera_info that matches the image to silence '
                      f'this.')
        converter = None
        if self.model is not None:
            converter = MetricConverter(self.model.card, self.config.metric)
        state = CameraState(camera=matched, converter=converter)
        if len(self._states) >= self._max_cameras:
            self._states.pop(next(iter(self._states)))
        self._states[key] = state
        return state

    def reset(self) -> None:
        """Forget every camera's state (ray tables stay cached in the camera module)."""
        self._states.clear()

    # -- frames -----------------------------------------------------------------------------
    def process(self, image_msg: Any, camera_info_msg: Any | None = None,
                sparse_depth_msg: Any | None = None, *,
                camera: CameraModel | None = None) -> FrameResult:
        """Run the model on one image (Image or CompressedImage) with its camera_info.

        :param camera: a camera model to use instead of ``camera_info_msg``.
        :raises depth_node.errors.InputError: for bad input; the caller counts and skips it.
        """
        if self.model is None:
            raise RuntimeError('this pipeline has no model: use process_depth()')
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        rgb = message_to_rgb(image_msg)
        height, width = rgb.shape[:2]
        state = self._state(camera_info_msg, camera, width, height)
        sparse = None
        if sparse_depth_msg is not None:
            sparse = self._sparse_depth(sparse_depth_msg, width, height)
        t1 = time.perf_counter()
        timings['decode_ms'] = (t1 - t0) * 1e3
        raw, transform, model_timings = self.model.predict(rgb)
        timings.update(model_timings)
        t2 = time.perf_counter()
        depth, relative, report = state.converter.convert(raw, state.camera, transform, sparse)
        timings['metric_ms'] = (time.perf_counter() - t2) * 1e3
        return FrameResult(depth=depth, relative=relative, rgb=rgb, camera=state.camera,
                           scale=report, timings=timings)

    def process_depth(self, depth_msg: Any, camera_info_msg: Any | None = None,
                      image_msg: Any | None = None, *,
                      camera: CameraModel | None = None) -> FrameResult:
        """Use an existing depth image (16UC1 mm / 32FC1 m) instead of a model.

        Applies the REP 117 validity ranges and the edge filter; ``image_msg`` (optional, same
        size) colours an xyzrgb cloud.
        """
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        depth = np.array(depth_to_metres(depth_msg), dtype=np.float32, copy=True)
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
        metric = self.config.metric
        apply_validity(depth, metric.min_range, metric.max_range, metric.too_close)
        if metric.edge_threshold > 0:
            edge_filter(depth, metric.edge_threshold)
        timings['metric_ms'] = (time.perf_counter() - t1) * 1e3
        return FrameResult(depth=depth, relative=None, rgb=rgb, camera=state.camera,
                           scale=None, timings=timings)

    def _state(self, camera_info_msg: Any | None, camera: CameraModel | None, width: int,
               height: int) -> CameraState:
        if camera is not None:
            return self.state_for_camera(camera, width, height)
        if camera_info_msg is None:
            from depth_node.errors import MissingCameraInfoError
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
        is metric; depth/relative only when it is not. Adds ``encode_ms`` / ``cloud_ms`` to
        ``result.timings``.
        """
        want = set(want)
        out: dict[str, Any] = {}
        config = self.config
        t0 = time.perf_counter()
        depth = None if result.depth is None else _as_numpy(result.depth)
        if depth is not None:
            if 'depth/image' in want:
                out['depth/image'] = make_depth_image(factory, header, depth,
                                                      config.output_encoding)
            if 'depth/camera_info' in want:
                out['depth/camera_info'] = result.camera.to_camera_info(factory, header)
        elif result.relative is not None and 'depth/relative' in want:
            relative = np.ascontiguousarray(_as_numpy(result.relative), dtype=np.float32)
            out['depth/relative'] = make_image(factory, header, relative, '32FC1')
        if 'depth/colorized' in want:
            shown = depth if depth is not None else (
                None if result.relative is None else _as_numpy(result.relative))
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
