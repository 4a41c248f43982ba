"""``depth-node bench model`` (tools.bench_model) on tiny random networks."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip('torch', reason='torch is not installed (depth_node[torch])')
pytest.importorskip('transformers', reason='transformers is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')


QUIET = {'log': lambda msg: None}


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
