"""The camera model: geometry of one camera stream, from ``sensor_msgs/CameraInfo``.

:class:`CameraModel` holds K, D, R, P, the distortion model, binning and ROI of one camera
stream, gives the effective pinhole intrinsics of the images the stream carries, scales them to
other resolutions (and to the crop/pad a network's preprocessing applies), and builds a per-pixel
ray table for back-projection that honours the distortion model.

Conventions (all documented choices in one place):

* **Pixel coordinates** are OpenCV's and ROS's: the centre of pixel ``(u, v)`` (column, row) is
  at ``(u, v)``; the image covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
* **Raw vs rectified.** A raw image (``rectified=False``) uses K and D. Its rays are in the
  camera's *own* optical frame, so R is **not** applied (R rotates into the rectified frame of a
  stereo pair; a depth network sees the raw image, whose depth is along the raw optical axis).
  A rectified image (``rectified=True``) uses P's ``fx' fy' cx' cy'`` and no distortion; its rays
  are in the rectified frame. P's ``Tx``/``Ty`` (stereo baseline terms) are ignored for rays and
  projection: the points are in this camera's own frame, as depth_image_proc does.
* **Binning and ROI** follow image_geometry's ``PinholeCameraModel`` exactly: the ROI offset is
  subtracted from ``cx, cy`` first, then ``fx, cx`` (and P's ``Tx``) are divided by
  ``binning_x`` and ``fy, cy`` (``Ty``) by ``binning_y``; binning 0 means 1; an all-zero ROI
  means the full image. The stream's image size is ``roi size // binning``. Doing the same as
  image_geometry keeps our clouds consistent with depth_image_proc and rviz for binned cameras.
* **Resizing, cropping and padding**: :meth:`CameraModel.with_transform` is the affine map of
  pixel-centre coordinates ``u' = u * scale + offset`` (``fx' = fx * scale``,
  ``cx' = cx * scale + offset``, y alike, on K and P, P's ``Tx' = Tx * scale``), the same
  ``network px = image px * scale + offset`` as the models' preprocessing ``Transform``. The
  exact offset of ``cv2.resize`` (which maps pixel centres as ``u' = (u + 0.5) * s - 0.5``) is
  ``0.5 * s - 0.5`` plus any pad (positive) or crop (negative); :meth:`CameraModel.resized`
  uses it, so ``cx' = (cx + 0.5) * sx - 0.5``. image_proc's resize uses ``cx' = cx * sx``,
  which is off by ``(sx - 1) / 2`` px: a quarter to half a pixel for a 2x change.
* **Distortion models** and the **valid field of view** of the ray table: see
  :mod:`depth_node.distortion`. Calibration files are read by
  :func:`depth_node.calibration.load_calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import functools
import math
from typing import Any

from depth_node import distortion
from depth_node.distortion import DISTORTION_MODELS  # noqa: F401 (the camera's vocabulary)
from depth_node.errors import (
    CameraInfoError,
    SizeMismatchError,
    UncalibratedCameraError,
)
import numpy as np

#: Relative aspect-ratio difference :meth:`CameraModel.matched_to_image` accepts as "same".
ASPECT_TOLERANCE = 0.01


def _err(message: str, hint: str) -> CameraInfoError:
    return CameraInfoError(message, hint)


def _as_matrix(values: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    """Return a read-only float64 copy of ``values`` with ``shape``, or CameraInfoError."""
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _err(f'camera {name} is not numeric: {exc}.',
                   f'Give {name} as {shape[0] * shape[1]} numbers (row-major).') from exc
    if arr.size != shape[0] * shape[1]:
        raise _err(f'camera {name} has {arr.size} values, expected {shape[0] * shape[1]} '
                   f'({shape[0]}x{shape[1]}).',
                   f'Fix the calibration: {name} is a {shape[0]}x{shape[1]} row-major matrix.')
    arr = arr.reshape(shape)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Geometry of one camera stream (see the module docstring for every convention).

    Build it with :meth:`from_camera_info` or
    :func:`depth_node.calibration.load_calibration`; the constructor validates and raises
    :class:`~depth_node.errors.CameraInfoError` or
    :class:`~depth_node.errors.UncalibratedCameraError` (all-zero K). Instances are immutable;
    compare them with :attr:`key`.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    R: np.ndarray
    P: np.ndarray
    distortion_model: str
    binning_x: int = 1
    binning_y: int = 1
    roi: tuple[int, int, int, int, bool] = (0, 0, 0, 0, False)
    frame_id: str = ''
    rectified: bool = False
    _stream: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        """Normalise the fields and validate them."""
        set_field = object.__setattr__
        try:
            width, height = int(self.width), int(self.height)
            bx, by = int(self.binning_x or 1), int(self.binning_y or 1)
            roi = tuple(int(v) for v in tuple(self.roi)[:4]) + (bool(tuple(self.roi)[4]),)
        except (TypeError, ValueError, IndexError) as exc:
            raise _err(f'camera size, binning or roi is malformed: {exc}.',
                       'Give integer width/height/binning and roi (x, y, w, h, do_rectify).'
                       ) from exc
        if width <= 0 or height <= 0:
            raise _err(f'camera_info image size is {width}x{height}.',
                       'Set width/height to the size the camera was calibrated at '
                       '(camera_info width/height or image_width/image_height).')
        if bx < 1 or by < 1:
            raise _err(f'camera binning is {bx}x{by}.', 'Binning must be 0, 1 or more.')
        K = _as_matrix(self.K, (3, 3), 'K')
        D = np.array(self.D if self.D is not None else [], dtype=np.float64).reshape(-1)
        D.setflags(write=False)
        R = _as_matrix(self.R, (3, 3), 'R')
        P = _as_matrix(self.P, (3, 4), 'P')
        for name, arr in (('K', K), ('D', D), ('R', R), ('P', P)):
            if not np.all(np.isfinite(arr)):
                raise _err(f'camera {name} contains NaN or Inf: {arr.ravel().tolist()}.',
                           'Recalibrate the camera or fix the calibration file / driver.')
        if not np.any(K[:2]):
            what = 'K is all zeros' if not np.any(K) else 'K has zero fx, fy, cx and cy'
            raise UncalibratedCameraError(
                f'camera is not calibrated: {what}.',
                'Calibrate it (ros2 run camera_calibration cameracalibrator) or give a '
                'calibration file (camera_info_url / calibration_file).')
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise _err(f'camera K has fx={K[0, 0]}, fy={K[1, 1]}; both must be > 0.',
                       'Fix the calibration: K = [fx 0 cx; 0 fy cy; 0 0 1].')
        if self.rectified and (P[0, 0] <= 0 or P[1, 1] <= 0):
            raise _err(f'the image is declared rectified but P has fx={P[0, 0]}, '
                       f'fy={P[1, 1]}.',
                       'Give a camera_info with a valid P, or treat the image as raw '
                       '(image_is_rectified: false).')
        model = distortion.normalise_model(str(self.distortion_model or ''), D)
        x0, y0, rw, rh, do_rect = roi
        if (x0, y0, rw, rh) == (0, 0, 0, 0):
            rw, rh = width, height
        if x0 < 0 or y0 < 0 or rw <= 0 or rh <= 0 or x0 + rw > width or y0 + rh > height:
            raise _err(f'camera roi (x={x0}, y={y0}, w={rw}, h={rh}) is not inside the '
                       f'{width}x{height} calibrated image.',
                       "Fix the driver's roi, or send an all-zero roi for the full image.")
        if rw // bx <= 0 or rh // by <= 0:
            raise _err(f'roi {rw}x{rh} with binning {bx}x{by} leaves no pixels.',
                       'Fix binning_x/binning_y.')
        set_field(self, 'width', width)
        set_field(self, 'height', height)
        set_field(self, 'binning_x', bx)
        set_field(self, 'binning_y', by)
        set_field(self, 'roi', roi)
        set_field(self, 'K', K)
        set_field(self, 'D', D)
        set_field(self, 'R', R)
        set_field(self, 'P', P)
        set_field(self, 'distortion_model', model)
        set_field(self, 'frame_id', str(self.frame_id or ''))
        set_field(self, 'rectified', bool(self.rectified))
        # effective (binned, ROI-shifted) raw K and P of the image stream, like image_geometry
        k_eff = K.copy()
        p_eff = P.copy()
        for m in (k_eff, p_eff):
            m[0, 2] -= x0
            m[1, 2] -= y0
            m[0, :] /= bx
            m[1, :] /= by
        k_eff[0, 1] = 0.0
        set_field(self, '_stream', {'K': k_eff, 'P': p_eff, 'size': (rw // bx, rh // by)})

    @classmethod
    def from_camera_info(cls, msg: Any, rectified: bool = False) -> CameraModel:
        """Model of a ``sensor_msgs/CameraInfo`` (rclpy, rosbags, or ROS 1 ``K``/``D`` names).

        :param msg: the message; read by its fields only.
        :param rectified: the image stream is rectified (use P, no distortion).
        """
        def get(*names: str, default: Any = None) -> Any:
            for name in names:
                if hasattr(msg, name):
                    return getattr(msg, name)
            return default

        roi = get('roi')
        roi_t = ((int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height),
                  bool(roi.do_rectify)) if roi is not None else (0, 0, 0, 0, False))
        header = get('header')
        frame_id = getattr(header, 'frame_id', '') if header is not None else ''
        k = get('k', 'K')
        if k is None:
            raise _err(f'{type(msg).__name__} has no k field: not a CameraInfo message.',
                       'Connect a sensor_msgs/CameraInfo topic.')
        d = get('d', 'D', default=())
        r = get('r', 'R')
        p = get('p', 'P')
        return cls(width=get('width', default=0), height=get('height', default=0),
                   K=np.asarray(k, dtype=np.float64), D=np.asarray(d, dtype=np.float64),
                   R=np.eye(3) if r is None else np.asarray(r, dtype=np.float64),
                   P=np.asarray(p, dtype=np.float64) if p is not None else default_projection(k),
                   distortion_model=get('distortion_model', default=''),
                   binning_x=get('binning_x', default=1), binning_y=get('binning_y', default=1),
                   roi=roi_t, frame_id=frame_id, rectified=rectified)

    # ------------------------------------------------------------------ effective geometry
    @property
    def image_width(self) -> int:
        """Width of the stream's images: ROI width // binning_x (= width when neither)."""
        return self._stream['size'][0]

    @property
    def image_height(self) -> int:
        """Height of the stream's images: ROI height // binning_y (= height when neither)."""
        return self._stream['size'][1]

    def _pinhole(self) -> np.ndarray:
        return self._stream['P'] if self.rectified else self._stream['K']

    @property
    def fx(self) -> float:
        """Effective focal length x in pixels of the stream (P's if rectified)."""
        return float(self._pinhole()[0, 0])

    @property
    def fy(self) -> float:
        """Effective focal length y in pixels of the stream (P's if rectified)."""
        return float(self._pinhole()[1, 1])

    @property
    def cx(self) -> float:
        """Effective principal point x in pixels of the stream (P's if rectified)."""
        return float(self._pinhole()[0, 2])

    @property
    def cy(self) -> float:
        """Effective principal point y in pixels of the stream (P's if rectified)."""
        return float(self._pinhole()[1, 2])

    def intrinsic_matrix(self) -> np.ndarray:
        """Return the effective 3x3 pinhole matrix ``[fx 0 cx; 0 fy cy; 0 0 1]`` of the stream."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        """Whether rays/projection use a distortion model (False if rectified or none)."""
        return not self.rectified and self.distortion_model != 'none'

    @functools.cached_property
    def key(self) -> tuple:
        """Hashable identity of the geometry (frame_id excluded: it does not change rays).

        Computed once per camera model (the model is immutable): the per-frame ray-table
        lookup only hashes it.
        """
        return (self.width, self.height, tuple(self.K.ravel().tolist()),
                tuple(self.D.tolist()), tuple(self.R.ravel().tolist()),
                tuple(self.P.ravel().tolist()), self.distortion_model, self.binning_x,
                self.binning_y, self.roi, self.rectified)

    def _coeffs(self) -> np.ndarray:
        """Distortion coefficients padded to the model's full count (plumb_bob -> 8)."""
        return distortion.coefficients(self.distortion_model, self.D)

    def __repr__(self) -> str:
        """Short summary: size, model, effective intrinsics."""
        mode = 'rectified' if self.rectified else 'raw'
        return (f'CameraModel({self.image_width}x{self.image_height} {mode} '
                f'{self.distortion_model} fx={self.fx:.3f} fy={self.fy:.3f} cx={self.cx:.3f} '
                f'cy={self.cy:.3f} frame={self.frame_id!r})')

    # ------------------------------------------------------------------ derived cameras
    def with_transform(self, scale_x: float, scale_y: float, offset_x: float, offset_y: float,
                       width: int, height: int) -> CameraModel:
        """Camera of a resampled image: ``network px = image px * scale + offset``.

        An affine map of pixel-centre coordinates: ``fx' = fx * scale_x`` and
        ``cx' = cx * scale_x + offset_x`` (y alike) on K and P. For an image resized with
        ``cv2.resize`` by ``s`` and then padded by ``pad`` pixels (negative: cropped), the exact
        offset is ``0.5 * s - 0.5 + pad`` (what :meth:`resized` and the preprocessing
        ``Transform`` use). The result has no binning or ROI (they are folded into K and P) and
        keeps D, R, the distortion model, frame and ``rectified``.

        :param scale_x: horizontal scale (> 0). :param scale_y: vertical scale (> 0).
        :param offset_x: horizontal offset in output pixels. :param offset_y: vertical offset.
        :param width: output image width. :param height: output image height.
        """
        sx, sy = float(scale_x), float(scale_y)
        if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
            raise _err(f'camera scale must be finite and > 0, got {sx}, {sy}.',
                       'Check the network input size in the model card.')
        if not (math.isfinite(offset_x) and math.isfinite(offset_y)):
            raise _err(f'camera offset must be finite, got {offset_x}, {offset_y}.',
                       'Check the preprocessing transform.')
        k = self._stream['K'].copy()
        p = self._stream['P'].copy()
        for m in (k, p):
            m[0, 2] = m[0, 2] * sx + offset_x
            m[1, 2] = m[1, 2] * sy + offset_y
            m[0, 0] *= sx
            m[1, 1] *= sy
        p[0, 3] *= sx
        p[1, 3] *= sy
        return replace(self, width=int(width), height=int(height), K=k, P=p, binning_x=1,
                       binning_y=1, roi=(0, 0, 0, 0, self.roi[4]))

    def resized(self, width: int, height: int) -> CameraModel:
        """Camera of the stream's images resized to ``width x height`` (as cv2.resize does).

        ``fx *= sx, fy *= sy`` with ``sx = width / image_width``; the principal point moves
        exactly as ``cv2.resize`` moves pixel centres: ``cx' = (cx + 0.5) * sx - 0.5``.
        """
        sx, sy = width / self.image_width, height / self.image_height
        return self.with_transform(sx, sy, 0.5 * sx - 0.5, 0.5 * sy - 0.5, width, height)

    def cropped(self, x: int, y: int, width: int, height: int) -> CameraModel:
        """Camera of ``image[y:y + height, x:x + width]``: ``cx -= x, cy -= y``."""
        return self.with_transform(1.0, 1.0, -x, -y, width, height)

    def padded(self, left: int, top: int, width: int, height: int) -> CameraModel:
        """Camera of the image padded by ``left``/``top`` pixels to ``width x height``."""
        return self.with_transform(1.0, 1.0, left, top, width, height)

    def matched_to_image(self, width: int, height: int) -> tuple[CameraModel, bool]:
        """Fit the camera to an image of ``width x height``.

        :returns: ``(self, False)`` for the stream's own size; ``(resized camera, True)`` when
            the aspect ratio agrees within :data:`ASPECT_TOLERANCE` (the caller says so once).
        :raises SizeMismatchError: for a different aspect ratio.
        """
        width, height = int(width), int(height)
        own_w, own_h = self.image_width, self.image_height
        if (width, height) == (own_w, own_h):
            return self, False
        if width > 0 and height > 0:
            aspect, own = width / height, own_w / own_h
            if abs(aspect - own) <= ASPECT_TOLERANCE * own:
                return self.resized(width, height), True
        raise SizeMismatchError(
            f'image is {width}x{height} but camera_info describes {own_w}x{own_h} images '
            f'(calibrated at {self.width}x{self.height}, binning {self.binning_x}x'
            f'{self.binning_y}, roi {self.roi[:4]}); the aspect ratios differ, so the '
            'intrinsics cannot be scaled.',
            'Publish the camera_info that belongs to this image stream (same resolution, or '
            'correct binning/roi), or recalibrate at this resolution.')

    # ------------------------------------------------------------------ rays and projection
    def ray_table(self) -> np.ndarray:
        """Per-pixel rays ``(x/z, y/z, 1)`` of the stream's images, (H, W, 3) float32.

        Back-project with ``points = ray_table * depth_z[..., None]``. Distortion is inverted
        for raw images; NaN outside the valid field of view (:mod:`depth_node.distortion`).
        The table is computed once per :attr:`key`, cached
        (:data:`~depth_node.distortion.RAY_CACHE_SIZE` tables) and read-only.
        """
        model = self.distortion_model if self.has_distortion else 'none'
        return distortion.cached_ray_table(self.key, lambda: distortion.compute_ray_table(
            self.image_width, self.image_height, (self.fx, self.fy, self.cx, self.cy), model,
            self._coeffs()))

    def valid_fraction(self) -> float:
        """Fraction of the stream's pixels that have a ray (inside the valid field of view)."""
        return float(np.isfinite(self.ray_table()[..., 0]).mean())

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project (N, 3) points in this camera's optical frame to (N, 2) pixels.

        Uses the distortion model for raw images (the same formulas as ``cv2.projectPoints`` /
        ``cv2.fisheye.projectPoints``) and P's pinhole for rectified ones. Points with
        ``z <= 0`` give NaN.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        z = pts[:, 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            x = np.where(z > 0, pts[:, 0] / z, np.nan)
            y = np.where(z > 0, pts[:, 1] / z, np.nan)
            if self.has_distortion:
                x, y = distortion.distort(self.distortion_model, self._coeffs(), x, y)
        return np.stack([x * self.fx + self.cx, y * self.fy + self.cy], axis=-1)

    # ------------------------------------------------------------------ messages
    def to_camera_info(self, factory: Any, header: Any) -> Any:
        """Return a ``sensor_msgs/CameraInfo`` for this camera, built with a MessageFactory.

        The fields are this model's own (size, K, D, R, P, binning, ROI), so a model from a
        camera_info gives that camera_info back and a resized model describes the resized
        images. The ``none`` model is written as ``plumb_bob`` with five zeros, which every
        ROS consumer (image_geometry) understands.

        :param factory: a :class:`~depth_node.messages.MessageFactory`.
        :param header: the ``std_msgs/Header`` (stamp and frame of the image it describes).
        """
        model, d = self.distortion_model, self.D
        if model == 'none':
            model, d = 'plumb_bob', np.zeros(5)
        x0, y0, rw, rh, do_rect = self.roi
        return factory.CameraInfo(
            header=header, height=self.height, width=self.width, distortion_model=model,
            d=factory.float64_array(d), k=factory.fixed_float64_array(self.K.ravel()),
            r=factory.fixed_float64_array(self.R.ravel()),
            p=factory.fixed_float64_array(self.P.ravel()),
            binning_x=self.binning_x, binning_y=self.binning_y,
            roi=factory.RegionOfInterest(x_offset=x0, y_offset=y0, height=rh, width=rw,
                                         do_rectify=do_rect))


def default_projection(k: Any) -> np.ndarray:
    """``[K | 0]`` for files without a projection matrix."""
    kk = np.asarray(k, dtype=np.float64)
    if kk.size != 9:
        return np.zeros((3, 4))  # K's own validation reports the real problem
    return np.hstack([kk.reshape(3, 3), np.zeros((3, 1))])
