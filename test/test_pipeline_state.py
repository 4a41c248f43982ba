"""Pipeline bad input, image/camera_info size reconciliation, per-camera state, live settings.

All on the real TUM RGB-D frame, with a fake relative model scaled by the GT depth.
"""

from __future__ import annotations

import copy

from depth_node import errors
from depth_node.images import depth_to_metres, make_depth_image
from depth_node.messages import stamp_of
from depth_node.metric import MetricConfig
from depth_node.pipeline import DepthPipeline, PipelineConfig
import numpy as np
import pytest
from test_pipeline_support import (
    fake_relative_model,
    GT_TOPIC,
    INFO_TOPIC,
    JPEG_TOPIC,
    RGB_TOPIC,
    scaled_camera_info,
    tum_messages,
    with_camera_info,
)


@pytest.fixture(scope='module')
def msgs():
    return tum_messages()


def _config(**metric):
    metric.setdefault('scale_source', 'sparse_depth')
    return PipelineConfig(point_cloud_fields='xyzrgb', metric=MetricConfig(**metric))


def _sparse(msgs, factor, humble_factory):
    """Return the GT depth message scaled by ``factor`` (so successive fits differ)."""
    depth = depth_to_metres(msgs[GT_TOPIC]) * np.float32(factor)
    return make_depth_image(humble_factory, msgs[GT_TOPIC].header, depth)


def _frame_bytes(pipeline, result, factory, msg):
    sec, nanosec = stamp_of(msg)
    out = pipeline.outputs(result, factory.header(sec, nanosec, msg.header.frame_id), factory)
    return {key: bytes(factory.typestore.serialize_cdr(m, m.__msgtype__))
            for key, m in out.items()}


def _report(report):
    """Return a ScaleReport as a comparable tuple (NaN -> None)."""
    return tuple(None if isinstance(v, float) and np.isnan(v) else v
                 for v in vars(report).values())


def _same(a, b, pipeline_a, pipeline_b, factory, msg):
    """Two frame results are bit-identical (arrays, scale report, every message payload)."""
    assert a.metric == b.metric
    for name in ('depth', 'relative'):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.tobytes() == y.tobytes(), name
    assert _report(a.scale) == _report(b.scale)
    assert _frame_bytes(pipeline_a, a, factory, msg) == _frame_bytes(pipeline_b, b, factory, msg)


# -- bad input ----------------------------------------------------------------------------------
def _bad_frames(msgs, humble_factory):
    """(name, expected error class, image, camera_info, sparse) of each bad-input class."""
    image, jpeg, info = msgs[RGB_TOPIC], msgs[JPEG_TOPIC], msgs[INFO_TOPIC]
    sparse = msgs[GT_TOPIC]
    truncated = copy.deepcopy(image)
    truncated.data = truncated.data[:1000]
    weird = copy.deepcopy(image)
    weird.encoding = 'rgb10_packed'
    depth_as_colour = msgs[GT_TOPIC]
    garbage = copy.deepcopy(jpeg)
    garbage.data = np.frombuffer(b'\xff\xd8 this is not a jpeg' * 4, np.uint8).copy()
    nan_k = with_camera_info(info, k=[525, 0, 319.5, 0, np.nan, 239.5, 0, 0, 1])
    zero_k = with_camera_info(info, k=np.zeros(9), p=np.zeros(12))
    wide = with_camera_info(info, width=640, height=360)
    other_aspect = make_depth_image(humble_factory, sparse.header,
                                    np.full((100, 320), 2.0, np.float32))
    colour_sparse = image
    return [
        ('bad_image', errors.ImageFormatError, truncated, info, sparse),
        ('unsupported_encoding', errors.UnsupportedEncodingError, weird, info, sparse),
        ('depth_as_colour', errors.UnsupportedEncodingError, depth_as_colour, info, sparse),
        ('undecodable_compressed', errors.CompressedImageError, garbage, info, sparse),
        ('bad_camera_info', errors.CameraInfoError, image, nan_k, sparse),
        ('uncalibrated_camera', errors.UncalibratedCameraError, image, zero_k, sparse),
        ('size_mismatch', errors.SizeMismatchError, image, wide, sparse),
        ('no_camera_info', errors.MissingCameraInfoError, image, None, sparse),
        ('sparse_other_aspect', errors.SizeMismatchError, image, info, other_aspect),
        ('sparse_not_depth', errors.UnsupportedEncodingError, image, info, colour_sparse),
    ]


def test_each_bad_input_raises_its_class_and_leaves_state_intact(msgs, humble_factory):
    good2_sparse = _sparse(msgs, 1.1, humble_factory)
    frames = (msgs[RGB_TOPIC], msgs[INFO_TOPIC])
    model = fake_relative_model()
    clean = DepthPipeline(model, _config(), log=lambda m: None)
    dirty = DepthPipeline(model, _config(), log=lambda m: None)
    clean.process(*frames, msgs[GT_TOPIC])
    dirty.process(*frames, msgs[GT_TOPIC])
    state = dirty.states['tum_rgb_optical_frame']
    smoothed = state.converter.smoother.scale
    calls = model.calls
    seen = set()
    for name, cls, image, info, sparse in _bad_frames(msgs, humble_factory):
        with pytest.raises(cls) as caught:
            dirty.process(image, info, sparse)
        assert isinstance(caught.value, errors.InputError), name
        assert type(caught.value).kind == caught.value.kind
        if cls is errors.CameraInfoError:   # not its subclass UncalibratedCameraError
            assert type(caught.value) is errors.CameraInfoError
        assert str(caught.value) and caught.value.hint, name   # what is wrong + what to do
        seen.add(caught.value.kind)
        # nothing reached the model or the smoother; the good state was not replaced
        assert model.calls == calls, name
        assert dirty.states == {'tum_rgb_optical_frame': state}, name
        assert state.converter.smoother.scale == smoothed, name
    assert {'bad_image', 'unsupported_encoding', 'undecodable_compressed', 'bad_camera_info',
            'uncalibrated_camera', 'size_mismatch', 'no_camera_info'} <= seen
    a = clean.process(*frames, good2_sparse)
    b = dirty.process(*frames, good2_sparse)
    assert b.metric and b.scale.accepted and b.scale.scale != smoothed
    _same(a, b, clean, dirty, humble_factory, msgs[RGB_TOPIC])


def test_bad_depth_input_raises_input_errors(msgs, humble_factory):
    pipeline = DepthPipeline(None, PipelineConfig(), log=lambda m: None)
    good = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC])
    truncated = copy.deepcopy(msgs[GT_TOPIC])
    truncated.data = truncated.data[:-4]
    with pytest.raises(errors.ImageFormatError):
        pipeline.process_depth(truncated, msgs[INFO_TOPIC])
    with pytest.raises(errors.UnsupportedEncodingError):
        pipeline.process_depth(msgs[RGB_TOPIC], msgs[INFO_TOPIC])   # colour is not depth
    with pytest.raises(errors.UncalibratedCameraError):
        pipeline.process_depth(msgs[GT_TOPIC], with_camera_info(msgs[INFO_TOPIC], k=np.zeros(9)))
    small = make_depth_image(humble_factory, msgs[GT_TOPIC].header,
                             np.full((240, 320), 2.0, np.float32))
    with pytest.raises(errors.SizeMismatchError):   # colour image of another size
        pipeline.process_depth(small, msgs[INFO_TOPIC], msgs[RGB_TOPIC])
    again = pipeline.process_depth(msgs[GT_TOPIC], msgs[INFO_TOPIC])
    assert again.depth.tobytes() == good.depth.tobytes()


# -- image / camera_info sizes ------------------------------------------------------------------
def test_same_aspect_camera_info_is_scaled_with_one_log_message(msgs, humble_factory):
    lines = []
    big = scaled_camera_info(msgs[INFO_TOPIC], 2.0)
    assert (big.width, big.height) == (1280, 960) and big.k[0] == 1050.0
    pipeline = DepthPipeline(fake_relative_model(), _config(), log=lines.append)
    reference = DepthPipeline(fake_relative_model(), _config(), log=lines.append)
    for _ in range(3):
        result = pipeline.process(msgs[RGB_TOPIC], big, msgs[GT_TOPIC])   # 2nd of this state
    reference = DepthPipeline(fake_relative_model(), _config(), log=lines.append)
    for _ in range(2):
        expected = reference.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC], msgs[GT_TOPIC])
        expected = reference.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC], msgs[GT_TOPIC])
    assert len(lines) == 1, lines
    assert '1280x960' in lines[0] and '640x480' in lines[0] and 'scaling' in lines[0]
    # the camera switching back and forth: each notice still comes once
    for _ in range(3):
        pipeline.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC], msgs[GT_TOPIC])
        pipeline.process(msgs[RGB_TOPIC], big, msgs[GT_TOPIC])
    assert sum('scaling' in line for line in lines) == 1, lines
    assert sum('changed' in line for line in lines) == 2, lines
    result = pipeline.process(msgs[RGB_TOPIC], big, msgs[GT_TOPIC])   # 2nd of this state
    reference = DepthPipeline(fake_relative_model(), _config(), log=lines.append)
    for _ in range(2):
        expected = reference.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC], msgs[GT_TOPIC])
    camera = result.camera
    assert (camera.image_width, camera.image_height) == (640, 480)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == pytest.approx(
        (525.0, 525.0, 319.5, 239.5), abs=1e-9)
    sec, nanosec = stamp_of(msgs[RGB_TOPIC])
    info = pipeline.outputs(result, humble_factory.header(sec, nanosec, 'f'), humble_factory,
                            ['depth/camera_info'])['depth/camera_info']
    assert (info.width, info.height) == (640, 480)
    np.testing.assert_allclose(info.k, np.asarray(msgs[INFO_TOPIC].k), atol=1e-9)
    np.testing.assert_allclose(info.p, np.asarray(msgs[INFO_TOPIC].p), atol=1e-9)
    points = pipeline.outputs(result, humble_factory.header(sec, nanosec, 'f'), humble_factory,
                              ['points'])['points']
    ref_points = reference.outputs(expected, humble_factory.header(sec, nanosec, 'f'),
                                   humble_factory, ['points'])['points']
    np.testing.assert_allclose(np.asarray(points.data).view(np.float32),
                               np.asarray(ref_points.data).view(np.float32), rtol=1e-6)


def test_different_aspect_raises_size_mismatch(msgs):
    pipeline = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    wide = scaled_camera_info(msgs[INFO_TOPIC], 2.0)
    wide.height = 720
    with pytest.raises(errors.SizeMismatchError, match='aspect') as caught:
        pipeline.process(msgs[RGB_TOPIC], wide, msgs[GT_TOPIC])
    assert '640x480' in str(caught.value) and '1280x720' in str(caught.value)
    assert pipeline.states == {}


def test_uncalibrated_camera_info(msgs):
    pipeline = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    zero = with_camera_info(msgs[INFO_TOPIC], k=np.zeros(9))
    with pytest.raises(errors.UncalibratedCameraError, match='not calibrated'):
        pipeline.process(msgs[RGB_TOPIC], zero, msgs[GT_TOPIC])
    with pytest.raises(errors.UncalibratedCameraError):
        pipeline.process_depth(msgs[GT_TOPIC], zero)


# -- per-camera state ---------------------------------------------------------------------------
def test_alternating_cameras_keep_their_own_state(msgs, humble_factory):
    info_a = msgs[INFO_TOPIC]
    info_b = with_camera_info(info_a, frame_id='cam_b', k=[600, 0, 320, 0, 600, 240, 0, 0, 1],
                              p=[600, 0, 320, 0, 0, 600, 240, 0, 0, 0, 1, 0])
    sparse_a = [_sparse(msgs, f, humble_factory) for f in (1.0, 1.1, 1.2)]
    sparse_b = [_sparse(msgs, f, humble_factory) for f in (2.0, 1.8, 2.1)]
    image = msgs[RGB_TOPIC]
    mixed = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    only_a = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    only_b = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    for sa, sb in zip(sparse_a, sparse_b):
        ra = mixed.process(image, info_a, sa)
        rb = mixed.process(image, info_b, sb)
        _same(ra, only_a.process(image, info_a, sa), mixed, only_a, humble_factory, image)
        _same(rb, only_b.process(image, info_b, sb), mixed, only_b, humble_factory, image)
        assert rb.camera.fx == 600.0 and ra.camera.fx == 525.0
    states = mixed.states
    assert set(states) == {'tum_rgb_optical_frame', 'cam_b'}
    a, b = states.values()
    assert a.converter is not b.converter and a.converter.smoother is not b.converter.smoother
    # the smoothers hold different scales (B's sparse depth is about twice A's)
    assert b.converter.smoother.scale > 1.5 * a.converter.smoother.scale


def test_changed_camera_info_replaces_the_state(msgs, humble_factory):
    lines = []
    image = msgs[RGB_TOPIC]
    info = msgs[INFO_TOPIC]
    changed = with_camera_info(info, k=[530, 0, 320, 0, 530, 240, 0, 0, 1])
    pipeline = DepthPipeline(fake_relative_model(), _config(), log=lines.append)
    for factor in (1.0, 1.1):
        pipeline.process(image, info, _sparse(msgs, factor, humble_factory))
    old = pipeline.states['tum_rgb_optical_frame']
    assert old.converter.smoother.scale is not None
    sparse = _sparse(msgs, 1.5, humble_factory)
    result = pipeline.process(image, changed, sparse)
    fresh = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    _same(result, fresh.process(image, changed, sparse), pipeline, fresh, humble_factory, image)
    new = pipeline.states['tum_rgb_optical_frame']
    assert len(pipeline.states) == 1 and new is not old
    assert result.camera.fx == 530.0 and result.scale.message.endswith('initialised')
    pipeline.process(image, changed, sparse)
    assert pipeline.states['tum_rgb_optical_frame'] is new
    assert len(lines) == 1 and 'changed' in lines[0] and 'tum_rgb_optical_frame' in lines[0]
    # the stamp alone does not make a new camera_info
    restamped = copy.deepcopy(changed)
    restamped.header.stamp.sec += 5
    pipeline.process(image, restamped, sparse)
    assert pipeline.states['tum_rgb_optical_frame'] is new and len(lines) == 1


def test_state_limit_drops_the_oldest_camera(msgs):
    pipeline = DepthPipeline(None, PipelineConfig(), log=lambda m: None, max_cameras=2)
    for name in ('a', 'b', 'c'):
        pipeline.process_depth(msgs[GT_TOPIC], with_camera_info(msgs[INFO_TOPIC], frame_id=name))
    assert list(pipeline.states) == ['b', 'c']
    pipeline.reset()
    assert pipeline.states == {}


# -- settings -----------------------------------------------------------------------------------
def test_config_defaults_match_the_parameter_table():
    from depth_node import parameters
    assert PipelineConfig.from_values(parameters.defaults()) == PipelineConfig()


@pytest.mark.parametrize('change', [
    {'output_encoding': '8UC1'}, {'point_cloud_fields': 'xyzi'}, {'point_decimation': 0},
    {'point_decimation': 2.0}, {'colorize_min_depth': 5.0, 'colorize_max_depth': 1.0},
    {'colorize_min_depth': -1.0}, {'metric': MetricConfig(scale_source='magic')}])
def test_bad_config_is_refused(change):
    config = PipelineConfig(**change)
    with pytest.raises(errors.DepthNodeError) as caught:
        DepthPipeline(None, config)
    assert not isinstance(caught.value, errors.InputError)
    pipeline = DepthPipeline(None, PipelineConfig())
    with pytest.raises(errors.DepthNodeError):
        pipeline.config = config
    assert pipeline.config == PipelineConfig()


def test_new_metric_settings_apply_without_reset(msgs, humble_factory):
    image, info = msgs[RGB_TOPIC], msgs[INFO_TOPIC]
    sparse = [_sparse(msgs, f, humble_factory) for f in (1.0, 1.1, 1.2)]
    pipeline = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    same = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    for pipe in (pipeline, same):
        pipe.process(image, info, sparse[0])
    # equal metric settings in a new config object: the smoother carries on
    pipeline.config = PipelineConfig(output_encoding='16UC1', point_cloud_fields='xyzrgb',
                                     metric=MetricConfig(scale_source='sparse_depth'))
    a = pipeline.process(image, info, sparse[1])
    b = same.process(image, info, sparse[1])
    assert a.depth.tobytes() == b.depth.tobytes() and _report(a.scale) == _report(b.scale)
    # other metric settings: the converter is rebuilt with them (smoother restarts)
    pipeline.config = _config(max_range=2.5)
    c = pipeline.process(image, info, sparse[2])
    fresh = DepthPipeline(fake_relative_model(), _config(max_range=2.5), log=lambda m: None)
    d = fresh.process(image, info, sparse[2])
    assert c.depth.tobytes() == d.depth.tobytes()
    assert (c.depth == np.inf).sum() > 1000 and np.nanmax(c.depth[np.isfinite(c.depth)]) <= 2.5


def test_sparse_depth_ignored_unless_needed(msgs, humble_factory):
    # scale_source fixed: the sparse message is not even decoded (a bad one is no error)
    pipeline = DepthPipeline(fake_relative_model(), _config(scale_source='fixed'),
                             log=lambda m: None)
    result = pipeline.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC], msgs[RGB_TOPIC])
    assert result.metric and result.scale.source == 'fixed'
    # sparse depth at half resolution (same aspect) is resized to the image
    half = make_depth_image(humble_factory, msgs[GT_TOPIC].header,
                            depth_to_metres(msgs[GT_TOPIC])[::2, ::2])
    sparse = DepthPipeline(fake_relative_model(), _config(), log=lambda m: None)
    result = sparse.process(msgs[RGB_TOPIC], msgs[INFO_TOPIC], half)
    assert result.metric and result.scale.n_points > 10000
