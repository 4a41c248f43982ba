"""Ray table of the camera model against OpenCV's own projection, on every real calibration."""

from __future__ import annotations

import math

from camera_helpers import calibration, CALIBRATION_FILES, cv2_project, pinhole
import cv2
from depth_node import distortion
from depth_node.calibration import load_calibration
from depth_node.camera import CameraModel
import numpy as np
import pytest

DEPTH_M = 2.5

#: minimum share of pixels with a ray: fisheyes whose image corners look past 90 deg (the T265,
#: the Isaac chessboard fisheye) lose those corners, every other camera keeps practically all
MIN_VALID = {
    't265_fisheye1_equidistant.yaml': 0.75,
    't265_fisheye2_equidistant.yaml': 0.75,
    'isaac_chessboard0_equidistant_D5.camera_info.json': 0.72,
    'uzhfpv_cam0_forward_equidistant_partial.yaml': 0.95,
}


def _round_trip(cam: CameraModel) -> tuple[np.ndarray, float]:
    rays = cam.ray_table()
    valid = np.isfinite(rays).all(axis=-1)
    v, u = np.nonzero(valid)
    points = rays[valid].astype(np.float64) * DEPTH_M
    assert np.allclose(points[:, 2], DEPTH_M)
    uv = cv2_project(cam, points)
    err = np.hypot(uv[:, 0] - u, uv[:, 1] - v)
    return err, float(valid.mean())


@pytest.mark.parametrize('name', CALIBRATION_FILES)
def test_round_trip_raw(shared_data, name):
    cam = load_calibration(calibration(shared_data, name))
    assert cam.has_distortion
    err, valid = _round_trip(cam)
    assert valid >= MIN_VALID.get(name, 0.99), f'{name}: only {valid:.3f} of pixels valid'
    assert err.max() < 1e-3, f'{name}: round trip error {err.max():.2e} px'


@pytest.mark.parametrize('name', CALIBRATION_FILES)
def test_round_trip_rectified(shared_data, name):
    cam = load_calibration(calibration(shared_data, name), rectified=True)
    assert not cam.has_distortion
    err, valid = _round_trip(cam)
    assert valid == 1.0
    assert err.max() < 1e-3


@pytest.mark.parametrize('name', [n for n in CALIBRATION_FILES if 'partial' not in n])
def test_rectified_rays_match_opencv_rectification_map(shared_data, name):
    """A rectified pixel's ray lands where OpenCV's initUndistortRectifyMap samples it from.

    The ray is rotated back by R^T and projected with K + D.
    """
    path = calibration(shared_data, name)
    rect = load_calibration(path, rectified=True)
    raw = load_calibration(path)
    size = (rect.image_width, rect.image_height)
    if raw.distortion_model == 'equidistant':
        map_x, map_y = cv2.fisheye.initUndistortRectifyMap(
            raw.K, raw.D[:4].copy(), raw.R, rect.P[:, :3], size, cv2.CV_32FC1)
    else:
        map_x, map_y = cv2.initUndistortRectifyMap(raw.K, raw.D, raw.R, rect.P, size,
                                                   cv2.CV_32FC1)
    step = 7
    rays = rect.ray_table()[::step, ::step].reshape(-1, 3).astype(np.float64)
    raw_dirs = rays @ raw.R  # R^T applied to each row vector
    expected = np.stack([map_x[::step, ::step].ravel(), map_y[::step, ::step].ravel()], -1)
    inside = ((raw_dirs[:, 2] > 0) & (expected[:, 0] > 0) & (expected[:, 0] < size[0] - 1)
              & (expected[:, 1] > 0) & (expected[:, 1] < size[1] - 1))
    if raw.distortion_model == 'equidistant':
        # compare only well inside 90 deg, where the float32 maps are well conditioned
        theta = np.arctan2(np.hypot(raw_dirs[:, 0], raw_dirs[:, 1]), raw_dirs[:, 2])
        inside &= theta < math.radians(80)
    assert inside.mean() > 0.5
    got = raw.project(raw_dirs[inside])
    err = np.hypot(*(got - expected[inside]).T)
    assert err.max() < 2e-3, f'{name}: {err.max():.2e} px'


def test_rectified_camera_uses_p_not_k(shared_data):
    path = calibration(shared_data, 'usb_cam_test_camera_plumb_bob_rectified.yaml')
    rect = load_calibration(path, rectified=True)
    raw = load_calibration(path)
    assert rect.fx == pytest.approx(393.6538)
    assert rect.cx == pytest.approx(322.797939)
    assert raw.fx == pytest.approx(438.783367)
    assert rect.ray_table()[241, 0, 0] == pytest.approx((0 - 322.797939) / 393.6538, rel=1e-6)
    # the raw ray of the same pixel differs: it undoes the barrel distortion with K
    assert abs(raw.ray_table()[241, 0, 0] - rect.ray_table()[241, 0, 0]) > 0.05


def test_raw_rays_ignore_r(shared_data):
    """R (stereo rectification rotation) must not rotate raw rays.

    The principal point's ray stays on the optical axis although R != I.
    """
    cam = load_calibration(calibration(shared_data,
                                       'isaac_tf_camera_plumb_bob.camera_info.json'))
    assert not np.allclose(cam.R, np.eye(3))
    ray = cam.project(np.array([[0.0, 0.0, 1.0]]))[0]
    assert ray == pytest.approx([cam.cx, cam.cy])
    table = cam.ray_table()
    u, v = round(cam.cx), round(cam.cy)
    assert abs(table[v, u, 0]) < 2 / cam.fx and abs(table[v, u, 1]) < 2 / cam.fy


def test_fisheye_field_of_view_stops_at_90_degrees(shared_data):
    cam = load_calibration(calibration(shared_data, 't265_fisheye1_equidistant.yaml'))
    k1, k2, k3, k4 = cam.D
    t = math.pi / 2
    td_90 = t * (1 + k1 * t ** 2 + k2 * t ** 4 + k3 * t ** 6 + k4 * t ** 8)
    v, u = np.mgrid[0:cam.image_height, 0:cam.image_width]
    td = np.hypot((u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy)
    valid = np.isfinite(cam.ray_table()[..., 0])
    assert not valid[td > td_90].any()
    assert valid[td < 0.995 * td_90].all()
    assert not valid[0, 0] and valid[400, 424]


def test_non_monotonic_distortion_is_nan_outside_its_valid_radius():
    """plumb_bob k1 = -0.5: pixels past the distortion peak are NaN, the rest round-trip.

    r_d = r (1 - 0.5 r^2) peaks at r = sqrt(2/3), r_d = 0.544; pixels further out have no
    undistorted position.
    """
    cam = pinhole(width=640, height=480, fx=300.0, fy=300.0, cx=319.5, cy=239.5,
                  D=[-0.5, 0, 0, 0, 0], model='plumb_bob')
    rays = cam.ray_table()
    valid = np.isfinite(rays[..., 0])
    v, u = np.mgrid[0:480, 0:640]
    rd = np.hypot((u - 319.5) / 300, (v - 239.5) / 300)
    rd_max = math.sqrt(2 / 3) * (1 - 0.5 * 2 / 3)
    assert not valid[rd > rd_max].any()
    assert valid[rd < 0.98 * rd_max].all()
    r = np.hypot(rays[valid][:, 0], rays[valid][:, 1])
    assert r.max() <= math.sqrt(2 / 3) + 1e-6  # the inner branch, never the folded one
    err, _ = _round_trip(cam)
    assert err.max() < 1e-3


def test_pinhole_ray_table_is_exact():
    cam = pinhole()
    rays = cam.ray_table()
    assert rays.shape == (480, 640, 3) and rays.dtype == np.float32
    u = np.arange(640)
    v = np.arange(480)
    assert np.allclose(rays[..., 0], ((u - 319.5) / 525.0)[None, :], atol=1e-7)
    assert np.allclose(rays[..., 1], ((v - 239.5) / 520.0)[:, None], atol=1e-7)
    assert np.all(rays[..., 2] == 1.0)


def test_ray_table_cached_read_only_and_bounded():
    distortion.clear_ray_cache()
    a = pinhole()
    b = pinhole()
    table = a.ray_table()
    assert b.ray_table() is table, 'same key must reuse the cached table'
    assert not table.flags.writeable
    with pytest.raises(ValueError):
        table[0, 0, 0] = 1.0
    assert pinhole(fx=600.0).ray_table() is not table
    for i in range(distortion.RAY_CACHE_SIZE + 3):
        pinhole(width=64, height=48, fx=100.0 + i).ray_table()
    assert len(distortion._RAY_CACHE) == distortion.RAY_CACHE_SIZE
    assert a.key not in distortion._RAY_CACHE  # least recently used was dropped


def test_binned_roi_rays_equal_full_resolution_rays(shared_data):
    """image_geometry's convention for binning and ROI gives identical rays.

    Binned pixel (u, v) of ROI (x0, y0) is full-resolution pixel (u * bx + x0, v * by + y0).
    """
    full = load_calibration(calibration(shared_data, 'utbm_bumblebee2_left_plumb_bob.yaml'))
    x0, y0, w, h = 100, 60, 800, 600
    binned = CameraModel(width=full.width, height=full.height, K=full.K, D=full.D, R=full.R,
                         P=full.P, distortion_model=full.distortion_model, binning_x=2,
                         binning_y=3, roi=(x0, y0, w, h, False))
    assert (binned.image_width, binned.image_height) == (400, 200)
    got = binned.ray_table()
    want = full.ray_table()[y0:y0 + h:3, x0:x0 + w:2][:200, :400]
    assert np.allclose(got, want, atol=2e-6, equal_nan=True)


def test_resized_camera_matches_cv2_resize_of_a_projected_pattern(shared_data):
    """Blobs rendered at projected points and resized with cv2.resize fit the resized camera.

    Each blob is found again: its centroid must be where the resized camera projects the point.
    """
    cam = load_calibration(calibration(shared_data,
                                       'usb_cam_test_camera_plumb_bob_rectified.yaml'))
    points = np.array([[-0.5, -0.3, 2.0], [0.3, 0.2, 2.5], [0.0, 0.0, 3.0], [0.6, -0.4, 2.2]])
    sigma = 4.0
    height, width = cam.image_height, cam.image_width
    vv, uu = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width))
    for u, v in cam.project(points):
        image += np.exp(-((uu - u) ** 2 + (vv - v) ** 2) / (2 * sigma ** 2))
    image = image.astype(np.float32)

    def centroids(img, guesses, radius):
        gv, gu = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        out = []
        for u, v in guesses:
            weight = img * ((gu - u) ** 2 + (gv - v) ** 2 < radius ** 2)
            out.append(((weight * gu).sum() / weight.sum(), (weight * gv).sum() / weight.sum()))
        return np.array(out)

    cases = [(320, 240, cv2.INTER_AREA), (1280, 960, cv2.INTER_LINEAR),
             (480, 360, cv2.INTER_LINEAR), (213, 160, cv2.INTER_AREA)]
    for w, h, interpolation in cases:
        resized = cv2.resize(image, (w, h), interpolation=interpolation)
        expected = cam.resized(w, h).project(points)
        found = centroids(resized, expected, 6 * sigma * w / width)
        assert np.abs(found - expected).max() < 2e-3, (w, h)
    crop = image[50:450, 30:600]
    expected = cam.cropped(30, 50, 570, 400).project(points)
    assert np.abs(centroids(crop, expected, 24) - expected).max() < 2e-3
    pad = cv2.copyMakeBorder(image, 10, 20, 7, 9, cv2.BORDER_CONSTANT)
    expected = cam.padded(7, 10, width + 16, height + 30).project(points)
    assert np.abs(centroids(pad, expected, 24) - expected).max() < 2e-3


@pytest.mark.parametrize('resize', ['stretch', 'keep_aspect_pad', 'keep_aspect_crop'])
def test_network_camera_matches_preprocessed_pattern(shared_data, resize):
    """End to end with the models' preprocessing: blobs land where the network camera projects.

    Blobs are rendered at projected points and run through ``preprocess``; in the network tensor
    each blob sits where the camera given by ``Transform.apply_to_camera`` (i.e.
    ``CameraModel.with_transform``) projects its point.
    """
    preprocess = pytest.importorskip('depth_node.models.preprocess')
    card_mod = pytest.importorskip('depth_node.models.card')
    cam = load_calibration(calibration(shared_data,
                                       'isaac_tf_camera_plumb_bob.camera_info.json'))
    points = np.array([[-0.3, -0.2, 2.0], [0.25, 0.15, 2.5], [0.0, 0.0, 3.0]])
    sigma = 5.0
    vv, uu = np.mgrid[0:cam.image_height, 0:cam.image_width].astype(np.float64)
    image = np.zeros(vv.shape)
    for u, v in cam.project(points):
        image += np.exp(-((uu - u) ** 2 + (vv - v) ** 2) / (2 * sigma ** 2))
    rgb = np.repeat(np.round(image * 255).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
    card = card_mod.ModelCard(network_image_width=392, network_image_height=392, resize=resize,
                              interpolation='area')
    tensor, transform = preprocess.preprocess(rgb, card)
    net = transform.apply_to_camera(cam)
    assert (net.image_width, net.image_height) == (392, 392)
    plane = np.asarray(tensor)[0, 0].astype(np.float64)
    gv, gu = np.mgrid[0:392, 0:392]
    radius = 6 * sigma * transform.scale_x
    for u, v in net.project(points):
        weight = plane * ((gu - u) ** 2 + (gv - v) ** 2 < radius ** 2)
        found = ((weight * gu).sum() / weight.sum(), (weight * gv).sum() / weight.sum())
        assert np.hypot(found[0] - u, found[1] - v) < 0.02, (resize, found, (u, v))
