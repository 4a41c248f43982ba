"""Shared pytest fixtures: the real test data in ``../shared/data`` and message factories."""

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
