"""Loading calibration files: YAML, JSON and INI, real files from ../shared/data."""

from __future__ import annotations

from camera_helpers import calibration, CALIBRATION_FILES
from depth_node.calibration import load_calibration
from depth_node.distortion import DISTORTION_MODELS
from depth_node.errors import CameraInfoError, UncalibratedCameraError
import numpy as np
import pytest


# ---------------------------------------------------------------- loading real calibrations
@pytest.mark.parametrize('name', CALIBRATION_FILES)
def test_every_calibration_file_loads(shared_data, name):
    cam = load_calibration(calibration(shared_data, name))
    assert cam.distortion_model in DISTORTION_MODELS and cam.distortion_model != 'none'
    assert (cam.image_width, cam.image_height) == (cam.width, cam.height)
    assert cam.K.shape == (3, 3) and cam.R.shape == (3, 3) and cam.P.shape == (3, 4)
    assert cam.fx == cam.K[0, 0] and cam.cy == cam.K[1, 2]
    assert not cam.K.flags.writeable


def test_yaml_values_are_read_exactly(shared_data):
    cam = load_calibration(calibration(shared_data, 'utbm_bumblebee2_left_plumb_bob.yaml'),
                           frame_id='bb2_left_optical')
    assert (cam.width, cam.height) == (1024, 768)
    assert cam.K[0, 0] == 831.560994 and cam.K[1, 2] == 391.521463
    assert cam.D.tolist() == [-0.357402, 0.143604, 0.000354, 0.000730, 0.0]
    assert cam.P[1, 1] == 766.309387
    assert cam.frame_id == 'bb2_left_optical'


def test_json_and_yaml_of_the_same_camera_agree(shared_data):
    js = load_calibration(calibration(
        shared_data, 'isaac_wide_fov_left_rational_polynomial.camera_info.json'))
    ym = load_calibration(calibration(
        shared_data, 'isaac_wide_fov_left_rational_polynomial.yaml'))
    assert js.key == ym.key
    assert js.distortion_model == 'rational_polynomial' and js.D.size == 8
    assert js.frame_id == 'left_cam' and ym.frame_id == ''
    assert js.P[0, 0] == pytest.approx(550.102783)


def test_ini_of_the_same_camera_agrees_with_its_yaml(shared_data, tmp_path):
    yaml_cam = load_calibration(calibration(shared_data, 'utbm_bumblebee2_left_plumb_bob.yaml'))
    ini = tmp_path / 'ost.ini'
    rows = [' '.join(repr(v) for v in row) for row in yaml_cam.K.tolist()]
    rect = [' '.join(repr(v) for v in row) for row in yaml_cam.R.tolist()]
    proj = [' '.join(repr(v) for v in row) for row in yaml_cam.P.tolist()]
    ini.write_text('# oST version 5.0 parameters\n\n[image]\n\nwidth\n1024\n\nheight\n768\n\n'
                   '[narrow_stereo]\n\ncamera matrix\n' + '\n'.join(rows) + '\n\ndistortion\n'
                   + ' '.join(repr(v) for v in yaml_cam.D.tolist()) + '\n\nrectification\n'
                   + '\n'.join(rect) + '\n\nprojection\n' + '\n'.join(proj) + '\n')
    assert load_calibration(ini).key == yaml_cam.key
    ini.write_text('[image]\nwidth\n1024\nlens\n3\n')
    with pytest.raises(CameraInfoError, match='ost.ini.*does not parse'):
        load_calibration(ini)


def test_frame_id_is_given_by_the_caller(shared_data):
    cam = load_calibration(calibration(shared_data, 't265_fisheye1_equidistant.yaml'),
                           frame_id='camera_fisheye1_optical_frame')
    assert cam.fx == 284.468 and cam.distortion_model == 'equidistant'
    assert cam.frame_id == 'camera_fisheye1_optical_frame'


@pytest.mark.parametrize('name', [n for n in CALIBRATION_FILES if 'partial' in n])
def test_partial_files_fall_back_to_identity_r_and_k_p(shared_data, name):
    text = calibration(shared_data, name).read_text()
    assert 'projection_matrix' not in text and 'rectification_matrix' not in text
    cam = load_calibration(calibration(shared_data, name))
    assert np.array_equal(cam.R, np.eye(3))
    assert np.array_equal(cam.P, np.hstack([cam.K, np.zeros((3, 1))]))
    rect = load_calibration(calibration(shared_data, name), rectified=True)
    assert (rect.fx, rect.cx) == (cam.fx, cam.cx)


def test_bad_files(tmp_path, shared_data):
    with pytest.raises(CameraInfoError, match='cannot read calibration file'):
        load_calibration(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    text = calibration(shared_data, 'euroc_cam0_plumb_bob_partial.yaml').read_text()
    bad.write_text(text.replace('cols: 5', 'cols: 6'))
    with pytest.raises(CameraInfoError, match='bad.yaml.*1x6 but has 5 values'):
        load_calibration(bad)
    zero = tmp_path / 'zero.json'
    zero.write_text('{"width": 640, "height": 480, "K": [0,0,0,0,0,0,0,0,0], "D": []}')
    with pytest.raises(UncalibratedCameraError, match='zero.json'):
        load_calibration(zero)
    nosize = tmp_path / 'nosize.yaml'
    nosize.write_text('camera_matrix: {rows: 3, cols: 3, data: [1,0,0,0,1,0,0,0,1]}\n')
    with pytest.raises(CameraInfoError, match='image_width'):
        load_calibration(nosize)
    broken = tmp_path / 'broken.yaml'
    broken.write_text('a: [\nb')
    with pytest.raises(CameraInfoError, match='broken.yaml.*does not parse'):
        load_calibration(broken)
