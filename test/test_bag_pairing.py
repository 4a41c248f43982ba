"""depth-node bag pairs frames by the one pairing rule, the same frames as the node.

The joining (:mod:`depth_node.bagjoin`) is tested on plain stamps, without a bag; a recording
fed to the node's :class:`~depth_node.sync.FrameSync` in log order pairs exactly as the bag
tool's offline index does; and a bag whose sparse depth is 10 ms off its images is metric
with ``--sync-policy approximate`` where exact pairing finds nothing.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from depth_node.bagjoin import FrameJoiner, PartnerBuffer, PartnerIndex, PendingFrame
from depth_node.sync import FrameSync, PairingRule
import pytest

MS = 1_000_000
S = 1_000_000_000


def _msg(stamp: int, name: str = '') -> SimpleNamespace:
    return SimpleNamespace(name=name, header=SimpleNamespace(
        stamp=SimpleNamespace(sec=stamp // S, nanosec=stamp % S)))


def _index(rule: PairingRule, entries: list[tuple[int, int]]) -> PartnerIndex:
    index = PartnerIndex(rule)
    for stamp, log_time in entries:
        index.add(stamp, log_time)
    return index


# -- the joining, without a bag ---------------------------------------------------------------
def test_partner_index_applies_each_policy():
    entries = [(100 * MS, 150 * MS), (210 * MS, 260 * MS), (300 * MS, 280 * MS)]
    image = (200 * MS, 205 * MS)   # stamp, log time
    assert _index(PairingRule('exact'), entries).partner(*image) is None
    assert _index(PairingRule('exact'), entries).partner(210 * MS, 0) == 210 * MS
    assert _index(PairingRule.from_seconds('approximate', 0.02), entries).partner(*image) \
        == 210 * MS
    assert _index(PairingRule.from_seconds('approximate', 0.005), entries).partner(*image) \
        is None
    assert _index(PairingRule('latest_before'), entries).partner(*image) == 100 * MS
    # latest: what was logged by the image's log time (a replaying node has received that)
    assert _index(PairingRule('latest'), entries).partner(*image) == 100 * MS
    assert _index(PairingRule('latest'), entries).partner(200 * MS, 270 * MS) == 210 * MS
    assert _index(PairingRule('latest'), entries).partner(200 * MS, 10 * MS) is None


def test_partner_buffer_keeps_shared_partners_and_releases_waiting_frames():
    buffer = PartnerBuffer(size=2)
    buffer.wait(5, 'frame a')
    buffer.wait(5, 'frame b')
    buffer.wait(7, 'frame c')
    assert buffer.put(5, 'sparse 5') == ['frame a', 'frame b']
    assert buffer.get(5) == 'sparse 5'            # kept: a later image may pair with it too
    buffer.forget('frame c')
    assert buffer.put(7, 'sparse 7') == [] and buffer.put(9, 'sparse 9') == []
    assert buffer.get(5) is None and buffer.get(9) == 'sparse 9'    # bounded
    assert buffer.get(None) is None


def _frame(camera: str, stamp: int, log_time: int | None = None) -> PendingFrame:
    return PendingFrame(camera, f'{camera}@{stamp // MS}', stamp,
                        stamp if log_time is None else log_time)


def _names(frames) -> list[str]:
    return [f.msg for f in frames]


def test_frame_joiner_waits_for_late_partners_and_keeps_each_camera_in_order():
    """The joining of the bag tool, without a bag: late partners, shared ones, order."""
    rule = PairingRule.from_seconds('approximate', 0.02)
    sparse = _index(rule, [(110 * MS, 130 * MS), (210 * MS, 230 * MS), (400 * MS, 420 * MS)])
    joiner = FrameJoiner(sparse, None)
    # a's frame 100 pairs with sparse 110, logged later: it waits, and holds back frame 200
    assert joiner.add_frame(_frame('a', 100 * MS)) == []
    assert joiner.add_frame(_frame('a', 200 * MS)) == []
    # camera b has no partner for 300 (none within 20 ms): it goes at once, a still waits
    assert _names(joiner.add_frame(_frame('b', 300 * MS))) == ['b@300']
    ready = joiner.add_sparse(110 * MS, 'sparse 110', read_ms=2.0)
    assert _names(ready) == ['a@100'] and ready[0].sparse == 'sparse 110'
    assert ready[0].read_ms == 2.0
    ready = joiner.add_sparse(210 * MS, 'sparse 210')
    assert _names(ready) == ['a@200'] and ready[0].sparse == 'sparse 210'
    # an earlier partner is kept and can serve a later frame too
    assert joiner.add_frame(_frame('b', 215 * MS, 500 * MS))[0].sparse == 'sparse 210'
    # a partner that never comes: flush hands the frame out without one, in order
    assert joiner.add_frame(_frame('a', 390 * MS)) == []
    assert joiner.add_frame(_frame('a', 600 * MS)) == []
    flushed = joiner.flush()
    assert _names(flushed) == ['a@390', 'a@600'] and flushed[0].sparse is None


def test_frame_joiner_bounds_the_wait_and_says_why():
    rgb = _index(PairingRule('exact'), [(t * MS, 10_000 * MS + t) for t in range(1, 6)])
    joiner = FrameJoiner(None, rgb, max_waiting=2)
    out = []
    for t in range(1, 6):        # every colour image is logged long after its depth frame
        out += joiner.add_frame(_frame('d', t * MS))
    assert _names(out) == ['d@1', 'd@2', 'd@3']        # beyond 2 waiting, the oldest goes on
    assert all(f.rgb is None and 'more than 2 frames later' in f.rgb_note for f in out)
    for t in range(1, 6):
        out += joiner.add_rgb(t * MS, f'rgb {t}')
    assert [f.rgb for f in out[3:]] == ['rgb 4', 'rgb 5']


# -- the bag tool and the node pair the same frames of a recording ----------------------------
def _recording() -> list[tuple[int, str, int]]:
    """(log time, kind, stamp) of 30 frames at 10 Hz with late, early and missing partners."""
    events = []
    for i in range(30):
        t = (i + 1) * 100 * MS
        events.append((t + 5 * MS, 'image', t))
        if i % 7 != 3:                                   # some frames have no camera_info
            info_log = t + (6 if i % 2 else 2) * MS      # logged after or before the image
            events.append((info_log, 'info', t + (MS if i % 5 == 1 else 0)))
        if i % 6 != 2:                                   # some have no sparse depth
            offset = (10 if i % 3 else 30) * MS          # LiDAR 10 or 30 ms after the image
            events.append((t + offset + 20 * MS, 'sparse', t + offset))
    return sorted(events)


def _offline(rule: PairingRule, events) -> dict[int, tuple[int | None, int | None]]:
    infos = _index(rule, [(s, t) for t, k, s in events if k == 'info'])
    sparse = _index(rule, [(s, t) for t, k, s in events if k == 'sparse'])
    return {s: (infos.partner(s, t), sparse.partner(s, t))
            for t, k, s in events if k == 'image'}


def _node(rule: PairingRule, events) -> dict[int, tuple[int | None, int | None]]:
    sync = FrameSync(rule, sparse_depth=True, max_wait_s=60.0, image_queue=10,
                     partner_queue=30)
    out = {}

    def take(result):
        for frame in result.frames:
            out[frame.image.name] = (int(frame.camera_info.name),
                                     None if frame.sparse_depth is None
                                     else int(frame.sparse_depth.name))
        assert result.stale == 0
        for error in result.errors:
            stamp = next(s for s in pending if f'{s // S}.{s % S:09d}' in str(error))
            out[stamp] = (None, None)

    pending = []
    for _, kind, stamp in events:
        msg = _msg(stamp, stamp if kind == 'image' else str(stamp))
        if kind == 'image':
            pending.append(stamp)
            take(sync.add_image(msg))
        elif kind == 'info':
            take(sync.add_camera_info(msg))
        else:
            take(sync.add_sparse_depth(msg))
    take(sync.expire(2 ** 62))
    return out


@pytest.mark.parametrize('rule', [PairingRule('exact'),
                                  PairingRule.from_seconds('approximate', 0.02),
                                  PairingRule('latest_before'), PairingRule('latest')],
                         ids=lambda r: r.policy)
def test_bag_tool_and_node_pair_the_same_frames(rule):
    events = _recording()
    offline = _offline(rule, events)
    node = _node(rule, events)
    # the node skips a frame without camera_info, and then pairs no sparse depth either
    expected = {s: (i, None if i is None else d) for s, (i, d) in offline.items()}
    assert node == expected
    assert sum(i is not None for i, _ in expected.values()) >= 20
    sparse = sum(d is not None for _, d in expected.values())
    assert sparse == 0 if rule.policy == 'exact' else sparse > 10   # the LiDAR is 10-30 ms late


@pytest.mark.parametrize('rule', [PairingRule('exact'),
                                  PairingRule.from_seconds('approximate', 0.02),
                                  PairingRule('latest_before')], ids=lambda r: r.policy)
def test_evaluate_pairs_the_same_frames(rule):
    """Evaluate pairs a ground truth with a prediction as the bag tool pairs an image.

    With the sparse depth in the role of the predictions and the images in the role of the
    ground truth, ``evaluate.pair_by_stamp`` finds exactly the bag tool's partners (the
    stamp-only policies: evaluate has no log times).
    """
    from depth_node.evaluate import pair_by_stamp
    events = _recording()
    offline = _offline(rule, events)
    sparse = {s: None for _, k, s in events if k == 'sparse'}
    images = {s: None for _, k, s in events if k == 'image'}
    pairs = {g: p for p, g in pair_by_stamp(sparse, images, rule)}
    assert pairs == {s: d for s, (_, d) in offline.items() if d is not None}
    assert rule.policy == 'exact' or len(pairs) > 10


# -- a bag with sparse depth 10 ms off its images ---------------------------------------------
def test_sparse_depth_10ms_off_pairs_with_approximate(tmp_path, humble_factory):
    from depth_node import bag
    from depth_node.cli import main
    from depth_node.images import make_image
    import numpy as np
    from test_bag_support import camera_info, image, tiny_model, tum_rgb_small, write_bag
    w, h = 64, 48
    f = humble_factory
    rows = []
    sparse = np.full((h, w), 2.0, np.float32)
    for t in range(1, 6):
        rgb = np.roll(tum_rgb_small(w, h), 3 * t, axis=1)
        rows.append(('/cam/camera_info', t * S, camera_info(f, t * S, w, h, 'cam')))
        rows.append(('/cam/image_raw', t * S + 1, image(f, t * S, rgb, 'cam')))
        msg = make_image(f, f.header(t, 10 * MS, 'cam'), sparse, '32FC1')
        rows.append(('/lidar/depth', t * S + 30 * MS, msg))
    src = write_bag(tmp_path / 'in', f.typestore, rows)
    model = tiny_model(tmp_path / 'model')
    base = ['bag', str(src), '--model', str(model), '--quiet', '--scale-source',
            'sparse_depth', '--sparse-depth-topic', '/lidar/depth', '--sparse-min-points', '10']
    summaries = {}
    for policy in ('exact', 'approximate'):
        out = tmp_path / policy
        main(base[:2] + [str(out)] + base[2:] + ['--sync-policy', policy,
                                                 '--json-summary', str(out) + '.json'])
        summaries[policy] = json.loads((tmp_path / f'{policy}.json').read_text())
    missing = 'sparse_depth: no sparse depth image for this frame'
    assert summaries['exact']['relative_only_reasons'] == {missing: 5}
    assert summaries['exact']['exit_status'] == bag.EXIT_NOT_METRIC
    assert missing not in summaries['approximate']['relative_only_reasons']
