"""The parameter table: one default per parameter, validation, flags, README table."""

from __future__ import annotations

import argparse
from dataclasses import fields

from depth_node import parameters
from depth_node.parameters import (
    BY_NAME,
    card_overrides,
    defaults,
    PARAMETERS,
    validate,
    validate_all,
)
from depth_node.tools.arguments import add_parameter_flags as add_arguments
from depth_node.tools.arguments import values_from_args
import pytest


def test_names_are_unique_and_snake_case():
    names = [spec.name for spec in PARAMETERS]
    assert len(names) == len(set(names))
    for name in names:
        assert name == name.lower() and ' ' not in name and '-' not in name


def test_every_default_is_valid():
    for name, value in defaults().items():
        assert validate(name, value) is None, name
    assert validate_all(defaults()) == []


@pytest.mark.parametrize('name,value,fragment', [
    ('min_range', -1.0, '>= 0'),
    ('output_encoding', 'mono8', "one of '32FC1', '16UC1'"),
    ('point_decimation', 1.5, 'must be a int'),
    ('publish_points', 1, 'must be a bool'),
    ('point_decimation', True, 'must be a int'),
    ('image_mean', [0.5, 0.5], '3 values'),
    ('no_such_parameter', 1, 'unknown parameter'),
])
def test_invalid_values_are_rejected_with_a_reason(name, value, fragment):
    reason = validate(name, value)
    assert reason is not None and fragment in reason


def test_int_is_accepted_for_double():
    assert validate('max_range', 10) is None


def test_cross_checks():
    values = defaults()
    values.update(min_range=5.0, max_range=2.0)
    assert any('max_range' in r for r in validate_all(values))
    values = defaults()
    values['scale_source'] = 'ground_plane'
    assert any('camera_height' in r for r in validate_all(values))
    values['camera_height'] = 1.2
    assert validate_all(values) == []


def test_card_overrides_skip_unset_values():
    values = defaults()
    assert card_overrides(values) == {}
    values.update(network_image_width=518, image_mean=[0.5, 0.4, 0.3], resize='keep_aspect_pad')
    assert card_overrides(values) == {'network_image_width': 518,
                                      'image_mean': (0.5, 0.4, 0.3),
                                      'resize': 'keep_aspect_pad'}


def test_flags_follow_the_parameter_names_and_keep_defaults():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(['--min-range', '0.3', '--scale-source', 'fixed',
                              '--network-image-width', '320', '--no-publish-points',
                              '--image-mean', '0.1', '0.2', '0.3'])
    values = values_from_args(args)
    assert values['min_range'] == 0.3
    assert values['scale_source'] == 'fixed'
    assert values['network_image_width'] == 320
    assert values['publish_points'] is False
    assert values['image_mean'] == [0.1, 0.2, 0.3]
    assert values['max_range'] == BY_NAME['max_range'].default
    with pytest.raises(SystemExit):
        parser.parse_args(['--input-qos', 'reliable'])   # node-only: not a tool flag
    with pytest.raises(SystemExit):
        parser.parse_args(['--output-encoding', 'mono8'])


def test_metric_parameters_match_the_metric_config():
    metric = pytest.importorskip('depth_node.metric')
    config_names = {f.name for f in fields(metric.MetricConfig)}
    missing = config_names - set(BY_NAME)
    assert not missing, f'MetricConfig fields without a parameter: {missing}'
    for name in config_names & set(BY_NAME):
        default = getattr(metric.MetricConfig(), name)
        if isinstance(default, tuple):      # ground_up: a tuple there, a double[] here
            default = list(default)
        assert default == BY_NAME[name].default, name


def test_card_override_parameters_are_card_fields():
    card = pytest.importorskip('depth_node.models.card')
    card_names = {f.name for f in fields(card.ModelCard)}
    for spec in PARAMETERS:
        if spec.card_field:
            assert spec.name in card_names, spec.name


def test_markdown_table_lists_every_parameter():
    table = parameters.markdown_table()
    for spec in PARAMETERS:
        assert f'| `{spec.name}` |' in table


def test_readme_parameter_table_is_generated_from_the_table():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    begin, end = '<!-- parameters:begin -->\n', '\n<!-- parameters:end -->'
    assert begin in readme and end in readme
    shown = readme.split(begin, 1)[1].split(end, 1)[0]
    assert shown == parameters.markdown_table(), \
        'README parameter table is stale: regenerate it with python -m depth_node.parameters'


@pytest.mark.parametrize('argv', [['--image-mean', '0.1', '0.2', '0.3'],
                                  ['--image-mean', '0.1,0.2,0.3'],
                                  ['--image-mean', '0.1,', '0.2,0.3']])
def test_three_value_flags_take_spaces_or_commas_in_every_tool(argv):
    from depth_node.tools.arguments import add_card_arguments
    for add in (add_arguments, add_card_arguments):
        parser = argparse.ArgumentParser()
        add(parser)
        assert parser.parse_args(argv).image_mean == [0.1, 0.2, 0.3]


@pytest.mark.parametrize('argv', [['--image-mean', '0.1', '0.2'],
                                  ['--image-mean', '0.1,0.2,0.3,0.4'],
                                  ['--image-mean', 'a,b,c']])
def test_three_value_flags_reject_other_counts(argv, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert 'needs 3 numbers' in capsys.readouterr().err


def test_model_options_map_parameters_to_open_model_arguments():
    values = defaults()
    logged = []
    options = parameters.model_options(values, logged.append)
    assert options == {'backend': 'auto', 'precision': 'fp16', 'force_engine_update': False,
                       'allow_engine_build': True, 'self_test': True, 'log': logged.append}
    values.update(engine_file_path='/engines', card_file_path='/cards/m.card.yaml',
                  backend='onnxruntime')
    options = parameters.model_options(values)
    assert options['engine_cache_dir'] == '/engines'
    assert options['card_path'] == '/cards/m.card.yaml'
    assert options['backend'] == 'onnxruntime'


def test_float_flags_accept_fractions_and_reject_garbage(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(['--pixel-scale', '1/255']).pixel_scale == pytest.approx(1 / 255)
    assert parser.parse_args(['--min-range', '0.25']).min_range == 0.25
    for bad in ('1/0', 'abc'):
        with pytest.raises(SystemExit):
            parser.parse_args(['--pixel-scale', bad])
        assert 'is not a number' in capsys.readouterr().err
