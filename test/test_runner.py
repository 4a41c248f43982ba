"""runner: open_model and DepthModel on tiny random Depth Anything and DPT networks."""

from __future__ import annotations

from depth_node.backends.torch import TorchBackend
from depth_node.errors import ImageFormatError, ModelError
from depth_node.runner import DepthModel, open_model
import numpy as np
import pytest

QUIET = {'log': lambda msg: None}


def test_depth_model_predict_and_open_model(tiny):
    module, path, card = tiny
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    messages = []
    model = open_model(path, backend='auto', log=messages.append)
    assert any('auto -> onnxruntime' in m for m in messages)
    assert any('self-test passed' in m for m in messages)
    raw, transform, timings = model.predict(rgb)
    assert raw.shape == (48, 80) and raw.dtype == np.float32
    assert set(timings) == {'preprocess_ms', 'inference_ms', 'postprocess_ms'}
    assert all(v >= 0 for v in timings.values())
    assert transform.image_width == 80 and transform.network_width == card.network_image_width
    # same answer from the torch backend through DepthModel
    torch_model = DepthModel(TorchBackend(module, card, device='cpu', **QUIET), card)
    raw_t, _, _ = torch_model.predict(rgb)
    assert np.array_equal(np.isnan(raw), np.isnan(raw_t))
    finite = np.isfinite(raw)
    assert finite.mean() > 0.5
    assert np.allclose(raw[finite], raw_t[finite],
                       atol=1e-4 * np.abs(raw_t[finite]).max() + 1e-6)
    with pytest.raises(ImageFormatError):
        model.predict(rgb[..., :2])
    model.close()


def test_overrides_change_card_and_bad_names_are_clear(tiny):
    _, path, card = tiny
    model = open_model(path, {'max_depth': 7.5}, 'onnxruntime', self_test=False, **QUIET)
    assert model.card.max_depth == 7.5
    with pytest.raises(ModelError, match='no output'):
        open_model(path, {'output_name': 'depth'}, 'onnxruntime', self_test=False, **QUIET)
    with pytest.raises(ModelError, match='network_image_width'):
        open_model(path, {'network_image_width': 140}, 'onnxruntime', self_test=False, **QUIET)


def test_cardless_onnx_with_overrides(tiny, tmp_path):
    _, path, card = tiny
    bare = tmp_path / 'bare.onnx'
    bare.write_bytes(path.read_bytes())          # no card beside this copy
    model = open_model(bare, {'output_kind': 'relative_inverse_depth',
                              'image_mean': ','.join(map(str, card.image_mean)),
                              'image_stddev': list(card.image_stddev),
                              'resize': card.resize}, 'onnxruntime', **QUIET)
    assert model.card.image_mean == card.image_mean
    assert model.card.input_name == 'pixel_values'
    assert model.card.network_size == card.network_size
    raw, _, _ = model.predict(np.zeros((30, 40, 3), np.uint8))
    assert raw.shape == (30, 40)


def test_open_model_missing_file_is_clear(tmp_path):
    with pytest.raises(ModelError, match='does not exist'):
        open_model(tmp_path / 'missing.onnx')
