"""Backend selection and clear errors when optional dependencies or devices are missing.

GPU/TensorRT checks skip (with a reason) on hosts without them.
"""

from __future__ import annotations

import sys

from depth_node import backends
from depth_node.errors import BackendUnavailableError, ModelError
import numpy as np
import pytest


def hide_module(monkeypatch, name):
    """Make ``import name`` fail and find_spec return None, as if it were not installed."""
    monkeypatch.setitem(sys.modules, name, None)
    real = backends._has_module
    monkeypatch.setattr(backends, '_has_module', lambda mod: mod != name and real(mod))


def test_onnxruntime_missing_gives_extra_name(monkeypatch, tmp_path):
    hide_module(monkeypatch, 'onnxruntime')
    from depth_node.backends.onnxruntime import OnnxRuntimeBackend
    from depth_node.models.card import ModelCard
    with pytest.raises(BackendUnavailableError) as err:
        OnnxRuntimeBackend(tmp_path / 'm.onnx', ModelCard())
    msg = str(err.value)
    assert "'onnxruntime' is not installed" in msg and 'depth_node[onnxruntime]' in msg


def test_auto_without_any_onnx_runtime_is_clear(monkeypatch, tmp_path):
    hide_module(monkeypatch, 'onnxruntime')
    hide_module(monkeypatch, 'tensorrt')
    model = tmp_path / 'm.onnx'
    model.write_bytes(b'')
    with pytest.raises(BackendUnavailableError) as err:
        backends.select_backend(model)
    assert 'depth_node[onnxruntime]' in str(err.value) and 'TensorRT' in str(err.value)


def test_torch_missing_for_zoo_name(monkeypatch):
    hide_module(monkeypatch, 'torch')
    with pytest.raises(BackendUnavailableError, match=r'depth_node\[torch\]'):
        backends.select_backend('depth-anything-v2-small')
    from depth_node.backends.torch import TorchBackend
    with pytest.raises(BackendUnavailableError, match=r'depth_node\[torch\]'):
        TorchBackend('depth-anything-v2-small')


def test_tensorrt_missing_is_clear(monkeypatch, tmp_path):
    hide_module(monkeypatch, 'tensorrt')
    monkeypatch.delitem(sys.modules, 'depth_node.backends.tensorrt', raising=False)
    engine = tmp_path / 'm.engine'
    engine.write_bytes(b'')
    assert backends.select_backend(engine)[0] == 'tensorrt'   # an engine file needs TensorRT
    with pytest.raises(BackendUnavailableError) as err:
        backends.load_backend(engine, None, 'tensorrt', log=lambda m: None)
    assert 'tensorrt' in str(err.value).lower()


def test_auto_selection_reasons(tmp_path):
    pytest.importorskip('onnxruntime')
    model = tmp_path / 'm.onnx'
    model.write_bytes(b'')
    name, reason = backends.select_backend(model)
    if backends._has_module('tensorrt') and backends._cuda_available()[0]:
        assert name == 'tensorrt'
    else:
        assert name == 'onnxruntime' and 'onnxruntime runs the ONNX file' in reason


def test_unknown_backend_and_missing_file(tmp_path):
    with pytest.raises(ModelError, match='Use one of: auto, tensorrt, onnxruntime, torch'):
        backends.load_backend(tmp_path / 'm.onnx', None, 'openvino')
    pytest.importorskip('onnxruntime')
    from depth_node.models.card import ModelCard
    with pytest.raises(ModelError, match='does not exist'):
        backends.load_backend(tmp_path / 'm.onnx', ModelCard(), 'onnxruntime',
                              log=lambda m: None)


def test_torch_backend_refuses_onnx_file(tmp_path):
    pytest.importorskip('torch')
    from depth_node.backends.torch import TorchBackend
    model = tmp_path / 'm.onnx'
    model.write_bytes(b'')
    with pytest.raises(ModelError, match='onnxruntime or tensorrt backend'):
        TorchBackend(model, None, log=lambda m: None)


def test_cuda_paths_need_a_gpu():
    torch = pytest.importorskip('torch')
    if not torch.cuda.is_available():
        pytest.skip('no CUDA GPU on this host: the CUDA/TensorRT backends are tested on GPU '
                    'hosts only')
    from depth_node.backends.torch import TorchBackend

    class Double(torch.nn.Module):

        def forward(self, x):
            return x[:, :1, :, :] * 2

    from depth_node.models.card import ModelCard
    card = ModelCard(input_name='x', output_name='y', network_image_width=8,
                     network_image_height=6, output_kind='relative_depth')
    backend = TorchBackend(Double(), card, device='cuda', log=lambda m: None)
    out = backend.infer(np.ones((1, 3, 6, 8), np.float32))
    assert out.is_cuda and out.shape == (6, 8)


@pytest.mark.gpu
@pytest.mark.parametrize('backend', ['tensorrt', 'onnxruntime'])
def test_real_model_on_gpu_passes_self_test(shared_data, tmp_path, backend):
    """On a GPU host, the real PyDNet++ model must pass the card's golden self-test.

    It runs through TensorRT (fp16 engine) and through onnxruntime's GPU providers.
    """
    torch = pytest.importorskip('torch')
    if not torch.cuda.is_available():
        pytest.skip('no CUDA GPU on this host: GPU backends are tested on GPU hosts only')
    if backend == 'tensorrt':
        pytest.importorskip('tensorrt', reason='TensorRT is not installed on this host')
    else:
        ort = pytest.importorskip('onnxruntime')
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            pytest.skip('onnxruntime has no CUDA provider here (install onnxruntime-gpu)')
    from pathlib import Path

    from depth_node.runner import open_model
    card = Path(__file__).resolve().parents[1] / 'config' / 'models' / 'pydnet_pp.card.yaml'
    messages = []
    model = open_model(shared_data / 'models' / 'pydnet_pp' / 'optimized_pydnet++.onnx',
                       backend=backend, card_path=card, engine_cache_dir=tmp_path,
                       log=messages.append)
    assert model.backend.device == 'cuda'
    assert any('self-test passed' in m for m in messages), messages
    raw, _, _ = model.predict(np.zeros((480, 640, 3), np.uint8))
    assert raw.shape == (480, 640) and np.isfinite(raw).all()
    model.close()
