"""build_engine drives the TensorRT builder API correctly (a recording stand-in for 8.6 / 10.x).

The real build needs TensorRT and a GPU (test_engine_tensorrt.py); this checks, everywhere, the
order of calls, the flags, the FP32 pinning, the timing cache and the error paths.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from depth_node.errors import EngineError
from depth_node.models import engine as eng


def fake_tensorrt(version: str, parse_ok: bool = True, build_ok: bool = True):
    """A module with the subset of the TensorRT Python API that build_engine uses."""
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    trt.calls = []
    trt.float32, trt.float16, trt.int64 = 'f32', 'f16', 'i64'
    major = int(version.split('.')[0])
    layer_types = dict(CONVOLUTION='conv', SOFTMAX='softmax', REDUCE='reduce',
                       MATRIX_MULTIPLY='mm', NORMALIZATION='norm')
    trt.LayerType = SimpleNamespace(**layer_types)
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE='workspace')
    flags = dict(FP16='fp16', PREFER_PRECISION_CONSTRAINTS='prefer',
                 OBEY_PRECISION_CONSTRAINTS='obey')
    trt.BuilderFlag = SimpleNamespace(**flags)

    class Logger:
        WARNING = 'warning'

        def __init__(self, severity):
            trt.calls.append(('Logger', severity))

    trt.Logger = Logger

    class Layer:
        def __init__(self, kind, dtype='f32'):
            self.type, self.num_outputs, self.precision, self.dtype = kind, 1, None, dtype
            self.output_types = {}

        def get_output(self, i):
            return SimpleNamespace(dtype=self.dtype)

        def set_output_type(self, i, dtype):
            self.output_types[i] = dtype

    class Network:
        def __init__(self):
            self.layers = [Layer('conv'), Layer('norm'), Layer('mm'), Layer('softmax'),
                           Layer('reduce', 'i64')]
            self.num_layers = len(self.layers)
            self.num_inputs = 1

        def get_layer(self, i):
            return self.layers[i]

        def get_input(self, i):
            return SimpleNamespace(name='pixel_values', shape=(1, 3, 56, 70))

    class Cache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return b'timing:' + self.blob[:4] + b'+'

    class Config:
        def __init__(self):
            self.flags, self.pools, self.cache, self.progress_monitor = [], {}, None, None

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.append(flag)

        def create_timing_cache(self, blob):
            return Cache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            assert ignore_mismatch is False
            if cache.blob.startswith(b'alien'):
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            trt.builder = self

        def create_network(self, flags):
            trt.calls.append(('create_network', flags))
            self.network = Network()
            return self.network

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def build_serialized_network(self, network, config):
            trt.calls.append(('build', tuple(config.flags)))
            if config.progress_monitor is not None:
                monitor = config.progress_monitor
                monitor.phase_start('Building engine', None, 3)
                assert monitor.step_complete('Building engine', 0) is True
                monitor.phase_finish('Building engine')
            return b'SERIALIZED' if build_ok else None

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path):
            trt.calls.append(('parse', path))
            return parse_ok

        def get_error(self, i):
            return 'In node 3 (Foo): unsupported operator'

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    if major >= 10:
        class IProgressMonitor:
            def __init__(self):
                trt.calls.append(('monitor',))

        trt.IProgressMonitor = IProgressMonitor
    return trt


@pytest.fixture
def onnx_file(tmp_path):
    onnx = pytest.importorskip('onnx', reason='onnx is not installed')
    helper = onnx.helper
    x = helper.make_tensor_value_info('pixel_values', onnx.TensorProto.FLOAT, [1, 3, 28, 42])
    y = helper.make_tensor_value_info('predicted_depth', onnx.TensorProto.FLOAT, [1, 28, 42])
    node = helper.make_node('ReduceMean', ['pixel_values'], ['predicted_depth'], axes=[1],
                            keepdims=0)
    model = helper.make_model(helper.make_graph([node], 'g', [x], [y]),
                              opset_imports=[helper.make_opsetid('', 17)])
    path = tmp_path / 'net.onnx'
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize('version,flags', [('8.6.1', 1), ('10.3.0', 0)])
def test_fp16_build(monkeypatch, onnx_file, tmp_path, version, flags):
    trt = fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    logs = []
    out = eng.build_engine(onnx_file, tmp_path / 'net.fp16.engine', precision='fp16',
                           workspace_mib=512, timing_cache=tmp_path / 'timing.cache',
                           log=logs.append)
    assert out.read_bytes() == b'SERIALIZED'
    assert ('create_network', flags) in trt.calls
    assert ('parse', str(onnx_file)) in trt.calls
    config = trt.builder.config
    assert config.pools == {'workspace': 512 << 20}
    assert 'fp16' in config.flags and 'obey' in config.flags
    layers = trt.builder.network.layers
    assert [layer.precision for layer in layers] == [None, 'f32', None, 'f32', None]
    assert (tmp_path / 'timing.cache').read_bytes() == b'timing:+'
    text = '\n'.join(logs)
    assert '2 normalisation/softmax layers kept in FP32' in text
    assert ('monitor',) in trt.calls if version.startswith('10') else (
        config.progress_monitor is None)
    if version.startswith('10'):
        assert 'TensorRT: Building engine (3 steps)' in text


def test_fp32_build_pins_nothing_and_reuses_timing_cache(monkeypatch, onnx_file, tmp_path):
    trt = fake_tensorrt('10.3.0')
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    (tmp_path / 'timing.cache').write_bytes(b'old!data')
    logs = []
    eng.build_engine(onnx_file, tmp_path / 'net.fp32.engine', precision='fp32',
                     timing_cache=tmp_path / 'timing.cache', log=logs.append)
    config = trt.builder.config
    assert config.flags == [] and config.cache.blob == b'old!data'
    assert all(layer.precision is None for layer in trt.builder.network.layers)
    assert config.pools == {'workspace': eng.DEFAULT_WORKSPACE_MIB << 20}
    assert (tmp_path / 'timing.cache').read_bytes() == b'timing:old!+'
    assert any('(loaded)' in line for line in logs)


def test_alien_timing_cache_is_replaced(monkeypatch, onnx_file, tmp_path):
    trt = fake_tensorrt('10.3.0')
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    (tmp_path / 'timing.cache').write_bytes(b'alien cache')
    logs = []
    eng.build_engine(onnx_file, tmp_path / 'n.engine', timing_cache=tmp_path / 'timing.cache',
                     log=logs.append)
    assert trt.builder.config.cache.blob == b''
    assert any('another TensorRT version or GPU' in line for line in logs)


def test_fp32_layers_none(monkeypatch, onnx_file, tmp_path):
    trt = fake_tensorrt('10.3.0')
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    eng.build_engine(onnx_file, tmp_path / 'n.engine', fp32_layers='none', log=lambda m: None)
    assert trt.builder.config.flags == ['fp16']


def test_parse_error_is_reported(monkeypatch, onnx_file, tmp_path):
    monkeypatch.setitem(sys.modules, 'tensorrt', fake_tensorrt('8.6.1', parse_ok=False))
    with pytest.raises(EngineError, match='unsupported operator'):
        eng.build_engine(onnx_file, tmp_path / 'n.engine', log=lambda m: None)
    assert not (tmp_path / 'n.engine').exists()


def test_build_failure_is_reported(monkeypatch, onnx_file, tmp_path):
    monkeypatch.setitem(sys.modules, 'tensorrt', fake_tensorrt('10.3.0', build_ok=False))
    with pytest.raises(EngineError, match='failed to build'):
        eng.build_engine(onnx_file, tmp_path / 'n.engine', log=lambda m: None)
    assert not (tmp_path / 'n.engine').exists()


def test_ensure_engine_with_fake_tensorrt_end_to_end(monkeypatch, onnx_file, tmp_path):
    """The default builder through the cache, with a fake key source."""
    monkeypatch.setitem(sys.modules, 'tensorrt', fake_tensorrt('10.3.0'))
    source = SimpleNamespace(tensorrt_version=lambda: '10.3.0',
                             gpu=lambda: ('NVIDIA H100', '9.0'))
    path, key = eng.ensure_engine(onnx_file, precision='fp16', key_source=source,
                                  log=lambda m: None)
    assert path.name == 'net.fp16.engine' and path.read_bytes() == b'SERIALIZED'
    assert key.input_shapes == {'pixel_values': [1, 3, 28, 42]}
    assert (key.gpu_name, key.compute_capability) == ('NVIDIA H100', '9.0')
    assert eng.read_sidecar(path)['key'] == key
