"""Issue 10 point 8: a raw equidistant (fisheye) image; the real T265 calibration.

It is warned about once per camera, and depth is NaN where the camera model has no ray
(outside the image circle), not the nearest depth the network makes of the black area.
"""

from __future__ import annotations

from camera_helpers import calibration
from depth_node.calibration import load_calibration
from depth_node.messages import rclpy_byte_array, rclpy_like_factory
from depth_node.pipeline import DepthPipeline, no_ray_mask, PipelineConfig
import numpy as np
import pytest
from test_pipeline_support import card, FakeModel

T265 = 't265_fisheye1_equidistant.yaml'


@pytest.fixture
def fisheye(shared_data):
    camera = load_calibration(calibration(shared_data, T265), frame_id='fisheye1')
    assert camera.distortion_model == 'equidistant'
    return camera


def _image(camera, factory):
    h, w = camera.image_height, camera.image_width
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = no_ray_mask(camera)
    rgb[~mask] = 128           # the image circle is lit, outside it is black
    header = factory.header(1, 0, camera.frame_id)
    return factory.Image(header=header, height=h, width=w, encoding='rgb8', is_bigendian=0,
                         step=w * 3, data=rclpy_byte_array(rgb))


def _nearest_in_the_black(rgb):
    """Call dark pixels near, as a network does: the black outside the circle -> 0.3 m."""
    return np.where(rgb[..., 0] < 10, 0.3, 2.0).astype(np.float32)


def test_depth_is_nan_where_the_camera_has_no_ray_and_warned_once(fisheye):
    mask = no_ray_mask(fisheye)
    assert mask is not None and 0.05 < mask.mean() < 0.6     # the T265 image circle
    assert np.array_equal(mask, ~np.isfinite(fisheye.ray_table()[..., 0]))
    infos, warnings = [], []
    model = FakeModel(card(output_kind='metric_depth', max_depth=20.0), _nearest_in_the_black)
    pipeline = DepthPipeline(model, PipelineConfig(), log=infos.append, warn=warnings.append)
    factory = rclpy_like_factory()
    for _ in range(3):
        result = pipeline.process(_image(fisheye, factory), camera=fisheye)
        assert np.isnan(result.depth[mask]).all()
        inside = result.depth[~mask]
        assert np.isfinite(inside).mean() > 0.95 and np.nanmin(inside) > 1.0
    assert len(warnings) == 1 and not any('fisheye' in m for m in infos)
    assert 'equidistant (fisheye)' in warnings[0] and 'image_is_rectified' in warnings[0]
    assert f'{mask.mean() * 100:.1f} %' in warnings[0]
    headers = factory.header(1, 0, fisheye.frame_id)
    out = pipeline.outputs(result, headers, factory, want=('depth/image',))
    published = np.frombuffer(bytes(out['depth/image'].data), np.float32).reshape(mask.shape)
    assert np.isnan(published[mask]).all()


def test_rectified_or_pinhole_cameras_are_not_voided_or_warned(shared_data, fisheye):
    rectified = load_calibration(calibration(shared_data, T265), frame_id='r', rectified=True)
    assert no_ray_mask(rectified) is None
    warnings = []
    model = FakeModel(card(output_kind='metric_depth'),
                      lambda rgb: np.full(rgb.shape[:2], 2.0, np.float32))
    pipeline = DepthPipeline(model, PipelineConfig(), log=lambda m: None, warn=warnings.append)
    result = pipeline.process(_image(fisheye, rclpy_like_factory()), camera=rectified)
    assert np.isfinite(result.depth).all() and warnings == []


def test_gpu_path_tensors_are_voided_too(fisheye):
    torch = pytest.importorskip('torch')
    from depth_node.pipeline import PipelineCameraState, void_where_no_ray
    state = PipelineCameraState(camera=fisheye, converter=None, no_ray=no_ray_mask(fisheye))
    depth = torch.ones(fisheye.image_height, fisheye.image_width)
    out = void_where_no_ray(depth, state)
    assert torch.isnan(out[torch.from_numpy(np.array(state.no_ray))]).all()
    assert not torch.isnan(out[~torch.from_numpy(np.array(state.no_ray))]).any()


def test_bag_tool_warns_once_and_writes_no_depth_outside_the_circle(shared_data, fisheye,
                                                                    tmp_path, capsys):
    pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool')
    pytest.importorskip('onnxruntime', reason='onnxruntime runs the tiny model')
    import cv2
    from depth_node.cli import main
    from test_bag_support import tiny_model
    mask = no_ray_mask(fisheye)
    folder = tmp_path / 'in'
    folder.mkdir()
    grey = np.where(mask, 0, 128).astype(np.uint8)
    for name in ('a.png', 'b.png'):
        cv2.imwrite(str(folder / name), cv2.merge([grey, grey, grey]))
    model = tiny_model(tmp_path / 'model')
    status = main(['bag', str(folder), str(tmp_path / 'out'), '--model', str(model),
                   '--camera-info', str(calibration(shared_data, T265)), '--scale-source',
                   'fixed', '--no-points', '--edge-threshold', '0'])
    assert status == 0
    err = capsys.readouterr().err
    assert err.count('equidistant (fisheye)') == 1, err
    for name in ('a_depth.png', 'b_depth.png'):
        mm = cv2.imread(str(tmp_path / 'out' / name), cv2.IMREAD_UNCHANGED)
        assert mm.shape == mask.shape
        assert (mm[mask] == 0).all() and (mm[~mask] > 0).mean() > 0.5
