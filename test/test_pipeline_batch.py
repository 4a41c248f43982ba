"""Several cameras through one model call (issue 13): batch support in the core.

Real tiny models (ONNX built with the onnx helper, a tiny random Depth Anything V2 exported by
``depth-node export --dynamic-batch``, a torch module): a batch gives each frame what a
single call gives it, runs as one network call when the model has a batch axis, falls back to
one call per frame (with one notice) when it has a fixed batch of 1, and one camera's bad
frame costs no other camera its frame.
"""

from __future__ import annotations

import argparse
import json

from depth_node.backends.base import Backend
from depth_node.errors import DepthNodeError, ImageFormatError, ModelError
from depth_node.messages import rosbags_factory
from depth_node.models.card import ModelCard
from depth_node.models.preprocess import output_to_batch
from depth_node.pipeline import BatchItem, DepthPipeline, PipelineConfig
from depth_node.runner import DepthModel, open_model
import node_helpers as helpers
import numpy as np
import pytest

FACTORY = rosbags_factory()


def images(sizes=((640, 480), (320, 240), (800, 600)), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for w, h in sizes]


class Calls:
    """Count the network calls of a backend (infer and infer_batch)."""

    def __init__(self, backend, monkeypatch) -> None:
        self.single = self.batch = 0
        self.sizes: list[int] = []
        infer, infer_batch = backend.infer, backend.infer_batch

        def one(tensor):
            self.single += 1
            return infer(tensor)

        def many(tensor):
            self.batch += 1
            self.sizes.append(len(tensor))
            return infer_batch(tensor)
        monkeypatch.setattr(backend, 'infer', one)
        monkeypatch.setattr(backend, 'infer_batch', many)


@pytest.fixture
def batched(tmp_path):
    path = helpers.build_tiny_onnx(tmp_path / 'tiny_b.onnx', batch='batch')
    return open_model(path, backend='onnxruntime', log=lambda _m: None)


@pytest.fixture
def fixed(tmp_path):
    path = helpers.build_tiny_onnx(tmp_path / 'tiny.onnx')
    notes: list[str] = []
    model = open_model(path, backend='onnxruntime', log=notes.append)
    return model, notes


def test_batch_axis_is_detected(batched, fixed):
    assert batched.backend.max_batch is None and batched.max_batch is None
    assert batched.info()['max_batch'] == 'any'
    assert fixed[0].backend.max_batch == 1 and fixed[0].info()['max_batch'] == '1'


def test_one_network_call_gives_each_frame_its_single_result(batched, monkeypatch):
    rgbs = images()
    singles = [batched.predict(rgb) for rgb in rgbs]
    calls = Calls(batched.backend, monkeypatch)
    results, timings = batched.predict_batch(rgbs)
    assert (calls.batch, calls.single, calls.sizes) == (1, 0, [3])
    assert timings['batch_size'] == 3 and timings['model_calls'] == 1
    for (raw, transform), (want, want_t, _) in zip(results, singles):
        assert transform == want_t and raw.shape == want.shape
        np.testing.assert_allclose(raw, want, rtol=1e-6, atol=1e-6)
    # the frames really differ (a batch that repeated one frame would fail above)
    assert not np.allclose(results[0][0].mean(), results[2][0].mean())


def test_fixed_batch_model_runs_one_call_per_frame_with_one_notice(fixed, monkeypatch):
    model, notes = fixed
    rgbs = images()
    singles = [model.predict(rgb)[0] for rgb in rgbs]
    calls = Calls(model.backend, monkeypatch)
    for _ in range(3):
        results, timings = model.predict_batch(rgbs)
    assert calls.batch == 0 and calls.single == 9 and timings['model_calls'] == 3
    for (raw, _), want in zip(results, singles):
        np.testing.assert_allclose(raw, want, rtol=1e-6, atol=1e-6)
    notices = [n for n in notes if 'fixed batch of 1' in n]
    assert len(notices) == 1 and '--dynamic-batch' in notices[0]


def test_letterbox_border_is_cleared_when_a_slot_changes_size(tmp_path):
    path = helpers.build_tiny_onnx(tmp_path / 'pad.onnx', batch='batch')
    from depth_node.models.card import card_path_for, load_card
    card = load_card(path).replace(resize='keep_aspect_pad')
    card.save(card_path_for(path))
    model = open_model(path, backend='onnxruntime', log=lambda _m: None)
    wide, tall = images(((640, 240), (240, 640)), seed=3)
    for order in ([wide, tall], [tall, wide], [wide, wide]):
        results, _ = model.predict_batch(order)
        for (raw, _), rgb in zip(results, order):
            np.testing.assert_allclose(raw, model.predict(rgb)[0], rtol=1e-6, atol=1e-6)


class ReusingBackend(Backend):
    """A fixed-batch backend that returns one reused buffer, as the real ones do."""

    name = 'reusing'

    def __init__(self, card) -> None:
        super().__init__('reusing', card)
        self._out = np.empty((card.network_image_height, card.network_image_width), np.float32)

    def infer(self, tensor):
        self._out[...] = float(tensor.mean())
        return self._out


def test_default_infer_batch_copies_each_output_out_of_the_reused_buffer():
    card = ModelCard(name='r', input_name='x', output_name='y', network_image_width=8,
                     network_image_height=6, output_kind='metric_depth')
    backend = ReusingBackend(card)
    tensor = np.stack([np.full((3, 6, 8), v, np.float32) for v in (1.0, 2.0, 3.0)])
    out = backend.infer_batch(tensor)
    assert out.shape == (3, 6, 8)
    assert [float(out[i, 0, 0]) for i in range(3)] == [1.0, 2.0, 3.0]


def test_output_to_batch_shapes():
    assert output_to_batch(np.zeros((2, 1, 4, 5)), 2).shape == (2, 4, 5)
    assert output_to_batch(np.zeros((3, 4, 5)), 3).shape == (3, 4, 5)
    with pytest.raises(ModelError, match='batch of 2'):
        output_to_batch(np.zeros((1, 4, 5)), 2)


def test_torch_backend_runs_a_batch_in_one_module_call():
    torch = pytest.importorskip('torch')
    from depth_node.backends.torch import TorchBackend

    class Mean(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.calls = []

        def forward(self, x):
            self.calls.append(x.shape[0])
            return 1.0 + x.mean(dim=1)

    card = ModelCard(name='m', input_name='x', output_name='y', network_image_width=32,
                     network_image_height=24, output_kind='metric_depth')
    module = Mean()
    backend = TorchBackend(module, card, device='cpu', log=lambda _m: None)
    model = DepthModel(backend, card)
    rgbs = images()
    singles = [model.predict(rgb)[0] for rgb in rgbs]
    module.calls.clear()
    results, timings = model.predict_batch(rgbs)
    assert module.calls == [3] and timings['model_calls'] == 1
    for (raw, _), want in zip(results, singles):
        np.testing.assert_allclose(raw, want, rtol=1e-5, atol=1e-6)


def test_torch_tensor_path_batches_on_the_device():
    pytest.importorskip('torch')
    from depth_node.backends.torch import TorchBackend
    import torch

    class Mean(torch.nn.Module):

        def forward(self, x):
            return 1.0 + x.mean(dim=1)

    card = ModelCard(name='m', input_name='x', output_name='y', network_image_width=32,
                     network_image_height=24, output_kind='metric_depth')
    model = DepthModel(TorchBackend(Mean(), card, device='cpu', log=lambda _m: None), card,
                       tensors=True)
    rgbs = images()
    results, _ = model.predict_batch(rgbs)
    for (raw, _), rgb in zip(results, rgbs):
        assert isinstance(raw, torch.Tensor)
        np.testing.assert_allclose(raw.numpy(), model.predict(rgb)[0].numpy(), rtol=1e-5,
                                   atol=1e-6)


# -- the pipeline ----------------------------------------------------------------------------
def frame(rgb, stamp, frame_id, fx=500.0):
    h, w = rgb.shape[:2]
    image = helpers.rgb_image(FACTORY, rgb, stamp, frame_id)
    info = helpers.camera_info(FACTORY, stamp, frame_id, w, h,
                               k=[fx, 0.0, w / 2, 0.0, fx, h / 2, 0.0, 0.0, 1.0])
    return BatchItem(image, info)


def test_process_batch_equals_one_at_a_time_with_per_camera_state(batched):
    rgbs = images()
    items = [frame(rgb, (10, i), f'cam{i}', fx=400.0 + 100 * i) for i, rgb in enumerate(rgbs)]
    one = DepthPipeline(batched, PipelineConfig())
    singles = [one.process(it.image, it.camera_info) for it in items]
    many = DepthPipeline(batched, PipelineConfig())
    results, timings = many.process_batch(items)
    assert timings['batch_size'] == 3 and timings['model_calls'] == 1
    assert sorted(many.states) == ['cam0', 'cam1', 'cam2']
    for got, want, i in zip(results, singles, range(3)):
        assert got.camera.frame_id == f'cam{i}' and got.camera.key == want.camera.key
        np.testing.assert_allclose(got.depth, want.depth, rtol=1e-6, atol=1e-6, equal_nan=True)
        header = FACTORY.header(10, i, f'cam{i}')
        out = many.outputs(got, header, FACTORY, ['depth/camera_info'])
        assert out['depth/camera_info'].k[0] == 400.0 + 100 * i


def test_a_bad_frame_costs_no_other_camera_its_frame(batched):
    rgbs = images()
    items = [frame(rgb, (10, i), f'cam{i}') for i, rgb in enumerate(rgbs)]
    items[1].image.data = items[1].image.data[:100]          # truncated payload
    items.append(frame(np.zeros((1, 1, 3), np.uint8), (10, 3), 'cam3'))   # too small
    items.append(BatchItem(items[0].image, None))          # no camera_info
    pipeline = DepthPipeline(batched, PipelineConfig())
    results, timings = pipeline.process_batch(items)
    assert timings['batch_size'] == 2
    assert isinstance(results[1], DepthNodeError) and 'bytes' in str(results[1]).lower()
    assert isinstance(results[3], (ImageFormatError, DepthNodeError))
    assert isinstance(results[4], DepthNodeError) and 'camera_info' in str(results[4])
    one = DepthPipeline(batched, PipelineConfig())
    for i in (0, 2):
        want = one.process(items[i].image, items[i].camera_info)
        np.testing.assert_allclose(results[i].depth, want.depth, rtol=1e-6, atol=1e-6,
                                   equal_nan=True)


def test_process_batch_of_nothing_but_bad_frames(batched):
    item = frame(images()[0], (1, 0), 'cam0')
    item.image.data = b''
    results, timings = DepthPipeline(batched).process_batch([item])
    assert isinstance(results[0], DepthNodeError) and timings['model_calls'] == 0


# -- export and bench ------------------------------------------------------------------------
# DINOv2-like backbone, as in test_models_export.py
TINY_DA = {'backbone_config': {'hidden_size': 32, 'num_hidden_layers': 4,
                               'num_attention_heads': 2, 'out_indices': [1, 2, 3, 4]},
           'reassemble_hidden_size': 32, 'neck_hidden_sizes': [8, 16, 16, 32],
           'fusion_hidden_size': 16, 'head_hidden_size': 8}


def test_export_dynamic_batch_of_a_real_architecture(tmp_path):
    pytest.importorskip('transformers')
    from depth_node.models.export import check_onnx, export_model
    logs: list[str] = []
    path, card = export_model('depth-anything-v2-small', tmp_path / 'da.onnx', '70x56',
                              random_weights=True, log=logs.append,
                              config_overrides=TINY_DA, dynamic_batch=True)
    info = check_onnx(path, ('batch', 3, 56, 70))
    assert info['input_shape'][0] == 'batch' and info['output_shape'][0] == 'batch'
    assert any('batch of 3 vs one by one' in line for line in logs)
    model = open_model(path, backend='onnxruntime', log=logs.append)   # self-test passes
    assert model.max_batch is None
    rgbs = images()
    results, timings = model.predict_batch(rgbs)
    assert timings['model_calls'] == 1
    for (raw, _), rgb in zip(results, rgbs):
        np.testing.assert_allclose(raw, model.predict(rgb)[0], rtol=1e-4, atol=1e-4)


def test_bench_model_batch_reports_batched_against_separate(tmp_path, capsys):
    from depth_node.tools import bench_model as bench
    path = helpers.build_tiny_onnx(tmp_path / 'tiny_b.onnx', batch='batch')
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(['--model', str(path), '--backend', 'onnxruntime', '--resolution',
                              '64x48', '--repeat', '3', '--warmup', '1', '--json',
                              '--batch', '3'])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out['batch'] == 3 and out['model_calls_per_round'] == 1
    assert out['model_instances'] == 1 and out['max_batch'] == 'any'
    for key in ('batched_round_ms', 'separate_round_ms', 'batched_per_camera_ms',
                'separate_per_camera_ms', 'batched_over_separate'):
        assert out[key] > 0
    assert out['batched_per_camera_ms'] == pytest.approx(out['batched_round_ms'] / 3, abs=1e-2)
    with pytest.raises(SystemExit):
        parser.parse_args(['--model', 'x', '--batch', '0'])
