"""The backends on tiny random Depth Anything and DPT networks exported to ONNX.

ONNX Runtime (CPU) against PyTorch, TorchScript files and zoo models on the torch backend.
The golden self-test is in test_models_golden.py, open_model/DepthModel in test_runner.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed (depth_node[torch])')
transformers = pytest.importorskip('transformers', reason='transformers is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')

from depth_node.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402, I100
from depth_node.backends.torch import TorchBackend  # noqa: E402
from depth_node.models.card import card_path_for  # noqa: E402
from depth_node.models.golden import reference_input  # noqa: E402
from depth_node.runner import open_model  # noqa: E402

QUIET = {'log': lambda msg: None}


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
