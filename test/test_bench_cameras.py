"""``depth-node bench node --cameras N`` on a real ROS 2 graph, with node processes of its own.

A tiny real ONNX model with a batch axis, small frames: one node with ``cameras`` and N
single-camera nodes both serve every round, and the figures say what ran (one model instance
against N) and compare the round times.
"""

from __future__ import annotations

import json

from node_helpers import build_tiny_onnx
import pytest
import ros_graph

ros_graph.require_rclpy()
pytest.importorskip('onnxruntime', reason='the benchmark runs a tiny ONNX model')


def test_bench_node_cameras_compares_one_batched_node_with_n_nodes(tmp_path, capsys):
    from depth_node.cli import main
    model = build_tiny_onnx(tmp_path / 'tiny_b.onnx', batch='batch')
    assert main(['bench', 'node', '--model', str(model), '--backend', 'onnxruntime',
                 '--cameras', '3', '--frames', '5', '--resolution', '160x120', '--json']) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures['cameras'] == 3 and figures['rounds'] == 5
    assert figures['batched_model_instances'] == 1 and figures['separate_model_instances'] == 3
    for run in ('batched', 'separate'):
        assert figures[f'{run}_rounds_lost'] == 0
        assert 0 < figures[f'{run}_round_ms_p50'] <= figures[f'{run}_round_ms_p95']
        assert figures[f'{run}_per_camera_ms'] == pytest.approx(
            figures[f'{run}_round_ms_p50'] / 3, abs=1e-2)
        assert figures[f'{run}_rss_mib'] > 0
    assert figures['batched_over_separate'] > 0


def test_bench_node_cameras_needs_two(tmp_path):
    from depth_node.errors import DepthNodeError
    from depth_node.tools.bench_cameras import run_cameras_bench
    with pytest.raises(DepthNodeError, match='at least 2 cameras'):
        run_cameras_bench(str(tmp_path / 'm.onnx'), 64, 48, cameras=1)
