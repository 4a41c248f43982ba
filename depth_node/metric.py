"""The metric layer: model output -> depth in metres (REP 117), or an honest "not metric".

Scale policies, chosen from the model card's ``output_kind`` and :class:`MetricConfig`:

* ``metric_depth`` models: metres = output * f_network / ``canonical_focal_px`` when the card
  has a canonical focal (else the output is taken as metres as is). ``f_network`` is the
  camera's focal length carried through exactly the resize/crop/pad that preprocessing
  applied (``transform.apply_to_camera(camera)``). With fx != fy the *geometric mean*
  ``sqrt(fx_net * fy_net)`` is used: a network judges distance from the apparent size (area)
  of things, and an anisotropic stretch scales areas by fx * fy.
* relative models (``relative_depth``, ``relative_inverse_depth``) need a scale source:
  ``sparse_depth`` (robust scale+shift fit against a metric depth image), ``ground_plane``
  (known camera height above a flat floor) or ``fixed`` (scale and shift from parameters).
  Scale and shift always act in the model's own space::

      relative_depth:          depth_m       = scale * raw + shift
      relative_inverse_depth:  1 / depth_m   = scale * raw + shift     (MiDaS convention)

  With no usable scale the converter returns no depth and the relative map, with
  ``ScaleReport(metric=False, message=why)``: relative output is never labelled metres.

Scales of relative models are smoothed over time (EMA with outlier rejection). The metric map
then gets REP 117 validity (NaN = no measurement, -Inf = too close, +Inf = beyond range) and an
edge filter that invalidates flying pixels. :func:`apply_validity` and :func:`edge_filter`
work in place on numpy arrays and on torch tensors (CPU or CUDA) alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import math
from typing import Any

import cv2
from depth_node import parameters
from depth_node.errors import DepthNodeError, MissingCameraInfoError, SizeMismatchError
import numpy as np

SCALE_SOURCES = parameters.choices('scale_source')
OUTPUT_KINDS = ('metric_depth', 'relative_depth', 'relative_inverse_depth')
TOO_CLOSE = parameters.choices('too_close')

# RANSAC / least-median-of-squares settings of the robust fits (not user parameters)
_N_HYPOTHESES = 256
_MAX_SCORE_POINTS = 1024      # points used to score hypotheses (random subset)
_MAX_FIT_POINTS = 20000       # points used for a fit (random subset; plenty for 2-3 unknowns)
_MAX_GROUND_POINTS = 20000    # ground-region points used for the plane fit (strided subset)
_REFINE_ITERATIONS = 4
_MIN_INLIER_TOL = 0.01        # relative residual always accepted as inlier


@dataclass
class MetricConfig:
    """Parameters of the metric layer (ROS parameters of the same names).

    :param scale_source: for relative models: one of :data:`SCALE_SOURCES`.
    :param fixed_scale: ``fixed`` source: scale in the model's space (see module doc).
    :param fixed_shift: ``fixed`` source: shift in the model's space.
    :param camera_height: ``ground_plane``: camera height above the floor in metres.
    :param ground_up: ``ground_plane``: the up direction in the optical frame (x right,
        y down, z forward), so level cameras have (0, -1, 0).
    :param ground_max_tilt_deg: reject floor fits whose normal is further from ``ground_up``.
    :param ground_region: lower fraction of the image searched for the floor.
    :param sparse_min_points: fewest valid points (inliers) for a sparse-depth or floor fit.
    :param sparse_outlier_threshold: outlier threshold in robust standard deviations (MAD).
    :param scale_smoothing: EMA weight of a new fit (1 = no smoothing).
    :param scale_max_jump: reject fits whose scale differs more than this fraction from the
        smoothed scale.
    :param scale_reinit_frames: after this many rejected fits in a row, re-initialise the
        smoother from them (the scene really changed).
    :param scale_hold_frames: frames a smoothed scale is reused while no fit is possible;
        after that the output is not metric until a new fit succeeds.
    :param min_range: nearer depths become -Inf (or NaN, see ``too_close``).
    :param max_range: farther depths become +Inf.
    :param too_close: ``'neg_inf'`` (REP 117) or ``'nan'``.
    :param edge_threshold: relative depth jump between 4-neighbours above which the farther
        pixel is a flying pixel (NaN); 0 disables the filter.
    """

    scale_source: str = parameters.default('scale_source')
    fixed_scale: float = parameters.default('fixed_scale')
    fixed_shift: float = parameters.default('fixed_shift')
    camera_height: float = parameters.default('camera_height')
    ground_up: tuple[float, float, float] = tuple(parameters.default('ground_up'))
    ground_max_tilt_deg: float = parameters.default('ground_max_tilt_deg')
    ground_region: float = parameters.default('ground_region')
    sparse_min_points: int = parameters.default('sparse_min_points')
    sparse_outlier_threshold: float = parameters.default('sparse_outlier_threshold')
    scale_smoothing: float = parameters.default('scale_smoothing')
    scale_max_jump: float = parameters.default('scale_max_jump')
    scale_reinit_frames: int = parameters.default('scale_reinit_frames')
    scale_hold_frames: int = parameters.default('scale_hold_frames')
    min_range: float = parameters.default('min_range')
    max_range: float = parameters.default('max_range')
    too_close: str = parameters.default('too_close')
    edge_threshold: float = parameters.default('edge_threshold')

    def validate(self) -> MetricConfig:
        """Check the values with the parameter table; raises DepthNodeError naming them."""
        parameters.check(self.values(), 'Fix the parameter (see doc/metric.md).')
        return self

    def values(self) -> dict[str, Any]:
        """Return the settings as a parameter mapping, vectors as lists."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


@dataclass
class ScaleReport:
    """How this frame's output got (or did not get) its metric scale, for diagnostics.

    ``scale``/``shift`` act in the model's space (see the module doc); for metric models
    ``scale`` is the focal factor f_network / canonical_focal_px. ``quality`` is the median
    relative depth residual of the fit's inliers (lower is better; NaN when there is no fit).
    ``accepted`` says whether this frame's fit entered the smoothed scale.
    """

    metric: bool
    source: str
    scale: float
    shift: float
    quality: float
    n_points: int
    accepted: bool
    message: str = ''


@dataclass
class _Fit:
    scale: float
    shift: float
    quality: float
    n_points: int


# --------------------------------------------------------------------------------------------
# numpy / torch helpers: the same code runs on both
# --------------------------------------------------------------------------------------------

def _is_torch(x: Any) -> bool:
    return type(x).__module__.split('.')[0] == 'torch'


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _isfinite(x: Any) -> Any:
    if _is_torch(x):
        import torch
        return torch.isfinite(x)
    return np.isfinite(x)


def _minimum(a: Any, b: Any) -> Any:
    if _is_torch(a):
        import torch
        return torch.minimum(a, b)
    return np.minimum(a, b)


def _maximum(a: Any, b: Any) -> Any:
    if _is_torch(a):
        import torch
        return torch.maximum(a, b)
    return np.maximum(a, b)


def _bool_zeros(x: Any) -> Any:
    if _is_torch(x):
        import torch
        return torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    return np.zeros(x.shape, dtype=bool)


_CONSTANT_PLANES: dict[tuple[Any, ...], np.ndarray] = {}


def _constant_plane(shape: tuple[int, ...], dtype: Any, value: float) -> np.ndarray:
    """Return a read-only plane filled with ``value`` (cached per shape, dtype and value)."""
    key = (shape, np.dtype(dtype).str, np.float64(value).tobytes())
    plane = _CONSTANT_PLANES.get(key)
    if plane is None:
        if len(_CONSTANT_PLANES) > 16:
            _CONSTANT_PLANES.clear()
        plane = np.full(shape, value, dtype)
        plane.flags.writeable = False
        _CONSTANT_PLANES[key] = plane
    return plane


def fill_where(x: Any, mask: Any, value: float) -> None:
    """Set ``x[mask] = value`` in place; on torch with ``masked_fill_`` (no host sync).

    A float map and a boolean mask of its shape go through ``cv2.copyTo`` from a constant
    plane: 0.13 ms at 640x480 where numpy's boolean-index assignment takes up to 1.5 ms.
    """
    if _is_torch(x):
        x.masked_fill_(mask, value)
    elif (x.ndim == 2 and x.dtype in (np.float32, np.float64) and x.flags.c_contiguous
          and getattr(mask, 'dtype', None) == np.bool_ and mask.shape == x.shape
          and mask.flags.c_contiguous):
        cv2.copyTo(_constant_plane(x.shape, x.dtype, value), mask.view(np.uint8), x)
    else:
        x[mask] = value


def _float32(x: Any) -> Any:
    """Return a float32 copy of the map (numpy or torch, same device), non-finite values -> NaN."""
    if _is_torch(x):
        import torch
        out = x.to(dtype=torch.float32, copy=True)
        return out.masked_fill_(~torch.isfinite(out), float('nan'))
    out = np.array(x, dtype=np.float32, copy=True)
    fill_where(out, ~np.isfinite(out), float('nan'))
    return out


# --------------------------------------------------------------------------------------------
# validity and edge filter
# --------------------------------------------------------------------------------------------

def apply_validity(depth: Any, min_range: float, max_range: float,
                   too_close: str = 'neg_inf') -> Any:
    """Apply REP 117 validity to a metric depth map in place and return it.

    NaN stays NaN (no measurement); finite depths <= 0 become NaN (a depth network cannot
    measure them); 0 < depth < ``min_range`` -> -Inf (or NaN with ``too_close='nan'``);
    depth > ``max_range`` (including +Inf) -> +Inf. Calling it twice changes nothing.

    :param depth: (H, W) float numpy array or torch tensor (CPU or CUDA), metres.
    :param min_range: metres; 0 disables the near limit.
    :param max_range: metres.
    :param too_close: ``'neg_inf'`` (REP 117) or ``'nan'``.
    """
    if too_close not in TOO_CLOSE:
        raise DepthNodeError(f'too_close={too_close!r} is not one of {TOO_CLOSE}.',
                             "Use 'neg_inf' (REP 117) or 'nan'.")
    nan, inf = float('nan'), float('inf')
    near_value = -inf if too_close == 'neg_inf' else nan
    with np.errstate(invalid='ignore'):
        non_positive = (depth <= 0) & (depth != -inf)
        near = (depth > 0) & (depth < min_range)
        far = depth > max_range
        fill_where(depth, non_positive, nan)
        fill_where(depth, near, near_value)
        fill_where(depth, far, inf)
        if too_close == 'nan':
            fill_where(depth, depth == -inf, nan)
    return depth


def edge_filter(depth: Any, threshold: float) -> Any:
    """Invalidate flying pixels at depth discontinuities, in place, and return the map.

    For every pair of 4-neighbours with finite positive depths a, b whose relative jump
    ``(max - min) / min`` exceeds ``threshold``, the *farther* pixel becomes NaN. Flying pixels
    (mixtures of foreground and background) are always farther than their foreground
    neighbour, so they go, while the foreground edge itself (what a costmap must see) stays.
    Works on numpy arrays and torch tensors (CPU or CUDA) with the same slicing.

    :param depth: (H, W) float map in metres (or any positive depth-like unit).
    :param threshold: relative jump, e.g. 0.1 for 10 %; <= 0 disables the filter.
    """
    if threshold <= 0 or depth.shape[0] < 1:
        return depth
    if not _is_torch(depth) and depth.dtype in (np.float32, np.float64) and depth.ndim == 2:
        return _edge_filter_host(depth, threshold)
    mask = _bool_zeros(depth)
    usable = _isfinite(depth) & (depth > 0)
    for a_sl, b_sl in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        a = depth[a_sl]
        b = depth[b_sl]
        lo = _minimum(a, b)
        hi = _maximum(a, b)
        jump = usable[a_sl] & usable[b_sl] & ((hi - lo) > threshold * lo)
        mask[a_sl] |= jump & (a > b)
        mask[b_sl] |= jump & (b > a)
    fill_where(depth, mask, float('nan'))
    return depth


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _edge_filter_host(depth: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`edge_filter` on the host in three passes instead of twelve.

    A pixel p is farther than some usable 4-neighbour q by more than ``threshold`` exactly when
    it is for the nearest one (``p - q - threshold * q`` falls as q grows), so one minimum
    filter over the neighbours (an erosion with a cross; unusable pixels count as +Inf and
    never are the nearest) replaces the pairwise comparisons.
    """
    with np.errstate(invalid='ignore'):
        usable = np.isfinite(depth) & (depth > 0)
        work = np.where(usable, depth, np.inf)
        nearest = cv2.erode(work, _CROSS, borderType=cv2.BORDER_CONSTANT,
                            borderValue=float('inf'))
        # p - inf is -inf and threshold * inf inf: no usable neighbour, no jump
        mask = usable & ((work - nearest) > threshold * nearest)
    fill_where(depth, mask, float('nan'))
    return depth


# --------------------------------------------------------------------------------------------
# focal factor of metric models
# --------------------------------------------------------------------------------------------

def network_focal(camera: Any, transform: Any) -> tuple[float, float]:
    """Return the camera's (fx, fy) at network resolution: the image focal through the preprocess.

    ``fx * scale_x, fy * scale_y``: resizing scales the focal length, crop and pad offsets move
    only the principal point (the same fx, fy as ``transform.apply_to_camera(camera)``, without
    building a camera model per frame). With ``transform=None`` the network saw the image at
    its own resolution.
    """
    if transform is None:
        return float(camera.fx), float(camera.fy)
    return float(camera.fx) * float(transform.scale_x), float(camera.fy) * float(transform.scale_y)


def focal_factor(card: Any, camera: Any, transform: Any) -> float:
    """Factor from a metric model's output to metres: ``sqrt(fx_net*fy_net) / canonical``.

    1.0 when the card has no ``canonical_focal_px`` (the output is metres as it is).
    """
    canonical = getattr(card, 'canonical_focal_px', None)
    if not canonical:
        return 1.0
    if camera is None:
        raise MissingCameraInfoError(
            f"Model {getattr(card, 'name', '')!r} is metric at a canonical focal length "
            f'({canonical} px), so it needs the camera focal length, but there is no camera.',
            'Provide camera_info (or a calibration file) for the image stream.')
    fx, fy = network_focal(camera, transform)
    if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
        raise MissingCameraInfoError(
            f'Camera focal length at network resolution is not usable (fx={fx}, fy={fy}).',
            'Check the camera_info K/P matrix.')
    return math.sqrt(fx * fy) / float(canonical)


# --------------------------------------------------------------------------------------------
# robust fits
# --------------------------------------------------------------------------------------------

def _robust_linear_fit(a: np.ndarray, y: np.ndarray, threshold: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Robust fit of ``y ~ a @ w`` minimising *relative* residuals ``(a @ w - y) / y``.

    Least median of squares over random minimal samples (vectorised), then iterative
    weighted least squares on the inliers, outliers being relative residuals further than
    ``threshold`` robust standard deviations (1.4826 * MAD) from zero.

    At most ``_MAX_FIT_POINTS`` random points take part.

    :returns: (w, inlier fraction, median absolute relative residual of the inliers).
    """
    n, k = a.shape
    if n > _MAX_FIT_POINTS:
        keep = rng.choice(n, _MAX_FIT_POINTS, replace=False)
        a, y, n = a[keep], y[keep], _MAX_FIT_POINTS
    # relative residual = a/y @ w - 1: a linear least-squares problem in the rows a/y
    an = a / y[:, None]
    score_idx = (rng.choice(n, _MAX_SCORE_POINTS, replace=False)
                 if n > _MAX_SCORE_POINTS else np.arange(n))
    # minimal samples; a repeated index makes a singular system, dropped just below
    samples = rng.integers(0, n, size=(_N_HYPOTHESES, k))
    sa = an[samples]                                        # (K, k, k)
    det = np.linalg.det(sa)
    good = np.abs(det) > 1e-12 * np.max(np.abs(sa), axis=(1, 2)) ** k
    best_w = None
    if np.any(good):
        ws = np.linalg.solve(sa[good], np.ones((int(good.sum()), k, 1)))[..., 0]  # (K', k)
        res = an[score_idx] @ ws.T - 1.0                    # (m, K')
        med = np.median(np.abs(res), axis=0)
        best_w = ws[int(np.argmin(med))]
    if best_w is None:
        best_w = _lstsq_ones(an)
    w = best_w
    # start from the better half of the points under the LMedS hypothesis; the robust sigma
    # then comes from the inliers only, so a large outlier share cannot inflate it
    res = an @ w - 1.0
    inliers = np.abs(res) <= np.median(np.abs(res))
    for _ in range(_REFINE_ITERATIONS):
        res = an @ w - 1.0
        sigma = 1.4826 * np.median(np.abs(res[inliers]))
        tol = max(threshold * sigma, _MIN_INLIER_TOL)
        new_inliers = np.abs(res) <= tol
        if new_inliers.sum() < k:
            break
        inliers = new_inliers
        w = _lstsq_ones(an[inliers])
    res = an @ w - 1.0
    quality = float(np.median(np.abs(res[inliers]))) if inliers.any() else float('nan')
    return w, float(inliers.mean()), quality


def _lstsq_ones(a: np.ndarray) -> np.ndarray:
    """Least-squares w of ``a @ w = 1`` through the normal equations (k <= 3 columns)."""
    try:
        return np.linalg.solve(a.T @ a, a.sum(axis=0))
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, np.ones(a.shape[0]), rcond=None)[0]


def fit_sparse(raw: np.ndarray, sparse: np.ndarray, output_kind: str, min_points: int,
               threshold: float, rng: np.random.Generator | None = None) -> _Fit | str:
    """Robust scale+shift of a relative map against metric sparse depth, in the model's space.

    ``relative_depth``: depth = s * raw + t; ``relative_inverse_depth``: 1/depth = s * raw + t.
    Returns the fit or a string saying why there is none.
    """
    rng = rng or np.random.default_rng(0)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(sparse) & (sparse > 0) & np.isfinite(raw)
    n = int(valid.sum())
    if n < min_points:
        return (f'only {n} valid sparse-depth points overlap the prediction '
                f'(sparse_min_points={min_points})')
    p = raw[valid].astype(np.float64)
    g = sparse[valid].astype(np.float64)
    y = 1.0 / g if output_kind == 'relative_inverse_depth' else g
    if np.ptp(p) <= 1e-12 * max(1.0, float(np.max(np.abs(p)))):
        return 'the prediction is constant over the sparse-depth points; no scale can be fitted'
    a = np.stack([p, np.ones_like(p)], axis=1)
    w, inlier_fraction, quality = _robust_linear_fit(a, y, threshold, rng)
    n_in = int(round(inlier_fraction * n))
    if n_in < min_points:
        return f'only {n_in} of {n} sparse-depth points are inliers (sparse_min_points=' \
               f'{min_points})'
    if not w[0] > 0:
        return (f'the fitted scale {w[0]:.4g} is not positive: the prediction does not '
                f"increase with {'inverse ' if output_kind == 'relative_inverse_depth' else ''}"
                'depth (wrong output_kind in the model card?)')
    return _Fit(float(w[0]), float(w[1]), quality, n_in)


def fit_ground_plane(raw: np.ndarray, rays: np.ndarray, output_kind: str, camera_height: float,
                     up: tuple[float, float, float], max_tilt_deg: float, region: float,
                     min_points: int, threshold: float,
                     rng: np.random.Generator | None = None) -> _Fit | str:
    """Scale of a relative map from the floor plane in the lower image region.

    Pixels of the lower ``region`` fraction are back-projected along their rays. The plane
    ``n . X = d`` through points ``X = z * r`` is, in inverse depth, ``1/z = (n . r) / d``:
    linear in the ray, so the robust fit is a 3-parameter linear fit ``q ~ w . r`` of the
    inverse-depth-like quantity q (q = raw for ``relative_inverse_depth``, q = 1/raw for
    ``relative_depth``), minimising relative residuals. n = w/|w|, relative plane distance
    d = 1/|w|, and metres = camera_height / d per relative unit. The shift of the model is
    assumed zero here (relative depth proportional to true depth, or inverse depth
    proportional to true inverse depth): the floor alone cannot separate scale from shift.
    """
    rng = rng or np.random.default_rng(0)
    h = raw.shape[0]
    top = min(h - 1, int(round(h * (1.0 - region))))
    sub = raw[top:]
    sub_rays = rays[top:]
    total = sub.shape[0] * sub.shape[1]
    stride = max(1, int(math.ceil(math.sqrt(total / _MAX_GROUND_POINTS))))
    # strided subset keeps dense maps fast; sparse maps (LiDAR) use every finite pixel
    if stride > 1 and np.count_nonzero(np.isfinite(sub)) > _MAX_GROUND_POINTS:
        sub = sub[::stride, ::stride]
        sub_rays = sub_rays[::stride, ::stride]
    q = np.asarray(sub, dtype=np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        if output_kind == 'relative_depth':
            q = 1.0 / q
        valid = np.isfinite(q) & (q > 0) & np.all(np.isfinite(sub_rays), axis=-1)
    n = int(valid.sum())
    if n < min_points:
        return (f'only {n} usable pixels in the floor region (ground_region) for the floor '
                f'fit (need {min_points})')
    y = q[valid]
    a = sub_rays[valid].astype(np.float64)
    w, inlier_fraction, quality = _robust_linear_fit(a, y, threshold, rng)
    n_in = int(round(inlier_fraction * n))
    if n_in < min_points:
        return f'only {n_in} of {n} floor points are inliers (need {min_points})'
    norm = float(np.linalg.norm(w))
    if not norm > 0:
        return 'degenerate floor fit'
    normal = w / norm                     # points from the camera towards the floor
    down = -np.asarray(up, dtype=np.float64)
    down /= np.linalg.norm(down)
    tilt = math.degrees(math.acos(float(np.clip(normal @ down, -1.0, 1.0))))
    if tilt > max_tilt_deg:
        return (f'the fitted floor normal is {tilt:.1f} deg from ground_up (limit '
                f'ground_max_tilt_deg={max_tilt_deg}): no flat floor in view, or wrong '
                'ground_up')
    distance = 1.0 / norm                 # camera-to-floor distance in relative units
    metres_per_unit = camera_height / distance
    if output_kind == 'relative_depth':
        scale = metres_per_unit           # depth = scale * raw
    else:
        scale = 1.0 / metres_per_unit     # 1/depth = scale * raw
    return _Fit(scale, 0.0, quality, n_in)


# --------------------------------------------------------------------------------------------
# temporal smoothing
# --------------------------------------------------------------------------------------------

@dataclass
class ScaleSmoother:
    """EMA of (scale, shift) with rejection of outlier fits.

    A fit whose scale differs from the smoothed one by more than ``max_jump`` (relative) is
    rejected and counted; after ``reinit_frames`` rejections in a row the smoother restarts
    from the median of those rejected fits (the scene or the sensor really changed).
    """

    weight: float = 0.3
    max_jump: float = 0.25
    reinit_frames: int = 5
    scale: float | None = None
    shift: float = 0.0
    n_rejected: int = 0
    frames_since_fit: int = 0
    _pending: list[tuple[float, float]] = field(default_factory=list)

    def update(self, scale: float, shift: float) -> tuple[bool, str]:
        """Feed one fit; returns (accepted, note)."""
        self.frames_since_fit = 0
        if self.scale is None:
            self.scale, self.shift = scale, shift
            self._pending.clear()
            return True, 'initialised'
        jump = abs(scale / self.scale - 1.0)
        if jump > self.max_jump:
            self.n_rejected += 1
            self._pending.append((scale, shift))
            if len(self._pending) >= self.reinit_frames:
                pending = np.asarray(self._pending)
                self.scale = float(np.median(pending[:, 0]))
                self.shift = float(np.median(pending[:, 1]))
                self._pending.clear()
                return True, (f're-initialised after {self.reinit_frames} rejected fits in '
                              'a row')
            return False, (f'fit rejected: scale {scale:.4g} jumps {jump:.0%} from the '
                           f'smoothed {self.scale:.4g} (scale_max_jump={self.max_jump:.0%})')
        self._pending.clear()
        # s + w (new - s): identical fits leave the scale exactly unchanged (no 1-ulp flicker)
        self.scale = self.scale + self.weight * (scale - self.scale)
        self.shift = self.shift + self.weight * (shift - self.shift)
        return True, ''

    def miss(self) -> None:
        """Count a frame without a fit."""
        self.frames_since_fit += 1

    def reset(self) -> None:
        """Forget the smoothed scale."""
        self.scale = None
        self.shift = 0.0
        self.n_rejected = 0
        self.frames_since_fit = 0
        self._pending.clear()


# --------------------------------------------------------------------------------------------
# the converter
# --------------------------------------------------------------------------------------------

class MetricConverter:
    """Model output -> metric depth for one camera (holds the temporal scale smoother).

    :param card: the model card (``output_kind``, ``canonical_focal_px``, ``max_depth``).
    :param config: :class:`MetricConfig`.
    """

    def __init__(self, card: Any, config: MetricConfig | None = None) -> None:
        self.card = card
        self.config = (config or MetricConfig()).validate()
        kind = getattr(card, 'output_kind', None)
        if kind not in OUTPUT_KINDS:
            raise DepthNodeError(f'Model card output_kind={kind!r} is not one of {OUTPUT_KINDS}.',
                                 'Fix output_kind in the model card or its override.')
        self.output_kind = kind
        c = self.config
        self.smoother = ScaleSmoother(c.scale_smoothing, c.scale_max_jump, c.scale_reinit_frames)
        max_depth = getattr(card, 'max_depth', None)
        self.max_range = min(c.max_range, max_depth) if max_depth else c.max_range

    @staticmethod
    def _fit_rng() -> np.random.Generator:
        """Return a freshly seeded generator: the same input always gives the same fit.

        The robust fits sample points and hypotheses at random; a generator carried from
        frame to frame would make identical frames fit differently (scale flicker).
        """
        return np.random.default_rng(0)

    def reset(self) -> None:
        """Forget the temporal state (call when the camera or the scene changes)."""
        self.smoother.reset()

    # -- public ---------------------------------------------------------------------------
    def convert(self, raw: Any, camera: Any, transform: Any,
                sparse_depth: Any = None) -> tuple[Any, Any, ScaleReport]:
        """Convert one frame's model output.

        :param raw: (H, W) model output at image resolution (numpy or torch), units per
            ``card.output_kind``. Not modified.
        :param camera: the image's CameraModel (focal length, ray table).
        :param transform: the preprocess Transform (for the canonical focal), or None if the
            network saw the image unchanged.
        :param sparse_depth: (H, W) metric depth aligned to the image (NaN/0 invalid) for
            ``scale_source='sparse_depth'``, else ignored.
        :returns: (depth in metres with REP 117 validity and the edge filter applied, or None
            when not metric; the relative map (``raw``) when not metric, else None; report).
        """
        if self.output_kind == 'metric_depth':
            factor = focal_factor(self.card, camera, transform)
            depth = _float32(raw)             # non-finite model output -> NaN
            if factor != 1.0:
                depth *= factor
            source = 'canonical_focal' if factor != 1.0 or getattr(
                self.card, 'canonical_focal_px', None) else 'model'
            report = ScaleReport(True, source, factor, 0.0, float('nan'), 0, True,
                                 'metric model' + (f', focal factor {factor:.4g}'
                                                   if source == 'canonical_focal' else ''))
            return self._finish(depth), None, report

        report = self._relative_scale(raw, camera, sparse_depth)
        if not report.metric:
            return None, raw, report
        depth = _float32(raw)
        depth *= report.scale
        depth += report.shift
        if self.output_kind == 'relative_inverse_depth':
            # 1/depth <= 0 means "farther than infinity" (sky): +Inf, beyond range
            with np.errstate(divide='ignore', invalid='ignore'):
                beyond = depth <= 0
                fill_where(depth, beyond, float('nan'))  # placeholder, the reciprocal keeps NaN
                depth = _reciprocal_(depth)
                fill_where(depth, beyond, float('inf'))
        return self._finish(depth), None, report

    # -- internals ------------------------------------------------------------------------
    def _finish(self, depth: Any) -> Any:
        c = self.config
        if c.edge_threshold > 0:
            edge_filter(depth, c.edge_threshold)
        return apply_validity(depth, c.min_range, self.max_range, c.too_close)

    def _relative_scale(self, raw: Any, camera: Any, sparse_depth: Any) -> ScaleReport:
        c = self.config
        source = c.scale_source
        if source == 'none':
            return ScaleReport(False, 'none', float('nan'), float('nan'), float('nan'), 0, False,
                               f'model output is {self.output_kind} (not metres) and '
                               'scale_source is none: publishing the relative map only; set '
                               'scale_source to sparse_depth, ground_plane or fixed for metres')
        if source == 'fixed':
            return ScaleReport(True, 'fixed', c.fixed_scale, c.fixed_shift, float('nan'), 0,
                               True, 'fixed scale and shift from parameters')
        fit = self._fit(source, raw, camera, sparse_depth)
        sm = self.smoother
        if isinstance(fit, str):
            sm.miss()
            if sm.scale is not None and sm.frames_since_fit <= c.scale_hold_frames:
                return ScaleReport(True, source, sm.scale, sm.shift, float('nan'), 0, False,
                                   f'no fit this frame ({fit}); holding the scale of '
                                   f'{sm.frames_since_fit} frame(s) ago')
            return ScaleReport(False, source, float('nan'), float('nan'), float('nan'), 0,
                               False, f'no metric scale ({source}): {fit}; publishing the '
                               'relative map only')
        accepted, note = sm.update(fit.scale, fit.shift)
        msg = f'{source} fit: scale {fit.scale:.4g}, shift {fit.shift:.4g}, ' \
              f'{fit.n_points} inliers, median rel. residual {fit.quality:.3f}'
        return ScaleReport(True, source, sm.scale, sm.shift, fit.quality, fit.n_points,
                           accepted, f'{msg}; {note}' if note else msg)

    def _fit(self, source: str, raw: Any, camera: Any, sparse_depth: Any) -> _Fit | str:
        c = self.config
        if source == 'sparse_depth':
            if sparse_depth is None:
                return 'no sparse depth image for this frame'
            if tuple(sparse_depth.shape) != tuple(raw.shape):
                raise SizeMismatchError(
                    f'sparse depth is {tuple(sparse_depth.shape)} but the prediction is '
                    f'{tuple(raw.shape)} (H, W).',
                    'Project or resize the sparse depth to the colour image size.')
            if _is_torch(raw):
                # select the points on the device; only they go to the host
                import torch
                sparse_t = torch.as_tensor(sparse_depth, device=raw.device)
                valid = torch.isfinite(sparse_t) & (sparse_t > 0) & torch.isfinite(raw)
                raw_pts, sparse_pts = _to_numpy(raw[valid]), _to_numpy(sparse_t[valid])
            else:
                raw_pts, sparse_pts = raw, _to_numpy(sparse_depth)
            return fit_sparse(raw_pts, sparse_pts, self.output_kind, c.sparse_min_points,
                              c.sparse_outlier_threshold, self._fit_rng())
        # ground_plane
        if camera is None:
            return 'ground_plane needs the camera (camera_info) for the pixel rays'
        rays = camera.ray_table()
        if tuple(rays.shape[:2]) != tuple(raw.shape):
            raise SizeMismatchError(
                f'camera is {rays.shape[1]}x{rays.shape[0]} but the prediction is '
                f'{raw.shape[1]}x{raw.shape[0]}.',
                'Give the converter the camera of the image the prediction was resized to.')
        h = raw.shape[0]
        top = min(h - 1, int(round(h * (1.0 - c.ground_region))))
        # only the lower region leaves the device
        return fit_ground_plane(_to_numpy(raw[top:]), rays[top:], self.output_kind,
                                c.camera_height, c.ground_up, c.ground_max_tilt_deg, 1.0,
                                c.sparse_min_points, c.sparse_outlier_threshold,
                                self._fit_rng())


def _reciprocal_(x: Any) -> Any:
    """1/x in place (numpy or torch)."""
    if _is_torch(x):
        return x.reciprocal_()
    return np.reciprocal(x, out=x)
