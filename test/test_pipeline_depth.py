"""process_depth on the real TUM ground-truth depth, and what outputs() builds from it.

Reprojection of the cloud, 16UC1 round trip, REP 117 ±Inf, decimation, colours, laziness.
"""

from __future__ import annotations

from depth_node import pipeline as pipeline_module
from depth_node.camera import CameraModel
from depth_node.clouds import pointcloud2_to_array
from depth_node.images import depth_to_metres, image_to_array
from depth_node.messages import stamp_of
from depth_node.metric import MetricConfig
from depth_node.pipeline import DepthPipeline, OUTPUTS, PipelineConfig
import numpy as np
import pytest
from test_pipeline_support import GT_TOPIC, INFO_TOPIC, RGB_TOPIC, tum_messages


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope='module')
def msgs():
    return tum_messages()


@pytest.fixture(scope='module')
def gt(msgs):
    return depth_to_metres(msgs[GT_TOPIC])


def _header(factory, msg):
    sec, nanosec = stamp_of(msg)
    return factory.header(sec, nanosec, msg.header.frame_id)


def _pipeline(**config):
    metric = MetricConfig(**config.pop('metric', {}))
    return DepthPipeline(None, PipelineConfig(metric=metric, **config), log=_quiet)


def test_gt_cloud_reprojects_to_its_pixels(msgs, gt, humble_factory):
    pipeline = _pipeline()
    result = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC])
    assert result.metric and result.relative is None and result.scale is None
    out = pipeline.outputs(result, _header(humble_factory, msgs[GT_TOPIC]), humble_factory,
                           ['points'])
    cloud = pointcloud2_to_array(out['points'])
    assert cloud.shape == (480, 640)
    xyz = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=-1)
    valid = np.isfinite(xyz).all(axis=-1)
    assert np.array_equal(valid, np.isfinite(result.depth))
    assert valid.sum() > 200000
    # the filtered depth is the GT where it survived the edge filter; the rest is NaN
    kept = np.isfinite(result.depth)
    np.testing.assert_array_equal(result.depth[kept], gt[kept])
    assert np.isnan(result.depth[~np.isfinite(gt)]).all()
    v, u = np.nonzero(valid)
    pixels = CameraModel.from_camera_info(msgs[INFO_TOPIC]).project(xyz[valid])
    np.testing.assert_allclose(pixels[:, 0], u, atol=1e-3)
    np.testing.assert_allclose(pixels[:, 1], v, atol=1e-3)
    np.testing.assert_array_equal(xyz[valid][:, 2], result.depth[valid])   # z is the depth


def test_edge_filter_drops_flying_pixels_only(msgs, gt):
    filtered = _pipeline().process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC]).depth
    unfiltered = _pipeline(metric={'edge_threshold': 0.0}).process_depth(
        msgs[GT_TOPIC], msgs[INFO_TOPIC]).depth
    dropped = np.isfinite(unfiltered) & ~np.isfinite(filtered)
    assert 0 < dropped.mean() < 0.1
    assert np.isnan(filtered[dropped]).all()


def test_rep117_inf_for_out_of_range_pixels(msgs, gt, humble_factory):
    lo, hi = 1.8, 3.0
    pipeline = _pipeline(metric={'min_range': lo, 'max_range': hi, 'edge_threshold': 0.0})
    depth = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC]).depth
    finite_gt = np.isfinite(gt)
    near, far = finite_gt & (gt < lo), finite_gt & (gt > hi)
    assert near.sum() > 100 and far.sum() > 1000
    assert (depth[near] == -np.inf).all() and (depth[far] == np.inf).all()
    inside = finite_gt & ~near & ~far
    np.testing.assert_array_equal(depth[inside], gt[inside])
    assert np.isnan(depth[~finite_gt]).all()
    # the 32FC1 message keeps ±Inf; the cloud has no point there
    result = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC])
    out = pipeline.outputs(result, _header(humble_factory, msgs[GT_TOPIC]), humble_factory)
    np.testing.assert_array_equal(image_to_array(out['depth/image']), depth)
    cloud = pointcloud2_to_array(out['points'])
    assert np.isnan(cloud['z'][near | far]).all()
    # too_close='nan' marks near pixels NaN instead of -Inf
    nan_close = _pipeline(metric={'min_range': lo, 'max_range': hi, 'edge_threshold': 0.0,
                                  'too_close': 'nan'})
    depth2 = nan_close.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC]).depth
    assert np.isnan(depth2[near]).all() and (depth2[far] == np.inf).all()


def test_16uc1_output_round_trip(msgs, gt, humble_factory):
    pipeline = _pipeline(output_encoding='16UC1', metric={'max_range': 3.0})
    result = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC])
    msg = pipeline.outputs(result, _header(humble_factory, msgs[GT_TOPIC]), humble_factory,
                           ['depth/image'])['depth/image']
    assert msg.encoding == '16UC1' and msg.step == 640 * 2
    millimetres = image_to_array(msg)
    depth = result.depth
    finite = np.isfinite(depth)
    assert (millimetres[~finite] == 0).all()          # NaN and ±Inf -> 0 (invalid)
    assert (depth == np.inf).sum() > 1000             # beyond max_range -> 0 too
    np.testing.assert_array_equal(millimetres[finite],
                                  np.round(depth[finite].astype(np.float64) * 1000))
    back = depth_to_metres(msg)                        # mm -> m, 0 -> NaN
    assert np.array_equal(np.isfinite(back), finite)
    np.testing.assert_allclose(back[finite], depth[finite], atol=0.0005 + 1e-6)


@pytest.mark.parametrize('decimation', [1, 2, 3, 7])
def test_decimation_shapes_and_xyzrgb_colours(msgs, humble_factory, decimation):
    pipeline = _pipeline(point_cloud_fields='xyzrgb', point_decimation=decimation)
    result = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC], msgs[RGB_TOPIC])
    msg = pipeline.outputs(result, _header(humble_factory, msgs[GT_TOPIC]), humble_factory,
                           ['points'])['points']
    rows, cols = -(-480 // decimation), -(-640 // decimation)
    assert (msg.height, msg.width, msg.point_step) == (rows, cols, 16)
    assert msg.row_step == cols * 16 and len(msg.data) == rows * cols * 16
    cloud = pointcloud2_to_array(msg)
    rgb = image_to_array(msgs[RGB_TOPIC])[::decimation, ::decimation]
    packed = np.ascontiguousarray(cloud['rgb']).view(np.uint32)
    np.testing.assert_array_equal((packed >> 16) & 0xFF, rgb[..., 0])
    np.testing.assert_array_equal((packed >> 8) & 0xFF, rgb[..., 1])
    np.testing.assert_array_equal(packed & 0xFF, rgb[..., 2])
    assert (packed >> 24 == 0).all()
    sub = result.depth[::decimation, ::decimation]
    np.testing.assert_array_equal(np.isfinite(cloud['z']), np.isfinite(sub))
    np.testing.assert_array_equal(cloud['z'][np.isfinite(sub)], sub[np.isfinite(sub)])


def test_outputs_are_lazy(msgs, humble_factory, monkeypatch):
    pipeline = _pipeline()
    result = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC])
    header = _header(humble_factory, msgs[GT_TOPIC])
    calls = []

    def spy(name):
        real = getattr(pipeline_module, name)

        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        monkeypatch.setattr(pipeline_module, name, wrapper)

    for name in ('depth_to_cloud', 'colorize_depth', 'make_depth_image', 'make_image',
                 'make_pointcloud2'):
        spy(name)
    out = pipeline.outputs(result, header, humble_factory, ['depth/camera_info'])
    assert list(out) == ['depth/camera_info'] and calls == []
    assert 'cloud_ms' not in result.timings
    out = pipeline.outputs(result, header, humble_factory, ('depth/image',))
    assert list(out) == ['depth/image'] and calls == ['make_depth_image']
    calls.clear()
    out = pipeline.outputs(result, header, humble_factory, ['points'])
    assert list(out) == ['points'] and calls == ['depth_to_cloud', 'make_pointcloud2']
    assert result.timings['cloud_ms'] >= 0
    calls.clear()
    out = pipeline.outputs(result, header, humble_factory, [])
    assert out == {} and calls == []
    out = pipeline.outputs(result, header, humble_factory, OUTPUTS)
    assert set(out) == {'depth/image', 'depth/camera_info', 'points', 'depth/colorized'}
    with pytest.raises(ValueError, match='unknown outputs'):
        pipeline.outputs(result, header, humble_factory, ['depth/points'])


def test_depth_only_pipeline_refuses_process(msgs):
    with pytest.raises(RuntimeError, match='process_depth'):
        _pipeline().process(msgs[RGB_TOPIC], msgs[INFO_TOPIC])
