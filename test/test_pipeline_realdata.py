"""The pipeline end to end on the real TUM RGB-D frame, and the CDR validity of every output.

Models: PyDNet++ scaled by sparse depth, and tiny random-weight Depth Anything models
(relative and metric).
"""

from __future__ import annotations

from depth_node.clouds import pointcloud2_to_array
from depth_node.images import colorize_depth, depth_to_metres, image_to_array
from depth_node.messages import stamp_of
from depth_node.metric import MetricConfig
from depth_node.pipeline import DepthPipeline, OUTPUTS, PipelineConfig
import numpy as np
import pytest
from test_pipeline_support import (
    GT_TOPIC,
    INFO_TOPIC,
    JPEG_TOPIC,
    pydnet_paths,
    RGB_TOPIC,
    tum_messages,
)

TINY_DA = {'backbone_config': {'hidden_size': 32, 'num_hidden_layers': 4,
                               'num_attention_heads': 2, 'out_indices': [1, 2, 3, 4]},
           'reassemble_hidden_size': 32, 'neck_hidden_sizes': [8, 16, 16, 32],
           'fusion_hidden_size': 16, 'head_hidden_size': 8}


def _quiet(_message: str) -> None:
    pass


def _header(factory, msg):
    sec, nanosec = stamp_of(msg)
    return factory.header(sec, nanosec, msg.header.frame_id)


@pytest.fixture(scope='module')
def msgs():
    return tum_messages()


@pytest.fixture(scope='module')
def gt(msgs):
    return depth_to_metres(msgs[GT_TOPIC])


@pytest.fixture(scope='module')
def pydnet():
    from depth_node.runner import open_model
    model_path, card_path = pydnet_paths()
    model = open_model(model_path, backend='onnxruntime', card_path=card_path, log=_quiet)
    assert model.card.output_kind == 'relative_depth'
    yield model
    model.close()


@pytest.fixture(scope='module')
def pydnet_frames(pydnet, msgs):
    """PyDNet++ with scale_source sparse_depth (GT depth) on the raw and the JPEG image."""
    out = {}
    for key, topic in (('raw', RGB_TOPIC), ('jpeg', JPEG_TOPIC)):
        config = PipelineConfig(point_cloud_fields='xyzrgb',
                                metric=MetricConfig(scale_source='sparse_depth'))
        pipeline = DepthPipeline(pydnet, config, log=_quiet)
        result = pipeline.process(msgs[topic], msgs[INFO_TOPIC], msgs[GT_TOPIC])
        out[key] = (pipeline, result)
    return out


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny random-weight Depth Anything V2 exports: relative (70x56) and metric indoor."""
    pytest.importorskip('torch', reason='torch is needed to export the tiny models')
    pytest.importorskip('transformers', reason='transformers builds the tiny models')
    pytest.importorskip('onnxruntime', reason='onnxruntime runs the tiny models')
    from depth_node.models.export import export_model
    from depth_node.runner import open_model
    root = tmp_path_factory.mktemp('tiny_da')
    models = {}
    for key, name in (('relative', 'depth-anything-v2-small'),
                      ('metric', 'depth-anything-v2-metric-indoor-small')):
        path, _ = export_model(name, root / f'{key}.onnx', (70, 56), random_weights=True,
                               config_overrides=TINY_DA, log=_quiet, verify=False)
        models[key] = open_model(path, backend='onnxruntime', log=_quiet)
    yield models
    for model in models.values():
        model.close()


# -- PyDNet++ + sparse depth -----------------------------------------------------------------
@pytest.mark.parametrize('key', ['raw', 'jpeg'])
def test_pydnet_sparse_depth_is_metric_and_accurate(pydnet_frames, gt, key):
    from depth_node.evaluate import compute_metrics
    _, result = pydnet_frames[key]
    assert result.metric and result.relative is None
    report = result.scale
    assert report.metric and report.source == 'sparse_depth' and report.accepted
    assert report.scale > 0 and report.n_points > 10000, report
    depth = result.depth
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    metrics = compute_metrics(depth, gt, min_depth=0.1, max_depth=10.0)
    # the README measures AbsRel 0.132 for this model and frame after an oracle fit
    assert metrics['abs_rel'] < 0.2, metrics
    assert metrics['delta1'] > 0.7, metrics
    assert metrics['n_valid'] > 0.7 * np.isfinite(gt).sum()
    # REP 117: no finite depth outside the configured range
    finite = depth[np.isfinite(depth)]
    assert finite.min() >= 0.1 and finite.max() <= 20.0
    for name in ('decode_ms', 'preprocess_ms', 'inference_ms', 'postprocess_ms', 'metric_ms'):
        assert result.timings[name] >= 0.0


def test_pydnet_raw_and_jpeg_agree(pydnet_frames):
    a = pydnet_frames['raw'][1].depth
    b = pydnet_frames['jpeg'][1].depth
    both = np.isfinite(a) & np.isfinite(b)
    assert both.mean() > 0.8
    rel = np.abs(a[both] - b[both]) / a[both]
    assert np.median(rel) < 0.05


def test_pydnet_outputs_units_stamp_frame_geometry(pydnet_frames, msgs, humble_factory):
    pipeline, result = pydnet_frames['raw']
    image = msgs[RGB_TOPIC]
    info = msgs[INFO_TOPIC]
    out = pipeline.outputs(result, _header(humble_factory, image), humble_factory)
    # a metric frame: never a relative map
    assert set(out) == {'depth/image', 'depth/camera_info', 'points', 'depth/colorized'}
    for msg in out.values():
        assert stamp_of(msg) == stamp_of(image) == (1700000000, 0)
        assert msg.header.frame_id == image.header.frame_id == 'tum_rgb_optical_frame'

    depth_msg = out['depth/image']
    assert depth_msg.encoding == '32FC1' and (depth_msg.width, depth_msg.height) == (640, 480)
    assert depth_msg.step == 640 * 4
    decoded = image_to_array(depth_msg)
    np.testing.assert_array_equal(decoded, result.depth)   # metres, NaN/±Inf kept

    cam = out['depth/camera_info']
    assert (cam.width, cam.height) == (info.width, info.height) == (640, 480)
    assert cam.distortion_model == info.distortion_model == 'plumb_bob'
    for name in ('k', 'r', 'p'):
        np.testing.assert_allclose(np.asarray(getattr(cam, name)),
                                   np.asarray(getattr(info, name)), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(cam.d), np.asarray(info.d))
    # binning 0 and 1 both mean none (the camera model normalises to 1)
    assert (cam.binning_x, cam.binning_y) == (max(info.binning_x, 1), max(info.binning_y, 1))
    assert (cam.roi.width, cam.roi.height) in ((0, 0), (640, 480))

    points = out['points']
    assert (points.height, points.width) == (480, 640) and points.is_dense is False
    assert [f.name for f in points.fields] == ['x', 'y', 'z', 'rgb']
    cloud = pointcloud2_to_array(points)
    valid = np.isfinite(result.depth)
    assert np.array_equal(np.isfinite(cloud['z']), valid)
    assert np.isnan(cloud['x'][~valid]).all() and np.isnan(cloud['z'][~valid]).all()
    np.testing.assert_array_equal(cloud['z'][valid], result.depth[valid])
    packed = np.ascontiguousarray(cloud['rgb']).view(np.uint32)
    rgb = image_to_array(image)
    expected = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | \
        rgb[..., 2]
    np.testing.assert_array_equal(packed, expected)

    colour = out['depth/colorized']
    assert colour.encoding == 'rgb8' and (colour.width, colour.height) == (640, 480)
    assert {'encode_ms', 'cloud_ms'} <= set(result.timings)


# -- tiny Depth Anything -----------------------------------------------------------------------
def test_tiny_relative_model_scale_none_publishes_relative_only(tiny, msgs, humble_factory):
    model = tiny['relative']
    assert model.card.output_kind == 'relative_inverse_depth'
    pipeline = DepthPipeline(model, PipelineConfig(), log=_quiet)   # scale_source none
    image = msgs[RGB_TOPIC]
    result = pipeline.process(image, msgs[INFO_TOPIC], msgs[GT_TOPIC])
    assert not result.metric and result.depth is None
    assert not result.scale.metric and 'scale_source' in result.scale.message
    raw, _, _ = model.predict(image_to_array(image))
    np.testing.assert_array_equal(result.relative, raw)
    out = pipeline.outputs(result, _header(humble_factory, image), humble_factory, OUTPUTS)
    # nothing relative is labelled metres: no depth/image, camera_info or points
    assert set(out) == {'depth/relative', 'depth/colorized'}
    rel = out['depth/relative']
    assert rel.encoding == '32FC1' and (rel.width, rel.height) == (640, 480)
    np.testing.assert_array_equal(image_to_array(rel), raw)
    assert stamp_of(rel) == stamp_of(image) and rel.header.frame_id == image.header.frame_id
    # inverse depth is shown as depth: near (large inverse depth) warm like metric previews
    with np.errstate(divide='ignore'):
        expected = colorize_depth(1.0 / raw)
    np.testing.assert_array_equal(image_to_array(out['depth/colorized']), expected)
    assert pipeline.outputs(result, _header(humble_factory, image), humble_factory,
                            ['depth/image', 'points', 'depth/camera_info']) == {}


def test_tiny_relative_model_fixed_scale_inverse_depth(tiny, msgs):
    model = tiny['relative']
    metric = MetricConfig(scale_source='fixed', fixed_scale=0.05, fixed_shift=0.01,
                          edge_threshold=0.0, min_range=0.0, max_range=1000.0)
    pipeline = DepthPipeline(model, PipelineConfig(metric=metric), log=_quiet)
    result = pipeline.process(msgs[JPEG_TOPIC], msgs[INFO_TOPIC])
    assert result.metric and result.scale.source == 'fixed'
    from depth_node.images import compressed_to_rgb
    raw, _, _ = model.predict(compressed_to_rgb(msgs[JPEG_TOPIC]))
    inverse = 0.05 * raw.astype(np.float64) + 0.01
    assert (inverse > 0).all()   # random weights, ReLU head: positive
    np.testing.assert_allclose(result.depth, 1.0 / inverse, rtol=1e-5)


def test_tiny_metric_model_needs_no_scale_source(tiny, msgs, humble_factory):
    model = tiny['metric']
    assert model.card.output_kind == 'metric_depth' and model.card.max_depth == 20.0
    metric = MetricConfig(edge_threshold=0.0, min_range=0.0, max_range=100.0)
    pipeline = DepthPipeline(model, PipelineConfig(metric=metric), log=_quiet)
    result = pipeline.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC])
    assert result.metric and result.scale.source == 'model' and result.scale.scale == 1.0
    raw, _, _ = model.predict(image_to_array(msgs[RGB_TOPIC]))
    expected = raw.copy()
    expected[expected > 20.0] = np.inf      # card max_depth caps max_range
    expected[expected <= 0] = np.nan
    np.testing.assert_array_equal(result.depth, expected)
    out = pipeline.outputs(result, _header(humble_factory, msgs[RGB_TOPIC]), humble_factory)
    assert {'depth/image', 'depth/camera_info', 'points'} <= set(out)
    assert 'depth/relative' not in out


# -- every output message is valid CDR for Humble and Jazzy -------------------------------------
def _assert_round_trip(factory, msg):
    raw = factory.typestore.serialize_cdr(msg, msg.__msgtype__)
    back = factory.typestore.deserialize_cdr(raw, msg.__msgtype__)
    assert stamp_of(back) == stamp_of(msg) and back.header.frame_id == msg.header.frame_id
    for name in ('height', 'width', 'encoding', 'step', 'point_step', 'row_step', 'is_dense',
                 'is_bigendian', 'distortion_model', 'binning_x', 'binning_y'):
        if hasattr(msg, name):
            assert getattr(back, name) == getattr(msg, name), name
    for name in ('data', 'k', 'r', 'p', 'd'):
        if hasattr(msg, name):
            a = np.asarray(getattr(msg, name))
            b = np.asarray(getattr(back, name))
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    if hasattr(msg, 'fields'):
        assert [(f.name, f.offset, f.datatype, f.count) for f in back.fields] == \
            [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    return back


def test_outputs_cdr_round_trip(pydnet_frames, tiny, msgs, factory):
    pipeline, result = pydnet_frames['raw']
    header = _header(factory, msgs[RGB_TOPIC])
    built = pipeline.outputs(result, header, factory)
    for encoding, fields in (('16UC1', 'xyz'), ('32FC1', 'xyzrgb')):
        other = DepthPipeline(pipeline.model, PipelineConfig(
            output_encoding=encoding, point_cloud_fields=fields, point_decimation=3))
        more = other.outputs(result, header, factory, ['depth/image', 'points'])
        built[f'depth/image {encoding}'] = more['depth/image']
        built[f'points {fields}'] = more['points']
    relative = DepthPipeline(tiny['relative'], PipelineConfig(), log=_quiet)
    rel = relative.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC])
    built.update({f'relative {k}': v for k, v in relative.outputs(rel, header, factory).items()})
    assert len(built) == 10
    for key, msg in built.items():
        back = _assert_round_trip(factory, msg)
        if key == 'depth/image 16UC1':
            assert back.encoding == '16UC1' and back.step == 640 * 2
        if key == 'points xyz':
            assert (back.height, back.width, back.point_step) == (160, 214, 12)
