"""ROS-free helpers of the node tests: a tiny real ONNX model, a fake model, test messages.

Messages are built with a :class:`~depth_node.messages.MessageFactory`: the real rclpy one on a
ROS 2 graph (``depth_node.node.rclpy_factory()``) or a rosbags one offline.
"""

from __future__ import annotations

from pathlib import Path
import threading
import time

import numpy as np

K_TUM = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]


def build_tiny_onnx(path: Path, width: int = 64, height: int = 48, scale: float = 4.0,
                    offset: float = 1.0, batch: int | str = 1, *, absolute: bool = False,
                    input_name: str = 'image', output_name: str = 'depth',
                    **card_fields) -> Path:
    """Build a real tiny ONNX "metric depth" model and card: depth = offset + scale * mean(rgb).

    ``batch='batch'`` gives it a batch axis (as ``depth-node export --dynamic-batch`` does);
    ``absolute`` averages |rgb| (depth >= offset whatever the normalisation); ``card_fields``
    go to the card (e.g. ``image_mean``).
    """
    from depth_node.models.card import card_path_for, ModelCard
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                        [batch, 3, height, width])
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, height, width])
    inits = [numpy_helper.from_array(np.array([1], np.int64), 'axes'),
             numpy_helper.from_array(np.array(scale, np.float32), 'scale'),
             numpy_helper.from_array(np.array(offset, np.float32), 'offset')]
    nodes = [helper.make_node('Abs', [input_name], ['pixels'])] if absolute else []
    nodes += [helper.make_node('ReduceMean', ['pixels' if absolute else input_name, 'axes'],
                               ['mean'], keepdims=0),
              helper.make_node('Mul', ['mean', 'scale'], ['scaled']),
              helper.make_node('Add', ['scaled', 'offset'], [output_name])]
    graph = helper.make_graph(nodes, 'tiny_depth', [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    card = {'name': 'tiny-test-depth', 'output_kind': 'metric_depth', **card_fields}
    ModelCard(input_name=input_name, output_name=output_name, network_image_width=width,
              network_image_height=height, **card).save(card_path_for(path))
    return path


class FakeBackend:
    """What the node reads of a backend: info() and close()."""

    def __init__(self) -> None:
        self.closed = False

    def info(self) -> dict[str, str]:
        return {'backend': 'fake', 'device': 'cpu', 'precision': 'fp32'}

    def close(self) -> None:
        self.closed = True


class FakeModel:
    """A model object with ``card`` and ``predict``: constant metric depth, optional delay."""

    def __init__(self, depth_m: float = 2.0, delay_s: float = 0.0,
                 output_kind: str = 'metric_depth') -> None:
        from depth_node.models.card import ModelCard
        from depth_node.models.preprocess import Preprocessor
        self.card = ModelCard(name='fake', input_name='x', output_name='y',
                              network_image_width=32, network_image_height=24,
                              output_kind=output_kind)
        self._pre = Preprocessor(self.card)
        self.depth_m = depth_m
        self.delay_s = delay_s
        self.backend = FakeBackend()
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def predict(self, rgb):
        self.calls += 1
        self.started.set()
        self.release.wait(10.0)
        if self.delay_s:
            time.sleep(self.delay_s)
        _, transform = self._pre(rgb)
        raw = np.full(rgb.shape[:2], self.depth_m, dtype=np.float32)
        return raw, transform, {'preprocess_ms': 0.1, 'inference_ms': 1.0,
                                'postprocess_ms': 0.1}

    def close(self) -> None:
        self.backend.close()


def opener_for(model):
    """Return a model_opener for DepthNode that returns ``model`` and records the call."""
    calls = []

    def opener(path, overrides, **options):
        calls.append((path, overrides, options))
        return model
    opener.calls = calls
    return opener


def now_stamp() -> tuple[int, int]:
    """Return the current wall-clock time as (sec, nanosec)."""
    ns = time.time_ns()
    return ns // 1_000_000_000, ns % 1_000_000_000


def camera_info(factory, stamp, frame_id='tum_rgb_optical_frame', width=640, height=480,
                k=None):
    """Return a plumb_bob CameraInfo with D = 0 (rosbags message)."""
    k = K_TUM if k is None else k
    kk = np.asarray(k, dtype=np.float64)
    p = np.array([kk[0], kk[1], kk[2], 0.0, kk[3], kk[4], kk[5], 0.0, 0.0, 0.0, 1.0, 0.0])
    return factory.CameraInfo(
        header=factory.header(*stamp, frame_id), height=height, width=width,
        distortion_model='plumb_bob', d=factory.float64_array(np.zeros(5)), k=kk,
        r=np.eye(3).reshape(-1), p=p,
        binning_x=0, binning_y=0,
        roi=factory.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                     do_rectify=False))


def rgb_image(factory, rgb, stamp, frame_id='tum_rgb_optical_frame', encoding='rgb8'):
    """Return an Image message (rosbags) of an RGB array."""
    from depth_node.images import make_image
    return make_image(factory, factory.header(*stamp, frame_id), rgb, encoding)
