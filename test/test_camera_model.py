"""Camera model: loading, validation, scaling, binning/ROI, messages."""

from __future__ import annotations

import array
import math
from pathlib import Path
from types import SimpleNamespace

from camera_helpers import calibration, CALIBRATION_FILES, pinhole
from depth_node.calibration import load_calibration
from depth_node.camera import CameraModel
from depth_node.errors import CameraInfoError, SizeMismatchError, UncalibratedCameraError
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest


def test_equidistant_with_trailing_zero_coefficient(shared_data):
    cam = load_calibration(calibration(shared_data,
                                       'isaac_chessboard0_equidistant_D5.camera_info.json'))
    assert cam.distortion_model == 'equidistant' and cam.D.size == 5 and cam.D[4] == 0
    four = CameraModel(width=cam.width, height=cam.height, K=cam.K, D=cam.D[:4], R=cam.R,
                       P=cam.P, distortion_model='equidistant')
    assert np.array_equal(cam.ray_table(), four.ray_table(), equal_nan=True)
    with pytest.raises(CameraInfoError, match='equidistant'):
        CameraModel(width=cam.width, height=cam.height, K=cam.K,
                    D=np.r_[cam.D[:4], 0.01], R=cam.R, P=cam.P, distortion_model='equidistant')


def test_uzhfpv_declared_size_does_not_match_640x480(shared_data):
    """A file at 752x480 whose principal point says 640x480 cannot be scaled to 640x480.

    The aspect ratio differs, so the camera cannot be scaled and the error names both sizes.
    """
    cam = load_calibration(calibration(shared_data,
                                       'uzhfpv_cam0_forward_equidistant_partial.yaml'))
    assert (cam.width, cam.height) == (752, 480)
    assert cam.cx == pytest.approx(319.75, abs=0.01)
    with pytest.raises(SizeMismatchError) as info:
        cam.matched_to_image(640, 480)
    text = str(info.value)
    assert '640x480' in text and '752x480' in text and info.value.hint
    assert info.value.kind == 'size_mismatch'


# ---------------------------------------------------------------- CameraInfo messages
def _read_camera_infos(bag: Path) -> list:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore, Stores

    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        conns = [c for c in reader.connections if c.msgtype == 'sensor_msgs/msg/CameraInfo']
        return [reader.deserialize(raw, c.msgtype)
                for c, _, raw in reader.messages(connections=conns)]


def test_camera_info_from_real_bag(shared_data):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    msgs = _read_camera_infos(shared_data / 'bags' / 'tum_rgbd_sample_mcap')
    assert len(msgs) == 1
    cam = CameraModel.from_camera_info(msgs[0])
    assert cam.frame_id == 'tum_rgb_optical_frame'
    assert (cam.image_width, cam.image_height) == (640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (525.0, 525.0, 319.5, 239.5)
    assert cam.distortion_model == 'none' and not cam.has_distortion  # plumb_bob, D = 0


def test_camera_info_from_synthetic_bag_with_distortion(shared_data):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    msgs = _read_camera_infos(shared_data / 'bags' / 'rosbags_rs_synthetic' / 'test_bag_mcap')
    cam = CameraModel.from_camera_info(msgs[0])
    assert cam.distortion_model == 'plumb_bob'
    assert cam.D.tolist() == [0.1, -0.2, 0.001, 0.002, 0.0]


def _namespace_info(**over):
    """Return an rclpy-like CameraInfo: fixed arrays as numpy, d as array.array('d')."""
    fields = {
        'header': SimpleNamespace(frame_id='cam_optical'), 'width': 640, 'height': 480,
        'distortion_model': 'plumb_bob', 'd': array.array('d', [-0.2, 0.05, 0.001, -0.001, 0.0]),
        'k': np.array([500.0, 0, 320, 0, 510.0, 240, 0, 0, 1]), 'r': np.eye(3).ravel(),
        'p': np.array([480.0, 0, 322, 0, 0, 490.0, 238, 0, 0, 0, 1, 0]),
        'binning_x': 0, 'binning_y': 0,
        'roi': SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False)}
    fields.update(over)
    return SimpleNamespace(**fields)


def test_camera_info_from_rclpy_like_and_ros1_like_objects():
    cam = CameraModel.from_camera_info(_namespace_info())
    assert cam.D.tolist() == [-0.2, 0.05, 0.001, -0.001, 0.0]
    assert (cam.binning_x, cam.binning_y) == (1, 1)
    assert cam.fx == 500.0
    assert CameraModel.from_camera_info(_namespace_info(), rectified=True).fx == 480.0
    ros1 = SimpleNamespace(header=SimpleNamespace(frame_id='f'), width=640, height=480,
                           distortion_model='plumb_bob', D=[0.0] * 5,
                           K=[500.0, 0, 320, 0, 500, 240, 0, 0, 1], R=list(np.eye(3).ravel()),
                           P=[500.0, 0, 320, 0, 0, 500, 240, 0, 0, 0, 1, 0], binning_x=0,
                           binning_y=0, roi=SimpleNamespace(x_offset=0, y_offset=0, width=0,
                                                            height=0, do_rectify=False))
    assert CameraModel.from_camera_info(ros1).cx == 320.0


@pytest.mark.parametrize('name', CALIBRATION_FILES)
def test_to_camera_info_cdr_round_trip(shared_data, factory, name):
    cam = load_calibration(calibration(shared_data, name), frame_id='x')
    msg = cam.to_camera_info(factory, factory.header(1700000000, 5, 'cam_optical'))
    raw = factory.typestore.serialize_cdr(msg, msg.__msgtype__)
    back = factory.typestore.deserialize_cdr(raw, msg.__msgtype__)
    assert back.header.frame_id == 'cam_optical' and back.header.stamp.nanosec == 5
    again = CameraModel.from_camera_info(back)
    assert again.key == cam.key
    assert back.distortion_model == cam.distortion_model
    assert np.array_equal(back.k, cam.K.ravel()) and np.array_equal(back.d, cam.D)


def test_to_camera_info_keeps_binning_roi_and_writes_none_as_plumb_bob(factory):
    cam = pinhole(width=1280, height=960, binning_x=2, binning_y=2,
                  roi=(64, 32, 1024, 768, True))
    assert cam.distortion_model == 'none'
    msg = cam.to_camera_info(factory, factory.header(0, 0, 'f'))
    back = factory.typestore.deserialize_cdr(
        factory.typestore.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    assert back.distortion_model == 'plumb_bob' and back.d.tolist() == [0.0] * 5
    assert (back.binning_x, back.binning_y) == (2, 2)
    assert (back.roi.x_offset, back.roi.y_offset, back.roi.width, back.roi.height,
            back.roi.do_rectify) == (64, 32, 1024, 768, True)
    again = CameraModel.from_camera_info(back)
    assert (again.fx, again.cx, again.image_width) == (cam.fx, cam.cx, 512)
    resized = cam.resized(256, 192).to_camera_info(factory, factory.header(0, 0, 'f'))
    assert (resized.width, resized.height, resized.binning_x) == (256, 192, 1)
    assert resized.k[0] == pytest.approx(525.0 / 4)


# ---------------------------------------------------------------- bad input
def _cam(**over):
    base = {'width': 640, 'height': 480,
            'K': np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]),
            'D': np.array([-0.2, 0.05, 0.0, 0.0, 0.0]), 'R': np.eye(3),
            'P': np.array([[500.0, 0, 320, 0], [0, 500, 240, 0], [0, 0, 1, 0]]),
            'distortion_model': 'plumb_bob'}
    base.update(over)
    return CameraModel(**base)


def test_all_zero_k_is_uncalibrated():
    with pytest.raises(UncalibratedCameraError) as info:
        _cam(K=np.zeros((3, 3)))
    assert 'not calibrated' in str(info.value) and 'K is all zeros' in str(info.value)
    assert 'calibrat' in info.value.hint and info.value.kind == 'uncalibrated_camera'
    with pytest.raises(UncalibratedCameraError):
        CameraModel.from_camera_info(_namespace_info(k=np.zeros(9)))


@pytest.mark.parametrize('field,value', [
    ('K', np.array([[np.nan, 0, 320], [0, 500, 240], [0, 0, 1]])),
    ('D', np.array([-0.2, np.inf, 0, 0, 0])),
    ('R', np.full((3, 3), np.nan)),
    ('P', np.array([[500.0, 0, np.inf, 0], [0, 500, 240, 0], [0, 0, 1, 0]])),
])
def test_nan_or_inf_is_rejected(field, value):
    with pytest.raises(CameraInfoError, match=f'camera {field} contains NaN or Inf') as info:
        _cam(**{field: value})
    assert type(info.value) is CameraInfoError and info.value.hint


@pytest.mark.parametrize('model,coeffs', [
    ('plumb_bob', [0.1, 0.2, 0.0]),
    ('plumb_bob', [0.1, 0.2, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0]),
    ('rational_polynomial', [0.1, 0.2, 0.0, 0.0, 0.0]),
    ('equidistant', [0.1, 0.2, 0.0]),
    ('equidistant', []),
])
def test_wrong_number_of_coefficients(model, coeffs):
    with pytest.raises(CameraInfoError, match='D coefficients') as info:
        _cam(distortion_model=model, D=np.array(coeffs))
    assert type(info.value) is CameraInfoError and 'coefficients' in info.value.hint


def test_plumb_bob_with_k4_names_rational_polynomial():
    with pytest.raises(CameraInfoError) as info:
        _cam(D=np.array([0.1, 0.2, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0]))
    assert 'rational_polynomial' in info.value.hint


def test_accepted_coefficient_variants():
    assert _cam(D=np.array([-0.2, 0.05, 0.001, 0.001])).distortion_model == 'plumb_bob'
    assert _cam(D=np.array([-0.2, 0.05, 0, 0, 0, 0, 0, 0])).distortion_model == 'plumb_bob'
    assert _cam(D=np.zeros(5)).distortion_model == 'none'
    assert _cam(D=np.array([]), distortion_model='plumb_bob').distortion_model == 'none'
    assert _cam(D=np.zeros(8), distortion_model='rational_polynomial').distortion_model == 'none'
    assert _cam(D=np.array([]), distortion_model='').distortion_model == 'none'
    # an all-zero equidistant D is the ideal fisheye r = f * theta, not a pinhole
    fish = _cam(D=np.zeros(4), distortion_model='equidistant')
    assert fish.distortion_model == 'equidistant' and fish.has_distortion
    assert fish.project(np.array([[1.0, 0.0, 1.0]]))[0, 0] == pytest.approx(
        320 + 500 * math.pi / 4)


@pytest.mark.parametrize('model', ['radtan', 'fisheye', 'kannala_brandt', 'PLUMB-BOB'])
def test_unknown_distortion_model(model):
    with pytest.raises(CameraInfoError, match='unknown distortion model') as info:
        _cam(distortion_model=model)
    assert 'plumb_bob' in info.value.hint and 'equidistant' in info.value.hint


def test_empty_model_with_coefficients_is_rejected():
    with pytest.raises(CameraInfoError, match='non-zero'):
        _cam(distortion_model='')


@pytest.mark.parametrize('over,match', [
    ({'width': 0}, 'image size is 0x480'),
    ({'height': 0}, 'image size is 640x0'),
    ({'K': np.array([[-500.0, 0, 320], [0, 500, 240], [0, 0, 1]])}, 'fx=-500'),
    ({'K': np.array([[500.0, 0, 320], [0, 0, 240], [0, 0, 1]])}, 'fy=0'),
    ({'K': np.ones(8)}, 'K has 8 values'),
    ({'P': np.ones(9)}, 'P has 9 values'),
    ({'roi': (600, 0, 100, 100, False)}, 'roi'),
    ({'binning_x': -1}, 'binning'),
])
def test_malformed_fields(over, match):
    with pytest.raises(CameraInfoError, match=match) as info:
        _cam(**over)
    assert info.value.hint


def test_rectified_with_zero_p_is_rejected_raw_is_fine():
    zero_p = np.zeros((3, 4))
    assert _cam(P=zero_p).fx == 500.0
    with pytest.raises(CameraInfoError, match='rectified'):
        _cam(P=zero_p, rectified=True)


# ---------------------------------------------------------------- scaling, binning, roi
def test_scaling_two_and_half(shared_data):
    cam = load_calibration(calibration(shared_data, 'utbm_bumblebee2_left_plumb_bob.yaml'))
    up = cam.resized(2048, 1536)
    assert (up.image_width, up.image_height) == (2048, 1536)
    assert up.fx == pytest.approx(2 * cam.fx) and up.fy == pytest.approx(2 * cam.fy)
    assert up.cx == pytest.approx(2 * cam.cx + 0.5) and up.cy == pytest.approx(2 * cam.cy + 0.5)
    assert up.P[0, 0] == pytest.approx(2 * cam.P[0, 0])
    assert up.P[0, 2] == pytest.approx(2 * cam.P[0, 2] + 0.5)
    down = cam.resized(512, 384)
    assert down.fx == pytest.approx(cam.fx / 2)
    assert down.cx == pytest.approx(cam.cx / 2 - 0.25)
    assert np.array_equal(down.D, cam.D) and np.array_equal(down.R, cam.R)
    back = down.resized(1024, 768)
    assert np.allclose(back.K, cam.K, atol=1e-9) and np.allclose(back.P, cam.P, atol=1e-9)


def test_crop_and_pad_intrinsics():
    cam = pinhole()
    crop = cam.cropped(10, 20, 600, 400)
    assert (crop.cx, crop.cy, crop.fx) == (309.5, 219.5, 525.0)
    assert (crop.image_width, crop.image_height) == (600, 400)
    pad = cam.padded(0, 80, 640, 640)
    assert (pad.cx, pad.cy) == (319.5, 319.5)
    # keep-aspect letterbox to 518x518: resize by s = 518/640 (exact cv2.resize offset
    # 0.5 s - 0.5), then pad 65 rows on top
    s = 518 / 640
    net = cam.with_transform(s, s, 0.5 * s - 0.5, 0.5 * s - 0.5 + 65, 518, 518)
    assert net.fx == pytest.approx(525 * s) and net.fy == pytest.approx(520 * s)
    assert net.cx == pytest.approx(320 * s - 0.5)
    assert net.cy == pytest.approx(240 * s - 0.5 + 65)
    plain = cam.with_transform(2.0, 0.5, 3.0, -4.0, 10, 10)   # plain affine map of centres
    assert (plain.cx, plain.cy, plain.fx, plain.fy) == (319.5 * 2 + 3, 239.5 / 2 - 4,
                                                        1050.0, 260.0)


def test_binning_and_roi_follow_image_geometry():
    cam = pinhole(width=1280, height=960, fx=1000.0, fy=990.0, cx=640.5, cy=480.25,
                  binning_x=2, binning_y=4, roi=(100, 40, 1000, 800, False))
    assert (cam.image_width, cam.image_height) == (500, 200)
    assert cam.fx == 500.0 and cam.fy == 990.0 / 4
    assert cam.cx == (640.5 - 100) / 2 and cam.cy == (480.25 - 40) / 4
    assert (cam.binning_x, cam.binning_y, cam.roi) == (2, 4, (100, 40, 1000, 800, False))
    cam0 = pinhole(binning_x=0, binning_y=0)
    assert (cam0.binning_x, cam0.image_width) == (1, 640)
    same, scaled = cam.matched_to_image(500, 200)
    assert same is cam and scaled is False
    half, scaled = cam.matched_to_image(250, 100)
    assert scaled and half.fx == 250.0 and half.binning_x == 1
    with pytest.raises(SizeMismatchError, match='500x200'):
        cam.matched_to_image(1000, 800)  # the ROI size, not the stream's: wrong aspect


def test_matched_to_image_aspect_tolerance():
    cam = pinhole()
    assert cam.matched_to_image(320, 240)[1] is True
    assert cam.matched_to_image(636, 480)[1] is True   # 0.6 % off
    with pytest.raises(SizeMismatchError):
        cam.matched_to_image(630, 480)                 # 1.6 % off
    with pytest.raises(SizeMismatchError):
        cam.matched_to_image(0, 480)


def test_rectified_flag_and_frame_survive_transforms():
    cam = pinhole(frame_id='cam', rectified=True)
    out = cam.resized(320, 240).cropped(1, 1, 300, 200)
    assert out.rectified and out.frame_id == 'cam'


# ---------------------------------------------------------------- properties (hypothesis)
_scale = st.floats(min_value=0.1, max_value=4.0)
_offset = st.floats(min_value=-200.0, max_value=200.0)


def _camera(draw_model: str):
    if draw_model == 'equidistant':
        return pinhole(D=[0.01, -0.02, 0.003, -0.001], model='equidistant')
    if draw_model == 'plumb_bob':
        return pinhole(D=[-0.3, 0.1, 0.001, -0.002, 0.0], model='plumb_bob')
    return pinhole()


_points = np.array([[0.0, 0.0, 1.0], [0.3, -0.2, 2.0], [-0.4, 0.25, 1.5], [0.1, 0.3, 4.0]])


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(['none', 'plumb_bob', 'equidistant']), sx=_scale, sy=_scale,
       ox=_offset, oy=_offset, rectified=st.booleans())
def test_with_transform_maps_projections(model, sx, sy, ox, oy, rectified):
    cam = replace_rectified(_camera(model), rectified)
    out = cam.with_transform(sx, sy, ox, oy, 100, 100)
    got = out.project(_points)
    uv = cam.project(_points)
    want = np.stack([uv[:, 0] * sx + ox, uv[:, 1] * sy + oy], -1)
    assert np.allclose(got, want, rtol=0, atol=1e-9)


def replace_rectified(cam, rectified):
    from dataclasses import replace

    return replace(cam, rectified=rectified)


@settings(max_examples=60, deadline=None)
@given(w=st.integers(16, 4000), h=st.integers(16, 4000), sx=_scale, sy=_scale, ox=_offset,
       oy=_offset, tx=_scale, ty=_scale, px=_offset, py=_offset)
def test_resized_and_composed_transforms_agree(w, h, sx, sy, ox, oy, tx, ty, px, py):
    cam = pinhole(D=[-0.3, 0.1, 0.001, -0.002, 0.0], model='plumb_bob')
    sw, sh = w / 640, h / 480
    direct = cam.with_transform(sw, sh, 0.5 * sw - 0.5, 0.5 * sh - 0.5, w, h)
    assert np.allclose(cam.resized(w, h).K, direct.K, rtol=1e-12, atol=1e-9)
    assert cam.resized(w, h).key == direct.key
    two = cam.with_transform(sx, sy, ox, oy, 50, 50).with_transform(tx, ty, px, py, 60, 60)
    one = cam.with_transform(sx * tx, sy * ty, ox * tx + px, oy * ty + py, 60, 60)
    assert np.allclose(two.K, one.K, rtol=1e-10, atol=1e-7)
    assert np.allclose(two.P, one.P, rtol=1e-10, atol=1e-7)
    back = cam.with_transform(sx, sy, ox, oy, 50, 50).with_transform(
        1 / sx, 1 / sy, -ox / sx, -oy / sy, 640, 480)
    assert np.allclose(back.K, cam.K, rtol=1e-10, atol=1e-7)


def test_zero_focal_rows_are_uncalibrated_too():
    with pytest.raises(UncalibratedCameraError, match='not calibrated'):
        _cam(K=np.array([[0.0, 0, 0], [0, 0, 0], [0, 0, 1]]))


def test_t265_yaml_serves_a_bag_without_camera_info(shared_data, humble_factory):
    """The bag tool's case: the T265 bag has images but no camera_info.

    The calibration YAML plus the image's frame and size must give a usable camera and a valid
    CameraInfo.
    """
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    from rosbags.highlevel import AnyReader

    bag = shared_data / 'bags' / 't265_trimmed_locoffice_ros2'
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == '/camera/fisheye1/image_raw']
        _, _, raw = next(iter(reader.messages(connections=conns)))
        image = reader.deserialize(raw, conns[0].msgtype)
    frame = image.header.frame_id
    cam = load_calibration(calibration(shared_data, 't265_fisheye1_equidistant.yaml'),
                           frame_id=frame)
    matched, scaled = cam.matched_to_image(image.width, image.height)
    assert matched is cam and not scaled
    assert frame == 'camera_fisheye1_optical_frame'
    rays = matched.ray_table()
    assert rays.shape == (image.height, image.width, 3)
    msg = matched.to_camera_info(humble_factory, image.header)
    raw_info = humble_factory.typestore.serialize_cdr(msg, msg.__msgtype__)
    back = humble_factory.typestore.deserialize_cdr(raw_info, msg.__msgtype__)
    assert back.header.frame_id == frame and back.distortion_model == 'equidistant'
    assert (back.width, back.height) == (848, 800)
