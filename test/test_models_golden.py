"""The golden self-test (models.golden) on tiny random Depth Anything and DPT networks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed (depth_node[torch])')
pytest.importorskip('transformers', reason='transformers is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')

from depth_node.backends import load_backend  # noqa: E402, I100
from depth_node.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from depth_node.backends.torch import TorchBackend  # noqa: E402
from depth_node.errors import SelfTestError  # noqa: E402
from depth_node.models.golden import run_self_test  # noqa: E402
from tiny_torch_models import MODELS  # noqa: E402

QUIET = {'log': lambda msg: None}


def test_reference_is_discriminating(tiny):
    _, _, card = tiny
    grid = np.asarray(card.reference['grid'])
    assert grid.shape == (16, 16) and np.isfinite(grid).all()
    assert card.reference['std'] > 0 and grid.std() > 0
    assert card.reference['input_shape'] == [1, 3, card.network_image_height,
                                             card.network_image_width]


def test_self_test_passes_on_both_backends(tiny):
    module, path, card = tiny
    for backend in (OnnxRuntimeBackend(path, card, **QUIET),
                    TorchBackend(module, card, device='cpu', **QUIET)):
        result = run_self_test(backend, card, log=None)
        assert result['passed'] and result['worst_tolerance_ratio'] <= 1.0


def test_self_test_catches_perturbed_reference(tiny):
    _, path, card = tiny
    ref = dict(card.reference)
    grid = np.asarray(ref['grid'])
    # the smallest change that matters: one cell off by 5 % of the output std
    i = np.unravel_index(np.argmax(np.abs(grid)), grid.shape)
    grid[i] += 0.05 * ref['std']
    ref['grid'] = grid.tolist()
    bad = card.replace(reference=ref)
    with pytest.raises(SelfTestError) as err:
        load_backend(path, bad, 'onnxruntime', **QUIET)
    msg = str(err.value)
    assert card.name in msg and 'onnxruntime' in msg and 'max |error|' in msg
    # a wrong model behind the card (same architecture, other weights) is caught as well
    builder = MODELS[card.name.removeprefix('tiny-')][0]
    wrong = TorchBackend(builder(seed=7), card, device='cpu', **QUIET)
    with pytest.raises(SelfTestError):
        run_self_test(wrong, card, log=None)


def test_self_test_tolerance_scales_with_precision(tiny):
    _, path, card = tiny
    ref = dict(card.reference)
    grid = np.asarray(ref['grid'])
    grid += 3 * ref['atol']                      # 3x the fp32 tolerance everywhere
    ref['grid'] = grid.tolist()
    ref['mean'] = ref['mean'] + 3 * ref['atol']
    backend = OnnxRuntimeBackend(path, card, **QUIET)
    bad = card.replace(reference=ref)
    with pytest.raises(SelfTestError, match='fp32'):
        run_self_test(backend, bad, log=None)
    backend.precision = 'fp16'                   # fp16 results are allowed 40x more error
    assert run_self_test(backend, bad, log=None)['passed']


def test_self_test_skips_without_reference_or_for_other_size(tiny):
    _, path, card = tiny
    backend = OnnxRuntimeBackend(path, card, **QUIET)
    messages = []
    assert 'skipped' in run_self_test(backend, card.replace(reference=None), log=messages.append)
    assert 'no reference' in messages[0]


def test_self_test_rejects_nan_and_wrong_shape(tiny):
    _, _, card = tiny
    h, w = card.reference['output_shape']

    class Constant(torch.nn.Module):

        def __init__(self, value, shape):
            super().__init__()
            self.value, self.shape = value, shape

        def forward(self, x):
            return torch.full((1, *self.shape), self.value)

    nan = TorchBackend(Constant(float('nan'), (h, w)), card, device='cpu', **QUIET)
    with pytest.raises(SelfTestError, match='NaN'):
        run_self_test(nan, card, log=None)
    small = TorchBackend(Constant(1.0, (h // 2, w // 2)), card, device='cpu', **QUIET)
    with pytest.raises(SelfTestError, match='output shape'):
        run_self_test(small, card, log=None)
