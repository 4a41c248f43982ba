"""The README's quick-start commands really run, offline, on the example recording it ships.

The main job (install + ``depth-node bag`` on ``examples/tum_rgbd_sample_mcap``) runs as
written with a tiny ONNX model at the README's model path (built with ``onnx.helper``: no torch,
no model hub); with torch installed, the README's offline export (``--random-weights``) runs
too, at a small input size.
"""

from __future__ import annotations

from pathlib import Path
import re
import shlex

from depth_node import cli
from node_helpers import build_tiny_onnx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
EXAMPLE = ROOT / 'examples' / 'tum_rgbd_sample_mcap'


def bash_blocks() -> list[list[list[str]]]:
    """Return each ```bash block of the README's quick start as its commands (split on &&)."""
    text = README.read_text()
    section = text[text.index('## Quick start'):]
    section = section[:section.index('\n## ', 1)]
    blocks = []
    for block in re.findall(r'```bash\n(.*?)```', section, re.S):
        lines = [line.split(' #')[0] for line in block.replace('\\\n', ' ').splitlines()
                 if line.strip() and not line.lstrip().startswith('#')]
        blocks.append([shlex.split(part) for line in lines for part in line.split('&&')
                       if part.strip()])
    return blocks


def main_job() -> tuple[list[str], list[str]]:
    """Return the README's first command line: (pip install ..., depth-node bag ...)."""
    install, bag = bash_blocks()[0]
    return install, bag


def tiny_metric_onnx(path: Path) -> Path:
    """Write a tiny metric ONNX model (depth = 1 + mean |pixel|, metres) and its card."""
    pytest.importorskip('onnx')
    return build_tiny_onnx(path, 42, 28, scale=1.0, offset=1.0, absolute=True,
                           input_name='pixel_values', output_name='predicted_depth',
                           name='tiny', image_mean=(0.5, 0.5, 0.5),
                           image_stddev=(0.5, 0.5, 0.5), max_depth=20.0)


def test_quickstart_is_the_lightest_install_then_the_main_job_on_the_example():
    install, bag = main_job()
    assert install[:2] == ['pip', 'install']
    extras = set(re.search(r'\[(.*)\]', install[2]).group(1).split(','))
    assert {'bag', 'onnxruntime', 'test'} <= extras and 'torch' not in extras
    assert bag[:2] == ['depth-node', 'bag'] and '--model' in bag
    assert (ROOT / bag[2]).resolve() == EXAMPLE.resolve() and (EXAMPLE / 'metadata.yaml').is_file()
    assert bash_blocks()[1] == [['python', '-m', 'pytest', '-q', 'test']]


def test_quickstart_shows_cpu_torch_and_online_next_to_offline_export():
    exports = [c for block in bash_blocks() for c in block if c[:2] == ['depth-node', 'export']]
    assert len(exports) == 2
    online, offline = exports
    assert '--random-weights' not in online and offline == online + ['--random-weights']
    model = main_job()[1][main_job()[1].index('--model') + 1]
    assert online[online.index('--output') + 1] == model
    torch_install = next(c for block in bash_blocks() for c in block if 'torch' in c)
    assert torch_install[-2:] == ['--index-url', 'https://download.pytorch.org/whl/cpu']


def test_example_recording_is_credited():
    text = (ROOT / 'examples' / 'README.md').read_text()
    for needed in ('TUM RGB-D', 'Open3D', 'CC BY 4.0'):
        assert needed in text
    assert sorted(p.name for p in EXAMPLE.iterdir()) == ['metadata.yaml',
                                                         'tum_rgbd_sample_mcap.mcap']


def test_main_job_runs_as_written_offline_with_a_tiny_model(tmp_path, monkeypatch):
    pytest.importorskip('onnxruntime', reason='the main job needs the onnxruntime extra')
    pytest.importorskip('rosbags', reason='the main job needs the bag extra')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.chdir(tmp_path)
    _, bag = main_job()
    model = tmp_path / bag[bag.index('--model') + 1]
    tiny_metric_onnx(model)
    # the example path is relative to the repository root, where the README is followed
    args = [str(ROOT / a) if a == bag[2] else a for a in bag[1:]]
    assert cli.main(args + ['--quiet']) == 0
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore, Stores
    store = get_typestore(Stores.ROS2_HUMBLE)
    with AnyReader([tmp_path / bag[3]], default_typestore=store) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        depth = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                 if c.topic == '/camera/color/depth/image']
    assert topics['/camera/color/points'] == 'sensor_msgs/msg/PointCloud2'
    assert len(depth) == 1 and depth[0].encoding == '32FC1'
    metres = np.frombuffer(depth[0].data, np.float32)
    assert np.isfinite(metres).mean() > 0.5 and 1.0 <= np.nanmin(metres[np.isfinite(metres)])


@pytest.mark.slow
def test_offline_export_then_main_job(tmp_path, monkeypatch):
    pytest.importorskip('transformers', reason='export needs the torch extra')
    pytest.importorskip('onnxruntime', reason='the bag run needs the onnxruntime extra')
    pytest.importorskip('rosbags', reason='the bag run needs the bag extra')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.chdir(tmp_path)
    offline = [c for block in bash_blocks() for c in block
               if c[:2] == ['depth-node', 'export'] and '--random-weights' in c][0]
    assert cli.main(offline[1:] + ['--input-size', '70x56']) == 0
    _, bag = main_job()
    args = [str(ROOT / a) if a == bag[2] else a for a in bag[1:]]
    assert cli.main(args + ['--quiet']) == 0
    assert (tmp_path / bag[3] / 'metadata.yaml').is_file()
