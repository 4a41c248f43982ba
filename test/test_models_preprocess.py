"""Card-driven preprocessing and the postprocess inverse.

Covers the geometry of every resize mode, normalisation, layouts, the postprocess inverse, and
the torch path against the numpy path.
"""

from __future__ import annotations

import cv2
from depth_node.errors import ImageFormatError
from depth_node.models.card import ModelCard
from depth_node.models.preprocess import (
    compute_transform,
    postprocess,
    postprocess_torch,
    preprocess,
    Preprocessor,
    TorchPreprocessor,
)
import numpy as np
import pytest


def card_for(resize='stretch', layout='nchw', encoding='rgb8', w=64, h=48, interp='linear',
             mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1 / 255) -> ModelCard:
    return ModelCard(name='t', input_name='x', output_name='y', network_image_width=w,
                     network_image_height=h, layout=layout, input_encoding=encoding,
                     pixel_scale=scale, image_mean=mean, image_stddev=std, resize=resize,
                     interpolation=interp, output_kind='relative_depth').validate()


def marker_image(width, height, x, y, radius=3):
    img = np.zeros((height, width, 3), np.uint8)
    img[y - radius:y + radius + 1, x - radius:x + radius + 1] = (255, 128, 64)
    return img


def centroid(channel_map):
    w = np.clip(channel_map, 0, None).astype(np.float64)
    ys, xs = np.mgrid[:w.shape[0], :w.shape[1]]
    return (xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()


@pytest.mark.parametrize('resize', ['stretch', 'keep_aspect_pad', 'keep_aspect_crop'])
@pytest.mark.parametrize('image_size', [(160, 90), (90, 160), (200, 150)])
def test_marker_lands_where_transform_says(resize, image_size):
    W, H = image_size
    card = card_for(resize=resize, w=64, h=48)
    mx, my = int(W * 0.55), int(H * 0.45)
    img = marker_image(W, H, mx, my, radius=4)
    tensor, t = preprocess(img, card)
    assert tensor.shape == (1, 3, 48, 64) and tensor.dtype == np.float32
    u, v = centroid(tensor[0, 0])
    eu, ev = t.image_to_network(mx, my)
    assert abs(u - eu) < 0.35 and abs(v - ev) < 0.35, (u, v, eu, ev, t)
    back = t.network_to_image(u, v)
    assert abs(back[0] - mx) < 0.35 / t.scale_x + 1e-9


def test_transform_values_for_each_mode():
    card = card_for(resize='stretch', w=64, h=48)
    t = compute_transform(128, 72, card)
    assert (t.scale_x, t.scale_y) == (0.5, 48 / 72)
    assert t.offset_x == pytest.approx(0.5 * 0.5 - 0.5)
    assert t.valid_box == (0, 0, 64, 48)
    # letterbox: 128x72 -> 64x36, centred vertically in 64x48 with 6 rows of padding above
    t = compute_transform(128, 72, card_for(resize='keep_aspect_pad', w=64, h=48))
    assert t.scale_x == t.scale_y == 0.5
    assert t.valid_box == (0, 6, 64, 42)
    assert t.offset_y == pytest.approx(0.5 * 0.5 - 0.5 + 6)
    # centre crop: 128x72 -> 85x48 (s = 48/72, rounded per axis), 10 columns cut on the left
    t = compute_transform(128, 72, card_for(resize='keep_aspect_crop', w=64, h=48))
    assert t.resized_size == (85, 48) and t.placement == (-10, 0)
    assert t.scale_x == pytest.approx(85 / 128) and t.scale_y == pytest.approx(48 / 72)
    assert t.valid_box == (0, 0, 64, 48)


def test_pad_value_is_zero_after_normalisation():
    card = card_for(resize='keep_aspect_pad', mean=(0.485, 0.456, 0.406),
                    std=(0.229, 0.224, 0.225))
    img = np.full((30, 100, 3), 200, np.uint8)
    tensor, t = preprocess(img, card)
    x0, y0, x1, y1 = t.valid_box
    assert y0 > 0
    assert np.all(tensor[0, :, :y0] == 0) and np.all(tensor[0, :, y1:] == 0)
    expected = (200 / 255 - 0.485) / 0.229
    assert np.allclose(tensor[0, 0, y0:y1, x0:x1], expected, atol=1e-5)


@pytest.mark.parametrize('layout', ['nchw', 'nhwc'])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8'])
def test_normalisation_layout_and_channel_order(layout, encoding):
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    card = card_for(layout=layout, encoding=encoding, w=8, h=6, mean=mean, std=std, scale=0.01)
    img = np.zeros((6, 8, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30   # R, G, B
    tensor, _ = preprocess(img, card)
    rgb_values = np.array([10, 20, 30], np.float64)
    order = [0, 1, 2] if encoding == 'rgb8' else [2, 1, 0]
    expected = (rgb_values[order] * 0.01 - np.array(mean)) / np.array(std)
    chans = tensor[0] if layout == 'nchw' else np.moveaxis(tensor[0], -1, 0)
    assert tensor.shape == ((1, 3, 6, 8) if layout == 'nchw' else (1, 6, 8, 3))
    for c in range(3):
        assert np.allclose(chans[c], expected[c], atol=1e-6)


def test_preprocessor_reuses_buffer_and_matches_function():
    card = card_for(resize='keep_aspect_pad')
    rng = np.random.default_rng(3)
    pre = Preprocessor(card)
    a = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    ta, _ = pre(a)
    ta_copy = ta.copy()
    tb, _ = pre(b)
    assert tb is ta                              # the same buffer, no allocation per frame
    assert np.array_equal(ta_copy, preprocess(a, card)[0])
    assert np.array_equal(tb, preprocess(b, card)[0])


@pytest.mark.parametrize('bad', [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32), 'image'])
def test_bad_images_raise_image_format_error(bad):
    with pytest.raises(ImageFormatError, match='uint8 RGB'):
        preprocess(bad, card_for())


@pytest.mark.parametrize('resize', ['stretch', 'keep_aspect_pad', 'keep_aspect_crop'])
def test_postprocess_inverts_geometry(resize):
    """A map equal to the network x coordinate comes back as image x mapped by the Transform."""
    card = card_for(resize=resize, w=64, h=48)
    W, H = 160, 90
    t = compute_transform(W, H, card)
    u = np.tile(np.arange(64, dtype=np.float32), (48, 1))
    back = postprocess(u, t)
    assert back.shape == (H, W) and back.dtype == np.float32
    xs = np.arange(W, dtype=np.float64)
    expected_u = xs * t.scale_x + t.offset_x
    row = back[H // 2]
    inside = (expected_u >= 0.5) & (expected_u <= 62.5)
    assert np.allclose(row[inside], expected_u[inside], atol=0.02)
    if resize == 'keep_aspect_crop':
        # columns the crop cut away have no prediction
        outside = (expected_u < -1.0) | (expected_u > 64.0)
        assert outside.any() and np.isnan(row[outside]).all()
    else:
        assert np.isfinite(back).all()


def test_postprocess_handles_output_at_other_resolution():
    card = card_for(resize='keep_aspect_pad', w=64, h=48)
    t = compute_transform(128, 72, card)
    low = np.zeros((24, 32), np.float32)         # output at half the input resolution
    low[3:21] = 5.0                              # the content rows (pad rows stay 0)
    back = postprocess(low[None], t)
    assert back.shape == (72, 128)
    assert np.allclose(back, 5.0)


torch = pytest.importorskip('torch', reason='torch not installed: torch preprocessing untested')


@pytest.mark.parametrize('resize', ['stretch', 'keep_aspect_pad', 'keep_aspect_crop'])
@pytest.mark.parametrize('interp', ['nearest', 'linear', 'cubic', 'area'])
@pytest.mark.parametrize('layout', ['nchw', 'nhwc'])
def test_torch_path_matches_numpy_path(resize, interp, layout):
    card = card_for(resize=resize, interp=interp, layout=layout, w=64, h=48,
                    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                    encoding='bgr8')
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    img = cv2.resize(small, (200, 120), interpolation=cv2.INTER_LINEAR)
    ref, t_np = preprocess(img, card)
    got, t_torch = TorchPreprocessor(card, 'cpu')(img)
    assert t_np == t_torch
    got = got.numpy()
    assert got.shape == ref.shape
    diff = np.abs(got - ref)
    one_level = 1 / 255 / 0.224 + 1e-6          # one uint8 level in normalised units
    if interp == 'area':       # cv2 uses fractional box weights, torch adaptive pooling
        assert diff.mean() < 4 * one_level
    else:
        assert np.quantile(diff, 0.99) <= one_level + 1e-6
        assert diff.mean() < 0.2 * one_level
    # and back: postprocess in torch equals numpy
    out = rng.random((48, 64)).astype(np.float32)
    a = postprocess(out, t_np, 'linear')
    b = postprocess_torch(torch.from_numpy(out), t_np, 'linear')
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.allclose(a, b, atol=1e-4, equal_nan=True)


def test_gpu_preprocessing_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip('no CUDA GPU: GPU preprocessing is tested on GPU hosts only')
    card = card_for(resize='keep_aspect_pad')
    img = marker_image(160, 90, 80, 40)
    got, _ = TorchPreprocessor(card, 'cuda')(img)
    assert got.is_cuda
    assert np.allclose(got.cpu().numpy(), preprocess(img, card)[0], atol=0.02)


@pytest.mark.parametrize('resize', ['stretch', 'keep_aspect_pad', 'keep_aspect_crop'])
def test_transform_moves_real_intrinsics(shared_data, resize):
    """The camera the network sees: principal point and focal lengths follow the Transform."""
    from depth_node.calibration import load_calibration
    cam = load_calibration(shared_data / 'calibration' / 'euroc_cam0_plumb_bob_partial.yaml')
    t = compute_transform(cam.width, cam.height, card_for(resize=resize, w=64, h=48))
    net = t.apply_to_camera(cam)
    assert (net.width, net.height) == (64, 48)
    assert net.fx == pytest.approx(cam.fx * t.scale_x)
    assert net.fy == pytest.approx(cam.fy * t.scale_y)
    assert net.cx == pytest.approx(cam.cx * t.scale_x + t.offset_x)
    assert net.cy == pytest.approx(cam.cy * t.scale_y + t.offset_y)
