"""Camera geometry from ``sensor_msgs/CameraInfo`` or a calibration file.

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
* **Distortion models**: ``plumb_bob`` (k1 k2 p1 p2 [k3]; 4 coefficients are accepted with
  k3 = 0, as OpenCV does), ``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6), ``equidistant``
  (fisheye k1..k4, OpenCV's ``cv2.fisheye`` model) and ``none``. Coefficients beyond a model's
  count are accepted only when they are zero (Isaac ROS writes 5 equidistant values, the last
  0); a non-zero extra is an error rather than silently ignored. ``''``, an empty D, or an
  all-zero D with ``plumb_bob``/``rational_polynomial`` mean ``none``. An all-zero D with
  ``equidistant`` is *not* ``none``: that is the ideal equidistant fisheye ``r = f * theta``.
  The skew term ``K[0, 1]`` is ignored, as OpenCV's projection and image_geometry do.
* **Valid field of view** of the ray table: a pixel gets a ray only where the distortion model
  can be inverted uniquely, i.e. where the forward radial mapping is strictly increasing from
  the image centre out to that pixel's undistorted radius (``r_u <= tan(89 deg)`` for
  ``plumb_bob``/``rational_polynomial``; ``theta < 90 deg`` for ``equidistant``), and the
  inversion converged to better than :data:`RAY_TOLERANCE_PX`. Everything else is NaN.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
import functools
import json
import math
from pathlib import Path
import threading
from typing import Any

from depth_node.errors import (
    CameraInfoError,
    DepthNodeError,
    SizeMismatchError,
    UncalibratedCameraError,
)
import numpy as np

DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant', 'none')

#: (minimum, canonical) number of D coefficients per model; more are accepted only if zero.
_D_COUNTS = {'plumb_bob': (4, 5), 'rational_polynomial': (8, 8), 'equidistant': (4, 4)}

#: Relative aspect-ratio difference :meth:`CameraModel.matched_to_image` accepts as "same".
ASPECT_TOLERANCE = 0.01

#: A ray-table entry whose forward projection misses its pixel centre by more than this is NaN.
RAY_TOLERANCE_PX = 1e-5

#: Largest undistorted radius x/z (tan 89 deg) searched for plumb_bob / rational_polynomial.
_MAX_PINHOLE_RADIUS = math.tan(math.radians(89.0))

#: How many ray tables are kept (one per distinct camera key), least recently used dropped.
RAY_CACHE_SIZE = 8

_RAY_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_RAY_LOCK = threading.Lock()

_MODEL_HINT = ('Set distortion_model to one of plumb_bob (5 coefficients), rational_polynomial '
               '(8), equidistant (4), or leave it empty for an undistorted camera.')


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


def _normalise_model(model: str, D: np.ndarray) -> str:
    name = (model or '').strip().lower()
    if name in ('', 'none'):
        if D.size and np.any(D != 0):
            raise _err(f'distortion_model is {model!r} but D has non-zero values {D.tolist()}.',
                       _MODEL_HINT)
        return 'none'
    if name not in _D_COUNTS:
        raise _err(f'unknown distortion model {model!r}.', _MODEL_HINT)
    low, canonical = _D_COUNTS[name]
    if D.size == 0 and name != 'equidistant':
        return 'none'
    if D.size < low or np.any(D[canonical:] != 0):
        _raise_d_length(name, D)
    if name != 'equidistant' and not np.any(D != 0):
        return 'none'
    return name


def _raise_d_length(name: str, D: np.ndarray) -> None:
    low, canonical = _D_COUNTS[name]
    count = f'{low} or {canonical}' if low != canonical else f'{canonical}'
    hint = f'Give {count} coefficients for {name} (extra trailing values must be 0).'
    if name == 'plumb_bob' and D.size >= 8:
        hint += ' Non-zero k4..k6 mean the model is rational_polynomial.'
    raise _err(f'distortion model {name} needs {count} D coefficients, got {D.size}: '
               f'{D.tolist()}.', hint)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Geometry of one camera stream (see the module docstring for every convention).

    Build it with :meth:`from_camera_info`, :meth:`from_file` (:meth:`from_yaml`,
    :meth:`from_json`) or :meth:`from_dict`; the constructor validates and raises
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
    _eff: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        """Normalise the fields and validate them."""
        put = object.__setattr__
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
        model = _normalise_model(str(self.distortion_model or ''), D)
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
        put(self, 'width', width)
        put(self, 'height', height)
        put(self, 'binning_x', bx)
        put(self, 'binning_y', by)
        put(self, 'roi', roi)
        put(self, 'K', K)
        put(self, 'D', D)
        put(self, 'R', R)
        put(self, 'P', P)
        put(self, 'distortion_model', model)
        put(self, 'frame_id', str(self.frame_id or ''))
        put(self, 'rectified', bool(self.rectified))
        # effective (binned, ROI-shifted) raw K and P of the image stream, like image_geometry
        k_eff = K.copy()
        p_eff = P.copy()
        for m in (k_eff, p_eff):
            m[0, 2] -= x0
            m[1, 2] -= y0
            m[0, :] /= bx
            m[1, :] /= by
        k_eff[0, 1] = 0.0
        put(self, '_eff', {'K': k_eff, 'P': p_eff, 'size': (rw // bx, rh // by)})

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
                   P=np.asarray(p, dtype=np.float64) if p is not None else _default_p(k),
                   distortion_model=get('distortion_model', default=''),
                   binning_x=get('binning_x', default=1), binning_y=get('binning_y', default=1),
                   roi=roi_t, frame_id=frame_id, rectified=rectified)

    @classmethod
    def from_dict(cls, data: dict, frame_id: str | None = None,
                  rectified: bool = False) -> CameraModel:
        """Model from a parsed calibration (camera_calibration_parsers YAML, Isaac JSON, echo).

        Matrices may be ``{rows, cols, data}`` mappings or flat lists; keys may be
        ``camera_matrix``/``K``/``k``, ``distortion_coefficients``/``D``/``d``,
        ``rectification_matrix``/``R``/``r`` (missing: identity), ``projection_matrix``/``P``/
        ``p`` (missing: ``[K | 0]``), ``image_width``/``width``, ``image_height``/``height``.
        A missing ``distortion_model`` with coefficients means plumb_bob (as
        camera_calibration_parsers assumes) or rational_polynomial for 8 of them.

        :param data: the parsed mapping.
        :param frame_id: the frame to use (default: ``header.frame_id`` of the data, else '').
        :param rectified: the image stream is rectified (use P, no distortion).
        """
        if not isinstance(data, dict):
            raise _err(f'calibration is a {type(data).__name__}, not a mapping.',
                       'Give a camera_calibration_parsers YAML or a CameraInfo JSON file.')

        def pick(*names: str) -> Any:
            for name in names:
                if name in data and data[name] is not None:
                    return data[name]
            return None

        def matrix(value: Any, name: str) -> Any:
            if isinstance(value, dict):
                if 'data' not in value:
                    raise _err(f'calibration {name} has no data list.',
                               f'Write {name} as {{rows: R, cols: C, data: [...]}}.')
                values = list(value['data'])
                rows, cols = value.get('rows'), value.get('cols')
                if rows is not None and cols is not None and int(rows) * int(cols) != len(
                        values):
                    raise _err(f'calibration {name} says {rows}x{cols} but has '
                               f'{len(values)} values.', f'Fix {name} in the file.')
                return values
            return value

        k = matrix(pick('camera_matrix', 'K', 'k'), 'camera_matrix')
        if k is None:
            raise _err('calibration has no camera_matrix / K.',
                       'Give a camera_calibration_parsers YAML (camera_matrix, '
                       'distortion_coefficients, ...) or a CameraInfo JSON with K.')
        d = matrix(pick('distortion_coefficients', 'D', 'd'), 'distortion_coefficients')
        d = [] if d is None else d
        r = matrix(pick('rectification_matrix', 'R', 'r'), 'rectification_matrix')
        p = matrix(pick('projection_matrix', 'P', 'p'), 'projection_matrix')
        model = pick('distortion_model', 'camera_model')
        if model is None:
            n_d = len(np.asarray(d, dtype=np.float64).reshape(-1))
            model = '' if n_d == 0 else ('rational_polynomial' if n_d == 8 else 'plumb_bob')
        header = data.get('header') or {}
        roi = data.get('roi') or {}
        if frame_id is None:
            frame_id = header.get('frame_id', '') if isinstance(header, dict) else ''
        width = pick('image_width', 'width')
        height = pick('image_height', 'height')
        if width is None or height is None:
            raise _err('calibration has no image_width/image_height.',
                       'Add the calibrated image size (image_width, image_height).')
        return cls(width=width, height=height, K=k, D=d,
                   R=np.eye(3) if r is None else r,
                   P=_default_p(k) if p is None else p,
                   distortion_model=model,
                   binning_x=pick('binning_x') or 1, binning_y=pick('binning_y') or 1,
                   roi=(int(roi.get('x_offset', 0)), int(roi.get('y_offset', 0)),
                        int(roi.get('width', 0)), int(roi.get('height', 0)),
                        bool(roi.get('do_rectify', False))),
                   frame_id=frame_id, rectified=rectified)

    @classmethod
    def from_yaml(cls, path_or_text: str | Path, frame_id: str | None = None,
                  rectified: bool = False) -> CameraModel:
        """Model from a camera_calibration_parsers YAML file (path) or YAML text.

        :param path_or_text: a file path, or the YAML text itself (if it contains a newline).
        :param frame_id: the frame to use (calibration files carry none; default '').
        :param rectified: the image stream is rectified.
        """
        import yaml

        if isinstance(path_or_text, Path) or '\n' not in str(path_or_text):
            return cls.from_file(path_or_text, frame_id=frame_id, rectified=rectified)
        try:
            data = yaml.safe_load(str(path_or_text))
        except yaml.YAMLError as exc:
            raise _err(f'calibration YAML does not parse: {exc}.',
                       'Fix the YAML syntax.') from exc
        return cls.from_dict(data, frame_id=frame_id, rectified=rectified)

    @classmethod
    def from_json(cls, path: str | Path, frame_id: str | None = None,
                  rectified: bool = False) -> CameraModel:
        """Model from a CameraInfo JSON file (Isaac ROS layout: K, D, R, P, width, height).

        :param path: the file.
        :param frame_id: override of the file's ``header.frame_id``.
        :param rectified: the image stream is rectified.
        """
        return cls.from_file(path, frame_id=frame_id, rectified=rectified)

    @classmethod
    def from_file(cls, path: str | Path, frame_id: str | None = None,
                  rectified: bool = False) -> CameraModel:
        """Model from a calibration file: ``.json`` as JSON, anything else as YAML.

        Errors name the file. :param path: the file. :param frame_id: the frame to use
        (default: the file's ``header.frame_id`` if any, else ''). :param rectified: the image
        stream is rectified.
        """
        import yaml

        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise _err(f'cannot read calibration file {str(path)!r}: {exc.strerror}.',
                       'Check the path (absolute, or relative to the working directory).'
                       ) from exc
        try:
            if path.suffix.lower() == '.json':
                data = json.loads(text)
            else:
                data = yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise _err(f'calibration file {str(path)!r} does not parse: {exc}.',
                       'Fix the file syntax.') from exc
        try:
            return cls.from_dict(data, frame_id=frame_id, rectified=rectified)
        except DepthNodeError as exc:
            raise type(exc)(f'{path}: {exc.message}', exc.hint) from exc

    # ------------------------------------------------------------------ effective geometry
    @property
    def image_width(self) -> int:
        """Width of the stream's images: ROI width // binning_x (= width when neither)."""
        return self._eff['size'][0]

    @property
    def image_height(self) -> int:
        """Height of the stream's images: ROI height // binning_y (= height when neither)."""
        return self._eff['size'][1]

    def _pinhole(self) -> np.ndarray:
        return self._eff['P'] if self.rectified else self._eff['K']

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
        if self.distortion_model == 'equidistant':
            return self.D[:4].copy()  # validated: at least 4, extras zero
        out = np.zeros(8)
        n = min(8, self.D.size)
        out[:n] = self.D[:n]
        return out

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
        k = self._eff['K'].copy()
        p = self._eff['P'].copy()
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
        for raw images; NaN outside the valid field of view (module docstring). The table is
        computed once per :attr:`key`, cached (LRU of :data:`RAY_CACHE_SIZE`) and read-only.
        """
        key = self.key
        with _RAY_LOCK:
            table = _RAY_CACHE.get(key)
            if table is not None:
                _RAY_CACHE.move_to_end(key)
                return table
        table = self._compute_ray_table()
        table.setflags(write=False)
        with _RAY_LOCK:
            _RAY_CACHE[key] = table
            _RAY_CACHE.move_to_end(key)
            while len(_RAY_CACHE) > RAY_CACHE_SIZE:
                _RAY_CACHE.popitem(last=False)
        return table

    def _compute_ray_table(self) -> np.ndarray:
        w, h = self.image_width, self.image_height
        fx, fy, cx, cy = self.fx, self.fy, self.cx, self.cy
        out = np.empty((h, w, 3), dtype=np.float32)
        out[..., 2] = 1.0
        xd = (np.arange(w, dtype=np.float64) - cx) / fx
        yd = (np.arange(h, dtype=np.float64) - cy) / fy
        if not self.has_distortion:
            out[..., 0] = xd[None, :]
            out[..., 1] = yd[:, None]
            return out
        fmin = min(fx, fy)
        tol = RAY_TOLERANCE_PX / fmin
        if self.distortion_model == 'equidistant':
            solve = _FisheyeInverse(self._coeffs(), tol)
        else:
            solve = _RadTanInverse(self._coeffs(), tol)
        rows = max(1, 65536 // max(w, 1))
        for y0 in range(0, h, rows):
            y1 = min(h, y0 + rows)
            gx = np.broadcast_to(xd[None, :], (y1 - y0, w))
            gy = np.broadcast_to(yd[y0:y1, None], (y1 - y0, w))
            rx, ry = solve(gx, gy)
            out[y0:y1, :, 0] = rx
            out[y0:y1, :, 1] = ry
            bad = ~np.isfinite(rx)
            if bad.any():
                out[y0:y1, :, 2][bad] = np.nan
        return out

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
                if self.distortion_model == 'equidistant':
                    x, y = _fisheye_forward(self._coeffs(), x, y)
                else:
                    x, y = _radtan_forward(self._coeffs(), x, y)[:2]
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


def _default_p(k: Any) -> np.ndarray:
    """``[K | 0]`` for files without a projection matrix."""
    kk = np.asarray(k, dtype=np.float64)
    if kk.size != 9:
        return np.zeros((3, 4))  # K's own validation reports the real problem
    return np.hstack([kk.reshape(3, 3), np.zeros((3, 1))])


# ---------------------------------------------------------------------- distortion maths
def _radtan_forward(c: np.ndarray, x: np.ndarray, y: np.ndarray,
                    jacobian: bool = False) -> tuple[np.ndarray, ...]:
    """Distort normalised (x, y) by OpenCV's rational/plumb_bob model, optionally with Jacobian."""
    k1, k2, p1, p2, k3, k4, k5, k6 = (float(v) for v in c)
    x2, y2, xy = x * x, y * y, x * y
    r2 = x2 + y2
    num = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    radial = num / den
    xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x2)
    yd = y * radial + p1 * (r2 + 2 * y2) + 2 * p2 * xy
    if not jacobian:
        return xd, yd
    dnum = k1 + r2 * (2 * k2 + r2 * 3 * k3)
    dden = k4 + r2 * (2 * k5 + r2 * 3 * k6)
    drad = 2 * (dnum * den - num * dden) / (den * den)   # d radial / d r2, times 2
    jxx = radial + x2 * drad + 2 * p1 * y + 6 * p2 * x
    jyy = radial + y2 * drad + 6 * p1 * y + 2 * p2 * x
    jxy = xy * drad + 2 * p1 * x + 2 * p2 * y           # d xd / d y == d yd / d x
    return xd, yd, jxx, jxy, jyy


def _fisheye_forward(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distort normalised (x, y) with OpenCV's fisheye (ROS equidistant) model, z > 0."""
    r = np.hypot(x, y)
    theta = np.arctan(r)
    t2 = theta * theta
    k1, k2, k3, k4 = (float(v) for v in c)
    theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    scale = np.divide(theta_d, r, out=np.ones_like(r), where=r > 1e-8)
    return x * scale, y * scale


def _monotonic_lut(samples: np.ndarray, forward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the leading strictly increasing part of ``forward(samples)`` (1-D inverse table)."""
    step = np.diff(forward)
    stop = np.flatnonzero(step <= 0)
    end = int(stop[0]) if stop.size else samples.size - 1
    # stop one sample before the first non-increasing step: the turning point lies in there
    end = max(end, 1)
    return forward[:end], samples[:end]


class _RadTanInverse:
    """Undistort normalised points for plumb_bob / rational_polynomial.

    A 1-D table of the radial mapping gives the start (exact without tangential terms), two or
    more 2-D Newton steps with the analytic Jacobian refine it against the forward model.
    """

    def __init__(self, coeffs: np.ndarray, tol: float) -> None:
        self.c = coeffs
        self.tol = tol
        theta = np.linspace(0.0, math.atan(_MAX_PINHOLE_RADIUS), 8192)
        r = np.tan(theta)
        r2 = r * r
        k1, k2, _, _, k3, k4, k5, k6 = (float(v) for v in coeffs)
        rd = r * (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        den_ok = np.flatnonzero((1 + r2 * (k4 + r2 * (k5 + r2 * k6))) <= 0)
        if den_ok.size:
            rd = rd[:den_ok[0]]
            r = r[:den_ok[0]]
        self.rd_lut, self.r_lut = _monotonic_lut(r, rd)
        self.r_max = float(self.r_lut[-1])

    def __call__(self, xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rd = np.hypot(xd, yd)
        inside = rd <= self.rd_lut[-1]
        r0 = np.interp(rd, self.rd_lut, self.r_lut)
        s = np.divide(r0, rd, out=np.ones_like(rd), where=rd > 0)
        x, y = xd * s, yd * s
        stop = 1e-3 * self.tol
        for _ in range(8):
            fx_, fy_, jxx, jxy, jyy = _radtan_forward(self.c, x, y, jacobian=True)
            ex, ey = fx_ - xd, fy_ - yd
            if float(np.max(np.abs(ex) + np.abs(ey), where=inside, initial=0.0)) < stop:
                break
            det = jxx * jyy - jxy * jxy
            with np.errstate(divide='ignore', invalid='ignore'):
                x = x - (jyy * ex - jxy * ey) / det
                y = y - (jxx * ey - jxy * ex) / det
        else:
            fx_, fy_, jxx, jxy, jyy = _radtan_forward(self.c, x, y, jacobian=True)
            ex, ey = fx_ - xd, fy_ - yd
        err = np.hypot(ex, ey)
        ok = (inside & (err <= self.tol) & (np.hypot(x, y) <= self.r_max)
              & (jxx * jyy - jxy * jxy > 0) & (jxx > 0) & (jyy > 0))
        return np.where(ok, x, np.nan), np.where(ok, y, np.nan)


class _FisheyeInverse:
    """Undistort normalised points for the equidistant (OpenCV fisheye) model.

    ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)`` is inverted
    with a 1-D table and Newton steps; valid for ``theta < 90 deg`` on its increasing part.
    """

    def __init__(self, coeffs: np.ndarray, tol: float) -> None:
        self.c = [float(v) for v in coeffs]
        self.tol = tol
        theta = np.linspace(0.0, math.pi / 2, 8192)
        self.td_lut, self.t_lut = _monotonic_lut(theta, self._forward(theta))
        self.t_max = float(self.t_lut[-1])

    def _forward(self, t: np.ndarray) -> np.ndarray:
        k1, k2, k3, k4 = self.c
        t2 = t * t
        return t * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))

    def _slope(self, t: np.ndarray) -> np.ndarray:
        k1, k2, k3, k4 = self.c
        t2 = t * t
        return 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))

    def __call__(self, xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        td = np.hypot(xd, yd)
        inside = td <= self.td_lut[-1]
        t = np.interp(td, self.td_lut, self.t_lut)
        for _ in range(3):
            t = t - (self._forward(t) - td) / self._slope(t)
        err = np.abs(self._forward(t) - td)
        ok = inside & (err <= self.tol) & (t < self.t_max) & (t >= 0) & (t < math.pi / 2)
        with np.errstate(divide='ignore', invalid='ignore'):
            s = np.where(td > 1e-12, np.tan(t) / td, 1.0)
        s = np.where(ok, s, np.nan)
        return xd * s, yd * s


def clear_ray_cache() -> None:
    """Forget every cached ray table (tests, or to free memory)."""
    with _RAY_LOCK:
        _RAY_CACHE.clear()
