"""Helpers of the bag tool tests (no tests here): tiny models, bag building and reading."""

from __future__ import annotations

from pathlib import Path
import threading

from conftest import shared_data_path
import numpy as np
import pytest

TINY_DA = {'backbone_config': {'hidden_size': 32, 'num_hidden_layers': 4,
                               'num_attention_heads': 2, 'out_indices': [1, 2, 3, 4]},
           'reassemble_hidden_size': 32, 'neck_hidden_sizes': [8, 8, 16, 16],
           'fusion_hidden_size': 16, 'head_hidden_size': 8}

_LOCK = threading.Lock()
_CACHE: dict[str, Path] = {}


def tiny_model(tmp_root: Path) -> Path:
    """Return a tiny random Depth Anything V2 (Dinov2 backbone) exported at 56x56 (cached)."""
    pytest.importorskip('torch', reason='torch is needed to export the tiny test model')
    pytest.importorskip('transformers', reason='transformers is needed for the tiny model')
    pytest.importorskip('onnxruntime', reason='onnxruntime runs the tiny test model')
    with _LOCK:
        if 'tiny' not in _CACHE:
            from depth_node.models.export import export_model
            path, _ = export_model('depth-anything-v2-small', tmp_root / 'tiny_da.onnx',
                                   input_size=(56, 56), random_weights=True,
                                   config_overrides=TINY_DA, log=lambda *_: None)
            _CACHE['tiny'] = path
        return _CACHE['tiny']


def pydnet(repo_root: Path) -> tuple[Path, Path]:
    """Return the real PyDNet++ ONNX file and its hand-written card (skip when absent)."""
    pytest.importorskip('onnxruntime', reason='onnxruntime runs PyDNet++')
    data = shared_data_path()
    if data is None:
        pytest.skip('real test data not found (../shared/data)')
    model = data / 'models' / 'pydnet_pp' / 'optimized_pydnet++.onnx'
    card = repo_root / 'config' / 'models' / 'pydnet_pp.card.yaml'
    if not model.is_file() or not card.is_file():
        pytest.skip(f'PyDNet++ model or card missing ({model}, {card})')
    return model, card


def read_bag(path: Path) -> list[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log time, raw CDR bytes) of every message, in file order."""
    from rosbags.highlevel import AnyReader
    with AnyReader([Path(path)]) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


def decode(store, rows):
    """Deserialize rows of :func:`read_bag` with a typestore: list of (topic, log time, msg)."""
    return [(topic, t, store.deserialize_cdr(raw, msgtype)) for topic, msgtype, t, raw in rows]


def check_cdr(store, rows) -> None:
    """Every message deserializes and serializes back to the same bytes (valid CDR)."""
    for topic, msgtype, _, raw in rows:
        msg = store.deserialize_cdr(raw, msgtype)
        again = bytes(store.serialize_cdr(msg, msgtype))
        assert again == raw, f'{topic}: CDR round trip differs'


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def tum_rgb_small(width: int = 64, height: int = 48) -> np.ndarray:
    """Return the TUM RGB frame shrunk to a small size (RGB uint8)."""
    import cv2
    data = shared_data_path()
    if data is None:
        pytest.skip('real test data not found (../shared/data)')
    bgr = cv2.imread(str(data / 'rgbd' / 'open3d_tum' / 'TUM_color.png'), cv2.IMREAD_COLOR)
    small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small[:, :, ::-1])


def camera_info(f, stamp: int, width: int, height: int, frame: str, scale: float = 0.1,
                k=None):
    """Return a TUM-like CameraInfo (525 px focal at 640x480, scaled by ``scale``)."""
    K = np.array([525 * scale, 0, 319.5 * scale, 0, 525 * scale, 239.5 * scale, 0, 0, 1.0]) \
        if k is None else np.asarray(k, dtype=np.float64)
    P = np.array([K[0], 0, K[2], 0, 0, K[4], K[5], 0, 0, 0, 1, 0], dtype=np.float64)
    return f.CameraInfo(
        header=f.header(stamp // 10**9, stamp % 10**9, frame), height=height, width=width,
        distortion_model='plumb_bob', d=f.float64_array(np.zeros(5)),
        k=f.fixed_float64_array(K), r=f.fixed_float64_array(np.eye(3).reshape(-1)),
        p=f.fixed_float64_array(P), binning_x=0, binning_y=0,
        roi=f.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def image(f, stamp: int, rgb: np.ndarray, frame: str, encoding: str = 'rgb8',
          truncate: int | None = None):
    height, width = rgb.shape[:2]
    data = np.ascontiguousarray(rgb).reshape(-1)
    if truncate is not None:
        data = data[:truncate]
    return f.Image(header=f.header(stamp // 10**9, stamp % 10**9, frame), height=height,
                   width=width, encoding=encoding, is_bigendian=0, step=width * 3,
                   data=f.byte_array(data))


def jpeg(f, stamp: int, rgb: np.ndarray | None, frame: str, payload: bytes | None = None):
    import cv2
    if payload is None:
        ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(rgb[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        payload = buf.tobytes()
    return f.CompressedImage(header=f.header(stamp // 10**9, stamp % 10**9, frame),
                             format='rgb8; jpeg compressed bgr8',
                             data=f.byte_array(np.frombuffer(payload, dtype=np.uint8)))


def write_bag(path: Path, store, rows, storage: str = 'mcap') -> Path:
    """Write rows of (topic, log time ns, message or (msgtype, raw bytes)) to a rosbag2 bag."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(path, version=8, storage_plugin=plugin)
    conns = {}
    with writer:
        for topic, t, msg in rows:
            if isinstance(msg, tuple):
                msgtype, raw = msg
            else:
                msgtype = msg.__msgtype__
                raw = store.serialize_cdr(msg, msgtype)
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], t, raw)
    return path
