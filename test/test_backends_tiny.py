"""Tiny random Depth Anything and DPT networks built with transformers, exported to ONNX.

Covers ONNX Runtime (CPU) against PyTorch, the golden self-test, DepthModel, open_model and
the model benchmark.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed (depth_node[torch])')
transformers = pytest.importorskip('transformers', reason='transformers is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')

from depth_node.backends import load_backend  # noqa: E402, I100
from depth_node.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from depth_node.backends.torch import TorchBackend  # noqa: E402
from depth_node.errors import ImageFormatError, ModelError, SelfTestError  # noqa: E402
from depth_node.models.card import card_path_for, ModelCard  # noqa: E402
from depth_node.models.golden import make_reference, reference_input, run_self_test  # noqa: E402
from depth_node.runner import DepthModel, open_model  # noqa: E402

QUIET = {'log': lambda msg: None}


class DepthOnly(torch.nn.Module):
    """(1, 3, H, W) normalised input -> (1, H', W') predicted depth."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).predicted_depth


def tiny_depth_anything(seed=0):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, patch_size=14, image_size=56,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                            initializer_range=0.1)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14,
                                 reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8,
                                 initializer_range=0.1)
    return DepthOnly(DepthAnythingForDepthEstimation(config).eval()).eval()


def tiny_dpt(seed=1):
    from transformers import DPTConfig, DPTForDepthEstimation
    torch.manual_seed(seed)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                       intermediate_size=64, image_size=56, patch_size=14,
                       backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16, use_auxiliary_head=False, initializer_range=0.2)
    return DepthOnly(DPTForDepthEstimation(config).eval()).eval()


def export(module, path, width, height):
    x = torch.zeros(1, 3, height, width)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17,
                          input_names=['pixel_values'], output_names=['predicted_depth'])
    return path


MODELS = {
    # name: (builder, network width, height, card fields)
    'depth_anything': (tiny_depth_anything, 70, 56,
                       {'resize': 'keep_aspect_pad', 'interpolation': 'cubic',
                        'output_kind': 'relative_inverse_depth'}),
    'dpt': (tiny_dpt, 56, 56, {'resize': 'keep_aspect_crop', 'interpolation': 'linear',
                               'output_kind': 'relative_inverse_depth',
                               'image_mean': (0.5, 0.5, 0.5), 'image_stddev': (0.5, 0.5, 0.5)}),
}


@pytest.fixture(scope='module', params=sorted(MODELS))
def tiny(request, tmp_path_factory):
    """Return (module, onnx path, card with reference) for each tiny architecture."""
    builder, w, h, fields = MODELS[request.param]
    module = builder()
    folder = tmp_path_factory.mktemp(request.param)
    path = export(module, folder / f'{request.param}.onnx', w, h)
    card = ModelCard(name=f'tiny-{request.param}', source='test', license='test',
                     input_name='pixel_values', output_name='predicted_depth',
                     network_image_width=w, network_image_height=h,
                     **{'image_mean': (0.485, 0.456, 0.406),
                        'image_stddev': (0.229, 0.224, 0.225), **fields})

    def run_torch(tensor):
        with torch.inference_mode():
            return module(torch.from_numpy(tensor))
    card.reference = make_reference(run_torch, card)
    card.validate()
    card.save(card_path_for(path))
    return module, path, card


def test_reference_is_discriminating(tiny):
    _, _, card = tiny
    grid = np.asarray(card.reference['grid'])
    assert grid.shape == (16, 16) and np.isfinite(grid).all()
    assert card.reference['std'] > 0 and grid.std() > 0
    assert card.reference['input_shape'] == [1, 3, card.network_image_height,
                                             card.network_image_width]


def test_onnxruntime_cpu_agrees_with_torch(tiny):
    module, path, card = tiny
    backend = OnnxRuntimeBackend(path, card, **QUIET)
    assert backend.device == 'cpu' and backend.precision == 'fp32'
    assert backend.info()['provider'] == 'CPUExecutionProvider'
    torch_backend = TorchBackend(module, card, device='cpu', **QUIET)
    for seed, kind in ((0, 'smooth'), (5, 'uniform')):
        x = reference_input(card, {'kind': kind, 'seed': seed})
        a = backend.infer(x).copy()
        b = torch_backend.infer(x)
        assert a.shape == b.shape and a.ndim == 2
        scale = np.abs(b).max()
        assert scale > 0
        assert np.abs(a - b).max() <= 1e-4 * scale + 1e-6
    backend.close()


def test_self_test_passes_on_both_backends(tiny):
    module, path, card = tiny
    for backend in (OnnxRuntimeBackend(path, card, **QUIET),
                    TorchBackend(module, card, device='cpu', **QUIET)):
        result = run_self_test(backend, card, log=None)
        assert result['passed'] and result['worst_tolerance_ratio'] <= 1.0


def test_self_test_catches_perturbed_reference(tiny):
    _, path, card = tiny
    ref = dict(card.reference)
    grid = np.asarray(ref['grid'])
    # the smallest change that matters: one cell off by 5 % of the output std
    i = np.unravel_index(np.argmax(np.abs(grid)), grid.shape)
    grid[i] += 0.05 * ref['std']
    ref['grid'] = grid.tolist()
    bad = card.replace(reference=ref)
    with pytest.raises(SelfTestError) as err:
        load_backend(path, bad, 'onnxruntime', **QUIET)
    msg = str(err.value)
    assert card.name in msg and 'onnxruntime' in msg and 'max |error|' in msg
    # a wrong model behind the card (same architecture, other weights) is caught as well
    builder = MODELS[card.name.removeprefix('tiny-')][0]
    wrong = TorchBackend(builder(seed=7), card, device='cpu', **QUIET)
    with pytest.raises(SelfTestError):
        run_self_test(wrong, card, log=None)


def test_self_test_tolerance_scales_with_precision(tiny):
    _, path, card = tiny
    ref = dict(card.reference)
    grid = np.asarray(ref['grid'])
    grid += 3 * ref['atol']                      # 3x the fp32 tolerance everywhere
    ref['grid'] = grid.tolist()
    ref['mean'] = ref['mean'] + 3 * ref['atol']
    backend = OnnxRuntimeBackend(path, card, **QUIET)
    bad = card.replace(reference=ref)
    with pytest.raises(SelfTestError, match='fp32'):
        run_self_test(backend, bad, log=None)
    backend.precision = 'fp16'                   # fp16 results are allowed 40x more error
    assert run_self_test(backend, bad, log=None)['passed']


def test_self_test_skips_without_reference_or_for_other_size(tiny):
    _, path, card = tiny
    backend = OnnxRuntimeBackend(path, card, **QUIET)
    messages = []
    assert 'skipped' in run_self_test(backend, card.replace(reference=None), log=messages.append)
    assert 'no reference' in messages[0]


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


def test_torchscript_file_runs_with_torch_backend(tiny, tmp_path):
    module, _, card = tiny
    x = torch.zeros(1, 3, card.network_image_height, card.network_image_width)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        scripted = torch.jit.trace(module, x)
    path = tmp_path / 'tiny.ts'
    scripted.save(str(path))
    card.save(card_path_for(path))
    messages = []
    model = open_model(path, log=messages.append)
    assert model.backend.name == 'torch'
    assert any('auto -> torch' in m for m in messages)
    assert any('self-test passed' in m for m in messages)


def test_bench_model_json(tiny, capsys):
    import argparse

    from depth_node.tools import bench_model as bench
    _, path, card = tiny
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(['--model', str(path), '--backend', 'onnxruntime', '--resolution',
                              '64x48', '--repeat', '5', '--warmup', '1', '--json',
                              '--max-depth', '10'])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ('preprocess_ms', 'inference_ms', 'postprocess_ms', 'total_ms', 'overhead_ms'):
        assert out[key] >= 0
    assert out['total_ms'] >= out['inference_ms']
    assert out['overhead_ms'] == pytest.approx(out['total_ms'] - out['inference_ms'], abs=0.5)
    assert out['backend'] == 'onnxruntime' and out['resolution'] == '64x48'
    with pytest.raises(SystemExit):
        parser.parse_args(['--model', 'x', '--resolution', '64by48'])


def test_torch_backend_takes_zoo_models(tiny, monkeypatch):
    """A zoo name goes to zoo.load_torch_model; its card comes back and overrides apply to it.

    zoo.load_torch_model is stubbed with the tiny network here (the real zoo is tested by the
    export tests).
    """
    from depth_node.models import zoo
    module, _, card = tiny
    calls = []

    def fake_load(model, random_weights=False, input_size=None):
        calls.append((model, random_weights, input_size))
        return module, card.replace(reference=None)

    monkeypatch.setattr(zoo, 'load_torch_model', fake_load)
    messages = []
    model = open_model('tiny-zoo-name', {'max_depth': 3}, 'auto', random_weights=True,
                       log=messages.append)
    assert calls == [('tiny-zoo-name', True, None)]
    assert model.backend.name == 'torch' and model.card.max_depth == 3.0
    assert any('auto -> torch' in m for m in messages)
    assert any('self-test skipped' in m for m in messages)
    raw, _, _ = model.predict(np.zeros((20, 30, 3), np.uint8))
    assert raw.shape == (20, 30)


def test_self_test_rejects_nan_and_wrong_shape(tiny):
    _, _, card = tiny
    h, w = card.reference['output_shape']

    class Constant(torch.nn.Module):

        def __init__(self, value, shape):
            super().__init__()
            self.value, self.shape = value, shape

        def forward(self, x):
            return torch.full((1, *self.shape), self.value)

    nan = TorchBackend(Constant(float('nan'), (h, w)), card, device='cpu', **QUIET)
    with pytest.raises(SelfTestError, match='NaN'):
        run_self_test(nan, card, log=None)
    small = TorchBackend(Constant(1.0, (h // 2, w // 2)), card, device='cpu', **QUIET)
    with pytest.raises(SelfTestError, match='output shape'):
        run_self_test(small, card, log=None)
