"""Soak: many frames through the node in its own process on a real ROS 2 graph.

``depth-node bench node --soak`` drives 640x480 frames as fast as the node takes them and
samples the node's resident memory and thread count. Checked: every output carries a stamp that
was sent and the right frame id, the node's counters add up (images received = frames
published + stale drops + errors), every published frame arrived, and memory and threads
stay flat after warm-up. CI runs ``$DEPTH_NODE_SOAK_FRAMES`` (default 1000) frames; the
10,000-frame figures come from ``depth-node bench node --soak --frames 10000``.
"""

from __future__ import annotations

import os

from node_helpers import build_tiny_onnx
import pytest
import ros_graph

ros_graph.require_rclpy()
pytest.importorskip('onnxruntime', reason='the soak runs a tiny ONNX model')


def test_soak_memory_threads_and_counters_stay_consistent(tmp_path):
    from depth_node.tools.bench_node import soak
    frames = int(os.environ.get('DEPTH_NODE_SOAK_FRAMES', '1000'))
    model = build_tiny_onnx(tmp_path / 'tiny.onnx')
    figures = soak(str(model), 640, 480, frames, backend='onnxruntime', sample_every=50)
    print({k: v for k, v in figures.items() if k != 'samples'})
    assert figures['wrong_stamps'] == 0 and figures['wrong_frame_ids'] == 0
    # best-effort transport may lose an image on a loaded machine: at most 1 %
    assert frames - frames // 100 <= figures['received'] <= frames
    assert figures['received'] == (figures['published'] + figures['dropped']
                                   + figures['errors'])
    # every published frame arrived; frames the node dropped as stale (a loaded machine) are
    # counted, and none failed
    assert figures['outputs'] == figures['published'] and figures['errors'] == 0
    # no thread is left behind: as many threads after the run as after warm-up (a short-lived
    # thread may show in one sample on a loaded machine; a leak shows at the end)
    assert figures['threads_end'] <= figures['threads_start'], figures['samples']
    assert figures['threads_max'] - figures['threads_min'] <= 4, figures['samples']
    # resident memory after warm-up (the first fifth): the peak of the last half within 5 % of
    # the peak of the half before it
    assert figures['rss_growth'] <= 0.05, figures['samples']


def test_bench_node_stops_at_once_when_the_node_cannot_configure(tmp_path):
    """A wrong card path is the node's configure error, in seconds, not a 2-minute wait."""
    from depth_node.errors import DepthNodeError
    from depth_node.tools.bench_node import run_node_bench
    model = build_tiny_onnx(tmp_path / 'tiny.onnx')
    with pytest.raises(DepthNodeError, match='could not configure') as caught:
        run_node_bench(str(model), 64, 48, frames=1, backend='onnxruntime',
                       card=str(tmp_path / 'missing.card.yaml'))
    assert 'missing.card.yaml does not exist' in str(caught.value)


def test_bench_node_says_why_a_relative_model_without_scale_gives_no_depth(tmp_path):
    from depth_node.errors import DepthNodeError
    from depth_node.tools.bench_node import run_node_bench
    model = build_tiny_onnx(tmp_path / 'tiny.onnx')
    card = tmp_path / 'tiny.card.yaml'
    card.write_text(card.read_text().replace('metric_depth', 'relative_depth'))
    with pytest.raises(DepthNodeError, match='scale_source=fixed') as caught:
        run_node_bench(str(model), 64, 48, frames=1, backend='onnxruntime',
                       params=['scale_source=none'])
    assert '[nothing_to_publish]' in str(caught.value)


def test_bench_node_parameters():
    from depth_node.errors import DepthNodeError
    from depth_node.tools.bench_node import node_parameters
    assert node_parameters() == {'scale_source': 'fixed'}
    assert node_parameters('c.card.yaml', ['scale_source=none', ' fixed_scale =2']) == {
        'scale_source': 'none', 'card_file_path': 'c.card.yaml', 'fixed_scale': '2'}
    with pytest.raises(DepthNodeError, match='NAME=VALUE'):
        node_parameters(params=['scale_source'])
