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
    assert figures['threads_max'] == figures['threads_min']
    # resident memory after warm-up (the first fifth): the peak of the last half within 5 % of
    # the peak of the half before it
    assert figures['rss_growth'] <= 0.05, figures['samples']
