"""``depth-node bag`` with several cameras of one recording, batched as the node runs them.

The real T265 fisheye pair (../shared/data, 3 frames each, 848x800 mono8) with its two
calibrations written as camera_info beside each camera, through a tiny real ONNX model with a
batch axis: the batched run (default ``--batch 0``: one frame of each camera per network call)
writes exactly what one frame at a time (``--batch 1``) writes, runs rounds of two, and one
camera's bad frame costs the other camera nothing.
"""

from __future__ import annotations

from pathlib import Path

from camera_helpers import t265_fisheye_frames
import node_helpers as helpers
import pytest
from test_bag_support import read_bag

DATA = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'
T265 = DATA / 'bags' / 't265_trimmed_locoffice_ros2'
CAMERAS = ('fisheye1', 'fisheye2')


def t265_with_camera_info(path: Path, bad: tuple[str, int] | None = None) -> Path:
    """Write the T265 fisheye frames with a camera_info per frame (from the calibrations)."""
    from depth_node.bagio import BagWriter
    from depth_node.messages import rosbags_factory
    factory = rosbags_factory('humble')
    writer = BagWriter(path, factory.typestore)
    seen = dict.fromkeys(CAMERAS, 0)
    try:
        for name, image, info, log_time in t265_fisheye_frames(DATA, factory):
            if bad == (name, seen[name]):
                image.data = image.data[:1000]          # a truncated frame
            seen[name] += 1
            writer.write(f'/camera/{name}/camera_info', info, log_time)
            writer.write(f'/camera/{name}/image_raw', image, log_time)
    finally:
        writer.close()
    assert seen == {'fisheye1': 3, 'fisheye2': 3}
    return path


@pytest.fixture
def model(tmp_path):
    return helpers.build_tiny_onnx(tmp_path / 'tiny_b.onnx', batch='batch')


class Batches:
    """Record the sizes of the batches the pipeline runs."""

    def __init__(self, monkeypatch) -> None:
        from depth_node.pipeline import DepthPipeline
        self.sizes: list[int] = []
        original = DepthPipeline.process_batch

        def spy(pipeline, items):
            self.sizes.append(len(items))
            return original(pipeline, items)
        monkeypatch.setattr(DepthPipeline, 'process_batch', spy)


def run(inp: Path, out: Path, model: Path, *flags: str) -> int:
    from depth_node.cli import main
    return main(['bag', str(inp), str(out), '--model', str(model), '--backend', 'onnxruntime',
                 '--quiet', '--json-summary', str(out) + '.json', *flags])


def outputs(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """``{output topic: [(log time, CDR bytes)]}`` of an output bag."""
    out: dict[str, list] = {}
    for topic, _, log_time, raw in read_bag(path):
        out.setdefault(topic, []).append((log_time, raw))
    return out


def summary(out: Path) -> dict:
    import json
    return json.loads(Path(str(out) + '.json').read_text())


@pytest.mark.skipif(not T265.is_dir(), reason='../shared/data has no T265 bag')
def test_t265_pair_batched_gives_what_one_at_a_time_gives(tmp_path, model, monkeypatch):
    inp = t265_with_camera_info(tmp_path / 'in')
    batches = Batches(monkeypatch)
    assert run(inp, tmp_path / 'batched', model) == 0
    assert batches.sizes == [2, 2, 2]                        # one round per pair of frames
    batches.sizes.clear()
    assert run(inp, tmp_path / 'single', model, '--batch', '1') == 0
    assert batches.sizes == []
    batched, single = outputs(tmp_path / 'batched'), outputs(tmp_path / 'single')
    assert batched == single
    for name in CAMERAS:
        for suffix in ('depth/image', 'depth/camera_info', 'points'):
            assert len(batched[f'/camera/{name}/{suffix}']) == 3, (name, suffix)
    result = summary(tmp_path / 'batched')
    assert result['frames_written'] == 6 and result['skipped'] == {}
    assert [c['image_topic'] for c in result['cameras']] == \
        [f'/camera/{n}/image_raw' for n in CAMERAS]


@pytest.mark.skipif(not T265.is_dir(), reason='../shared/data has no T265 bag')
def test_a_bad_frame_of_one_camera_costs_the_other_nothing(tmp_path, model, monkeypatch):
    inp = t265_with_camera_info(tmp_path / 'in', bad=('fisheye2', 1))
    batches = Batches(monkeypatch)
    assert run(inp, tmp_path / 'batched', model) == 3        # some frames skipped
    assert batches.sizes == [2, 2, 2]
    assert run(inp, tmp_path / 'single', model, '--batch', '1') == 3
    batched, single = outputs(tmp_path / 'batched'), outputs(tmp_path / 'single')
    assert batched == single
    assert len(batched['/camera/fisheye1/depth/image']) == 3
    assert len(batched['/camera/fisheye2/depth/image']) == 2
    result = summary(tmp_path / 'batched')
    assert result['frames_written'] == 5 and sum(result['skipped'].values()) == 1


def test_batch_flag_is_checked(tmp_path, model):
    from depth_node.cli import main
    assert main(['bag', str(tmp_path / 'nothing'), str(tmp_path / 'out'), '--model',
                 str(model), '--batch', '-1']) == 2
