"""Issue 10 point 7: inputs that are not what they say get one clear line, exit status 2.

An ``rgb8`` camera given as ``--sparse-depth-topic``, a ``.tflite`` or a model card given as
``--model``, a missing local model file: each is refused before the model loads (nothing is
written), naming the supported kinds; only ``org/name`` ids ever reach the model hub.
"""

from __future__ import annotations

import pytest

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node import bag  # noqa: E402, I100
from depth_node.cli import main  # noqa: E402

TUM_RAW = '/camera/color/image_raw'


@pytest.mark.parametrize('topic', [TUM_RAW, f'{TUM_RAW}/compressed'])
def test_colour_topic_as_sparse_depth_is_a_usage_error(tum_bag, tmp_path, model, no_model, capsys,
                                                       topic):
    out = tmp_path / 'out'
    assert main(['bag', str(tum_bag), str(out), '--model', str(model), '--scale-source',
                 'sparse_depth', '--sparse-depth-topic', topic]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') <= 3 and 'Traceback' not in err
    assert f'--sparse-depth-topic {topic}' in err and 'not depth' in err
    assert '16UC1' in err and '32FC1' in err and 'compressedDepth' in err
    assert not out.exists()


def test_depth_topic_as_sparse_depth_is_accepted(tum_bag, tmp_path, model, capsys):
    status = main(['bag', str(tum_bag), str(tmp_path / 'out'), '--model', str(model), '--quiet',
                   '--scale-source', 'sparse_depth', '--sparse-depth-topic',
                   '/camera/depth_registered/image_gt', '--image-topic', TUM_RAW])
    # a random tiny network may fit no positive scale (5), but the topic is accepted
    assert status in (bag.EXIT_OK, bag.EXIT_NOT_METRIC)
    assert 'not depth' not in capsys.readouterr().err


@pytest.fixture
def no_hub(monkeypatch):
    """Make any attempt to reach the model hub fail the test."""
    from depth_node.models import zoo

    def hub(*args, **kwargs):
        raise AssertionError('the model hub was asked')
    monkeypatch.setattr(zoo, 'load_torch_model', hub)


@pytest.mark.parametrize('name, expected', [
    ('model.tflite', '.tflite is not a model kind'),
    ('pydnet.card.yaml', 'a YAML file (a model card?), not a model'),
    ('missing/x.pt', 'no such file or folder (not sent to the model hub'),
    ('x.pt', 'no such file or folder (not sent to the model hub'),
    ('models/da2s.onnx', 'no such file or folder'),
])
def test_model_that_is_not_a_model_is_one_clear_line(tum_bag, tmp_path, no_model, no_hub, capsys,
                                                     monkeypatch, name, expected):
    import time
    monkeypatch.chdir(tmp_path)
    if not name.startswith(('missing', 'x.', 'models')):
        (tmp_path / name).write_text('card_version: 1\n')
    t0 = time.perf_counter()
    assert main(['bag', str(tum_bag), str(tmp_path / 'out'), '--model', name]) == 2
    assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert expected in err and 'TorchScript file (.pt' in err
    assert 'Cannot load TorchScript' not in err and 'Traceback' not in err
    assert err.strip().count('\n') == 0      # one line
    assert 'ONNX file' in err and 'hub id org/name' in err
    # a missing .onnx is most often the quick start's model, not exported yet: say how
    assert ('depth-node export depth-anything-v2-metric-indoor-small --output '
            f'{name}' in err) == name.endswith('.onnx')
    assert not (tmp_path / 'out').exists()


def test_only_org_name_ids_are_hub_ids():
    from depth_node.models.model_path import check_model_path, is_hub_id
    assert is_hub_id('depth-anything/Depth-Anything-V2-Small-hf')
    assert is_hub_id('org/name')
    for path in ('x.pt', 'org/x.pt', './org/name', '/org/name', 'a/b/c', 'org/card.yaml',
                 '~/name'):
        assert not is_hub_id(path), path
    assert check_model_path('org/name') == 'hub'
    assert check_model_path('depth-anything-v2-small') == 'zoo'


@pytest.mark.parametrize('name, expected', [
    ('x.pt', 'no such file or folder (not sent to the model hub'),
    ('m.tflite', '.tflite is not a model kind'),
])
def test_open_model_never_sends_a_path_to_the_hub(tmp_path, no_hub, monkeypatch, name,
                                                  expected):
    """The node, the benchmarks and evaluate load through open_model: the same check."""
    from depth_node.errors import ModelError
    from depth_node.runner import open_model
    monkeypatch.chdir(tmp_path)
    if name.endswith('.tflite'):
        (tmp_path / name).write_bytes(b'TFL3')
    with pytest.raises(ModelError, match='takes an ONNX file') as error:
        open_model(name, backend='torch', log=lambda m: None)
    assert expected in str(error.value) and str(error.value).startswith(f'model {name}')
