"""The real trained PyDNet++ model with its hand-written card on real RGB-D samples.

The model is ../shared/data/models/pydnet_pp, the card config/models/pydnet_pp.card.yaml. Its
output must correlate with the ground-truth depth (larger = farther), and the card's golden
self-test must pass.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')

from depth_node.errors import SelfTestError  # noqa: E402, I100
from depth_node.models.card import load_card  # noqa: E402
from depth_node.models.golden import make_reference  # noqa: E402
from depth_node.runner import open_model  # noqa: E402

CARD = Path(__file__).resolve().parents[1] / 'config' / 'models' / 'pydnet_pp.card.yaml'


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def tum_depth(path: Path) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    return raw.astype(np.float32) / 5000.0            # TUM: value / 5000, 0 = invalid


def sun_depth(path: Path) -> np.ndarray:
    v = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert v.dtype == np.uint16
    d = ((v >> 3) | (v << 13)).astype(np.uint16)      # SUN RGB-D bit rotation
    return d.astype(np.float32) / 1000.0


SAMPLES = {
    'tum': ('open3d_tum/TUM_color.png', 'open3d_tum/TUM_depth.png', tum_depth),
    'sun': ('open3d_sun/SUN_color.jpg', 'open3d_sun/SUN_depth.png', sun_depth),
}


@pytest.fixture(scope='module')
def pydnet(shared_data):
    path = shared_data / 'models' / 'pydnet_pp' / 'optimized_pydnet++.onnx'
    messages: list[str] = []
    model = open_model(path, card_path=CARD, backend='onnxruntime', log=messages.append)
    yield model, messages
    model.close()


def test_card_self_test_passed(pydnet):
    model, messages = pydnet
    assert model.card.reference is not None
    assert any('self-test passed for pydnet_pp' in m for m in messages), messages


@pytest.mark.parametrize('sample', sorted(SAMPLES))
def test_output_correlates_with_ground_truth(pydnet, shared_data, sample):
    from scipy.stats import spearmanr
    model, _ = pydnet
    color, depth, decode = SAMPLES[sample]
    rgb = read_rgb(shared_data / 'rgbd' / color)
    gt = decode(shared_data / 'rgbd' / depth)
    raw, transform, timings = model.predict(rgb)
    assert raw.shape == gt.shape == rgb.shape[:2]
    assert np.isfinite(raw).all()
    assert (transform.network_width, transform.network_height) == (640, 448)
    valid = (gt > 0.1) & (gt < 10.0)
    assert valid.mean() > 0.5
    rho = spearmanr(raw[valid], gt[valid]).statistic
    # relative_depth: larger output = farther, so the correlation is positive
    assert rho > 0.3, f'{sample}: Spearman rho {rho:.3f}'
    assert timings['inference_ms'] > 0


def test_self_test_refuses_a_wrong_card(shared_data):
    """The same model read with the wrong channel order (bgr8) fails the self-test.

    It no longer matches the card's reference, so the self-test refuses to start it.
    """
    path = shared_data / 'models' / 'pydnet_pp' / 'optimized_pydnet++.onnx'
    with pytest.raises(SelfTestError, match='pydnet_pp'):
        open_model(path, {'input_encoding': 'bgr8'}, 'onnxruntime', card_path=CARD,
                   log=lambda m: None)


def test_reference_in_repo_card_is_reproducible(pydnet):
    model, _ = pydnet
    card = load_card(model.backend.model_path, card_path=CARD)
    fresh = make_reference(model.backend, card)
    stored = card.reference
    assert fresh['input'] == stored['input'] and fresh['output_shape'] == stored['output_shape']
    assert np.allclose(fresh['grid'], stored['grid'], rtol=1e-4, atol=stored['atol'])


def test_reference_from_a_real_image(pydnet, shared_data):
    """A reference can use a real image (path relative to the card's folder).

    The self-test then passes, and fails on another image.
    """
    from depth_node.models.golden import run_self_test
    model, _ = pydnet
    card = model.card
    ref = make_reference(model.backend, card, kind='image',
                         image_path='rgbd/open3d_tum/TUM_color.png', base_dir=shared_data)
    assert ref['input'] == {'kind': 'image', 'path': 'rgbd/open3d_tum/TUM_color.png'}
    with_image = card.replace(reference=ref)
    assert run_self_test(model.backend, with_image, log=None, base_dir=shared_data)['passed']
    other = dict(ref, input={'kind': 'image', 'path': 'rgbd/open3d_sun/SUN_color.jpg'})
    with pytest.raises(SelfTestError):
        run_self_test(model.backend, card.replace(reference=other), log=None,
                      base_dir=shared_data)
