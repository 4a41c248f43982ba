"""Helpers of the pipeline tests (no tests here): the real TUM RGB-D frame, fake models."""

from __future__ import annotations

import copy
from pathlib import Path

from conftest import shared_data_path
import numpy as np
import pytest

TUM_BAG = Path('bags') / 'tum_rgbd_sample_mcap'
RGB_TOPIC = '/camera/color/image_raw'
JPEG_TOPIC = '/camera/color/image_raw/compressed'
INFO_TOPIC = '/camera/color/camera_info'
GT_TOPIC = '/camera/depth_registered/image_gt'

_CACHE: dict[str, dict] = {}


def tum_messages(distro: str = 'humble') -> dict[str, object]:
    """Return the four messages of the real TUM RGB-D sample bag by topic (read once, then copied).

    Read with rosbags' AnyReader (skips without rosbags or the shared data).
    """
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    if distro not in _CACHE:
        data = shared_data_path()
        if data is None:
            pytest.skip('real test data not found (../shared/data)')
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import get_typestore, Stores
        store = get_typestore(getattr(Stores, f'ROS2_{distro.upper()}'))
        msgs = {}
        with AnyReader([data / TUM_BAG], default_typestore=store) as reader:
            for connection, _, raw in reader.messages():
                msgs[connection.topic] = reader.deserialize(raw, connection.msgtype)
        assert {RGB_TOPIC, JPEG_TOPIC, INFO_TOPIC, GT_TOPIC} <= set(msgs), sorted(msgs)
        _CACHE[distro] = msgs
    return {topic: copy.deepcopy(msg) for topic, msg in _CACHE[distro].items()}


def pydnet_paths() -> tuple[Path, Path]:
    """Return the real PyDNet++ ONNX file and its hand-written card (skip when absent)."""
    pytest.importorskip('onnxruntime', reason='onnxruntime runs PyDNet++')
    data = shared_data_path()
    if data is None:
        pytest.skip('real test data not found (../shared/data)')
    model = data / 'models' / 'pydnet_pp' / 'optimized_pydnet++.onnx'
    card = Path(__file__).resolve().parents[1] / 'config' / 'models' / 'pydnet_pp.card.yaml'
    if not model.is_file() or not card.is_file():
        pytest.skip(f'PyDNet++ model or card missing ({model}, {card})')
    return model, card


def with_camera_info(msg, **changes):
    """Return a deep copy of a CameraInfo message with fields replaced (k/p/d as sequences)."""
    out = copy.deepcopy(msg)
    for name, value in changes.items():
        if name in ('k', 'r', 'p', 'd'):
            value = np.asarray(value, dtype=np.float64).reshape(-1)
        if name == 'frame_id':
            out.header.frame_id = value
            continue
        setattr(out, name, value)
    return out


def scaled_camera_info(msg, factor: float):
    """Return the camera_info of the same camera calibrated at ``factor`` times the resolution.

    Pixel centres map as cv2.resize does: ``c' = (c + 0.5) * factor - 0.5``.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3).copy()
    p = np.asarray(msg.p, dtype=np.float64).reshape(3, 4).copy()
    for m in (k, p):
        m[0, 0] *= factor
        m[1, 1] *= factor
        m[0, 2] = (m[0, 2] + 0.5) * factor - 0.5
        m[1, 2] = (m[1, 2] + 0.5) * factor - 0.5
    return with_camera_info(msg, width=int(round(msg.width * factor)),
                            height=int(round(msg.height * factor)), k=k, p=p)


class FakeModel:
    """A DepthModel stand-in: ``card`` and ``predict(rgb) -> (raw, transform, timings)``.

    ``function(rgb) -> (H, W) float32`` gives the raw output at image resolution; the
    Transform is the real one of :func:`depth_node.models.preprocess.preprocess`.
    """

    def __init__(self, card, function) -> None:
        self.card = card
        self.function = function
        self.calls = 0

    def predict(self, rgb):
        from depth_node.models.preprocess import compute_transform
        self.calls += 1
        transform = compute_transform(rgb.shape[1], rgb.shape[0], self.card)
        raw = np.asarray(self.function(rgb), dtype=np.float32)
        return raw, transform, {'preprocess_ms': 0.0, 'inference_ms': 0.0,
                                'postprocess_ms': 0.0}


def card(**fields):
    """Return a valid ModelCard with the given fields (network 518x392 stretch by default)."""
    from depth_node.models.card import ModelCard
    base = {'name': 'fake', 'input_name': 'x', 'output_name': 'y', 'network_image_width': 518,
            'network_image_height': 392, 'output_kind': 'relative_depth'}
    base.update(fields)
    return ModelCard.from_dict(base)


def smooth_relative(rgb: np.ndarray) -> np.ndarray:
    """Return a deterministic relative-depth-like map of an image (grey level, blurred, > 0)."""
    import cv2
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(grey, (0, 0), 5.0) / 32.0 + 1.0


def fake_relative_model() -> FakeModel:
    """Return a relative-depth fake model for state tests.

    It is an affine map of the TUM GT depth (holes filled, blurred) plus a small term that follows
    the image, so that a sparse-depth fit against the GT succeeds with a positive scale.
    """
    import cv2
    from depth_node.images import depth_to_metres
    gt = depth_to_metres(tum_messages()[GT_TOPIC])
    filled = np.where(np.isfinite(gt), gt, np.nanmedian(gt)).astype(np.float32)
    base = cv2.GaussianBlur(filled, (0, 0), 2.0) * np.float32(4.0) + np.float32(1.0)

    def function(rgb: np.ndarray) -> np.ndarray:
        if rgb.shape[:2] != base.shape:
            return cv2.resize(base, (rgb.shape[1], rgb.shape[0])) + smooth_relative(rgb) * 0.01
        return base + smooth_relative(rgb) * np.float32(0.01)
    return FakeModel(card(output_kind='relative_depth'), function)
