"""Lens distortion models and the per-pixel ray table, with its cache.

The maths of the camera models ``sensor_msgs/CameraInfo`` names, reviewable on its own:
validating D for a model (:func:`normalise_model`), distorting normalised points
(:func:`distort`, the formulas of ``cv2.projectPoints`` / ``cv2.fisheye.projectPoints``),
inverting that (the undistortion behind :func:`compute_ray_table`) and the LRU cache of ray
tables (:func:`cached_ray_table`). :class:`depth_node.camera.CameraModel` uses it.

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
from collections.abc import Callable
import math
import threading
from typing import Any

from depth_node.errors import CameraInfoError
import numpy as np

DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant', 'none')

#: (minimum, canonical) number of D coefficients per model; more are accepted only if zero.
_D_COUNTS = {'plumb_bob': (4, 5), 'rational_polynomial': (8, 8), 'equidistant': (4, 4)}

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


def normalise_model(model: str, D: np.ndarray) -> str:
    """Return the canonical model name for ``model`` and coefficients ``D``.

    ``''``/``none``, an empty D, or an all-zero D with plumb_bob/rational_polynomial give
    ``none``; a wrong coefficient count or a non-zero extra raises CameraInfoError.
    """
    name = (model or '').strip().lower()
    if name in ('', 'none'):
        if D.size and np.any(D != 0):
            raise CameraInfoError(f'distortion_model is {model!r} but D has non-zero values '
                                  f'{D.tolist()}.', _MODEL_HINT)
        return 'none'
    if name not in _D_COUNTS:
        raise CameraInfoError(f'unknown distortion model {model!r}.', _MODEL_HINT)
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
    raise CameraInfoError(f'distortion model {name} needs {count} D coefficients, got '
                          f'{D.size}: {D.tolist()}.', hint)


def coefficients(model: str, D: np.ndarray) -> np.ndarray:
    """Distortion coefficients padded to the model's full count (plumb_bob -> 8)."""
    if model == 'equidistant':
        return np.array(D[:4], dtype=np.float64)  # validated: at least 4, extras zero
    out = np.zeros(8)
    n = min(8, D.size)
    out[:n] = D[:n]
    return out


def distort(model: str, coeffs: np.ndarray, x: np.ndarray, y: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Distort normalised points ``(x/z, y/z)`` by ``model`` (``none``: unchanged)."""
    if model == 'none':
        return x, y
    if model == 'equidistant':
        return _fisheye_forward(coeffs, x, y)
    xd, yd = _radtan_forward(coeffs, x, y)[:2]
    return xd, yd


def compute_ray_table(width: int, height: int, intrinsics: tuple[float, float, float, float],
                      model: str, coeffs: np.ndarray) -> np.ndarray:
    """Per-pixel rays ``(x/z, y/z, 1)``, (height, width, 3) float32; NaN where no ray.

    :param intrinsics: ``(fx, fy, cx, cy)`` of the image.
    :param model: a canonical distortion model (``none`` for a pinhole or rectified image).
    :param coeffs: :func:`coefficients` of the model.
    """
    fx, fy, cx, cy = intrinsics
    out = np.empty((height, width, 3), dtype=np.float32)
    out[..., 2] = 1.0
    xd = (np.arange(width, dtype=np.float64) - cx) / fx
    yd = (np.arange(height, dtype=np.float64) - cy) / fy
    if model == 'none':
        out[..., 0] = xd[None, :]
        out[..., 1] = yd[:, None]
        return out
    tol = RAY_TOLERANCE_PX / min(fx, fy)
    solve = _FisheyeInverse(coeffs, tol) if model == 'equidistant' else \
        _RadTanInverse(coeffs, tol)
    rows = max(1, 65536 // max(width, 1))
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        gx = np.broadcast_to(xd[None, :], (y1 - y0, width))
        gy = np.broadcast_to(yd[y0:y1, None], (y1 - y0, width))
        rx, ry = solve(gx, gy)
        out[y0:y1, :, 0] = rx
        out[y0:y1, :, 1] = ry
        bad = ~np.isfinite(rx)
        if bad.any():
            out[y0:y1, :, 2][bad] = np.nan
    return out


def cached_ray_table(key: Any, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Return the read-only ray table of ``key``, computing it once (LRU of RAY_CACHE_SIZE)."""
    with _RAY_LOCK:
        table = _RAY_CACHE.get(key)
        if table is not None:
            _RAY_CACHE.move_to_end(key)
            return table
    table = compute()
    table.setflags(write=False)
    with _RAY_LOCK:
        _RAY_CACHE[key] = table
        _RAY_CACHE.move_to_end(key)
        while len(_RAY_CACHE) > RAY_CACHE_SIZE:
            _RAY_CACHE.popitem(last=False)
    return table


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
