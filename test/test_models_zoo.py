"""The model zoo: every short name's configuration builds offline with the real sizes."""

from __future__ import annotations

from depth_node.errors import ModelError
from depth_node.models import zoo
import pytest

pytest.importorskip('transformers', reason='transformers is not installed')


@pytest.mark.parametrize('name', list(zoo.ZOO))
def test_every_config_builds_offline(name):
    entry = zoo.ZOO[name]
    config = zoo.build_config(entry)
    assert type(config).__name__ == entry.config_class
    w, h = entry.default_size
    assert w % entry.size_multiple == 0 and h % entry.size_multiple == 0
    assert entry.card['output_kind'] in ('relative_inverse_depth', 'metric_depth')
    assert entry.card['source'] == entry.hub_id and entry.card['license']


@pytest.mark.parametrize('name,hidden,layers,heads,neck,fusion', [
    ('depth-anything-v2-small', 384, 12, 6, [48, 96, 192, 384], 64),
    ('depth-anything-v2-base', 768, 12, 12, [96, 192, 384, 768], 128),
    ('depth-anything-v2-large', 1024, 24, 16, [256, 512, 1024, 1024], 256),
    ('depth-anything-v2-metric-outdoor-base', 768, 12, 12, [96, 192, 384, 768], 128),
    ('depth-anything-large', 1024, 24, 16, [256, 512, 1024, 1024], 256),
])
def test_depth_anything_sizes(name, hidden, layers, heads, neck, fusion):
    config = zoo.build_config(zoo.ZOO[name])
    bb = config.backbone_config
    assert (bb.hidden_size, bb.num_hidden_layers, bb.num_attention_heads) == (
        hidden, layers, heads)
    assert bb.patch_size == 14 and config.reassemble_hidden_size == hidden
    assert list(config.neck_hidden_sizes) == neck and config.fusion_hidden_size == fusion
    assert list(config.reassemble_factors) == [4, 2, 1, 0.5]


def test_v1_and_v2_use_different_layers():
    v1 = zoo.build_config(zoo.ZOO['depth-anything-small']).backbone_config
    v2 = zoo.build_config(zoo.ZOO['depth-anything-v2-small']).backbone_config
    v2l = zoo.build_config(zoo.ZOO['depth-anything-v2-large']).backbone_config
    assert list(v1.out_indices) == [9, 10, 11, 12]
    assert list(v2.out_indices) == [3, 6, 9, 12]
    assert list(v2l.out_indices) == [5, 12, 18, 24]


@pytest.mark.parametrize('name,kind,max_depth', [
    ('depth-anything-v2-small', 'relative', None),
    ('depth-anything-v2-metric-indoor-small', 'metric', 20.0),
    ('depth-anything-v2-metric-outdoor-large', 'metric', 80.0),
])
def test_metric_heads(name, kind, max_depth):
    entry = zoo.ZOO[name]
    config = zoo.build_config(entry)
    assert config.depth_estimation_type == kind
    if max_depth is not None:
        assert config.max_depth == max_depth
        assert entry.card['output_kind'] == 'metric_depth'
        assert entry.card['max_depth'] == max_depth
    else:
        assert entry.card['output_kind'] == 'relative_inverse_depth'


def test_dpt_and_zoedepth_configs():
    hybrid = zoo.build_config(zoo.ZOO['dpt-hybrid-midas'])
    assert hybrid.is_hybrid and hybrid.hidden_size == 768
    assert list(hybrid.reassemble_factors) == [1, 1, 1, 0.5]
    assert type(hybrid.backbone_config).__name__ == 'BitConfig'
    large = zoo.build_config(zoo.ZOO['dpt-large'])
    assert not large.is_hybrid and large.hidden_size == 1024
    assert list(large.backbone_out_indices) == [5, 11, 17, 23]
    zoe = zoo.build_config(zoo.ZOO['zoedepth-kitti'])
    assert zoe.backbone_config.hidden_size == 1024
    assert zoe.bin_configurations[0]['max_depth'] == 80.0
    assert zoo.ZOO['zoedepth-nyu'].card['max_depth'] == 10.0


def test_find_entry_by_name_and_hub_id():
    assert zoo.find_entry('depth-anything/Depth-Anything-V2-Small-hf').name == \
        'depth-anything-v2-small'
    assert zoo.find_entry('Intel/DPT-Large').name == 'dpt-large'
    assert zoo.find_entry(' DEPTH-ANYTHING-V2-BASE ').name == 'depth-anything-v2-base'
    assert zoo.find_entry('nope') is None


def test_overrides_merge_into_backbone():
    config = zoo.build_config(zoo.ZOO['depth-anything-v2-small'],
                              {'backbone_config': {'hidden_size': 64}, 'fusion_hidden_size': 8})
    assert config.backbone_config.hidden_size == 64
    assert config.backbone_config.num_hidden_layers == 12
    assert config.fusion_hidden_size == 8
    # the zoo entry itself is untouched
    assert zoo.ZOO['depth-anything-v2-small'].config['backbone_config']['hidden_size'] == 384


def test_check_input_size_message():
    zoo.check_input_size((518, 392), 14, 'm')
    with pytest.raises(ModelError) as err:
        zoo.check_input_size((520, 392), 14, 'm')
    assert '518' in str(err.value) and '532' in str(err.value)


def test_hub_error_names_hf_download_and_the_offline_switch(monkeypatch):
    from depth_node.models.zoo import _hub_error
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    error = _hub_error('depth-anything/Depth-Anything-V2-Small-hf', OSError('no network'))
    text = f'{error} {error.hint}'
    assert 'hf download depth-anything/Depth-Anything-V2-Small-hf' in text
    assert 'huggingface-cli' not in text and 'HF_HUB_OFFLINE=1' in text
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    error = _hub_error('x/y', OSError('offline'))
    assert 'HF_HUB_OFFLINE is set' in str(error) and '--random-weights' in error.hint
