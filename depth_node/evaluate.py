"""``depth-node evaluate``: standard monocular-depth metrics of a prediction against ground truth.

Metrics (Eigen et al. 2014 definitions) over the valid ground-truth pixels::

    abs_rel  = mean(|p - g| / g)          sq_rel = mean((p - g)^2 / g)
    rmse     = sqrt(mean((p - g)^2))      rmse_log = sqrt(mean((ln p - ln g)^2))
    delta_i  = mean(max(p / g, g / p) < 1.25^i),  i = 1, 2, 3

Protocol, in this order: the prediction is resized bilinearly to the ground truth's size
(only when both have the same aspect ratio, up to 1 % or whole-pixel rounding, unless
``allow_aspect_change``: another aspect ratio means another view); valid pixels are those
with finite ground truth in (min_depth, max_depth) inside the crop (Garg or Eigen, the KITTI
fractions) and a finite prediction; the prediction is aligned (``none``, ``median`` scale,
least-squares ``scale-shift`` in depth space, or ``scale-shift-disparity``: least squares in
inverse depth, the MiDaS protocol, where the prediction *is* an inverse-depth map); then it is
clamped to [min_depth, max_depth] as in the KITTI evaluation code. A negative fitted scale is
reported as a warning: the prediction is anti-correlated with the ground truth in the space of
the fit (usually depth aligned as inverse depth, or the reverse).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import sys
from typing import Any

import cv2
from depth_node.bagjoin import PartnerIndex
from depth_node.errors import DepthNodeError, ImageFormatError, InputError, SizeMismatchError
from depth_node.sync import PairingRule, SYNC_POLICIES
import numpy as np

ALIGN_MODES = ('none', 'median', 'scale-shift', 'scale-shift-disparity')
CROPS = ('none', 'garg', 'eigen')
FORMATS = ('auto', 'sun', 'nyu-raw')
METRIC_KEYS = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3',
               'n_valid')
ASPECT_TOLERANCE = 0.01     # relative aspect-ratio difference accepted beyond pixel rounding
BAG_SUFFIXES = ('.bag', '.mcap', '.db3')

# (top, bottom, left, right) fractions of the image height / width
_CROP_FRACTIONS = {
    'garg': (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    'eigen': (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


class EvaluationError(DepthNodeError):
    """The inputs cannot be evaluated (no valid pixels, unreadable files, ...)."""

    kind = 'evaluate'


def crop_mask(height: int, width: int, crop: str | None) -> np.ndarray | None:
    """Boolean (H, W) mask of the Garg or Eigen crop, or None for no crop."""
    if crop in (None, '', 'none'):
        return None
    if crop not in _CROP_FRACTIONS:
        raise EvaluationError(f'Unknown crop {crop!r}.', f'Use one of {CROPS}.')
    top, bottom, left, right = _CROP_FRACTIONS[crop]
    mask = np.zeros((height, width), dtype=bool)
    mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
    return mask


def resize_to(pred: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a prediction to (height, width); NaN-free input expected."""
    pred = np.asarray(pred, dtype=np.float32)
    if pred.shape == (height, width):
        return pred
    return cv2.resize(pred, (width, height), interpolation=cv2.INTER_LINEAR)


def check_aspect(pred_shape: tuple[int, int], gt_shape: tuple[int, int],
                 allow_aspect_change: bool = False) -> None:
    """Refuse to resize a prediction whose aspect ratio is not the ground truth's.

    Same aspect ratio means: within :data:`ASPECT_TOLERANCE` (relative), or some scale factor
    maps the ground-truth size to the prediction's size within one pixel per axis (a model
    predicting at 1/16 resolution rounds to whole pixels).

    :raises EvaluationError: another aspect ratio and not ``allow_aspect_change``.
    """
    (h, w), (gh, gw) = pred_shape, gt_shape
    if allow_aspect_change or (h, w) == (gh, gw):
        return
    ratio = (w / h) / (gw / gh)
    if abs(ratio - 1.0) <= ASPECT_TOLERANCE:
        return
    # scale factors each axis allows with one pixel of rounding: do the ranges overlap?
    if max((h - 1) / gh, (w - 1) / gw) <= min((h + 1) / gh, (w + 1) / gw):
        return
    raise EvaluationError(
        f'The prediction is {w}x{h} (aspect {w / h:.3f}) and the ground truth {gw}x{gh} '
        f'(aspect {gw / gh:.3f}), {abs(ratio - 1.0):.1%} apart: the two images do not show '
        'the same view (a crop, padding, or another camera), so resizing one onto the other '
        'would compare different pixels.',
        'Undo the crop/padding of the prediction, or, if it is the same view stretched to a '
        'fixed network input size, pass --allow-aspect-change (allow_aspect_change=True).')


def negative_scale_warning(align: str, scale: float, frames: tuple[int, int] | None = None
                           ) -> str:
    """Explain a negative fitted scale, suggesting the other alignment.

    :param align: the alignment that produced it.
    :param scale: the (most negative) fitted scale.
    :param frames: (frames with a negative scale, frames evaluated) for bags.
    """
    where = f' in {frames[0]} of {frames[1]} frames' if frames else ''
    if align == 'scale-shift-disparity':
        space, kind, other = 'inverse depth', 'a depth-like (larger = farther)', 'scale-shift'
    elif align == 'scale-shift':
        space, kind, other = ('depth', 'an inverse-depth-like (disparity, larger = nearer)',
                              'scale-shift-disparity')
    else:
        return (f'The {align} scale is negative ({scale:.6g}){where}: the prediction and the '
                'ground truth have opposite signs. Check the sign and the units of the '
                'prediction.')
    return (f'The fitted scale is negative ({scale:.6g}){where}: the prediction is '
            f'anti-correlated with the ground truth in {space}, usually {kind} prediction '
            f'aligned with {align}; if so, use --align {other}. Otherwise the two maps do not '
            'correspond (another view, unregistered depth, wrong pairing).')


def fit_scale_shift(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (s, t) minimising ``sum((s * x + t - y)^2)``."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    a = np.stack([x, np.ones_like(x)], axis=1)
    (s, t), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(s), float(t)


def align_prediction(pred: np.ndarray, gt: np.ndarray, align: str,
                     max_depth: float | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """Align valid prediction values to the ground truth (both 1-D arrays of valid pixels).

    :returns: the aligned prediction in metres and the alignment parameters.
    """
    if align == 'none':
        return pred.astype(np.float64), {}
    if align == 'median':
        median = float(np.median(pred))
        if median == 0.0:
            raise EvaluationError(
                'The median of the prediction over the valid pixels is 0, so no median '
                'scale exists.',
                'Check that the prediction holds depth values, or use --align scale-shift.')
        s = float(np.median(gt)) / median
        return pred * s, {'scale': s}
    if align == 'scale-shift':
        s, t = fit_scale_shift(pred, gt)
        return s * pred.astype(np.float64) + t, {'scale': s, 'shift': t}
    if align == 'scale-shift-disparity':
        s, t = fit_scale_shift(pred, 1.0 / gt.astype(np.float64))
        disparity = s * pred.astype(np.float64) + t
        floor = 1.0 / max_depth if max_depth else 1e-6
        disparity = np.maximum(disparity, floor)   # MiDaS: cap depth at max_depth
        return 1.0 / disparity, {'scale': s, 'shift': t}
    raise EvaluationError(f'Unknown alignment {align!r}.', f'Use one of {ALIGN_MODES}.')


def _maps_at_gt_size(gt: Any, pred: Any, allow_aspect_change: bool
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 (H, W) ground truth and prediction, the prediction resized to it.

    A resized pixel is valid only if all its bilinear taps were valid.
    """
    gt = np.asarray(gt, dtype=np.float32)
    if gt.ndim != 2:
        raise SizeMismatchError(f'ground truth must be (H, W), got shape {gt.shape}.',
                                'Pass a single-channel depth map.')
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim == 3 and pred.shape[-1] == 1:
        pred = pred[..., 0]
    if pred.ndim != 2:
        raise SizeMismatchError(f'prediction must be (H, W), got shape {pred.shape}.',
                                'Pass a single-channel depth map.')
    h, w = gt.shape
    if pred.shape != (h, w):
        check_aspect(pred.shape, (h, w), allow_aspect_change)
        pred_ok = np.isfinite(pred)
        filled = np.where(pred_ok, pred, 0).astype(np.float32)
        resized = resize_to(filled, h, w)
        weight = resize_to(pred_ok.astype(np.float32), h, w)
        pred = np.where(weight > 0.999, resized, np.nan).astype(np.float32)
    return gt, pred


def compute_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3,
                    max_depth: float = 80.0, align: str = 'none', crop: str | None = None,
                    clamp: bool = True, return_aligned: bool = False,
                    allow_aspect_change: bool = False) -> dict[str, Any]:
    """Return the standard depth metrics of ``pred`` against ``gt`` (both metres; NaN/0 invalid).

    :param pred: (h, w) prediction; resized bilinearly to the ground truth's size, which must
        have the same aspect ratio unless ``allow_aspect_change``.
    :param gt: (H, W) ground truth in metres.
    :param min_depth: ground truth <= min_depth is ignored; aligned predictions are clamped.
    :param max_depth: ground truth >= max_depth is ignored; aligned predictions are clamped.
    :param align: one of :data:`ALIGN_MODES`.
    :param crop: ``None``/'none', 'garg' or 'eigen'.
    :param clamp: clamp the aligned prediction to [min_depth, max_depth] (KITTI protocol).
    :param return_aligned: also return the aligned (H, W) prediction under key 'aligned'.
    :param allow_aspect_change: resize a prediction of another aspect ratio too (the same
        view stretched to a network's input size).
    :returns: dict with :data:`METRIC_KEYS` (floats, ``n_valid`` int), the alignment
        parameters ('scale', 'shift') when fitted, and 'warnings' (list of str, e.g. a
        negative fitted scale).
    :raises EvaluationError: no valid pixel, or another aspect ratio.
    """
    gt, pred = _maps_at_gt_size(gt, pred, allow_aspect_change)
    h, w = gt.shape
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred)
        if align == 'none':
            valid &= pred > 0
    mask = crop_mask(h, w, crop)
    if mask is not None:
        valid &= mask
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise EvaluationError(
            'No pixel has both a valid ground truth in '
            f'({min_depth}, {max_depth}) m and a finite prediction.',
            'Check --gt-scale/--pred-scale (units), --min-depth/--max-depth and the crop.')
    g = gt[valid].astype(np.float64)
    p, params = align_prediction(pred[valid], g, align, max_depth)
    if clamp:
        p = np.clip(p, min_depth, max_depth)
    p = np.asarray(p, dtype=np.float64)
    if np.any(p <= 0):   # only without clamping: log and ratios need positive depth
        keep = p > 0
        p, g = p[keep], g[keep]
        n_valid = int(keep.sum())
        if n_valid == 0:
            raise EvaluationError('No positive predicted depth among the valid pixels.',
                                  'Align the prediction (--align) or enable clamping.')
    diff = p - g
    ratio = np.maximum(p / g, g / p)
    out: dict[str, Any] = {
        'abs_rel': float(np.mean(np.abs(diff) / g)),
        'sq_rel': float(np.mean(diff ** 2 / g)),
        'rmse': float(math.sqrt(np.mean(diff ** 2))),
        'rmse_log': float(math.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        'delta1': float(np.mean(ratio < 1.25)),
        'delta2': float(np.mean(ratio < 1.25 ** 2)),
        'delta3': float(np.mean(ratio < 1.25 ** 3)),
        'n_valid': n_valid,
    }
    out.update(params)
    scale = params.get('scale')
    out['warnings'] = ([negative_scale_warning(align, scale)]
                       if scale is not None and scale < 0 else [])
    if return_aligned:
        aligned = np.full((h, w), np.nan, dtype=np.float32)
        if p.shape[0] == int(valid.sum()):
            aligned[valid] = p
        out['aligned'] = aligned
    return out


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def decode_stored(stored: np.ndarray, scale: float | None, fmt: str = 'auto',
                  invalid_value: float | None = None, what: str = 'depth',
                  float_scale: bool = True) -> np.ndarray:
    """Convert stored depth values to float32 metres, NaN where invalid.

    :param stored: the array as read from the file.
    :param scale: metres per stored unit (required for integer images with ``fmt='auto'``).
    :param fmt: 'auto', 'sun' (SUN RGB-D bit rotation, then mm) or 'nyu-raw' (NYU Kinect
        disparity units, little-endian 16-bit PGM: 351.3 / (1092.5 - raw) m).
    :param invalid_value: stored value meaning "no measurement" (e.g. 65535); 0 and NaN are
        always invalid.
    :param float_scale: whether ``scale`` applies to float images too (False: floats are
        metres, ``scale`` is for integer images only).
    """
    if stored.ndim == 3:
        if stored.shape[2] != 1 and not np.all(stored == stored[..., :1]):
            raise ImageFormatError(f'{what} has {stored.shape[2]} different channels.',
                                   'Pass a single-channel depth image.')
        stored = stored[..., 0]
    invalid = stored == 0
    if invalid_value is not None:
        invalid |= stored == invalid_value
    if fmt == 'sun':
        v = stored.astype(np.uint16)
        d = ((v >> 3) | (v << 13)).astype(np.float32)
        out = d * np.float32(scale if scale is not None else 0.001)
    elif fmt == 'nyu-raw':
        raw = stored.astype(np.uint16).byteswap().astype(np.float64)   # PGM is read big-endian
        with np.errstate(divide='ignore'):
            out = (351.3 / (1092.5 - raw)).astype(np.float32)
        invalid |= (out <= 0) | (out > 10) | (raw == 2047)
    elif fmt == 'auto':
        if np.issubdtype(stored.dtype, np.integer):
            if scale is None:
                raise EvaluationError(
                    f'{what} is an integer image ({stored.dtype}) and its unit is unknown.',
                    'Give metres per stored value: --gt-scale/--pred-scale 0.001 (mm, ROS '
                    '16UC1), 0.00390625 (KITTI, 1/256 m) or 0.0002 (TUM, 1/5000 m).')
            out = stored.astype(np.float32) * np.float32(scale)
        else:
            out = stored.astype(np.float32, copy=True)
            if scale is not None and float_scale:
                out *= np.float32(scale)
    else:
        raise EvaluationError(f'Unknown depth format {fmt!r}.', f'Use one of {FORMATS}.')
    out[invalid] = np.nan
    return out


def _check_depth_dtype(stored: np.ndarray, name: str, what: str) -> None:
    """Refuse arrays that cannot hold depth: non-numbers and 8-bit images."""
    if stored.dtype.kind not in 'uif':
        raise EvaluationError(
            f'The {what} {name} holds {stored.dtype} values, not depth.',
            'Pass float metres (.npy, float TIFF/EXR) or a 16-bit depth PNG with a scale.')
    if stored.dtype.itemsize == 1:
        raise EvaluationError(
            f'The {what} {name} is an 8-bit image ({stored.dtype}, shape {stored.shape}): '
            'depth needs 16-bit integers or floats; an 8-bit file is usually a colour image '
            'or a colour-mapped visualisation, which holds no metric depth.',
            'Pass the 16-bit depth PNG (with --gt-scale/--pred-scale) or float metres '
            '(.npy, TIFF, EXR).')


def load_depth_file(path: str | Path, scale: float | None, fmt: str = 'auto',
                    invalid_value: float | None = None, what: str = 'depth file',
                    float_scale: bool = True) -> np.ndarray:
    """Read a depth map from ``.npy`` (float, metres unless scaled) or an image file.

    :param what: which input it is ('prediction file', 'ground-truth file'), for messages.
    :param float_scale: see :func:`decode_stored`.
    :raises EvaluationError: missing, unreadable, 8-bit, non-numeric or not (H, W).
    """
    path = Path(path)
    name = repr(str(path))
    if path.is_dir():
        raise EvaluationError(
            f'The {what} {name} is a folder, not a depth file.',
            'If it is a rosbag2 bag, name the depth topics: --pred-topic T --gt-topic T.')
    if not path.is_file():
        raise EvaluationError(f'The {what} {name} does not exist.',
                              'Check the path (PRED is the first argument, GT the second).')
    if path.suffix.lower() == '.npy':
        try:
            stored = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise EvaluationError(
                f'The {what} {name} cannot be read as a numeric .npy array: {exc}',
                'Save one (H, W) float array with numpy.save (no pickled objects).') from exc
        if not isinstance(stored, np.ndarray):   # an .npz archive under an .npy name
            raise EvaluationError(f'The {what} {name} is an .npz archive, not one array.',
                                  'Save one (H, W) float array with numpy.save.')
        _check_depth_dtype(stored, name, what)
        shape = stored.shape
        stored = np.squeeze(stored)
        if stored.ndim != 2:
            raise EvaluationError(
                f'The {what} {name} has shape {shape}, not a depth map (H, W) (size-1 axes '
                'are dropped).',
                'Save one (H, W) map, e.g. depth[0] of a batch or of a channel-first array.')
    else:
        if path.suffix.lower() in BAG_SUFFIXES:
            raise EvaluationError(
                f'The {what} {name} looks like a bag, not a depth image.',
                'Name the depth topics: --pred-topic T --gt-topic T.')
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if stored is None:
            raise EvaluationError(f'OpenCV cannot read the {what} {name} as an image.',
                                  'Use a 16-bit PNG, a float TIFF/EXR or a .npy file.')
        _check_depth_dtype(stored, name, what)
        if stored.ndim not in (2, 3):
            raise EvaluationError(f'The {what} {name} has shape {stored.shape}, not a depth '
                                  'map.', 'Pass an (H, W) depth map.')
    return decode_stored(stored, scale, fmt, invalid_value, what=f'The {what} {name}',
                         float_scale=float_scale)


def _bag_error(bag: Path, what: str, exc: Exception) -> EvaluationError:
    return EvaluationError(
        f'The {what} bag {str(bag)!r} cannot be read as a bag '
        f'({type(exc).__name__}: {exc}).',
        'Pass a rosbag2 folder (metadata.yaml with .mcap/.db3 files) or a ROS 1 .bag file; '
        'a recording cut short can often be repaired (`mcap recover` for MCAP, '
        '`ros2 bag reindex` for a missing metadata.yaml).')


def read_bag_depth(bag: str | Path, topic: str, scale: float | None,
                   what: str = 'depth') -> dict[int, np.ndarray]:
    """All depth images of ``topic`` in ``bag``, keyed by header stamp (ns), in metres.

    A message that cannot be decoded is skipped with a message on stderr.

    :param what: which input it is ('prediction', 'ground-truth'), for the messages.
    :raises EvaluationError: missing or unreadable bag, unknown topic, a topic that is not
        a sensor_msgs/Image, or no decodable message.
    """
    from depth_node.bagio import (
        BagReadError,
        deserialize,
        IMAGE_TYPES,
        open_reader,
        UndeserializableMessageError,
    )
    from depth_node.images import depth_to_metres
    bag = Path(bag)
    if not bag.exists():
        raise EvaluationError(f'The {what} bag {str(bag)!r} does not exist.',
                              'Check the path: a rosbag2 folder or a ROS 1 .bag file.')
    out: dict[int, np.ndarray] = {}
    skipped = 0
    try:
        with open_reader(bag) as reader:
            conns = [c for c in reader.connections if c.topic == topic]
            if not conns:
                images = sorted({c.topic for c in reader.connections
                                 if c.msgtype in IMAGE_TYPES})
                others = sorted({c.topic for c in reader.connections} - set(images))
                raise EvaluationError(
                    f'Topic {topic!r} is not in the {what} bag {str(bag)!r}.',
                    f"Image topics in the bag: {', '.join(images) or 'none'}"
                    + (f"; other topics: {', '.join(others)}." if others else '.'))
            wrong = sorted({c.msgtype for c in conns} - set(IMAGE_TYPES))
            if wrong:
                raise EvaluationError(
                    f'Topic {topic!r} in {str(bag)!r} carries {", ".join(wrong)}, not '
                    'sensor_msgs/msg/Image depth images.',
                    'Name a 16UC1/32FC1 depth image topic.')
            for conn, timestamp, raw in reader.messages(conns):
                try:
                    msg = deserialize(reader, raw, conn.msgtype, topic)
                except UndeserializableMessageError as exc:   # malformed: skip that message
                    skipped += 1
                    print(f'depth-node evaluate: skipping a {topic} message at {timestamp} ns '
                          f'that does not deserialise ({exc.message}).', file=sys.stderr)
                    continue
                stamp = getattr(getattr(msg, 'header', None), 'stamp', None)
                key = (int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
                       if stamp is not None else int(timestamp))
                try:
                    out[key] = depth_to_metres(msg, scale)
                except InputError as exc:       # one bad frame: skip it, say so, go on
                    skipped += 1
                    print(f'depth-node evaluate: skipping a {topic} message at {key} ns: '
                          f'{exc}', file=sys.stderr)
    except BagReadError as exc:   # not a bag, a corrupt chunk, index or compression
        raise _bag_error(bag, what, exc) from exc
    if skipped and not out:
        raise EvaluationError(f'None of the {skipped} messages on {topic!r} could be decoded.',
                              'Check that the topic carries 16UC1/32FC1 depth images.')
    if not out:
        raise EvaluationError(f'Topic {topic!r} in {str(bag)!r} has no messages.',
                              'Name a topic that was recorded.')
    return out


def pair_by_stamp(pred: dict[int, Any], gt: dict[int, Any],
                  rule: PairingRule | int) -> list[tuple[int, int]]:
    """Pairs (pred stamp, gt stamp): each ground truth with its prediction by the pairing rule.

    The one rule of the node and ``depth-node bag`` (:class:`~depth_node.sync.PairingRule`);
    an int is an ``approximate`` tolerance in nanoseconds. ``latest`` takes the last
    prediction stamped at or before the ground truth (stamps stand in for log times).
    """
    if isinstance(rule, int):
        rule = PairingRule('approximate', rule)
    index = PartnerIndex(rule)
    for stamp in pred:
        index.add(stamp, stamp)
    pairs = []
    for g in sorted(gt):
        partner = index.partner(g, g)
        if partner is not None:
            pairs.append((partner, g))
    return pairs


def nearest_gap_ns(pred: dict[int, Any], gt: dict[int, Any]) -> int | None:
    """Smallest stamp difference between any prediction and any ground truth (ns)."""
    if not pred or not gt:
        return None
    pk = np.array(sorted(pred), dtype=np.int64)
    gk = np.array(sorted(gt), dtype=np.int64)
    i = np.clip(np.searchsorted(pk, gk), 1, max(len(pk) - 1, 1))
    gaps = np.minimum(np.abs(pk[i - 1] - gk), np.abs(pk[np.minimum(i, len(pk) - 1)] - gk))
    return int(gaps.min())


def mean_metrics(per_frame: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of per-frame metrics (KITTI convention); ``n_valid`` is the total."""
    out: dict[str, Any] = {k: float(np.mean([m[k] for m in per_frame]))
                           for k in METRIC_KEYS if k != 'n_valid'}
    out['n_valid'] = int(sum(m['n_valid'] for m in per_frame))
    out['n_frames'] = len(per_frame)
    return out


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------

def _colorize(values: np.ndarray, lo: float, hi: float, cmap: int,
              near_warm: bool = False) -> np.ndarray:
    """Return a BGR false colour view; ``near_warm`` reverses the map (near = warm)."""
    ok = np.isfinite(values)
    norm = np.zeros(values.shape, dtype=np.uint8)
    if hi > lo:
        norm[ok] = np.clip((values[ok] - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    if near_warm:
        norm = 255 - norm
    bgr = cv2.applyColorMap(norm, cmap)
    bgr[~ok] = 0
    return bgr


def _colour_bar(width: int, lo: float, hi: float, cmap: int, near_warm: bool,
                unit: str) -> np.ndarray:
    """Return a 36-pixel high legend: the colour map from ``lo`` (left) to ``hi`` (right)."""
    ramp = np.tile(np.linspace(lo, hi, max(width, 2), dtype=np.float32), (14, 1))
    bar = np.zeros((36, width, 3), dtype=np.uint8)
    bar[:14] = _colorize(ramp, lo, hi, cmap, near_warm)
    for text, x in ((f'{lo:.3g} {unit}', 2), (f'{hi:.3g} {unit}', max(2, width - 70))):
        cv2.putText(bar, text, (x, 31), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return bar


def write_plot(path: str | Path, pred: np.ndarray, gt: np.ndarray,
               image: np.ndarray | None = None, max_rel_error: float = 0.5) -> Path:
    """PNG with [image,] prediction, ground truth and |p-g|/g error map side by side.

    :param pred: (H, W) aligned prediction in metres (NaN invalid), ground-truth size.
    :param gt: (H, W) ground truth, metres.
    :param image: optional (h, w, 3) BGR image, resized to (H, W).
    """
    h, w = gt.shape
    finite = gt[np.isfinite(gt)]
    lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    turbo = getattr(cv2, 'COLORMAP_TURBO', cv2.COLORMAP_JET)
    with np.errstate(invalid='ignore', divide='ignore'):
        err = np.abs(pred - gt) / gt
    panels = []
    if image is not None:
        panels.append(cv2.resize(np.ascontiguousarray(image[..., :3]), (w, h),
                                 interpolation=cv2.INTER_AREA))
    panels += [_colorize(pred, lo, hi, turbo, True), _colorize(gt, lo, hi, turbo, True),
               _colorize(err, 0.0, max_rel_error, cv2.COLORMAP_HOT)]
    names = (['image'] if image is not None else []) + ['prediction', 'ground truth',
                                                        f'|p-g|/g (0..{max_rel_error})']
    for panel, name in zip(panels, names):
        cv2.putText(panel, name, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    # legends: depth near = warm (as depth/colorized and rviz previews), error 0 = dark
    legends = [np.zeros((36, w, 3), np.uint8)] * (len(panels) - 3)
    legends += [_colour_bar(w, lo, hi, turbo, True, 'm')] * 2
    legends.append(_colour_bar(w, 0.0, max_rel_error, cv2.COLORMAP_HOT, False, ''))
    path = Path(path)
    if not cv2.imwrite(str(path), np.vstack([np.hstack(panels), np.hstack(legends)])):
        raise EvaluationError(f'Cannot write the plot {str(path)!r}.',
                              'Check the folder exists and the name ends in .png.')
    return path


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        'evaluate', help='compare predicted depth with ground truth',
        description='Standard depth metrics (AbsRel, SqRel, RMSE, RMSE log, delta1..3) of a '
                    'prediction against ground truth. Files: .npy float metres or 16-bit '
                    'images with a scale; or a bag with --pred-topic and --gt-topic.')
    p.add_argument('pred', help='predicted depth file (.npy / .png / .tiff) or a bag')
    p.add_argument('gt', nargs='?', default=None,
                   help='ground-truth depth file, or a bag (default: the PRED bag)')
    p.add_argument('--pred-scale', type=float, default=None,
                   help='metres per stored prediction value (required for integer images)')
    p.add_argument('--gt-scale', type=float, default=None,
                   help='metres per stored ground-truth value, e.g. 0.00390625 for KITTI '
                        '(1/256), 0.0002 for TUM (1/5000), 0.001 for millimetres')
    p.add_argument('--pred-format', choices=FORMATS, default='auto',
                   help='stored prediction quirks (default auto)')
    p.add_argument('--gt-format', choices=FORMATS, default='auto',
                   help='stored ground-truth quirks: sun = SUN RGB-D bit rotation (mm), '
                        'nyu-raw = NYU raw Kinect units')
    p.add_argument('--invalid-value', type=float, default=None,
                   help='stored value meaning "no measurement" besides 0/NaN, e.g. 65535')
    p.add_argument('--align', choices=ALIGN_MODES, default='none',
                   help='none; median (scale); scale-shift (least squares in depth); '
                        'scale-shift-disparity (least squares in inverse depth, MiDaS: the '
                        'prediction is an inverse-depth map)')
    p.add_argument('--min-depth', type=float, default=1e-3, help='metres (default 0.001)')
    p.add_argument('--max-depth', type=float, default=80.0, help='metres (default 80)')
    p.add_argument('--crop', choices=CROPS, default='none', help='KITTI Garg or Eigen crop')
    p.add_argument('--allow-aspect-change', action='store_true',
                   help='resize a prediction of another aspect ratio to the ground truth '
                        '(only for the same view stretched to a network input size; '
                        'refused by default: another aspect ratio means another view)')
    p.add_argument('--no-clamp', action='store_true',
                   help='do not clamp the aligned prediction to [min-depth, max-depth]')
    p.add_argument('--pred-topic', default=None, help='bag: prediction depth image topic')
    p.add_argument('--gt-topic', default=None, help='bag: ground-truth depth image topic')
    p.add_argument('--sync-policy', choices=SYNC_POLICIES, default='approximate',
                   help='bag: how a ground truth finds its prediction, the pairing rule of the '
                        'node and depth-node bag (default approximate)')
    p.add_argument('--sync-tolerance', '--max-dt', dest='max_dt', type=float, default=0.01,
                   help='bag: approximate pairing, largest stamp difference, seconds '
                        '(default 0.01)')
    p.add_argument('--image', default=None, help='colour image for the --plot panel')
    p.add_argument('--plot', default=None, metavar='OUT.png',
                   help='write image | prediction | ground truth | error map as a PNG')
    p.add_argument('--json', action='store_true', help='print one JSON object')
    p.set_defaults(func=run)
    return p


def constant_baseline(gt: np.ndarray, **kwargs: Any) -> dict[str, Any]:
    """Score a constant depth at the ground truth's median, aligned like the prediction.

    The trivial predictor every score must be read against: on a single indoor frame it
    often scores as well as a weak network.
    """
    lo, hi = kwargs.get('min_depth', 1e-3), kwargs.get('max_depth', 80.0)
    with np.errstate(invalid='ignore'):
        valid = gt[np.isfinite(gt) & (gt > lo) & (gt < hi)]
    depth = float(np.median(valid)) if valid.size else 1.0
    constant = np.full(gt.shape, depth, dtype=np.float32)
    options = dict(kwargs)
    if options.get('align') in ('scale-shift', 'scale-shift-disparity'):
        options['align'] = 'median'   # a constant has no scale and shift of its own to fit
    out = compute_metrics(constant, gt, **options)
    out.pop('warnings', None)
    out['depth'] = depth
    return {k: v for k, v in out.items() if k in METRIC_KEYS or k == 'depth'}


def relative_warning(args: argparse.Namespace, pred: np.ndarray, gt: np.ndarray,
                     kwargs: dict[str, Any]) -> str:
    """Return a warning when ``--align none`` scores what looks like a unitless map, or ''.

    A relative map (``depth/relative``, ``*_relative.tiff``) or a prediction whose median is
    off the ground truth's by more than 3x is not metres: its scores mean nothing unaligned.
    """
    if kwargs.get('align') != 'none':
        return ''
    names = f"{args.pred} {getattr(args, 'pred_topic', '') or ''}"
    named = 'relative' in names
    with np.errstate(invalid='ignore', divide='ignore'):
        if pred.shape != gt.shape:
            pred = resize_to(np.nan_to_num(pred, nan=0.0).astype(np.float32), *gt.shape)
        ok = np.isfinite(gt) & (gt > 0) & np.isfinite(pred) & (pred > 0)
        ratio = float(np.median(pred[ok] / gt[ok])) if ok.any() else 1.0
    if not named and 1 / 3 <= ratio <= 3:
        return ''
    why = ('it is a relative (unitless) map' if named else
           f'its median is {ratio:.3g} x the ground truth: it looks unitless')
    return (f'--align none scores the prediction as metres, but {why}; its scores mean '
            'nothing. Use --align scale-shift-disparity (relative inverse depth, Depth '
            'Anything) or scale-shift / median (relative depth).')


def _print_table(metrics: dict[str, Any], out: Any = None, header: bool = True) -> None:
    out = out or sys.stdout
    names = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')
    if header:
        print('  '.join(f'{n:>9}' for n in names) + f"  {'n_valid':>9}", file=out)
    print('  '.join(f'{metrics[n]:9.4f}' for n in names) + f"  {metrics['n_valid']:9d}",
          file=out)


def run(args: argparse.Namespace) -> int:
    """Run ``depth-node evaluate``; returns the exit status."""
    kwargs = {'min_depth': args.min_depth, 'max_depth': args.max_depth, 'align': args.align,
              'crop': args.crop, 'clamp': not args.no_clamp,
              'allow_aspect_change': args.allow_aspect_change}
    if args.pred_topic or args.gt_topic:
        if not (args.pred_topic and args.gt_topic):
            raise EvaluationError('A bag needs both --pred-topic and --gt-topic.',
                                  'Name the prediction and the ground-truth depth topics.')
        preds = read_bag_depth(args.pred, args.pred_topic, args.pred_scale, 'prediction')
        gts = read_bag_depth(args.gt or args.pred, args.gt_topic, args.gt_scale,
                             'ground-truth')
        rule = PairingRule.from_seconds(getattr(args, 'sync_policy', 'approximate'),
                                        args.max_dt)
        pairs = pair_by_stamp(preds, gts, rule)
        if not pairs:
            gap = nearest_gap_ns(preds, gts) / 1e9
            raise EvaluationError(
                f'No prediction on {args.pred_topic} within {args.max_dt} s of a ground truth '
                f'on {args.gt_topic} ({len(preds)} and {len(gts)} messages; the closest '
                f'pair is {gap:.6g} s apart).',
                f'Check the topics, or raise --max-dt (to at least {gap:.6g} if those '
                'messages belong together).')
        per_frame = [compute_metrics(preds[p], gts[g], **kwargs) for p, g in pairs]
        metrics = mean_metrics(per_frame)
        negative = [m['scale'] for m in per_frame if m.get('scale', 0.0) < 0]
        metrics['warnings'] = ([negative_scale_warning(args.align, min(negative),
                                                       (len(negative), len(per_frame)))]
                               if negative else [])
        last_pred, last_gt = preds[pairs[-1][0]], gts[pairs[-1][1]]
    else:
        if args.gt is None:
            raise EvaluationError('No ground truth given.',
                                  'Pass PRED GT files, or a bag with --pred-topic/--gt-topic.')
        pred_scale = args.pred_scale
        if pred_scale is None and Path(args.pred).suffix.lower() == '.png' \
                and args.pred_format == 'auto':
            pred_scale = 0.001   # 16-bit PNG predictions are ROS 16UC1: depth-node bag writes mm
        last_pred = load_depth_file(args.pred, pred_scale, args.pred_format,
                                    args.invalid_value, what='prediction file')
        last_gt = load_depth_file(args.gt, args.gt_scale, args.gt_format, args.invalid_value,
                                  what='ground-truth file')
        metrics = compute_metrics(last_pred, last_gt, **kwargs)
        metrics['n_frames'] = 1
    if args.plot:
        aligned = compute_metrics(last_pred, last_gt, return_aligned=True, **kwargs)['aligned']
        image = None
        if args.image:
            image = cv2.imread(args.image, cv2.IMREAD_COLOR)
            if image is None:
                raise EvaluationError(f'Cannot read the image {args.image!r}.',
                                      'Pass a PNG/JPEG colour image or leave out --image.')
        write_plot(args.plot, aligned, last_gt, image)
    metrics['baseline'] = constant_baseline(last_gt, **kwargs)
    relative = relative_warning(args, last_pred, last_gt, kwargs)
    if relative:
        metrics['warnings'].append(relative)
    for warning in metrics['warnings']:
        print(f'depth-node evaluate: warning: {warning}', file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != 'aligned'}))
    else:
        _print_table(metrics)
        print(f"baseline (constant {metrics['baseline']['depth']:.4g} m, the ground truth's "
              'median, aligned the same way; a prediction must beat it):')
        _print_table(metrics['baseline'], header=False)
        extra = {k: metrics[k] for k in ('scale', 'shift', 'n_frames') if k in metrics}
        if extra:
            print('  '.join(f'{k}={v:.6g}' for k, v in extra.items()))
        if args.plot:
            print(f'plot: {args.plot}')
    return 0
