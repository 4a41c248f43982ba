"""`depth-node bench core`: runs at a tiny resolution and prints one sane JSON object."""

from __future__ import annotations

import argparse
import json

from depth_node.cli import main
from depth_node.tools.arguments import parse_resolution
from depth_node.tools.bench_core import run_core_bench
import pytest

KEYS = ('decode_ms', 'cloud_ms', 'message_ms', 'depth_encode_ms', 'memcpy_ms', 'cloud_ratio')


@pytest.mark.parametrize('fields', ['xyz', 'xyzrgb'])
def test_bench_core_json(capsys, fields):
    status = main(['bench', 'core', '--resolution', '64x48', '--fields', fields,
                   '--repeat', '5', '--json'])
    assert status == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    result = json.loads(out)
    for key in KEYS:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result['resolution'] == '64x48' and result['fields'] == fields
    assert result['repeat'] == 5
    assert result['cloud_bytes'] == 64 * 48 * (16 if fields == 'xyzrgb' else 12)
    ratio = (result['cloud_ms'] + result['message_ms']) / result['memcpy_ms']
    assert result['cloud_ratio'] == pytest.approx(ratio, rel=0.01, abs=0.01)


def test_bench_core_decimation_and_16uc1():
    result = run_core_bench(40, 30, repeat=3, decimation=4, depth_encoding='16UC1')
    assert result['cloud_bytes'] == 10 * 8 * 12
    assert result['depth_encoding'] == '16UC1'


def test_bad_resolution(capsys):
    with pytest.raises(SystemExit):
        main(['bench', 'core', '--resolution', '640by480'])
    assert 'WIDTHxHEIGHT' in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError):
        parse_resolution('0x10')


def test_print_figures_json_or_lines(capsys):
    import json

    from depth_node.tools.arguments import print_figures
    figures = {'latency_ms_p50': 12.5, 'samples': [1, 2]}
    print_figures(figures, as_json=True, hide=('samples',))
    assert json.loads(capsys.readouterr().out) == figures       # JSON keeps everything
    print_figures(figures, as_json=False, hide=('samples',))
    assert capsys.readouterr().out == 'latency_ms_p50: 12.5\n'
    print_figures({'a': 1}, as_json=False, key_width=4)
    assert capsys.readouterr().out == '   a: 1\n'
