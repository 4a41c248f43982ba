"""Shared pytest fixtures: real test data, message factories, a tiny model, a real ROS graph.

``shared_data`` (``../shared/data``), ``factory`` (rosbags messages, Humble and Jazzy),
``humble_factory``, ``model`` (a tiny random-weight ONNX model with its card, per test module)
and ``graph`` (a real ROS 2 graph per test module, :mod:`ros_graph`). A module that needs
something else under one of these names defines its own fixture, which wins.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path | None:
    """Return the shared real-data folder, or None when it is not present."""
    env = os.environ.get('DEPTH_NODE_SHARED_DATA')
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / 'shared' / 'data')
    for path in candidates:
        if (path / 'README.md').is_file():
            return path
    return None


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test with a clear reason when it is absent."""
    path = shared_data_path()
    if path is None:
        pytest.skip('real test data not found: ../shared/data beside the repository (or '
                    '$DEPTH_NODE_SHARED_DATA) is absent')
    return path


@pytest.fixture
def tum_bag(shared_data) -> Path:
    """Return the TUM RGB-D sample recording (MCAP, rosbag2) in ``../shared/data``."""
    return shared_data / 'bags' / 'tum_rgbd_sample_mcap'


@pytest.fixture
def no_model(monkeypatch):
    """Make loading the bag tool's model fail the test: the checks must come before it."""
    from depth_node import bag

    def build(options):
        raise AssertionError('the model was loaded before the inputs were checked')
    monkeypatch.setattr(bag, 'build_pipeline', build)


@pytest.fixture(scope='session', params=['humble', 'jazzy'])
def factory(request):
    """Return a rosbags message factory for Humble and for Jazzy."""
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    from depth_node.messages import rosbags_factory
    return rosbags_factory(request.param)


@pytest.fixture(scope='session')
def humble_factory():
    """Return a rosbags message factory for Humble."""
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    from depth_node.messages import rosbags_factory
    return rosbags_factory('humble')


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Path:
    """Return a tiny random-weight ONNX depth model with its card (one per test module)."""
    from test_bag_support import tiny_model
    return tiny_model(tmp_path_factory.mktemp('tiny_model'))


@pytest.fixture(scope='module')
def graph():
    """Yield a real ROS 2 graph with rclpy and Fast DDS, one per test module."""
    import ros_graph
    ros_graph.require_rclpy()
    with ros_graph.session() as g:
        yield g


@pytest.fixture(scope='module', params=['depth_anything', 'dpt'])
def tiny(request, tmp_path_factory):
    """Return (torch module, ONNX path, card with reference) of each tiny torch architecture."""
    pytest.importorskip('torch', reason='torch is not installed (depth_node[torch])')
    pytest.importorskip('transformers', reason='transformers is not installed')
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    from tiny_torch_models import build_tiny
    return build_tiny(request.param, tmp_path_factory.mktemp(request.param))
