"""A synthetic metric model (canonical focal length) through the pipeline.

The focal rescaling end to end with the real preprocessing Transform, for stretch and
letterbox inputs, scaled, binned and rectified camera_infos, and torch results.
"""

from __future__ import annotations

import math

from depth_node.clouds import pointcloud2_to_array
from depth_node.images import image_to_array
from depth_node.messages import stamp_of
from depth_node.metric import MetricConfig
from depth_node.models.preprocess import preprocess
from depth_node.pipeline import DepthPipeline, PipelineConfig
import numpy as np
import pytest
from test_pipeline_support import (
    card,
    FakeModel,
    INFO_TOPIC,
    JPEG_TOPIC,
    RGB_TOPIC,
    scaled_camera_info,
    tum_messages,
    with_camera_info,
)

CANONICAL = 500.0
NO_FILTER = MetricConfig(edge_threshold=0.0, min_range=0.0, max_range=1000.0)


@pytest.fixture(scope='module')
def msgs():
    return tum_messages()


def _ramp(rgb: np.ndarray) -> np.ndarray:
    """Return a smooth metric-like map (2 .. 3 'canonical metres') of the image size."""
    h, w = rgb.shape[:2]
    return 2.0 + np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :] + \
        np.zeros((h, 1), np.float32)


class PreprocessingModel(FakeModel):
    """A fake metric model that runs the real :func:`preprocess` for its Transform."""

    def predict(self, rgb):
        self.calls += 1
        tensor, transform = preprocess(rgb, self.card)
        assert tensor.shape == self.card.input_shape()
        return _ramp(rgb), transform, {'preprocess_ms': 0.0, 'inference_ms': 0.0,
                                       'postprocess_ms': 0.0}


def _model(resize='stretch', canonical=CANONICAL, width=518, height=392):
    return PreprocessingModel(card(output_kind='metric_depth', canonical_focal_px=canonical,
                                   resize=resize, network_image_width=width,
                                   network_image_height=height), _ramp)


def _run(model, image, info, metric=NO_FILTER, **config):
    pipeline = DepthPipeline(model, PipelineConfig(metric=metric, **config),
                             log=lambda m: None)
    return pipeline, pipeline.process(image, info)


def test_stretch_canonical_focal_factor(msgs):
    result = _run(_model(), msgs[RGB_TOPIC], msgs[INFO_TOPIC])[1]
    # the camera's focal at network resolution: 525 px scaled by 518/640 and 392/480
    fx_net, fy_net = 525.0 * 518 / 640, 525.0 * 392 / 480
    factor = math.sqrt(fx_net * fy_net) / CANONICAL
    assert result.metric and result.scale.source == 'canonical_focal'
    assert result.scale.scale == pytest.approx(factor, rel=1e-12)
    np.testing.assert_allclose(result.depth, _ramp(np.zeros((480, 640, 3))) * factor,
                               rtol=1e-6)


def test_letterbox_canonical_focal_factor(msgs):
    result = _run(_model('keep_aspect_pad'), msgs[RGB_TOPIC], msgs[INFO_TOPIC])[1]
    # letterbox: one scale for both axes, by the tighter side (518/640 < 392/480), the
    # resized height rounded to whole pixels
    sx = 518 / 640
    sy = round(480 * sx) / 480
    factor = math.sqrt(525.0 * sx * 525.0 * sy) / CANONICAL
    assert result.scale.scale == pytest.approx(factor, rel=1e-12)
    np.testing.assert_allclose(result.depth, _ramp(np.zeros((480, 640, 3))) * factor,
                               rtol=1e-6)


def test_no_canonical_focal_means_metres_as_is(msgs):
    result = _run(_model(canonical=None), msgs[JPEG_TOPIC], msgs[INFO_TOPIC])[1]
    assert result.scale.source == 'model' and result.scale.scale == 1.0
    np.testing.assert_array_equal(result.depth, _ramp(np.zeros((480, 640, 3))))


def test_focal_follows_the_camera_not_the_calibration_size(msgs):
    """A camera_info at twice the resolution, a binned one and the image's own agree in metres.

    A different focal length scales them proportionally.
    """
    image, info = msgs[RGB_TOPIC], msgs[INFO_TOPIC]
    base = _run(_model(), image, info)[1].depth
    scaled = _run(_model(), image, scaled_camera_info(info, 2.0))[1].depth
    np.testing.assert_allclose(scaled, base, rtol=1e-6)
    big = scaled_camera_info(info, 2.0)
    binned = with_camera_info(big, binning_x=2, binning_y=2)
    lines = []
    pipeline = DepthPipeline(_model(), PipelineConfig(metric=NO_FILTER), log=lines.append)
    np.testing.assert_allclose(pipeline.process(image, binned).depth, base, rtol=1e-6)
    assert lines == []     # binning makes the sizes match: no rescale notice
    longer = with_camera_info(info, k=[630, 0, 319.5, 0, 630, 239.5, 0, 0, 1],
                              p=[630, 0, 319.5, 0, 0, 630, 239.5, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(_run(_model(), image, longer)[1].depth, base * 630 / 525,
                               rtol=1e-6)


def test_rectified_images_use_p(msgs, humble_factory):
    image = msgs[RGB_TOPIC]
    info = with_camera_info(msgs[INFO_TOPIC], p=[420, 0, 320, 0, 0, 420, 240, 0, 0, 0, 1, 0])
    raw = _run(_model(), image, info)[1]
    rect_pipeline, rect = _run(_model(), image, info, image_is_rectified=True)
    np.testing.assert_allclose(rect.depth, raw.depth * 420 / 525, rtol=1e-6)
    assert rect.camera.fx == 420.0 and raw.camera.fx == 525.0
    # the cloud of a rectified image back-projects with P
    factory = humble_factory
    sec, nanosec = stamp_of(image)
    cloud = pointcloud2_to_array(rect_pipeline.outputs(
        rect, factory.header(sec, nanosec, 'f'), factory, ['points'])['points'])
    v, u = 100, 500
    z = rect.depth[v, u]
    assert cloud['z'][v, u] == z
    assert cloud['x'][v, u] == pytest.approx((u - 320) / 420 * z, rel=1e-5)
    assert cloud['y'][v, u] == pytest.approx((v - 240) / 420 * z, rel=1e-5)


def test_metric_model_ignores_scale_source_and_range_applies(msgs):
    metric = MetricConfig(scale_source='sparse_depth', edge_threshold=0.0, min_range=1.9,
                          max_range=2.4)
    result = _run(_model(), msgs[RGB_TOPIC], msgs[INFO_TOPIC], metric=metric)[1]
    assert result.metric and result.scale.source == 'canonical_focal'
    expected = _ramp(np.zeros((480, 640, 3))) * np.float32(result.scale.scale)
    assert (result.depth[expected < 1.9] == -np.inf).all()
    assert (result.depth[expected > 2.4] == np.inf).all()
    inside = (expected >= 1.9) & (expected <= 2.4)
    assert inside.sum() > 1000
    np.testing.assert_allclose(result.depth[inside], expected[inside], rtol=1e-6)


@pytest.mark.parametrize('device', ['cpu', 'cuda'])
def test_torch_results_give_the_same_messages(msgs, humble_factory, device):
    torch = pytest.importorskip('torch', reason='torch is not installed')
    if device == 'cuda' and not torch.cuda.is_available():
        pytest.skip('no CUDA device: the GPU result path is checked on GPU machines only')
    pipeline, result = _run(_model(), msgs[RGB_TOPIC], msgs[INFO_TOPIC],
                            point_cloud_fields='xyzrgb')
    sec, nanosec = stamp_of(msgs[RGB_TOPIC])
    header = humble_factory.header(sec, nanosec, 'f')
    numpy_out = pipeline.outputs(result, header, humble_factory)
    result.depth = torch.from_numpy(result.depth.copy()).to(device)
    torch_out = pipeline.outputs(result, header, humble_factory)
    assert set(numpy_out) == set(torch_out)
    store = humble_factory.typestore
    for key, msg in numpy_out.items():
        assert bytes(store.serialize_cdr(msg, msg.__msgtype__)) == \
            bytes(store.serialize_cdr(torch_out[key], msg.__msgtype__)), key
    np.testing.assert_array_equal(image_to_array(torch_out['depth/image']),
                                  result.depth.cpu().numpy())
