"""Export of tiny random-weight Depth Anything / DPT models to ONNX, their cards and references."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed')
pytest.importorskip('transformers', reason='transformers is not installed')
onnx = pytest.importorskip('onnx', reason='onnx is not installed')
ort = pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')

from depth_node.errors import ModelError, SelfTestError  # noqa: E402, I100
from depth_node.models import zoo  # noqa: E402
from depth_node.models.card import card_path_for, ModelCard  # noqa: E402
from depth_node.models.export import (  # noqa: E402
    check_onnx,
    compare_with_onnxruntime,
    export_model,
    fixed_input,
)

REPO = Path(__file__).resolve().parents[1]

# DINOv2-like backbone: hidden 32, 4 layers (Depth Anything's neck takes 4 distinct layers)
TINY_DA = {'backbone_config': {'hidden_size': 32, 'num_hidden_layers': 4,
                               'num_attention_heads': 2, 'out_indices': [1, 2, 3, 4]},
           'reassemble_hidden_size': 32, 'neck_hidden_sizes': [8, 16, 16, 32],
           'fusion_hidden_size': 16, 'head_hidden_size': 8}
TINY_DPT = {'hidden_size': 32, 'intermediate_size': 64, 'num_hidden_layers': 4,
            'num_attention_heads': 2, 'backbone_out_indices': [0, 1, 2, 3],
            'neck_hidden_sizes': [8, 16, 16, 32], 'fusion_hidden_size': 16}
# DPT-Hybrid: one bottleneck block per BiT stage (GroupNorm needs >= 32 channels per block)
TINY_HYBRID = {'backbone_config': {'depths': [1, 1, 1], 'hidden_sizes': [128, 256, 512, 1024],
                                   'embedding_size': 32},
               'backbone_featmap_shape': [1, 512, 4, 4], 'hidden_size': 32,
               'intermediate_size': 64, 'num_hidden_layers': 4, 'num_attention_heads': 2,
               'backbone_out_indices': [0, 1, 2, 3], 'neck_hidden_sizes': [128, 256, 32, 32],
               'fusion_hidden_size': 16}
TINY_ZOE = {'backbone_config': {'image_size': 64, 'num_hidden_layers': 4, 'hidden_size': 32,
                                'intermediate_size': 64, 'num_attention_heads': 2,
                                'out_features': ['stage1', 'stage2', 'stage3', 'stage4']},
            'neck_hidden_sizes': [8, 16, 32, 32], 'fusion_hidden_size': 16,
            'bottleneck_features': 16, 'num_relative_features': 8, 'bin_embedding_dim': 16}


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Tiny exports: relative DA V2, metric DA V2 indoor, DPT, DPT-Hybrid, ZoeDepth NYU.

    Network sizes: 70x56, 56x70, DPT's default, 64x64 and 96x64.
    """
    root = tmp_path_factory.mktemp('export')
    out = {}
    lines = []
    for key, name, size, overrides in (
            ('da', 'depth-anything-v2-small', '70x56', TINY_DA),
            ('metric', 'depth-anything-v2-metric-indoor-small', (56, 70), TINY_DA),
            ('dpt', 'dpt-large', '64x64', TINY_DPT),
            ('hybrid', 'dpt-hybrid-midas', '64x64', TINY_HYBRID),
            ('zoe', 'zoedepth-nyu', '96x64', TINY_ZOE)):
        path, card = export_model(name, root / f'{key}.onnx', size, random_weights=True,
                                  log=lines.append, config_overrides=overrides)
        module, _ = zoo.load_torch_model(name, True, size, config_overrides=overrides)
        out[key] = (path, card, module)
    out['log'] = lines
    return out


@pytest.mark.parametrize('key,shape', [('da', (1, 3, 56, 70)), ('metric', (1, 3, 70, 56)),
                                       ('dpt', (1, 3, 64, 64)), ('hybrid', (1, 3, 64, 64)),
                                       ('zoe', (1, 3, 64, 96))])
def test_onnx_is_static_opset17(exported, key, shape):
    path, card, _ = exported[key]
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    opset = max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))
    assert opset >= 17
    inputs = [i for i in model.graph.input
              if i.name not in {t.name for t in model.graph.initializer}]
    assert len(inputs) == 1 and inputs[0].name == card.input_name
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    assert tuple(dims) == shape
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [1, shape[2], shape[3]]
    assert not any(d.dim_param for o in model.graph.output for d in o.type.tensor_type.shape.dim)
    # LayerNormalization stays one op at opset 17 (TensorRT maps it to its normalisation layer)
    assert 'LayerNormalization' in {n.op_type for n in model.graph.node}


@pytest.mark.parametrize('key', ['da', 'metric', 'dpt', 'hybrid', 'zoe'])
def test_onnxruntime_matches_torch(exported, key):
    path, card, module = exported[key]
    x = fixed_input(card, seed=7)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {card.input_name: x})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (1, card.network_image_height, card.network_image_width)
    assert want.std() > 0.005, 'random weights must give a varying output'
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    stats = compare_with_onnxruntime(path, module, x)
    assert stats['max_abs_diff'] == pytest.approx(float(np.abs(got - want).max()), rel=1e-6,
                                                  abs=1e-9)


def test_cards_written_beside_onnx(exported):
    path, card, _ = exported['da']
    card_file = card_path_for(path)
    assert card_file == path.with_name('da.card.yaml') and card_file.is_file()
    loaded = ModelCard.load(card_file)
    assert loaded.network_size == (70, 56)
    assert loaded.input_name == 'pixel_values' and loaded.output_name == 'predicted_depth'
    assert loaded.layout == 'nchw' and loaded.input_encoding == 'rgb8'
    assert loaded.image_mean == pytest.approx((0.485, 0.456, 0.406))
    assert loaded.image_stddev == pytest.approx((0.229, 0.224, 0.225))
    assert loaded.output_kind == 'relative_inverse_depth' and not loaded.is_metric
    assert loaded.source == 'depth-anything/Depth-Anything-V2-Small-hf'
    assert 'random weights' in loaded.name and 'random' in loaded.license
    assert loaded.reference and loaded.reference['input_shape'] == [1, 3, 56, 70]

    metric = ModelCard.load(card_path_for(exported['metric'][0]))
    assert metric.is_metric and metric.max_depth == 20.0
    assert metric.network_size == (56, 70)
    dpt = ModelCard.load(card_path_for(exported['dpt'][0]))
    assert dpt.image_mean == pytest.approx((0.5, 0.5, 0.5))
    assert dpt.output_kind == 'relative_inverse_depth'


@pytest.mark.parametrize('key,max_depth', [('metric', 20.0), ('zoe', 10.0)])
def test_metric_output_within_max_depth(exported, key, max_depth):
    path, card, _ = exported[key]
    assert card.is_metric and card.max_depth == max_depth
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    out = session.run(None, {card.input_name: fixed_input(card)})[0]
    assert np.all(out > 0) and np.all(out <= card.max_depth)
    assert out.std() > 0.005


def test_export_log_reports_stages_and_difference(exported):
    text = '\n'.join(exported['log'])
    for stage in ('[1/5]', '[2/5]', '[3/5]', '[4/5]', '[5/5]'):
        assert stage in text
    assert 'max abs difference' in text and 'mean abs difference' in text


def test_reference_passes_self_test_and_catches_perturbation(exported):
    from depth_node.backends.onnxruntime import OnnxRuntimeBackend
    from depth_node.models import golden
    path, _, _ = exported['da']
    card = ModelCard.load(card_path_for(path))
    backend = OnnxRuntimeBackend(path, card, providers=['CPUExecutionProvider'], log=_quiet)
    result = golden.run_self_test(backend, card, log=None)
    assert result['passed']
    ref = dict(card.reference)
    grid = np.asarray(ref['grid'], np.float64)
    grid[3, 5] += 50 * ref['atol'] + 0.05 * abs(grid[3, 5])
    ref['grid'] = grid.tolist()
    with pytest.raises(SelfTestError):
        golden.run_self_test(backend, card.replace(reference=ref), log=None)


def test_random_weights_are_deterministic():
    a, card = zoo.load_torch_model('dpt-large', True, '64x64', config_overrides=TINY_DPT)
    b, _ = zoo.load_torch_model('dpt-large', True, '64x64', config_overrides=TINY_DPT)
    x = torch.from_numpy(fixed_input(card))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    c, _ = zoo.load_torch_model('dpt-large', True, '64x64', config_overrides=TINY_DPT, seed=5)
    with torch.no_grad():
        assert not torch.equal(a(x), c(x))


def test_real_depth_anything_v2_small_random_weights_exports(tmp_path):
    """The full-size architecture builds offline from the carried config and exports."""
    path, card = export_model('depth-anything-v2-small', tmp_path / 'da2s.onnx', '70x70',
                              random_weights=True, log=_quiet)
    module, _ = zoo.load_torch_model('depth-anything-v2-small', True, '70x70')
    n_params = sum(p.numel() for p in module.parameters())
    assert 24.0e6 < n_params < 25.5e6  # Depth Anything V2 Small has 24.8 M parameters
    backbone = module.model.config.backbone_config
    assert (backbone.hidden_size, backbone.num_hidden_layers,
            backbone.num_attention_heads) == (384, 12, 6)
    assert list(backbone.out_indices) == [3, 6, 9, 12]
    info = check_onnx(path, (1, 3, 70, 70))
    assert info['output_shape'] == [1, 70, 70]
    assert card.reference is not None and card.network_size == (70, 70)


@pytest.mark.parametrize('size', ['71x70', '70x64', (518, 500)])
def test_input_size_not_multiple_of_patch(size, tmp_path):
    with pytest.raises(ModelError, match='multiples of 14') as err:
        export_model('depth-anything-v2-small', tmp_path / 'x.onnx', size, random_weights=True,
                     log=_quiet, config_overrides=TINY_DA)
    assert '--input-size' in str(err.value)
    assert not (tmp_path / 'x.onnx').exists()


@pytest.mark.parametrize('text', ['abc', '70', '70x', '0x70', '-14x14', '14x14x14'])
def test_malformed_input_size(text):
    with pytest.raises(ModelError, match='WIDTHxHEIGHT|positive'):
        zoo.parse_input_size(text)


def test_parse_input_size():
    assert zoo.parse_input_size('518x392') == (518, 392)
    assert zoo.parse_input_size('640X480') == (640, 480)
    assert zoo.parse_input_size((70, 56)) == (70, 56)
    assert zoo.parse_input_size(None) is None


def test_dpt_requires_multiple_of_32_and_square(tmp_path):
    with pytest.raises(ModelError, match='multiples of 32'):
        export_model('dpt-large', tmp_path / 'x.onnx', '70x70', random_weights=True, log=_quiet,
                     config_overrides=TINY_DPT)
    with pytest.raises(ModelError, match='square') as err:
        export_model('dpt-hybrid-midas', tmp_path / 'x.onnx', '64x96', random_weights=True,
                     log=_quiet, config_overrides=TINY_HYBRID)
    assert '96x96' in str(err.value)


def test_old_opset_and_bad_suffix_refused(tmp_path):
    with pytest.raises(ModelError, match='opset 17'):
        export_model('dpt-large', tmp_path / 'x.onnx', '64x64', True, opset=13, log=_quiet,
                     config_overrides=TINY_DPT)
    with pytest.raises(ModelError, match='.onnx'):
        export_model('dpt-large', tmp_path / 'x.bin', '64x64', True, log=_quiet,
                     config_overrides=TINY_DPT)


def test_unknown_and_unsupported_models():
    with pytest.raises(ModelError, match='depth-anything-v2-small'):
        zoo.load_torch_model('no-such-model', random_weights=True)
    with pytest.raises(ModelError, match='data-dependent'):
        zoo.load_torch_model('zoedepth-nyu-kitti', random_weights=True)


def test_hub_unreachable_message_is_clear(tmp_path):
    """Trained weights need the hub; offline that must say what to do (--random-weights)."""
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               HF_HOME=str(tmp_path / 'hf'), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, '-m', 'depth_node.cli', 'export',
                           'depth-anything-v2-small', '--output', str(tmp_path / 'x.onnx')],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert 'depth-anything/Depth-Anything-V2-Small-hf' in last
    assert 'HF_HUB_OFFLINE' in last and '--random-weights' in last
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'x.onnx').exists()


def test_cli_list_and_missing_arguments(capsys):
    from depth_node import cli
    assert cli.main(['export', '--list']) == 0
    listing = capsys.readouterr().out
    for name in ('depth-anything-v2-small', 'depth-anything-v2-metric-outdoor-large',
                 'depth-anything-base', 'dpt-hybrid-midas', 'zoedepth-nyu'):
        assert name in listing
    assert cli.main(['export', 'depth-anything-v2-small']) == 2
    assert '--output' in capsys.readouterr().err


@pytest.mark.parametrize('metric', [False, True])
def test_export_from_local_checkpoint_directory(tmp_path, metric):
    """A transformers checkpoint folder (trained weights, offline): card from its config."""
    import transformers
    entry = zoo.ZOO['depth-anything-v2-metric-outdoor-small' if metric
                    else 'depth-anything-v2-small']
    config = zoo.build_config(entry, TINY_DA)
    net = transformers.DepthAnythingForDepthEstimation(config)
    zoo.randomize_weights(net, seed=3)
    checkpoint = tmp_path / 'my_checkpoint'
    net.save_pretrained(str(checkpoint))
    path, card = export_model(str(checkpoint), tmp_path / 'mine.onnx', '42x28', log=_quiet)
    assert card.source == str(checkpoint) and card.name == 'my_checkpoint'
    assert card.output_kind == ('metric_depth' if metric else 'relative_inverse_depth')
    assert card.max_depth == (80.0 if metric else None)
    assert card.image_mean == pytest.approx(zoo.IMAGENET_MEAN)
    assert 'random' not in card.name and card.reference is not None
    x = fixed_input(card)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    with torch.no_grad():
        want = net(pixel_values=torch.from_numpy(x)).predicted_depth.numpy()
    np.testing.assert_allclose(session.run(None, {'pixel_values': x})[0], want, rtol=1e-3,
                               atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_broken_checkpoint_directory(tmp_path):
    (tmp_path / 'ckpt').mkdir()
    (tmp_path / 'ckpt' / 'config.json').write_text('{"model_type": "depth_anything"}')
    with pytest.raises(ModelError, match='checkpoint directory'):
        zoo.load_torch_model(str(tmp_path / 'ckpt'))


def test_failed_verification_writes_nothing(tmp_path):
    """A graph that disagrees with PyTorch never appears as the output (nor its card)."""
    with pytest.raises(ModelError, match='was not written'):
        export_model('dpt-large', tmp_path / 'bad.onnx', '64x64', True, log=_quiet,
                     tolerance=-1.0, config_overrides=TINY_DPT)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_size_fails_before_building(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError('the model was built before the size was checked')
    monkeypatch.setattr(zoo, 'build_config', no_build)
    with pytest.raises(ModelError, match='multiples of 14'):
        zoo.load_torch_model('depth-anything-v2-large', True, '500x500')
    with pytest.raises(ModelError, match='square'):
        zoo.load_torch_model('dpt-large', True, '384x512')
