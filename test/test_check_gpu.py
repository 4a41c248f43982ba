"""``depth-node check-gpu --device cpu --quick``: the prepared GPU check cannot rot.

The full command is for a GPU host; here the whole check runs on the CPU with a tiny network
(torch CPU tensors stand in for the device), and its JSON is checked for every figure.
"""

from __future__ import annotations

import json

from depth_node.cli import main
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed (depth_node[torch])')
pytest.importorskip('transformers', reason='transformers is not installed')

STAGES = {'decode_ms', 'preprocess_ms', 'inference_ms', 'postprocess_ms', 'metric_ms',
          'encode_ms', 'cloud_ms'}


def test_check_gpu_cpu_dry_run(capsys, tmp_path):
    out_file = tmp_path / 'check.json'
    status = main(['check-gpu', '--device', 'cpu', '--quick', '--frames', '2',
                   '--output', str(out_file)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1                       # one JSON object, logs on stderr
    result = json.loads(lines[0])
    assert json.loads(out_file.read_text()) == result
    assert result['device'] == 'cpu' and result['frames'] == 2
    assert 'random weights' in result['model']
    assert result['image'].startswith(('real: ', 'synthetic'))
    keys = {'160x120@70x70', '192x108@70x70', '160x120@42x42', '192x108@42x42'}
    for precision in ('fp32', 'fp16'):
        assert set(result[precision]) == keys
        for entry in result[precision].values():
            assert entry['precision_effective'] == 'fp32'     # CPUs compute fp32
            assert entry['inference_ms'] > 0 and entry['frame_ms'] > 0
            assert entry['frame_over_inference'] == pytest.approx(
                entry['frame_ms'] / entry['inference_ms'], rel=1e-2)
            assert set(entry['stages']) == STAGES
            # torch CPU tensors through the GPU path give exactly the numpy path's results
            assert entry['gpu_vs_cpu_max_abs_diff'] == {'depth': 0.0, 'cloud': 0.0}
            assert entry['nonfinite_mismatch'] == {'depth': 0, 'cloud': 0}
            assert entry['self_test']['passed'] is True
    for entry in result['fp16'].values():
        assert entry['fp16_vs_fp32_abs_rel'] is None and 'CUDA' in entry['fp16_note']
    assert result['goals']['met'] is None and result['goals']['judged_on'] == '160x120@70x70'


def test_check_gpu_refuses_what_it_cannot_run(capsys):
    assert main(['check-gpu', '--device', 'cpu', '--precisions', 'fp8']) == 2
    assert '--precisions' in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(['check-gpu', '--quick']) == 2
        assert '--device cpu' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['check-gpu', '--network-sizes', '50'])
