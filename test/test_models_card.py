"""Model card schema: YAML round trip, validation messages, overrides, card-less ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from depth_node.errors import CardError
from depth_node.models.card import (
    CARD_FIELDS,
    card_path_for,
    coerce_field,
    INTERPOLATIONS,
    LAYOUTS,
    load_card,
    ModelCard,
    OUTPUT_KINDS,
    RESIZE_MODES,
)
from depth_node.parameters import card_overrides
from depth_node.tools.arguments import add_card_arguments
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PYDNET_CARD = REPO / 'config' / 'models' / 'pydnet_pp.card.yaml'


def full_card(**changes) -> ModelCard:
    card = ModelCard(
        name='tiny', source='hub/tiny', license='Apache-2.0', input_name='pixel_values',
        output_name='predicted_depth', network_image_width=70, network_image_height=56,
        layout='nchw', input_encoding='bgr8', pixel_scale=1 / 255,
        image_mean=(0.485, 0.456, 0.406), image_stddev=(0.229, 0.224, 0.225),
        resize='keep_aspect_pad', interpolation='cubic', output_kind='metric_depth',
        canonical_focal_px=300.0, max_depth=20.0,
        reference={'version': 1, 'grid': [[1.0, 2.0], [3.0, 4.0]], 'mean': 2.5, 'std': 1.1,
                   'atol': 0.01})
    return card.replace(**changes)


def test_round_trip_keeps_every_field(tmp_path):
    card = full_card()
    path = card.save(tmp_path / 'm.card.yaml')
    back = ModelCard.load(path)
    assert back == card
    assert back.reference == card.reference
    assert isinstance(back.image_mean, tuple) and back.image_mean == card.image_mean
    assert back.is_metric and back.input_shape() == (1, 3, 56, 70)
    # the written text is plain YAML with the schema's names
    text = path.read_text()
    for name in CARD_FIELDS:
        assert f'{name}:' in text


def test_from_dict_unknown_field_is_named():
    with pytest.raises(CardError, match='network_width') as err:
        ModelCard.from_dict({'network_width': 3})
    assert 'network_image_width' in str(err.value)   # the allowed names are listed


@pytest.mark.parametrize('field, value, allowed', [
    ('layout', 'chw', LAYOUTS), ('resize', 'letterbox', RESIZE_MODES),
    ('interpolation', 'bilinear', INTERPOLATIONS), ('output_kind', 'depth', OUTPUT_KINDS),
    ('input_encoding', 'rgba8', ('rgb8', 'bgr8'))])
def test_validation_names_field_and_allowed_values(field, value, allowed):
    with pytest.raises(CardError) as err:
        full_card(**{field: value}).validate()
    msg = str(err.value)
    assert repr(field) in msg and repr(value) in msg
    for option in allowed:
        assert option in msg


@pytest.mark.parametrize('changes, needle', [
    ({'network_image_width': 0}, 'network_image_width'),
    ({'input_name': ''}, 'input_name'),
    ({'image_stddev': (1.0, 0.0, 1.0)}, 'image_stddev'),
    ({'pixel_scale': -1.0}, 'pixel_scale'),
    ({'max_depth': -5.0}, 'max_depth'),
    ({'output_kind': 'relative_depth'}, 'canonical_focal_px'),  # focal only for metric output
])
def test_validation_rejects_bad_values(changes, needle):
    with pytest.raises(CardError, match=needle):
        full_card(**changes).validate()


def test_coercion_of_cli_and_parameter_strings():
    assert coerce_field('pixel_scale', '1/255') == pytest.approx(1 / 255)
    assert coerce_field('image_mean', '0.5, 0.25,0.125') == (0.5, 0.25, 0.125)
    assert coerce_field('image_mean', '[1,2,3]') == (1.0, 2.0, 3.0)
    assert coerce_field('network_image_width', '518') == 518
    assert coerce_field('canonical_focal_px', 0.0) is None      # ROS parameter "unset"
    assert coerce_field('max_depth', 'null') is None
    with pytest.raises(CardError, match='three numbers'):
        coerce_field('image_stddev', '1,2')
    with pytest.raises(CardError, match='integer'):
        coerce_field('network_image_height', 3.5)


def test_card_path_for(tmp_path):
    assert card_path_for('x/model.onnx') == Path('x/model.card.yaml')
    assert card_path_for('x/model.engine') == Path('x/model.card.yaml')
    assert card_path_for('x/optimized_pydnet++.onnx') == Path('x/optimized_pydnet++.card.yaml')
    assert card_path_for(tmp_path) == tmp_path / 'model.card.yaml'


def test_load_card_beside_model_with_overrides(tmp_path):
    model = tmp_path / 'm.onnx'
    model.write_bytes(b'not read when the card is complete')
    full_card().save(card_path_for(model))
    card = load_card(model, {'max_depth': 80, 'resize': None, 'image_mean': '0,0,0'})
    assert card.max_depth == 80.0 and card.resize == 'keep_aspect_pad'
    assert card.image_mean == (0.0, 0.0, 0.0)
    with pytest.raises(CardError, match='resize'):
        load_card(model, {'resize': 'squash'})
    with pytest.raises(CardError, match='reference'):   # not overridable
        load_card(model, {'reference': {}})


def test_cardless_model_needs_output_kind(tmp_path):
    model = tmp_path / 'bare.onnx'
    model.write_bytes(b'')
    with pytest.raises(CardError) as err:
        load_card(model)
    assert 'output-kind' in str(err.value) and 'bare.card.yaml' in str(err.value)


def test_explicit_card_path_missing(tmp_path):
    with pytest.raises(CardError, match='does not exist'):
        load_card(tmp_path / 'm.onnx', card_path=tmp_path / 'nope.card.yaml')


def test_argparse_flags_and_overrides():
    parser = argparse.ArgumentParser()
    add_card_arguments(parser)
    ns = parser.parse_args([])
    assert card_overrides(ns) == {}
    assert all(getattr(ns, f) is None for f in CARD_FIELDS)
    ns = parser.parse_args(['--network-image-width', '518', '--image-stddev', '0.5,0.5,0.5',
                            '--output-kind', 'metric_depth', '--pixel-scale', '1/255',
                            '--card', 'x.card.yaml'])
    over = card_overrides(ns)
    assert over == {'network_image_width': 518, 'image_stddev': (0.5, 0.5, 0.5),
                    'output_kind': 'metric_depth', 'pixel_scale': pytest.approx(1 / 255)}
    assert ns.card_path == 'x.card.yaml'
    with pytest.raises(SystemExit):
        parser.parse_args(['--resize', 'squash'])
    # a ROS parameter dict works the same way, other keys are ignored
    assert card_overrides({'max_depth': 10.0, 'qos': 'x'}) == {'max_depth': 10.0}


def test_cardless_real_onnx_reads_graph(shared_data):
    pytest.importorskip('onnxruntime')
    model = shared_data / 'models' / 'pydnet_pp' / 'optimized_pydnet++.onnx'
    card = load_card(model, {'output_kind': 'relative_depth',
                             'output_name': 'PSD/resize_images/ResizeBilinear'})
    assert card.input_name == 'im0'
    assert card.layout == 'nhwc'
    assert (card.network_image_width, card.network_image_height) == (640, 448)
    # a card whose layout contradicts the graph is an error, not a silent guess
    with pytest.raises(CardError, match='layout'):
        load_card(model, card_path=_write(ModelCard(output_kind='relative_depth',
                                                    layout='nchw')))
    # the graph fills only what is missing: the card's own size wins
    card = load_card(model, card_path=_write(ModelCard(output_kind='relative_depth',
                                                       layout='nhwc', network_image_width=320)))
    assert card.network_size == (320, 448)


def _write(card):
    import tempfile
    path = Path(tempfile.mkdtemp()) / 'c.card.yaml'
    return card.save(path)


def test_pydnet_card_in_repo(shared_data):
    card = load_card(shared_data / 'models' / 'pydnet_pp' / 'optimized_pydnet++.onnx',
                     card_path=PYDNET_CARD)
    assert card.layout == 'nhwc' and card.input_name == 'im0'
    assert card.output_name == 'PSD/resize_images/ResizeBilinear'
    assert card.output_kind == 'relative_depth' and not card.is_metric
    assert card.pixel_scale == pytest.approx(1 / 255)
    assert card.image_mean == (0, 0, 0) and card.image_stddev == (1, 1, 1)
    assert 'research' in card.license
    assert np.asarray(card.reference['grid']).shape == (16, 16)
