"""The README's quick-start command really runs (offline: random weights, a small input size).

Takes the first bash block of the README (install + main job), drops the install step, and
runs the export and bag steps through the CLI on the real TUM recording from ../shared/data.
"""

from __future__ import annotations

from pathlib import Path
import re
import shlex

from depth_node import cli
import pytest

README = Path(__file__).resolve().parents[1] / 'README.md'


def quickstart_commands() -> list[list[str]]:
    text = README.read_text()
    block = re.search(r'```bash\n(.*?)```', text, re.S).group(1)
    commands = [shlex.split(part) for part in block.replace('\\\n', ' ').split('&&')]
    return [c for c in commands if c]


def test_quickstart_installs_then_exports_then_processes_a_bag():
    commands = quickstart_commands()
    assert commands[0][:2] == ['pip', 'install']
    assert [c[:2] for c in commands[1:]] == [['depth-node', 'export'], ['depth-node', 'bag']]


@pytest.mark.slow
def test_quickstart_runs_on_a_real_recording(tmp_path, shared_data, monkeypatch):
    pytest.importorskip('transformers', reason='export needs the torch extra')
    pytest.importorskip('onnxruntime', reason='the bag run needs the onnxruntime extra')
    pytest.importorskip('rosbags', reason='the bag run needs the bag extra')
    monkeypatch.chdir(tmp_path)
    export, bag = quickstart_commands()[1:]
    # offline: the same architecture with random weights, at a small input size
    assert cli.main(export[1:] + ['--random-weights', '--input-size', '70x56']) == 0
    model = Path(export[export.index('--output') + 1])
    assert model.is_file() and model.with_suffix('').with_suffix('.card.yaml').is_file() \
        or Path(str(model)[:-len('.onnx')] + '.card.yaml').is_file()
    recording = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    args = [str(recording) if a == 'my_recording/' else a for a in bag[1:]]
    assert cli.main(args + ['--quiet']) == 0
    output = tmp_path / args[2]
    from rosbags.highlevel import AnyReader
    with AnyReader([output]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
    assert topics['/camera/color/depth/image'] == 'sensor_msgs/msg/Image'
    assert topics['/camera/color/points'] == 'sensor_msgs/msg/PointCloud2'
