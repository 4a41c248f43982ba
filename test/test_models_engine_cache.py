"""TensorRT engine cache: key, sidecar, rebuild decisions and errors (no TensorRT needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import time
from types import SimpleNamespace

from depth_node.errors import EngineError, ModelError
from depth_node.models import engine as eng
from depth_node.tools import build_engine
import pytest

onnx = pytest.importorskip('onnx', reason='onnx is not installed (reads the ONNX input shapes)')


class FakeKeySource:
    """Machine facts without TensorRT or a GPU."""

    def __init__(self, version='10.3.0', gpu=('Orin (nvgpu)', '8.7')):
        self.version, self.gpu_info = version, gpu

    def tensorrt_version(self):
        return self.version

    def gpu(self):
        return self.gpu_info


class FakeBuilder:
    """Writes a fake engine whose bytes name the precision; counts calls."""

    def __init__(self, write=True):
        self.calls = []
        self.write = write

    def __call__(self, onnx_path, engine_path, **kwargs):
        self.calls.append((Path(onnx_path), Path(engine_path), kwargs))
        if self.write:
            Path(engine_path).write_bytes(f"engine {kwargs['precision']}".encode())
        return engine_path


def _make_onnx(path: Path, shape=(1, 3, 28, 42), scale=2.0) -> Path:
    helper = onnx.helper
    x = helper.make_tensor_value_info('pixel_values', onnx.TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info('predicted_depth', onnx.TensorProto.FLOAT, list(shape))
    k = helper.make_tensor('k', onnx.TensorProto.FLOAT, [], [scale])
    graph = helper.make_graph([helper.make_node('Mul', ['pixel_values', 'k'],
                                                ['predicted_depth'])], 'g', [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model(tmp_path):
    path = _make_onnx(tmp_path / 'net.onnx')
    (tmp_path / 'net.card.yaml').write_text('name: net\n')
    return path


def test_key_from_onnx_and_source(model):
    key = eng.compute_key(model, 'fp16', FakeKeySource())
    assert key.tensorrt_version == '10.3.0' and key.gpu_name == 'Orin (nvgpu)'
    assert key.compute_capability == '8.7' and key.precision == 'fp16'
    assert key.input_shapes == {'pixel_values': [1, 3, 28, 42]}
    assert len(key.onnx_sha256) == 64
    assert eng.EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    assert key.differences(key) == []


def test_key_differences_name_each_field(model, tmp_path):
    base = eng.compute_key(model, 'fp16', FakeKeySource())
    other = eng.compute_key(_make_onnx(tmp_path / 'b.onnx', (1, 3, 14, 14), 3.0), 'fp32',
                            FakeKeySource('8.6.2', ('NVIDIA GeForce RTX 4090', '8.9')))
    text = ' | '.join(base.differences(other))
    for expected in ('ONNX file changed', 'tensorrt version: built for 10.3.0, now 8.6.2',
                     'gpu name', 'compute capability: built for 8.7, now 8.9',
                     'precision: built for fp16, now fp32', 'input shapes'):
        assert expected in text
    assert len(base.differences(other)) == 6


def test_build_then_cache_hit(model):
    builder, logs = FakeBuilder(), []
    path, key = eng.ensure_engine(model, precision='fp16', key_source=FakeKeySource(),
                                  builder=builder, log=logs.append)
    assert path == model.with_name('net.fp16.engine') and path.read_bytes() == b'engine fp16'
    assert len(builder.calls) == 1 and builder.calls[0][2]['precision'] == 'fp16'
    sidecar = eng.read_sidecar(path)
    assert sidecar['key'] == key and eng.sidecar_path(path).name == 'net.fp16.engine.json'
    path2, key2 = eng.ensure_engine(model, precision='fp16', key_source=FakeKeySource(),
                                    builder=builder, log=logs.append)
    assert path2 == path and key2 == key and len(builder.calls) == 1
    assert any('cache hit' in line for line in logs)


@pytest.mark.parametrize('change,reason', [
    ({'precision': 'fp32'}, 'precision: built for fp16, now fp32'),
    ({'key_source': FakeKeySource(version='10.7.0')}, 'tensorrt version'),
    ({'key_source': FakeKeySource(gpu=('NVIDIA A100', '8.0'))}, 'gpu name'),
    ({'force': True}, 'forced'),
])
def test_mismatch_rebuilds(model, change, reason):
    builder, logs = FakeBuilder(), []
    target = model.with_name('fixed.engine')  # an explicit engine file (engine_file_path)
    eng.ensure_engine(model, target, precision='fp16', key_source=FakeKeySource(),
                      builder=builder, log=logs.append)
    kwargs = {'precision': 'fp16', 'key_source': FakeKeySource(), **change}
    path, key = eng.ensure_engine(model, target, builder=builder, log=logs.append, **kwargs)
    assert path == target and len(builder.calls) == 2
    assert reason in logs[-1]
    assert eng.read_sidecar(target)['key'] == key


def test_default_paths_keep_one_engine_per_precision(model):
    builder = FakeBuilder()
    fp16, _ = eng.ensure_engine(model, key_source=FakeKeySource(), builder=builder,
                                log=lambda m: None)
    fp32, _ = eng.ensure_engine(model, precision='fp32', key_source=FakeKeySource(),
                                builder=builder, log=lambda m: None)
    assert (fp16.name, fp32.name) == ('net.fp16.engine', 'net.fp32.engine')
    assert fp16.read_bytes() == b'engine fp16' and fp32.read_bytes() == b'engine fp32'
    for precision in ('fp16', 'fp32'):
        eng.ensure_engine(model, precision=precision, key_source=FakeKeySource(),
                          builder=builder, log=lambda m: None)
    assert len(builder.calls) == 2


def test_resolve_engine_path(model, tmp_path):
    assert eng.resolve_engine_path(model) == model.with_name('net.fp16.engine')
    assert eng.resolve_engine_path(model, tmp_path / 'c', 'fp32') == tmp_path / 'c' / \
        'net.fp32.engine'
    assert eng.resolve_engine_path(model, tmp_path / 'my.plan') == tmp_path / 'my.plan'


def test_changed_onnx_rebuilds(model):
    builder = FakeBuilder()
    eng.ensure_engine(model, key_source=FakeKeySource(), builder=builder, log=lambda m: None)
    _make_onnx(model, scale=5.0)
    action, reasons = eng.cache_decision(model.with_name('net.fp16.engine'),
                                         eng.compute_key(model, 'fp16', FakeKeySource()))
    assert action == 'rebuild' and 'ONNX file changed' in reasons[0]


def test_mismatch_refused_when_building_disabled(model):
    builder = FakeBuilder()
    eng.ensure_engine(model, key_source=FakeKeySource(), builder=builder, log=lambda m: None)
    with pytest.raises(EngineError) as err:
        eng.ensure_engine(model, key_source=FakeKeySource(version='8.6.2'), builder=builder,
                          allow_build=False, log=lambda m: None)
    text = str(err.value)
    assert 'tensorrt version: built for 10.3.0, now 8.6.2' in text
    assert 'depth-node build-engine' in text and str(model) in text
    assert len(builder.calls) == 1


def test_missing_engine_refused_when_building_disabled(model):
    with pytest.raises(EngineError, match='no engine at'):
        eng.ensure_engine(model, key_source=FakeKeySource(), builder=FakeBuilder(),
                          allow_build=False, log=lambda m: None)
    # an engine of the other precision exists: the message says why it does not fit
    eng.ensure_engine(model, precision='fp32', key_source=FakeKeySource(),
                      builder=FakeBuilder(), log=lambda m: None)
    with pytest.raises(EngineError) as err:
        eng.ensure_engine(model, key_source=FakeKeySource(), builder=FakeBuilder(),
                          allow_build=False, log=lambda m: None)
    assert 'net.fp32.engine does not fit: precision: built for fp32, now fp16' in str(err.value)


def test_engine_without_or_with_bad_sidecar_is_rebuilt(model):
    engine = model.with_name('net.fp16.engine')
    engine.write_bytes(b'old engine of unknown origin')
    key = eng.compute_key(model, 'fp16', FakeKeySource())
    action, reasons = eng.cache_decision(engine, key)
    assert action == 'rebuild' and 'no key file' in reasons[0]
    eng.sidecar_path(engine).write_text('{not json')
    action, reasons = eng.cache_decision(engine, key)
    assert action == 'rebuild' and 'unreadable' in reasons[0]
    with pytest.raises(EngineError, match='unreadable'):
        eng.read_sidecar(engine)
    eng.sidecar_path(engine).write_text(json.dumps({'key': {'precision': 'fp16'}}))
    with pytest.raises(EngineError, match='lacks'):
        eng.read_sidecar(engine)


def test_builder_writing_nothing_is_an_error(model):
    with pytest.raises(EngineError, match='wrote no engine'):
        eng.ensure_engine(model, key_source=FakeKeySource(), builder=FakeBuilder(write=False),
                          log=lambda m: None)
    assert not eng.sidecar_path(model.with_name('net.fp16.engine')).exists()


def test_cache_dir_gets_engine_and_card(model, tmp_path):
    cache = tmp_path / 'cache'
    path, _ = eng.ensure_engine(model, cache, key_source=FakeKeySource(),
                                builder=FakeBuilder(), log=lambda m: None)
    assert path == cache / 'net.fp16.engine' and path.is_file()
    assert (cache / 'net.fp16.card.yaml').read_text() == 'name: net\n'
    assert (cache / 'net.fp16.engine.json').is_file()


def test_missing_onnx(tmp_path):
    with pytest.raises(EngineError, match='does not exist'):
        eng.ensure_engine(tmp_path / 'none.onnx', key_source=FakeKeySource(),
                          builder=FakeBuilder(), log=lambda m: None)


def test_bad_precision(model):
    with pytest.raises(EngineError, match='fp16, fp32'):
        eng.compute_key(model, 'int4', FakeKeySource())


def test_engine_from_another_machine_refused(model):
    eng.ensure_engine(model, key_source=FakeKeySource(), builder=FakeBuilder(),
                      log=lambda m: None)
    engine = model.with_name('net.fp16.engine')
    eng.check_engine_for_machine(engine, FakeKeySource())  # same machine: fine
    with pytest.raises(EngineError) as err:
        eng.check_engine_for_machine(engine, FakeKeySource(gpu=('NVIDIA L4', '8.9')))
    assert 'built for Orin (nvgpu), now NVIDIA L4' in str(err.value)
    assert 'built elsewhere' in str(err.value)


def test_sha256_covers_external_data(model):
    before = eng.file_sha256(model)
    model.with_name(model.name + '.data').write_bytes(b'weights')
    assert eng.file_sha256(model) != before


def test_mark_fp32_layers_with_fake_network():
    class Layer:

        def __init__(self, kind, outputs=1, dtype='f32'):
            self.type, self.num_outputs, self.precision = kind, outputs, 'any'
            self.output_types = {}
            self.dtype = dtype

        def get_output(self, index):
            assert index < self.num_outputs
            return SimpleNamespace(dtype=self.dtype)

        def set_output_type(self, index, dtype):
            self.output_types[index] = dtype

    trt = SimpleNamespace(
        LayerType=SimpleNamespace(NORMALIZATION='norm', SOFTMAX='softmax', REDUCE='reduce',
                                  CONVOLUTION='conv', MATRIX_MULTIPLY='mm'),
        float32='f32', float16='f16')
    layers = [Layer('conv'), Layer('norm', dtype='f16'), Layer('mm'), Layer('softmax'),
              Layer('reduce', 2), Layer('reduce', dtype='i64')]
    network = SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    assert eng.mark_fp32_layers(network, trt) == 3
    assert [layer.precision for layer in layers] == ['any', 'f32', 'any', 'f32', 'f32', 'any']
    assert layers[5].output_types == {}  # integer reduce (shape math) keeps its type
    assert layers[4].output_types == {0: 'f32', 1: 'f32'}
    assert layers[0].output_types == {}
    # TensorRT without NORMALIZATION (older): the others are still pinned
    del trt.LayerType.NORMALIZATION
    fresh = [Layer('norm'), Layer('softmax')]
    network = SimpleNamespace(num_layers=2, get_layer=lambda i: fresh[i])
    assert eng.mark_fp32_layers(network, trt) == 1


@pytest.mark.parametrize('version,expected', [('8.6.1', 1 << 0), ('10.3.0', 0)])
def test_explicit_batch_flag(version, expected):
    trt = SimpleNamespace(__version__=version,
                          NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0))
    assert eng._network_flags(trt) == expected


def test_heartbeat_logs_while_running():
    lines = []
    with eng.Heartbeat(lines.append, 'still building', interval_s=0.02) as beat:
        time.sleep(0.15)
    assert beat.beats >= 2 and all(line.startswith('still building (') for line in lines)
    count = len(lines)
    time.sleep(0.06)
    assert len(lines) == count


def _parse(argv):
    parser = argparse.ArgumentParser()
    build_engine.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_parsing():
    args = _parse(['build-engine', 'm.onnx'])
    assert args.precision == 'fp16' and args.workspace == 2048 and args.output is None
    assert args.func is build_engine.run and args.fp32_layers == 'auto' and not args.force
    args = _parse(['build-engine', 'm.onnx', '--fp32', '--workspace', '512', '--timing-cache',
                   't.cache', '--output', 'x.engine', '--force'])
    assert (args.precision, args.workspace, args.timing_cache, args.output, args.force) == (
        'fp32', 512, 't.cache', 'x.engine', True)
    assert _parse(['build-engine', 'm.onnx', '--fp16']).precision == 'fp16'
    with pytest.raises(SystemExit):
        _parse(['build-engine', 'm.onnx', '--fp16', '--fp32'])


def test_cli_refuses_engine_input_and_bad_output(tmp_path):
    with pytest.raises(ModelError, match='already an engine'):
        build_engine.run(_parse(['build-engine', str(tmp_path / 'm.engine')]))
    with pytest.raises(ModelError, match='.engine'):
        build_engine.run(_parse(['build-engine', str(tmp_path / 'm.onnx'), '-o',
                                 str(tmp_path / 'm.x')]))


def test_cli_without_tensorrt_says_how_to_install(model, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip('TensorRT is installed here; this checks the message without it')
    except ImportError:
        pass
    from depth_node import cli
    assert cli.main(['build-engine', str(model)]) == 2
    err = capsys.readouterr().err
    assert 'tensorrt' in err and 'pip install' in err
    assert not model.with_name('net.fp16.engine').exists()


def test_read_only_engine_folder_fails_before_building(model, tmp_path):
    import os
    if os.geteuid() == 0:
        pytest.skip('root can write into read-only folders, so this cannot be checked as root')
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o555)
    builder = FakeBuilder()
    try:
        with pytest.raises(EngineError, match='writable folder'):
            eng.ensure_engine(model, folder, key_source=FakeKeySource(), builder=builder,
                              log=lambda m: None)
    finally:
        folder.chmod(0o755)
    assert builder.calls == []


def test_engine_path_that_is_a_directory_fails_before_building(model, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    builder = FakeBuilder()
    with pytest.raises(EngineError, match='writable folder'):
        eng.ensure_engine(model, blocker / 'sub', key_source=FakeKeySource(), builder=builder,
                          log=lambda m: None)
    assert builder.calls == []
