"""build_engine drives the TensorRT builder API correctly (a recording stand-in for 8.6 / 10.x).

The real build needs TensorRT and a GPU (test_backends_tensorrt.py); this checks, everywhere, the
order of calls, the flags, the FP32 pinning, the timing cache and the error paths.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

from depth_node.errors import EngineError
from depth_node.models import engine as eng
import pytest


def fake_tensorrt(version: str, parse_ok: bool = True, build_ok: bool = True,
                  builder_fails: str = '', input_shape=(1, 3, 56, 70)):
    """Return a module with the subset of the TensorRT Python API that build_engine uses.

    Major 11 has no weak typing (no BuilderFlag.FP16, no layer precisions, no EXPLICIT_BATCH),
    like the real TensorRT 11. ``builder_fails``: 'nullptr' (trt.Builder raises TypeError, as
    without a GPU) or 'logged' (it logs a CUDA error and returns an object).
    """
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    trt.calls = []
    trt.float32, trt.float16, trt.int64 = 'f32', 'f16', 'i64'
    major = int(version.split('.')[0])
    layer_types = {'CONVOLUTION': 'conv', 'SOFTMAX': 'softmax', 'REDUCE': 'reduce',
                   'MATRIX_MULTIPLY': 'mm', 'NORMALIZATION': 'norm'}
    trt.LayerType = SimpleNamespace(**layer_types)
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(
        **({'EXPLICIT_BATCH': 0} if major < 11 else {}), STRONGLY_TYPED=1)
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE='workspace')
    flags = ({'FP16': 'fp16', 'PREFER_PRECISION_CONSTRAINTS': 'prefer',
              'OBEY_PRECISION_CONSTRAINTS': 'obey'} if major < 11 else {'TF32': 'tf32'})
    trt.BuilderFlag = SimpleNamespace(**flags)

    class ILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)
        WARNING = 2

        def log(self, severity, message):
            raise NotImplementedError

    class Logger(ILogger):

        def __init__(self, severity):
            trt.calls.append(('Logger', severity))

    trt.ILogger, trt.Logger = ILogger, Logger

    class ITensor:
        name = shape = dtype = None

        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class Layer:
        type = num_outputs = None  # noqa: A003 (as trt.ILayer.type)

        def __init__(self, kind, dtype='f32'):
            self.type, self.num_outputs, self.dtype = kind, 1, dtype
            if major < 11:
                self.precision = None
            self.output_types = {}

        def get_output(self, i):
            return ITensor(dtype=self.dtype)

        def set_output_type(self, i, dtype):
            if major >= 11:
                raise AttributeError('set_output_type')
            self.output_types[i] = dtype

    if major < 11:
        Layer.precision = None

    class Network:
        num_layers = num_inputs = 0

        def __init__(self):
            self.layers = [Layer('conv'), Layer('norm'), Layer('mm'), Layer('softmax'),
                           Layer('reduce', 'i64')]
            self.num_layers = len(self.layers)
            self.num_inputs = 1

        def get_layer(self, i):
            return self.layers[i]

        def get_input(self, i):
            return ITensor(name='pixel_values', shape=tuple(input_shape))

    class IOptimizationProfile:

        def __init__(self):
            self.shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's names
            self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    trt.IOptimizationProfile = IOptimizationProfile

    class Cache:

        def __init__(self, blob=b''):
            self.blob = bytes(blob)

        def serialize(self):
            return b'timing:' + self.blob[:4] + b'+'

    class Config:
        progress_monitor = None

        def __init__(self):
            self.flags, self.pools, self.cache, self.progress_monitor = [], {}, None, None
            self.profiles = []

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

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
            logger.log(ILogger.Severity.WARNING, 'fake builder warning')
            if builder_fails == 'nullptr':
                raise TypeError('pybind11::init(): factory function returned nullptr')
            if builder_fails == 'logged':
                logger.log(ILogger.Severity.ERROR, 'CUDA initialization failure with error: 35')

        def create_network(self, flags):
            trt.calls.append(('create_network', flags))
            self.network = Network()
            return self.network

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            trt.calls.append(('build', tuple(config.flags)))
            if config.progress_monitor is not None:
                monitor = config.progress_monitor
                monitor.phase_start('Building engine', None, 3)
                assert monitor.step_complete('Building engine', 0) is True
                monitor.phase_finish('Building engine')
            return b'SERIALIZED' if build_ok else None

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path):
            trt.calls.append(('parse', path))
            return parse_ok

        def get_error(self, i):
            return 'In node 3 (Foo): unsupported operator'

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    trt.IBuilderConfig, trt.INetworkDefinition, trt.ILayer = Config, Network, Layer
    trt.ITensor, trt.ITimingCache, trt.IHostMemory = ITensor, Cache, bytes
    if major >= 10:
        class IProgressMonitor:

            def __init__(self):
                trt.calls.append(('monitor',))

            def phase_start(self, phase_name, parent_phase, num_steps):
                raise NotImplementedError

            step_complete = phase_finish = phase_start

        trt.IProgressMonitor = IProgressMonitor
    return trt


@pytest.fixture(autouse=True)
def one_gpu(monkeypatch):
    """Make the driver probe report one GPU (the fakes stand in for TensorRT on it)."""
    monkeypatch.setattr(eng, 'cuda_devices', lambda: (1, ''))


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


def test_batch_axis_gets_a_profile_up_to_max_batch_and_its_own_cache_key(monkeypatch,
                                                                         tmp_path):
    onnx = pytest.importorskip('onnx', reason='onnx is not installed')
    from node_helpers import build_tiny_onnx
    path = build_tiny_onnx(tmp_path / 'b.onnx', batch='batch')
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    trt = fake_tensorrt('10.3.0', input_shape=(-1, 3, 48, 64))
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    source = SimpleNamespace(tensorrt_version=lambda: '10.3.0',
                             gpu=lambda: ('NVIDIA H100', '9.0'))
    engine, key = eng.ensure_engine(path, precision='fp32', key_source=source, max_batch=4,
                                    log=lambda m: None)
    (profile,) = trt.builder.config.profiles
    assert profile.shapes == {'pixel_values': ((1, 3, 48, 64), (4, 3, 48, 64), (4, 3, 48, 64))}
    assert key.input_shapes == {'image': [4, 3, 48, 64]}
    # another number of cameras needs another engine: the key says so
    assert eng.cache_decision(engine, key, False)[0] == 'use'
    other = eng.compute_key(path, 'fp32', source, input_shapes={'image': [2, 3, 48, 64]})
    assert eng.cache_decision(engine, other, False)[0] != 'use'
    # a fixed-batch network gets no profile
    trt = fake_tensorrt('10.3.0')
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    eng.build_engine(path, tmp_path / 'n.engine', precision='fp32', max_batch=4,
                     log=lambda m: None)
    assert trt.builder.config.profiles == []
    trt = fake_tensorrt('10.3.0', input_shape=(-1, 3, -1, 64))
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    with pytest.raises(EngineError, match='besides the batch axis'):
        eng.build_engine(path, tmp_path / 'n.engine', precision='fp32', log=lambda m: None)


def test_tensorrt_11_refuses_fp16_and_builds_fp32(monkeypatch, onnx_file, tmp_path):
    """Check TensorRT 11, which removed weak typing: fp16 is refused, fp32 builds without pins."""
    trt = fake_tensorrt('11.4.0.106')
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    assert not eng.weak_typing_fp16(trt)
    with pytest.raises(EngineError, match=r'TensorRT 11\.4\.0\.106 cannot build an FP16 engine'
                                          r'.*BuilderFlag\.FP16') as info:
        eng.build_engine(onnx_file, tmp_path / 'n.fp16.engine', log=lambda m: None)
    assert '--precision fp32' in info.value.hint
    assert not hasattr(trt, 'builder')  # refused before touching the GPU
    logs = []
    eng.build_engine(onnx_file, tmp_path / 'n.fp32.engine', precision='fp32', log=logs.append)
    assert ('create_network', 0) in trt.calls and trt.builder.config.flags == []
    assert (tmp_path / 'n.fp32.engine').read_bytes() == b'SERIALIZED'
    assert 'TensorRT: Building engine (3 steps)' in '\n'.join(logs)


def test_tensorrt_warnings_reach_the_log(monkeypatch, onnx_file, tmp_path):
    monkeypatch.setitem(sys.modules, 'tensorrt', fake_tensorrt('10.13.3.9'))
    logs = []
    eng.build_engine(onnx_file, tmp_path / 'n.engine', log=logs.append)
    assert '  TensorRT warning: fake builder warning' in logs


def test_no_gpu_is_a_clear_error_before_tensorrt_runs(monkeypatch, onnx_file, tmp_path):
    trt = fake_tensorrt('10.13.3.9')
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    monkeypatch.setattr(eng, 'cuda_devices',
                        lambda: (0, 'no NVIDIA driver is installed (libcuda not found)'))
    with pytest.raises(EngineError, match='needs a CUDA GPU.*libcuda not found'):
        eng.build_engine(onnx_file, tmp_path / 'n.engine', log=lambda m: None)
    assert not hasattr(trt, 'builder')


@pytest.mark.parametrize('failure,why', [('nullptr', 'factory function returned nullptr'),
                                         ('logged', 'CUDA initialization failure')])
def test_builder_creation_failure_is_a_clear_error(monkeypatch, onnx_file, tmp_path, failure,
                                                   why):
    monkeypatch.setitem(sys.modules, 'tensorrt',
                        fake_tensorrt('10.13.3.9', builder_fails=failure))
    with pytest.raises(EngineError, match=f'cannot create a builder: .*{why}') as info:
        eng.build_engine(onnx_file, tmp_path / 'n.engine', log=lambda m: None)
    assert 'nvidia-smi' in info.value.hint
    assert not (tmp_path / 'n.engine').exists()


def test_api_drift_names_the_missing_names(monkeypatch, onnx_file, tmp_path):
    trt = fake_tensorrt('10.13.3.9')
    del trt.IBuilderConfig.set_timing_cache
    del trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    with pytest.raises(EngineError, match=r'TensorRT 10\.13\.3\.9 lacks .*'
                                          r'IBuilderConfig\.set_timing_cache'):
        eng.build_engine(onnx_file, tmp_path / 'n.engine', precision='fp32', log=lambda m: None)
    trt.IBuilderConfig.set_timing_cache = lambda self, cache, ignore: True
    with pytest.raises(EngineError, match=r'lacks .*BuilderFlag\.OBEY_PRECISION_CONSTRAINTS'):
        eng.build_engine(onnx_file, tmp_path / 'n.engine', precision='fp16', log=lambda m: None)
    eng.build_engine(onnx_file, tmp_path / 'n.engine', precision='fp32', log=lambda m: None)


def test_required_api_depends_on_the_version():
    v8, v10, v11 = (set(eng.required_api(m)) for m in (8, 10, 11))
    assert 'NetworkDefinitionCreationFlag.EXPLICIT_BATCH' in v8 - v10
    assert {'BuilderFlag.FP16', 'ILayer.precision', 'ILayer.set_output_type'} <= v10 - v11
    assert 'IProgressMonitor' in v10 - v8 and 'IProgressMonitor' in v11
    run = set(eng.required_api(11, ('run',)))
    assert {'Runtime.deserialize_cuda_engine', 'IExecutionContext.execute_async_v3'} <= run
    assert not any(name.startswith(('Builder', 'OnnxParser')) for name in run)


def test_cuda_probe_answers_without_crashing(monkeypatch):
    """The real ctypes driver probe: a count, and a reason whenever the count is 0."""
    monkeypatch.undo()  # not the one-GPU stand-in
    count, why = eng.cuda_devices()
    assert isinstance(count, int) and count >= 0
    assert (count == 0) == bool(why)
    if count == 0:
        with pytest.raises(EngineError, match='needs a CUDA GPU'):
            eng.require_gpu('Building a TensorRT engine')


class FakeDriver:
    """The four driver-API calls cuda_device makes, writing through ctypes references."""

    def __init__(self, count=1, name=b'Orin (nvgpu)', capability=(8, 7), fail=0):
        self.count, self.name, self.capability, self.fail = count, name, capability, fail

    def cuDeviceGetCount(self, ref):  # noqa: N802 (the driver's names)
        ref._obj.value = self.count
        return 0

    def cuDeviceGet(self, ref, index):  # noqa: N802
        ref._obj.value = index
        return 0

    def cuDeviceGetName(self, buffer, size, device):  # noqa: N802
        buffer.value = self.name[:size - 1]
        return self.fail

    def cuDeviceGetAttribute(self, ref, attribute, device):  # noqa: N802
        ref._obj.value = {75: self.capability[0], 76: self.capability[1]}[attribute]
        return 0


def test_key_source_asks_the_driver_not_torch(monkeypatch):
    monkeypatch.undo()  # the real cuda_devices, over a fake driver library
    monkeypatch.setattr(eng, '_cuda_driver', lambda: (FakeDriver(count=2), ''))
    assert eng.cuda_devices() == (2, '')
    assert eng.TensorRTKeySource(1).gpu() == ('Orin (nvgpu)', '8.7')
    with pytest.raises(EngineError, match='no CUDA device 2 .*reports 2'):
        eng.cuda_device(2)
    monkeypatch.setattr(eng, '_cuda_driver', lambda: (FakeDriver(fail=101), ''))
    with pytest.raises(EngineError, match='cannot describe CUDA device 0'):
        eng.cuda_device(0)
    monkeypatch.setattr(eng, '_cuda_driver', lambda: (FakeDriver(count=0), ''))
    with pytest.raises(EngineError, match='No CUDA GPU is usable .*reports no CUDA GPU'):
        eng.TensorRTKeySource().gpu()
