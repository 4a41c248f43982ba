"""TensorRT backend: import safety everywhere; real engines where TensorRT and a GPU exist."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

from depth_node.errors import BackendUnavailableError, EngineError
from node_helpers import build_tiny_onnx
import numpy as np
import pytest


def _has_tensorrt_gpu() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, 'TensorRT is not installed (pip install tensorrt; JetPack on Jetson)'
    try:
        import torch
    except ImportError:
        return False, 'torch is not installed (the TensorRT backend binds torch CUDA tensors)'
    if not torch.cuda.is_available():
        return False, 'no CUDA GPU visible to torch'
    return True, ''


HAVE_TRT, WHY_NOT = _has_tensorrt_gpu()
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason=f'TensorRT test skipped: {WHY_NOT}')


def test_module_imports_without_tensorrt():
    module = importlib.import_module('depth_node.backends.tensorrt')
    assert module.TensorRTBackend.name == 'tensorrt'


def test_torch_dtype_by_name():
    torch = pytest.importorskip('torch', reason='torch is not installed')
    from depth_node.backends.tensorrt import torch_dtype
    assert torch_dtype(SimpleNamespace(name='FLOAT'), torch) is torch.float32
    assert torch_dtype(SimpleNamespace(name='HALF'), torch) is torch.float16
    assert torch_dtype('DataType.INT64', torch) is torch.int64
    with pytest.raises(EngineError, match='FP8'):
        torch_dtype(SimpleNamespace(name='FP8'), torch)


def test_constructing_without_tensorrt_is_a_clear_error(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip('TensorRT is installed here')
    except ImportError:
        pass
    from depth_node.backends.tensorrt import TensorRTBackend
    with pytest.raises(BackendUnavailableError, match='tensorrt'):
        TensorRTBackend(tmp_path / 'm.onnx', None)


def _tiny_onnx(path: Path, height=28, width=42, scale=2.0) -> Path:
    pytest.importorskip('onnx')
    return build_tiny_onnx(path, width, height, scale=scale, offset=0.0,
                           input_name='pixel_values', output_name='predicted_depth')


def _card(height=28, width=42):
    from depth_node.models.card import ModelCard
    return ModelCard(name='tiny', input_name='pixel_values', output_name='predicted_depth',
                     network_image_width=width, network_image_height=height)


@needs_trt
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_build_and_infer(tmp_path, precision):
    from depth_node.backends.tensorrt import TensorRTBackend
    from depth_node.models import engine as eng
    import torch
    onnx_path = _tiny_onnx(tmp_path / 'tiny.onnx')
    logs = []
    backend = TensorRTBackend(onnx_path, _card(), precision=precision, log=logs.append)
    x = np.random.default_rng(0).normal(size=(1, 3, 28, 42)).astype(np.float32)
    want = 2.0 * x.mean(axis=1)[0]
    got = backend.infer(x)
    assert isinstance(got, np.ndarray) and got.shape == (28, 42)
    tol = 1e-5 if precision == 'fp32' else 1e-2
    np.testing.assert_allclose(got, want, atol=tol)
    on_gpu = backend.infer(torch.from_numpy(x).cuda())
    assert on_gpu.is_cuda and tuple(on_gpu.shape) == (28, 42)
    np.testing.assert_allclose(on_gpu.cpu().numpy(), want, atol=tol)
    engine = tmp_path / f'tiny.{precision}.engine'
    assert engine.is_file() and eng.read_sidecar(engine)['key'].precision == precision
    backend.close()
    # second load: cache hit, no rebuild
    logs.clear()
    TensorRTBackend(onnx_path, _card(), precision=precision, log=logs.append).close()
    assert any('cache hit' in line for line in logs)
    # the engine file alone also loads
    TensorRTBackend(engine, _card(), log=logs.append).close()


@needs_trt
def test_corrupt_engine_is_a_clear_error(tmp_path):
    from depth_node.backends.tensorrt import TensorRTBackend
    engine = tmp_path / 'bad.engine'
    engine.write_bytes(b'\x00not an engine' * 100)
    with pytest.raises(EngineError, match='cannot deserialize'):
        TensorRTBackend(engine, _card(), log=lambda m: None)


@needs_trt
def test_refuses_rebuild_when_disabled(tmp_path):
    from depth_node.backends.tensorrt import TensorRTBackend
    onnx_path = _tiny_onnx(tmp_path / 'tiny.onnx')
    TensorRTBackend(onnx_path, _card(), precision='fp32', log=lambda m: None).close()
    with pytest.raises(EngineError, match='precision: built for fp32, now fp16'):
        TensorRTBackend(onnx_path, _card(), precision='fp16', allow_engine_build=False,
                        log=lambda m: None)


@needs_trt
def test_exported_depth_anything_fp16_engine_passes_self_test(tmp_path):
    pytest.importorskip('transformers')
    from depth_node.backends import load_backend
    from depth_node.models.export import export_model
    tiny = {'backbone_config': {'hidden_size': 64, 'num_hidden_layers': 4,
                                'num_attention_heads': 4, 'out_indices': [1, 2, 3, 4]},
            'reassemble_hidden_size': 64, 'neck_hidden_sizes': [16, 32, 32, 64],
            'fusion_hidden_size': 32, 'head_hidden_size': 16}
    path, card = export_model('depth-anything-v2-small', tmp_path / 'da.onnx', '98x70',
                              random_weights=True, log=lambda m: None, config_overrides=tiny)
    for precision in ('fp32', 'fp16'):
        backend = load_backend(path, card, 'tensorrt', precision=precision,
                               engine_cache_dir=tmp_path / precision, log=lambda m: None)
        assert backend.precision == precision
        backend.close()


# --- the binding and inference logic, with a stand-in engine on the CPU ---
class _FakeEngine:
    """Name-based I/O like TensorRT's ICudaEngine; the context computes 2 * channel mean."""

    def __init__(self, torch, shapes, out_dtype='FLOAT'):
        self.torch = torch
        self.shapes = shapes
        self.num_io_tensors = len(shapes)
        self.out_dtype = out_dtype
        self.accept_addresses = True
        self.max_batch = 1

    def get_tensor_profile_shape(self, name, profile_index):
        shape = self.shapes[name]
        return [(1, *shape[1:]), (self.max_batch, *shape[1:]), (self.max_batch, *shape[1:])]

    def get_tensor_name(self, i):
        return list(self.shapes)[i]

    def get_tensor_mode(self, name):
        return 'in' if name == 'pixel_values' else 'out'

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def get_tensor_dtype(self, name):
        return SimpleNamespace(name='FLOAT' if name == 'pixel_values' else self.out_dtype)


class _FakeContext:

    def __init__(self, engine, backend_ref):
        self.engine, self.addresses, self.shapes = engine, {}, dict(engine.shapes)
        self.backend_ref = backend_ref
        self.runs = 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        self.shapes['predicted_depth'] = (shape[0], shape[2], shape[3])
        return True

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return self.engine.accept_addresses

    def execute_async_v3(self, stream_handle):
        buffers = self.backend_ref()._buffers
        assert self.addresses == {n: b.data_ptr() for n, b in buffers.items()}
        x = buffers['pixel_values']
        buffers['predicted_depth'].copy_((2 * x.float().mean(dim=1)).to(
            buffers['predicted_depth'].dtype))
        self.runs += 1
        return True


def _cpu_backend(monkeypatch, shapes, card, out_dtype='FLOAT', accept_addresses=True,
                 max_batch=1):
    torch = pytest.importorskip('torch', reason='torch is not installed')
    import contextlib
    import weakref

    from depth_node.backends import tensorrt as trt_backend

    class FakeStream:
        cuda_stream = 0

        def wait_stream(self, other):
            pass

        def synchronize(self):
            pass

    monkeypatch.setattr(torch.cuda, 'stream', lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, 'current_stream', lambda device=None: FakeStream())

    class CpuBackend(trt_backend.TensorRTBackend):

        def __init__(self):  # no TensorRT, no GPU: only what _bind/infer use
            trt_backend.Backend.__init__(self, 'fake.engine', card)
            self._trt = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT='in'))
            self._torch = torch
            self._device = torch.device('cpu')
            self.engine_path = Path('fake.engine')
            self.engine = _FakeEngine(torch, shapes, out_dtype)
            self.engine.accept_addresses = accept_addresses
            self.engine.max_batch = max_batch
            self._trt_logger = SimpleNamespace(errors=['[E] fake: misaligned address'])
            self.context = _FakeContext(self.engine, weakref.ref(self))
            self._bind()
            self._stream = FakeStream()

        def _pinned(self, shape, dtype):
            return torch.empty(shape, dtype=dtype)

    return CpuBackend()


def test_binding_and_numpy_inference(monkeypatch):
    backend = _cpu_backend(monkeypatch, {'pixel_values': (1, 3, 28, 42),
                                         'predicted_depth': (1, 28, 42)}, _card())
    x = np.random.default_rng(1).normal(size=(1, 3, 28, 42)).astype(np.float32)
    out = backend.infer(x)
    assert isinstance(out, np.ndarray) and out.shape == (28, 42) and out.dtype == np.float32
    np.testing.assert_allclose(out, 2 * x.mean(axis=1)[0], rtol=1e-5, atol=1e-6)
    assert backend.context.runs == 1
    with pytest.raises(Exception, match='differs from the engine input'):
        backend.infer(np.zeros((1, 3, 28, 43), np.float32))
    backend.close()
    with pytest.raises(Exception, match='closed'):
        backend.infer(x)


def test_dynamic_input_shape_set_from_card_and_fp16_output(monkeypatch):
    backend = _cpu_backend(monkeypatch, {'pixel_values': (1, 3, -1, -1),
                                         'predicted_depth': (1, -1, -1)}, _card(14, 28),
                           out_dtype='HALF')
    assert tuple(backend._input.shape) == (1, 3, 14, 28)
    x = np.ones((1, 3, 14, 28), np.float32)
    out = backend.infer(x)
    assert out.dtype == np.float32 and out.shape == (14, 28)
    np.testing.assert_allclose(out, 2.0)


def test_batch_axis_engine_runs_up_to_its_profile_maximum_in_one_call(monkeypatch):
    backend = _cpu_backend(monkeypatch, {'pixel_values': (-1, 3, 14, 28),
                                         'predicted_depth': (-1, 14, 28)}, _card(14, 28),
                           max_batch=4)
    assert backend.max_batch == 4 and tuple(backend._input.shape) == (4, 3, 14, 28)
    x = np.random.default_rng(2).normal(size=(3, 3, 14, 28)).astype(np.float32)
    out = backend.infer_batch(x)
    assert out.shape == (3, 14, 28) and backend.context.runs == 1
    assert backend.context.shapes['pixel_values'] == (3, 3, 14, 28)
    np.testing.assert_allclose(out, 2 * x.mean(axis=1), rtol=1e-5, atol=1e-6)
    single = backend.infer(x[1:2])
    assert single.shape == (14, 28) and backend.context.shapes['pixel_values'][0] == 1
    np.testing.assert_allclose(single, 2 * x[1].mean(axis=0), rtol=1e-5, atol=1e-6)
    more = np.concatenate([x, x])            # 6 > 4: one call per frame, still right
    np.testing.assert_allclose(backend.infer_batch(more), 2 * more.mean(axis=1), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(Exception, match='differs from the engine input'):
        backend.infer_batch(np.zeros((2, 3, 14, 27), np.float32))


def test_card_and_engine_disagree(monkeypatch):
    from depth_node.errors import ModelError
    shapes = {'pixel_values': (1, 3, 28, 42), 'predicted_depth': (1, 28, 42)}
    with pytest.raises(ModelError, match='network_image_width'):
        _cpu_backend(monkeypatch, shapes, _card(28, 56))
    with pytest.raises(ModelError, match='output_name'):
        _cpu_backend(monkeypatch, shapes, _card().replace(output_name='depth'))
    with pytest.raises(ModelError, match='input_name'):
        _cpu_backend(monkeypatch, shapes, _card().replace(input_name='image'))


def test_refused_tensor_address_is_a_clear_error(monkeypatch):
    shapes = {'pixel_values': (1, 3, 28, 42), 'predicted_depth': (1, 28, 42)}
    with pytest.raises(EngineError, match="refused the buffer of tensor 'pixel_values'.*"
                                          'misaligned address'):
        _cpu_backend(monkeypatch, shapes, _card(), accept_addresses=False)


def test_fp16_falls_back_to_fp32_with_a_warning_on_tensorrt_11(monkeypatch, tmp_path):
    torch = pytest.importorskip('torch', reason='torch is not installed')
    import contextlib

    from depth_node.backends import tensorrt as trt_backend
    onnx_path = tmp_path / 'model.onnx'
    onnx_path.write_bytes(b'not parsed here')
    fake_trt = SimpleNamespace(__version__='11.4.0.106')
    real_require = trt_backend.require
    monkeypatch.setattr(trt_backend, 'require', lambda name, purpose='': (
        fake_trt if name == 'tensorrt' else real_require(name, purpose)))
    monkeypatch.setattr(trt_backend.engines, 'check_api', lambda trt, purposes: None)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device', lambda device: contextlib.nullcontext())
    asked = {}

    def fake_ensure(onnx, engine_path, *, precision, **kwargs):
        asked['precision'], asked['engine_path'] = precision, Path(engine_path)
        return Path(engine_path), SimpleNamespace(precision=precision)

    monkeypatch.setattr(trt_backend.engines, 'ensure_engine', fake_ensure)
    monkeypatch.setattr(trt_backend.TensorRTBackend, '_load', lambda self: None)
    logged = []
    backend = trt_backend.TensorRTBackend(onnx_path, _card(), precision='fp16',
                                          key_source=object(), log=logged.append)
    assert asked['precision'] == 'fp32' and backend.precision == 'fp32'
    assert asked['engine_path'].name == 'model.fp32.engine'
    assert any('TensorRT 11.4.0.106' in line and 'fp32 instead of fp16' in line
               for line in logged)
