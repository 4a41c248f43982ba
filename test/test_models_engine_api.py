"""The TensorRT Python API that depth_node uses exists in the installed TensorRT (API drift).

Runs only where ``tensorrt`` imports (a GPU/Jetson host, or a TensorRT wheel without a GPU);
skips elsewhere. The names come from ``depth_node.models.engine.TENSORRT_API`` and
``TENSORRT_SIGNATURES``, the same tables the builder and the backend check before use. Most
checks need no GPU; the ones that create a builder need one and skip otherwise.
"""

from __future__ import annotations

import re

from depth_node.errors import EngineError
from depth_node.models import engine as eng
import pytest

try:
    import tensorrt as trt
except ImportError as exc:  # also OSError-like failures to load libnvinfer surface here
    pytest.skip(f'TensorRT is not importable ({exc}); the API surface check runs where '
                'TensorRT is installed (pip install tensorrt, or JetPack)',
                allow_module_level=True)
except OSError as exc:
    pytest.skip(f'TensorRT is installed but its libraries do not load ({exc})',
                allow_module_level=True)

MAJOR = eng.tensorrt_major(trt)
GPUS, NO_GPU_REASON = eng.cuda_devices()
needs_gpu = pytest.mark.skipif(GPUS == 0, reason=f'needs a CUDA GPU: {NO_GPU_REASON}')


def test_supported_major_version():
    assert MAJOR in (8, 10, 11), f'TensorRT {trt.__version__} is not a version depth_node knows'
    if MAJOR == 8:
        minor = int(trt.__version__.split('.')[1])
        assert minor >= 6, 'TensorRT 8.6 is the oldest supported (name-based I/O, NORMALIZATION)'


@pytest.mark.parametrize('purpose', eng.API_PURPOSES)
def test_every_used_name_exists(purpose):
    wanted = eng.required_api(MAJOR, (purpose,))
    if (purpose == 'progress' and MAJOR < 10) or (purpose == 'fp16' and MAJOR >= 11):
        assert wanted == []  # not used on this version (see test_weak_typing_matches_the_version)
        return
    assert wanted, f'no {purpose} names for TensorRT {MAJOR}'
    missing = eng.missing_api(trt, (purpose,))
    assert missing == [], f'TensorRT {trt.__version__} lacks {missing}'
    eng.check_api(trt, (purpose,))  # the check the code runs: no error


def test_weak_typing_matches_the_version():
    assert eng.weak_typing_fp16(trt) is (MAJOR < 11)
    if MAJOR >= 11:  # TensorRT 11 removed these; the code must not rely on them there
        for name in ('BuilderFlag.FP16', 'ILayer.precision', 'ILayer.set_output_type'):
            with pytest.raises(AttributeError):
                eng.resolve_api(trt, name)


def _parameters(function, name: str) -> list[set[str]]:
    """Parameter names of each pybind11 overload, from the signature lines of its docstring."""
    out = []
    for line in (function.__doc__ or '').splitlines():
        match = re.match(rf'\s*(?:\d+\.\s*)?{name}\((.*)\)\s*->', line)
        if match:
            out.append(set(re.findall(r'(?:^|, )(\w+):', match.group(1))) - {'self'})
    return out


@pytest.mark.parametrize('name,params', sorted(eng.TENSORRT_SIGNATURES.items()))
def test_signatures(name, params):
    if name not in eng.required_api(MAJOR):
        pytest.skip(f'{name} is not used with TensorRT {MAJOR}')
    overloads = _parameters(eng.resolve_api(trt, name), name.rsplit('.', 1)[-1])
    assert overloads, f'no signature found in the docstring of {name}'
    assert any(set(params) <= found for found in overloads), (name, params, overloads)


def test_data_type_names_map_to_torch():
    torch = pytest.importorskip('torch', reason='torch is not installed')
    from depth_node.backends.tensorrt import _TORCH_DTYPES, torch_dtype
    assert trt.DataType.FLOAT.name == 'FLOAT' and trt.DataType.HALF.name == 'HALF'
    members = trt.DataType.__members__
    for name in _TORCH_DTYPES:
        if name in members:
            assert torch_dtype(members[name], torch) is getattr(torch, _TORCH_DTYPES[name])
    assert torch_dtype(trt.DataType.FLOAT, torch) is torch.float32


def test_logger_subclass_collects_errors_and_forwards_warnings():
    lines = []
    logger = eng.tensorrt_logger(trt, lines.append)
    assert isinstance(logger, trt.ILogger)
    logger.log(trt.ILogger.Severity.VERBOSE, 'chatter')
    logger.log(trt.ILogger.Severity.WARNING, 'careful')
    logger.log(trt.ILogger.Severity.ERROR, 'broken')
    assert logger.errors == ['broken']
    assert lines == ['  TensorRT warning: careful', '  TensorRT error: broken']


def test_progress_monitor_subclass():
    monitor = eng._progress_monitor(trt, lambda m: None)
    if MAJOR < 10:
        assert monitor is None
        return
    assert isinstance(monitor, trt.IProgressMonitor)
    monitor.phase_start('Building engine', None, 2)
    assert monitor.step_complete('Building engine', 0) is True
    monitor.phase_finish('Building engine')


@pytest.mark.skipif(GPUS > 0, reason='checks the behaviour without a GPU')
def test_without_gpu_tensorrt_objects_become_engine_errors(tmp_path):
    logger = eng.tensorrt_logger(trt)
    with pytest.raises(EngineError, match='cannot create a builder'):
        eng.tensorrt_object(trt.Builder, logger, 'a builder', logger)
    with pytest.raises(EngineError, match='cannot create a runtime'):
        eng.tensorrt_object(trt.Runtime, logger, 'a runtime', logger)
    onnx_path = tmp_path / 'missing-but-unread.onnx'
    with pytest.raises(EngineError, match='needs a CUDA GPU'):
        eng.build_engine(onnx_path, tmp_path / 'x.engine', precision='fp32', log=lambda m: None)


@pytest.mark.skipif(GPUS > 0, reason='checks the behaviour without a GPU')
def test_without_gpu_the_backend_is_a_clear_error(tmp_path):
    pytest.importorskip('torch', reason='torch is not installed')
    from depth_node.backends.tensorrt import TensorRTBackend
    from depth_node.models.card import ModelCard
    card = ModelCard(name='tiny', input_name='x', output_name='y', network_image_width=8,
                     network_image_height=8)
    with pytest.raises(EngineError, match='needs a CUDA GPU'):
        TensorRTBackend(tmp_path / 'm.onnx', card, log=lambda m: None)


def test_fp16_on_tensorrt_11_is_refused_clearly(tmp_path):
    if MAJOR < 11:
        pytest.skip(f'TensorRT {trt.__version__} builds FP16 with BuilderFlag.FP16')
    with pytest.raises(EngineError, match='removed weak typing'):
        eng.build_engine(tmp_path / 'm.onnx', tmp_path / 'm.engine', precision='fp16',
                         log=lambda m: None)


@needs_gpu
def test_parse_and_pin_layers_on_a_real_network(tmp_path):
    """Builder, parser, config, timing cache and FP32 pins on a real network (no build)."""
    onnx = pytest.importorskip('onnx')
    helper = onnx.helper
    x = helper.make_tensor_value_info('pixel_values', onnx.TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info('predicted_depth', onnx.TensorProto.FLOAT, [1, 4, 8])
    scale = helper.make_tensor('scale', onnx.TensorProto.FLOAT, [8], [1.0] * 8)
    bias = helper.make_tensor('bias', onnx.TensorProto.FLOAT, [8], [0.0] * 8)
    nodes = [helper.make_node('LayerNormalization', ['pixel_values', 'scale', 'bias'], ['n'],
                              axis=-1),
             helper.make_node('Softmax', ['n'], ['predicted_depth'], axis=-1)]
    model = helper.make_model(helper.make_graph(nodes, 'g', [x], [y], [scale, bias]),
                              opset_imports=[helper.make_opsetid('', 17)])
    path = tmp_path / 'ln.onnx'
    onnx.save(model, str(path))
    logger = eng.tensorrt_logger(trt)
    builder = eng.tensorrt_object(trt.Builder, logger, 'a builder', logger)
    network = builder.create_network(eng._network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path)), [str(parser.get_error(i))
                                               for i in range(parser.num_errors)]
    assert network.num_inputs == 1 and tuple(network.get_input(0).shape) == (1, 4, 8)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 64 << 20)
    cache = config.create_timing_cache(b'')
    assert config.set_timing_cache(cache, False)
    assert memoryview(config.get_timing_cache().serialize()).nbytes > 0
    if MAJOR >= 10:
        config.progress_monitor = eng._progress_monitor(trt, lambda m: None)
    if MAJOR < 11:
        assert eng.mark_fp32_layers(network, trt) >= 2  # normalisation and softmax
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    assert logger.errors == []
