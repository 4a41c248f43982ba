"""Scale policies of the metric layer on real data: sparse depth, ground plane, fixed, focal."""

from __future__ import annotations

import math

import cv2
from depth_node.camera import CameraModel
from depth_node.errors import MissingCameraInfoError, SizeMismatchError
from depth_node.evaluate import compute_metrics
from depth_node.metric import MetricConfig, MetricConverter
from depth_node.models.card import ModelCard
from depth_node.models.preprocess import compute_transform
import numpy as np
import pytest

NAN = float('nan')

# KITTI P2 intrinsics from ../shared/data/README.md
KITTI = {
    '000000': (707.0493, 604.0814, 180.5066),
    '000001': (721.5377, 609.5593, 172.854),
}
KITTI_CAMERA_HEIGHT = 1.65


def pinhole(fx, fy, cx, cy, width, height) -> CameraModel:
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    return CameraModel(width=width, height=height, K=K, D=np.zeros(5), R=np.eye(3),
                       P=np.hstack([K, np.zeros((3, 1))]), distortion_model='plumb_bob')


def read_gt(shared_data, name):
    if name == 'tum':
        raw = cv2.imread(str(shared_data / 'rgbd/open3d_tum/TUM_depth.png'), -1)
        scale, max_depth = 1 / 5000, 10.0
    else:
        raw = cv2.imread(str(shared_data / f'rgbd/kitti_object/{name}_velodyne_sparse_depth.png'),
                         -1)
        scale, max_depth = 1 / 256, 80.0
    assert raw is not None and raw.dtype == np.uint16
    gt = raw.astype(np.float32) * np.float32(scale)
    gt[raw == 0] = NAN
    return gt, max_depth


def subsample(gt, fraction, rng):
    valid = np.flatnonzero(np.isfinite(gt))
    pick = rng.choice(valid, int(fraction * valid.size), replace=False)
    sparse = np.full(gt.shape, NAN, np.float32)
    sparse.flat[pick] = gt.flat[pick]
    return sparse


def card(kind, **kw) -> ModelCard:
    return ModelCard(name='synthetic', output_kind=kind, **kw)


def converter(kind, **config):
    config.setdefault('edge_threshold', 0.0)
    return MetricConverter(card(kind), MetricConfig(**config))


def affine_inverse(gt, rng, noise):
    """GT -> a relative inverse-depth map a/z + b with multiplicative noise; returns a, b."""
    a = rng.uniform(0.5, 20.0)
    b = rng.uniform(-0.2, 0.5) * a / np.nanmedian(gt)
    pred = (a / gt + b) * (1 + noise * rng.standard_normal(gt.shape))
    pred = np.where(np.isfinite(pred), pred, np.nanmedian(pred)).astype(np.float32)
    return pred, a, b


# ------------------------------------------------------------------------------------------
# sparse depth: oracle on TUM and KITTI
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['tum', '000000', '000001'])
@pytest.mark.parametrize('noise', [0.0, 0.05])
def test_sparse_depth_oracle_inverse_depth(shared_data, name, noise):
    gt, max_depth = read_gt(shared_data, name)
    rng = np.random.default_rng(7)
    pred, a, b = affine_inverse(gt, rng, noise)
    sparse = subsample(gt, 0.05, rng)
    conv = converter('relative_inverse_depth', scale_source='sparse_depth', min_range=0.01,
                     max_range=max_depth + 20)
    depth, relative, report = conv.convert(pred, None, None, sparse)
    assert relative is None and report.metric and report.source == 'sparse_depth'
    assert report.n_points >= 0.9 * np.isfinite(sparse).sum()
    if noise == 0.0:   # the fit recovers the generating affine map: 1/z = pred/a - b/a
        assert report.scale == pytest.approx(1 / a, rel=1e-3)
        assert report.shift == pytest.approx(-b / a, rel=1e-3, abs=1e-6)
    floor = compute_metrics(a / (pred - b), gt, 0.1, max_depth)['abs_rel']
    got = compute_metrics(depth, gt, 0.1, max_depth)['abs_rel']
    assert got <= floor + 0.02
    if noise == 0.0:
        assert got < 1e-4


def test_sparse_depth_oracle_depth_space_with_outliers(shared_data):
    gt, max_depth = read_gt(shared_data, 'tum')
    rng = np.random.default_rng(3)
    pred = gt * 0.37 + 0.2
    pred[~np.isfinite(pred)] = 1.0
    # 5 % of the pixels with 3 % sensor noise (noise in the prediction instead would bias
    # any least-squares scale low: errors in variables)
    sparse = subsample(gt, 0.05, rng) * (1 + 0.03 * rng.standard_normal(gt.shape))
    # 20 % of the sparse points are garbage (e.g. multipath, a misregistered edge)
    bad = np.flatnonzero(np.isfinite(sparse))
    bad = rng.choice(bad, bad.size // 5, replace=False)
    sparse.flat[bad] = rng.uniform(0.3, 8.0, bad.size)
    conv = converter('relative_depth', scale_source='sparse_depth', max_range=20.0)
    depth, _, report = conv.convert(pred.astype(np.float32), None, None, sparse)
    assert report.scale == pytest.approx(1 / 0.37, rel=0.02)      # depth = s * pred + t
    assert report.shift == pytest.approx(-0.2 / 0.37, abs=0.05)
    assert report.n_points < 0.9 * np.isfinite(sparse).sum()        # outliers rejected
    assert compute_metrics(depth, gt, 0.1, 10.0)['abs_rel'] < 0.03


def test_sparse_depth_too_few_points_is_not_metric(shared_data):
    gt, _ = read_gt(shared_data, 'tum')
    pred = (1.0 / gt).astype(np.float32)
    sparse = np.full(gt.shape, NAN, np.float32)
    sparse[240, 100:120] = gt[240, 100:120]                          # 20 points < 50
    conv = converter('relative_inverse_depth', scale_source='sparse_depth')
    depth, relative, report = conv.convert(pred, None, None, sparse)
    assert depth is None and relative is pred and not report.metric
    assert 'sparse_min_points' in report.message
    depth, relative, report = conv.convert(pred, None, None, None)
    assert depth is None and not report.metric and 'no sparse depth' in report.message
    with pytest.raises(SizeMismatchError):
        conv.convert(pred, None, None, sparse[:100])


def test_anticorrelated_prediction_is_not_metric(shared_data):
    gt, _ = read_gt(shared_data, 'tum')
    pred = gt.copy()                       # depth-like, but the card says inverse depth
    pred[~np.isfinite(pred)] = 1.0
    conv = converter('relative_inverse_depth', scale_source='sparse_depth')
    depth, _, report = conv.convert(pred, None, None, subsample(gt, 0.05,
                                                                np.random.default_rng(0)))
    assert depth is None and not report.metric and 'output_kind' in report.message


# ------------------------------------------------------------------------------------------
# ground plane on KITTI
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('frame', sorted(KITTI))
@pytest.mark.parametrize('kind', ['relative_depth', 'relative_inverse_depth'])
def test_ground_plane_kitti(shared_data, frame, kind):
    gt, _ = read_gt(shared_data, frame)
    h, w = gt.shape
    f, cx, cy = KITTI[frame]
    camera = pinhole(f, f, cx, cy, w, h)
    k = 0.37
    relative = gt * k if kind == 'relative_depth' else k / gt       # NaN where no LiDAR
    conv = converter(kind, scale_source='ground_plane', camera_height=KITTI_CAMERA_HEIGHT,
                     max_range=120.0)
    depth, rel_out, report = conv.convert(relative, camera, None)
    assert report.metric and rel_out is None, report.message
    assert report.n_points > 1000
    ok = np.isfinite(depth) & np.isfinite(gt)
    ratio = float(np.median(depth[ok] / gt[ok]))
    assert ratio == pytest.approx(1.0, abs=0.05), report.message


def test_ground_plane_rejects_tilted_floor_and_missing_camera(shared_data):
    gt, _ = read_gt(shared_data, '000001')
    h, w = gt.shape
    f, cx, cy = KITTI['000001']
    camera = pinhole(f, f, cx, cy, w, h)
    conv = converter('relative_depth', scale_source='ground_plane', camera_height=1.65,
                     ground_up=(0.0, 0.0, -1.0))      # claims the camera looks straight down
    depth, relative, report = conv.convert(gt, camera, None)
    assert depth is None and relative is gt and not report.metric
    assert 'ground_up' in report.message
    depth, _, report = conv.convert(gt, None, None)
    assert depth is None and 'camera' in report.message
    with pytest.raises(SizeMismatchError):
        conv.convert(gt[:, :600], camera, None)


# ------------------------------------------------------------------------------------------
# none / fixed
# ------------------------------------------------------------------------------------------

def test_no_scale_source_never_gives_metres():
    raw = np.linspace(0.1, 1.0, 48, dtype=np.float32).reshape(6, 8)
    for kind in ('relative_depth', 'relative_inverse_depth'):
        depth, relative, report = converter(kind).convert(raw, None, None)
        assert depth is None and relative is raw
        assert not report.metric and report.source == 'none' and 'not metres' in report.message


def test_fixed_scale_in_model_space():
    raw = np.array([[0.5, 1.0, 2.0, 0.0]], np.float32)
    depth, _, report = converter('relative_inverse_depth', scale_source='fixed', fixed_scale=0.5,
                                 fixed_shift=0.25, max_range=100.0).convert(raw, None, None)
    assert report.metric and report.source == 'fixed'
    np.testing.assert_allclose(depth, [[1 / 0.5, 1 / 0.75, 1 / 1.25, 4.0]], rtol=1e-6)
    depth, _, _ = converter('relative_depth', scale_source='fixed', fixed_scale=2.0,
                            fixed_shift=-0.5, max_range=100.0).convert(raw, None, None)
    # 2 * 0 - 0.5 = -0.5 m is not a depth: NaN (no measurement), see apply_validity
    np.testing.assert_allclose(depth, [[0.5, 1.5, 3.5, NAN]])
    # inverse depth <= 0 is farther than anything: +Inf; non-finite model output: NaN
    raw = np.array([[-1.0, 1.0, np.inf, -np.inf, NAN]], np.float32)
    depth, _, _ = converter('relative_inverse_depth', scale_source='fixed', fixed_scale=1.0,
                            fixed_shift=0.0, max_range=100.0).convert(raw, None, None)
    np.testing.assert_array_equal(depth, [[np.inf, 1.0, NAN, NAN, NAN]])


# ------------------------------------------------------------------------------------------
# metric models: canonical focal rescaling
# ------------------------------------------------------------------------------------------

CANONICAL = 1000.0


def _scene_depth(h, w):
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    return (2.0 + 3.0 * u / w + 1.5 * v / h).astype(np.float32)


@pytest.mark.parametrize('view', ['full', 'resized', 'cropped', 'padded'])
@pytest.mark.parametrize('resize, net', [('stretch', (320, 320)), ('stretch', (640, 480)),
                                         ('keep_aspect_pad', (518, 518)),
                                         ('keep_aspect_crop', (384, 384))])
def test_focal_rescaling_invariance(view, resize, net):
    base = pinhole(500.0, 550.0, 319.5, 239.5, 640, 480)         # fx != fy
    camera = {'full': base, 'resized': base.resized(320, 240),
              'cropped': base.cropped(100, 60, 400, 300),
              'padded': base.padded(20, 10, 680, 500)}[view]
    w, h = camera.width, camera.height
    truth = _scene_depth(h, w)
    c = card('metric_depth', canonical_focal_px=CANONICAL, network_image_width=net[0],
             network_image_height=net[1], resize=resize)
    transform = compute_transform(w, h, c)
    # the focal the network sees, by hand from the sizes (independent of the Transform)
    wn, hn = net
    if resize == 'stretch':
        sx, sy = wn / w, hn / h
    else:
        s = min(wn / w, hn / h) if resize == 'keep_aspect_pad' else max(wn / w, hn / h)
        sx, sy = round(w * s) / w, round(h * s) / h
    f_net = math.sqrt(camera.fx * sx * camera.fy * sy)
    # an ideal canonical-focal model outputs depth as if seen with the canonical focal
    raw = truth * np.float32(CANONICAL / f_net)
    conv = MetricConverter(c, MetricConfig(max_range=100.0, edge_threshold=0.0))
    depth, relative, report = conv.convert(raw, camera, transform)
    assert relative is None and report.metric and report.source == 'canonical_focal'
    np.testing.assert_allclose(depth, truth, rtol=1e-5)


def test_metric_model_max_depth_and_missing_camera():
    c = card('metric_depth', canonical_focal_px=CANONICAL, max_depth=5.0,
             network_image_width=64, network_image_height=48)
    camera = pinhole(1000.0, 1000.0, 31.5, 23.5, 64, 48)
    raw = np.linspace(1.0, 8.0, 64 * 48, dtype=np.float32).reshape(48, 64)
    raw[0, 0] = NAN
    conv = MetricConverter(c, MetricConfig(max_range=20.0, edge_threshold=0.0))
    depth, _, report = conv.convert(raw, camera, compute_transform(64, 48, c))
    assert report.scale == pytest.approx(1.0)
    assert np.isnan(depth[0, 0])
    assert np.all(np.isposinf(depth[raw > 5.0]))                # beyond the model's range
    np.testing.assert_allclose(depth[(raw <= 5.0)], raw[raw <= 5.0])
    with pytest.raises(MissingCameraInfoError):
        conv.convert(raw, None, None)
    # no canonical focal: the output is metres as it is
    plain = MetricConverter(card('metric_depth'), MetricConfig(edge_threshold=0.0))
    depth, _, report = plain.convert(raw, None, None)
    assert report.source == 'model' and report.scale == 1.0
    np.testing.assert_allclose(depth[1:], raw[1:])


# ------------------------------------------------------------------------------------------
# temporal smoothing
# ------------------------------------------------------------------------------------------

def test_temporal_smoothing_survives_a_corrupted_frame(shared_data):
    gt, _ = read_gt(shared_data, 'tum')
    rng = np.random.default_rng(11)
    pred, a, b = affine_inverse(gt, rng, 0.0)
    true_scale = 1 / a
    conv = converter('relative_inverse_depth', scale_source='sparse_depth')
    reports = []
    for i in range(12):
        # a fresh 5 % of the points each frame, with 3 % sensor noise
        sparse = subsample(gt, 0.05, rng) * (1 + 0.03 * rng.standard_normal(gt.shape))
        if i == 5:
            sparse *= 1.8                                          # a wrong depth-unit frame
        depth, _, report = conv.convert(pred, None, None, sparse)
        reports.append(report)
        assert report.metric
        assert report.scale == pytest.approx(true_scale, rel=0.02), (i, report.message)
        ok = np.isfinite(depth) & np.isfinite(gt)
        assert np.median(depth[ok] / gt[ok]) == pytest.approx(1.0, abs=0.02)
    assert [r.accepted for r in reports].count(False) == 1 and not reports[5].accepted
    assert 'rejected' in reports[5].message
    assert conv.smoother.n_rejected == 1
    # a real, lasting change (the scene now reads 1.8x farther) is followed after N frames
    n = conv.config.scale_reinit_frames
    for i in range(n):
        _, _, report = conv.convert(pred, None, None, subsample(gt, 0.05, rng) * 1.8)
        assert report.accepted == (i == n - 1)
    assert report.scale == pytest.approx(true_scale / 1.8, rel=0.02)
    conv.reset()
    assert conv.smoother.scale is None


def test_scale_held_when_a_frame_has_no_fit(shared_data):
    gt, _ = read_gt(shared_data, 'tum')
    rng = np.random.default_rng(5)
    pred, a, _ = affine_inverse(gt, rng, 0.02)
    conv = converter('relative_inverse_depth', scale_source='sparse_depth',
                     scale_hold_frames=2)
    conv.convert(pred, None, None, subsample(gt, 0.05, rng))
    for _ in range(2):
        depth, _, report = conv.convert(pred, None, None, None)
        assert depth is not None and report.metric and not report.accepted
        assert 'holding' in report.message
    depth, relative, report = conv.convert(pred, None, None, None)
    assert depth is None and relative is pred and not report.metric


# ------------------------------------------------------------------------------------------
# torch path
# ------------------------------------------------------------------------------------------

def test_convert_torch_cpu_matches_numpy(shared_data):
    torch = pytest.importorskip('torch', reason='torch is not installed')
    gt, _ = read_gt(shared_data, 'tum')
    rng = np.random.default_rng(2)
    pred, _, _ = affine_inverse(gt, rng, 0.03)
    sparse = subsample(gt, 0.05, rng)
    kwargs = {'scale_source': 'sparse_depth', 'edge_threshold': 0.05, 'min_range': 1.0,
              'max_range': 4.0}
    ref, _, rep_np = converter('relative_inverse_depth', **kwargs).convert(
        pred, None, None, sparse)
    got, _, rep_t = converter('relative_inverse_depth', **kwargs).convert(
        torch.from_numpy(pred), None, None, torch.from_numpy(sparse))
    assert isinstance(got, torch.Tensor)
    assert rep_t.scale == pytest.approx(rep_np.scale, rel=1e-9)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, equal_nan=True)
    assert np.array_equal(np.isposinf(got.numpy()), np.isposinf(ref))
    assert np.array_equal(np.isneginf(got.numpy()), np.isneginf(ref))


def test_identical_frames_give_identical_scale_no_flicker(shared_data):
    """Fit the same frame twice and get the same scale: a static scene must not flicker.

    The robust fit samples points at random; the map is dense and not an exact affine function
    of the truth, as real model outputs are.
    """
    gt, _ = read_gt(shared_data, 'tum')
    rng = np.random.default_rng(3)
    # a relative depth map that is not an exact affine function of the truth (as real models)
    raw = (np.sqrt(np.nan_to_num(gt, nan=2.0)) * 7.0
           + rng.normal(0, 0.3, gt.shape)).astype(np.float32)
    conv = converter('relative_depth', scale_source='sparse_depth')
    camera = pinhole(525, 525, 319.5, 239.5, 640, 480)
    transform = compute_transform(640, 480, card('relative_depth', network_image_width=640,
                                                 network_image_height=480))
    reports = [conv.convert(raw, camera, transform, gt)[2] for _ in range(5)]
    assert all(r.metric and r.accepted for r in reports)
    assert len({(r.scale, r.shift) for r in reports}) == 1, [r.scale for r in reports]
