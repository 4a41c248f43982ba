"""REP 117 validity, the flying-pixel edge filter, config checks, numpy == torch."""

from __future__ import annotations

import cv2
from depth_node.errors import DepthNodeError
from depth_node.metric import apply_validity, edge_filter, MetricConfig
import numpy as np
import pytest

NAN, INF = float('nan'), float('inf')


def test_apply_validity_hand_cases():
    depth = np.array([NAN, -1.0, 0.0, 0.05, 0.1, 0.5, 20.0, 25.0, INF, -INF], np.float32)
    out = apply_validity(depth, 0.1, 20.0)
    assert out is depth                                   # in place
    expected = np.array([NAN, NAN, NAN, -INF, 0.1, 0.5, 20.0, INF, INF, -INF], np.float32)
    np.testing.assert_array_equal(out, expected)
    again = apply_validity(out.copy(), 0.1, 20.0)         # idempotent
    np.testing.assert_array_equal(again, expected)


def test_apply_validity_too_close_nan():
    depth = np.array([0.05, 0.5, -INF, 30.0], np.float32)
    apply_validity(depth, 0.1, 20.0, too_close='nan')
    np.testing.assert_array_equal(depth, np.array([NAN, 0.5, NAN, INF], np.float32))
    with pytest.raises(DepthNodeError, match='too_close'):
        apply_validity(depth, 0.1, 20.0, too_close='zero')


def test_edge_filter_removes_flying_pixels_keeps_foreground():
    # foreground 1 m, background 2 m, one mixed (flying) pixel of 1.5 m between them
    row = np.array([[1.0, 1.0, 1.5, 2.0, 2.0]], np.float32)
    out = edge_filter(row, 0.1)
    assert out is row
    np.testing.assert_array_equal(row, np.array([[1.0, 1.0, NAN, NAN, 2.0]], np.float32))
    # a smooth slope under the threshold is untouched, in both directions
    ramp = np.linspace(1.0, 2.0, 30, dtype=np.float32)[None].repeat(4, axis=0)
    before = ramp.copy()
    edge_filter(ramp, 0.1)
    np.testing.assert_array_equal(ramp, before)
    edge_filter(ramp.T.copy(), 0.1)
    # non-finite neighbours never flag a pixel; threshold 0 disables
    special = np.array([[1.0, NAN, 1.0, INF, 1.0, -INF, 1.0]], np.float32)
    edge_filter(special, 0.1)
    np.testing.assert_array_equal(special[0, ::2], np.ones(4, np.float32))
    step = np.array([[1.0, 5.0]], np.float32)
    edge_filter(step, 0.0)
    np.testing.assert_array_equal(step, np.array([[1.0, 5.0]], np.float32))


def test_edge_filter_synthetic_object_border():
    depth = np.full((60, 80), 4.0, np.float32)       # wall at 4 m
    depth[20:40, 30:50] = 1.0                        # box at 1 m
    blurred = cv2.blur(depth, (3, 3))                # the border becomes flying pixels
    flying = (blurred != depth)
    out = edge_filter(blurred.copy(), 0.1)
    # every mixed pixel that is farther than the box is gone
    assert np.all(np.isnan(out[flying & (blurred > 1.0) & (blurred < 4.0)]))
    # the box interior (pure 1 m) is fully kept, and most of the wall too
    box = np.zeros_like(flying)
    box[21:39, 31:49] = True
    assert np.all(out[box] == 1.0)
    assert np.isfinite(out).mean() > 0.85


def _tum_depth(shared_data):
    raw = cv2.imread(str(shared_data / 'rgbd/open3d_tum/TUM_depth.png'), cv2.IMREAD_UNCHANGED)
    depth = raw.astype(np.float32) / 5000.0
    depth[raw == 0] = NAN
    return depth


def test_edge_filter_on_real_depth(shared_data):
    depth = _tum_depth(shared_data)
    valid_before = np.isfinite(depth).sum()
    out = edge_filter(depth.copy(), 0.1)
    removed = np.isfinite(depth) & ~np.isfinite(out)
    # a real Kinect map has discontinuities, but they are a small part of the image
    assert 0 < removed.sum() < 0.1 * valid_before
    # each removed pixel has a 4-neighbour more than 10 % nearer
    padded = np.pad(depth, 1, constant_values=NAN)
    neigh = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    nearer = np.fmin.reduce(neigh, axis=0)      # NaN-ignoring minimum of the neighbours
    assert np.all(depth[removed] - nearer[removed] > 0.1 * nearer[removed] - 1e-6)


def test_torch_cpu_matches_numpy(shared_data):
    torch = pytest.importorskip('torch', reason='torch is not installed')
    depth = _tum_depth(shared_data)
    depth[::37, ::41] = -INF
    depth[5::53, ::29] = 50.0
    for fn in (lambda d: edge_filter(d, 0.08),
               lambda d: apply_validity(d, 0.5, 4.0),
               lambda d: apply_validity(d, 0.5, 4.0, too_close='nan')):
        ref = fn(depth.copy())
        tens = torch.from_numpy(depth.copy())
        got = fn(tens)
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize('changes, name', [
    ({'scale_source': 'lidar'}, 'scale_source'),
    ({'too_close': 'zero'}, 'too_close'),
    ({'scale_source': 'ground_plane', 'camera_height': 0.0}, 'camera_height'),
    ({'ground_up': (0.0, 0.0, 0.0)}, 'ground_up'),
    ({'min_range': 30.0}, 'min_range'),
    ({'scale_smoothing': 0.0}, 'scale_smoothing'),
    ({'fixed_scale': -1.0}, 'fixed_scale'),
    ({'sparse_min_points': 2}, 'sparse_min_points'),
])
def test_config_validation_names_the_parameter(changes, name):
    with pytest.raises(DepthNodeError) as err:
        MetricConfig(**changes).validate()
    assert name in str(err.value)
    assert err.value.hint


def test_config_defaults_valid():
    assert MetricConfig().validate().scale_source == 'none'


def test_cuda_matches_numpy(shared_data):
    torch = pytest.importorskip('torch', reason='torch is not installed')
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device: the GPU path of the metric layer is not exercised here')
    from depth_node.metric import MetricConverter
    from depth_node.models.card import ModelCard
    depth = _tum_depth(shared_data)
    ref = apply_validity(edge_filter(depth.copy(), 0.08), 0.5, 4.0)
    dev = torch.from_numpy(depth.copy()).cuda()
    got = apply_validity(edge_filter(dev, 0.08), 0.5, 4.0)
    assert got.is_cuda
    np.testing.assert_array_equal(got.cpu().numpy(), ref)
    pred = np.where(np.isfinite(depth), 1.0 / depth, 0.5).astype(np.float32)
    card = ModelCard(output_kind='relative_inverse_depth')
    config = MetricConfig(scale_source='sparse_depth', max_range=10.0)
    ref, _, _ = MetricConverter(card, config).convert(pred, None, None, depth)
    got, _, report = MetricConverter(card, config).convert(torch.from_numpy(pred).cuda(), None,
                                                           None, depth)
    assert report.metric and got.is_cuda
    np.testing.assert_allclose(got.cpu().numpy(), ref, rtol=1e-5, equal_nan=True)


def _edge_filter_pairwise(depth, threshold):
    """Apply the definition pair by pair: the farther of two usable neighbours that jump goes."""
    out = depth.copy()
    height, width = depth.shape
    for y in range(height):
        for x in range(width):
            for dy, dx in ((0, 1), (1, 0)):
                if y + dy >= height or x + dx >= width:
                    continue
                a, b = float(depth[y, x]), float(depth[y + dy, x + dx])
                if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
                    continue
                lo, hi = min(a, b), max(a, b)
                if hi - lo > threshold * lo:
                    if a > b:
                        out[y, x] = np.nan
                    elif b > a:
                        out[y + dy, x + dx] = np.nan
    return out


@pytest.mark.parametrize('seed', range(6))
def test_edge_filter_matches_its_pairwise_definition(seed):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.2, 5.0, (23, 31)).astype(np.float32 if seed % 2 else np.float64)
    if seed % 3 == 0:
        depth = np.round(depth, 1)      # equal neighbours and exact ties
    special = rng.random(depth.shape)
    depth[special < 0.05] = np.nan
    depth[(special >= 0.05) & (special < 0.08)] = np.inf
    depth[(special >= 0.08) & (special < 0.1)] = -np.inf
    depth[(special >= 0.1) & (special < 0.12)] = 0.0
    depth[(special >= 0.12) & (special < 0.14)] = -1.0
    threshold = (0.05, 0.1, 0.5)[seed % 3]
    expected = _edge_filter_pairwise(depth, threshold)
    assert np.array_equal(edge_filter(depth.copy(), threshold), expected, equal_nan=True)
    assert np.array_equal(edge_filter(np.asfortranarray(depth), threshold), expected,
                          equal_nan=True)
