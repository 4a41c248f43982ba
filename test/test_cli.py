"""The depth-node command line: help works without the heavy optional dependencies."""

from __future__ import annotations

import subprocess
import sys

from depth_node import cli


def test_help_lists_every_subcommand(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_top_level_import_stays_light():
    code = ('import sys, depth_node.cli, depth_node.pipeline, depth_node.parameters; '
            'heavy = [m for m in ("torch", "onnxruntime", "tensorrt", "rosbags", "rclpy", '
            '"transformers") if m in sys.modules]; print(heavy)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == '[]'


def test_unknown_subcommand_is_a_usage_error():
    proc = subprocess.run([sys.executable, '-m', 'depth_node.cli', 'no-such-tool'],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and 'invalid choice' in proc.stderr
