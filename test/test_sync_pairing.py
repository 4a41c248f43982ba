"""FrameSync (image/camera_info pairing) and LatestSlot (stale-frame dropping), ROS-free."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from depth_node.errors import MissingCameraInfoError
from depth_node.sync import FrameSync, LatestSlot, PairingRule
import pytest

NS = 1_000_000_000


def msg(stamp_ns, name=''):
    stamp = SimpleNamespace(sec=stamp_ns // NS, nanosec=stamp_ns % NS)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id='cam'), name=name)


T0 = 1_700_000_000 * NS


def test_exact_pairs_either_order():
    sync = FrameSync(PairingRule('exact'))
    out = sync.add_camera_info(msg(T0, 'i0'))
    assert out.frames == [] and out.errors == []
    out = sync.add_image(msg(T0, 'f0'))
    assert [(f.image.name, f.camera_info.name) for f in out.frames] == [('f0', 'i0')]
    # image first: waits, then completed by its camera_info
    out = sync.add_image(msg(T0 + 33_000_000, 'f1'))
    assert out.frames == [] and sync.pending == 1
    out = sync.add_camera_info(msg(T0 + 33_000_000, 'i1'))
    assert [(f.image.name, f.camera_info.name) for f in out.frames] == [('f1', 'i1')]
    assert sync.pending == 0


def test_exact_rejects_one_nanosecond_off():
    sync = FrameSync(PairingRule('exact'))
    sync.add_camera_info(msg(T0 - 1))
    out = sync.add_image(msg(T0))
    assert out.frames == [] and out.errors == [] and sync.pending == 1   # may still come
    out = sync.add_camera_info(msg(T0 + 1))
    assert out.frames == [] and len(out.errors) == 1 and sync.pending == 0


def test_lost_camera_info_is_reported_when_a_newer_one_arrives():
    sync = FrameSync(PairingRule('exact'))
    sync.add_image(msg(T0, 'f0'))
    out = sync.add_camera_info(msg(T0 + 50_000_000, 'i1'))
    assert out.frames == []
    assert len(out.errors) == 1 and isinstance(out.errors[0], MissingCameraInfoError)
    text = str(out.errors[0])
    assert 'exact' in text and '+50.0 ms' in text and 'sync_policy' in text
    assert sync.pending == 0
    # an image older than the newest camera_info fails at once
    out = sync.add_image(msg(T0 + 10_000_000, 'f-late'))
    assert len(out.errors) == 1 and out.frames == []


def test_approximate_picks_nearest_within_tolerance():
    sync = FrameSync(PairingRule.from_seconds('approximate', 0.010))
    for offset, name in ((-30, 'far'), (-8, 'near'), (9, 'later')):
        sync.add_camera_info(msg(T0 + offset * 1_000_000, name))
    out = sync.add_image(msg(T0, 'f'))
    assert out.frames[0].camera_info.name == 'near'
    out = sync.add_image(msg(T0 + 100_000_000, 'f2'))   # 91 ms from the newest: waits
    assert out.frames == [] and sync.pending == 1


def test_latest_uses_newest_and_fails_without_any():
    sync = FrameSync(PairingRule('latest'), max_wait_s=0.1)
    out = sync.add_image(msg(T0), received_ns=0)
    # the first camera_info may be delivered after the first image: it waits for it
    assert out.frames == [] and out.errors == [] and sync.pending == 1
    out = sync.expire(now_ns=99_000_000)
    assert out.errors == [] and sync.pending == 1
    out = sync.expire(now_ns=100_000_000)
    assert out.frames == [] and len(out.errors) == 1 and sync.pending == 0
    assert 'no camera_info has been received yet' in str(out.errors[0])
    assert 'none received' in str(out.errors[0])
    sync.add_camera_info(msg(T0 - 5 * NS, 'old'))
    sync.add_camera_info(msg(T0 - 4 * NS, 'newest'))
    out = sync.add_image(msg(T0))
    assert out.frames[0].camera_info.name == 'newest'


def test_latest_first_image_before_first_camera_info_is_not_lost():
    # the callback order of two topics is not the publish order: the first image may come first
    sync = FrameSync(PairingRule('latest'), max_wait_s=0.1)
    assert sync.add_image(msg(T0, 'f0')).frames == []
    out = sync.add_camera_info(msg(T0, 'i0'))
    assert [(f.image.name, f.camera_info.name) for f in out.frames] == [('f0', 'i0')]
    assert out.errors == [] and sync.pending == 0
    # once one arrived, images go on at once with the newest
    out = sync.add_image(msg(T0 + NS, 'f1'))
    assert out.frames[0].camera_info.name == 'i0'


def test_image_queue_overflow_reports_the_oldest():
    sync = FrameSync(PairingRule('exact'), image_queue=2)
    errors = []
    for i in range(4):
        errors += sync.add_image(msg(T0 + i)).errors
    assert len(errors) == 2 and sync.pending == 2
    assert 'waited too long' in str(errors[0])


def test_configure_live_and_validation():
    sync = FrameSync(PairingRule('exact'))
    sync.add_camera_info(msg(T0 + 5_000_000))
    assert sync.add_image(msg(T0)).frames == []
    sync.clear()
    sync.configure(PairingRule.from_seconds('approximate', 0.01))
    sync.add_camera_info(msg(T0 + 5_000_000))
    assert len(sync.add_image(msg(T0)).frames) == 1
    with pytest.raises(ValueError):
        PairingRule.from_seconds('nearest', 0.01)
    with pytest.raises(ValueError):
        PairingRule.from_seconds('exact', -1.0)
    with pytest.raises(ValueError):
        sync.configure(max_wait_s=-1.0)


def test_latest_slot_drops_stale_and_counts():
    dropped = []
    slot = LatestSlot(on_drop=dropped.append)
    assert slot.put('a') is False
    assert slot.put('b') is True
    assert slot.put('c') is True
    assert slot.dropped == 2 and dropped == ['a', 'b']
    assert slot.take(timeout=0.1) == 'c'
    assert slot.take(timeout=0.01) is None


def test_latest_slot_wakes_worker_and_closes():
    slot = LatestSlot()
    got = []

    def worker():
        while True:
            item = slot.take(timeout=5.0)
            if item is None:
                return
            got.append(item)
    thread = threading.Thread(target=worker)
    thread.start()
    slot.put(1)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    slot.close()
    thread.join(5.0)
    assert not thread.is_alive() and got == [1]
    assert slot.put(2) is False and slot.take(timeout=0.01) is None
    slot.reopen()
    slot.put(3)
    assert slot.take(timeout=0.1) == 3


def test_slow_consumer_keeps_only_newest():
    slot = LatestSlot()
    processed = []

    def worker():
        while (item := slot.take(timeout=1.0)) is not None:
            time.sleep(0.02)             # slower than the producer
            processed.append(item)
    thread = threading.Thread(target=worker)
    thread.start()
    for i in range(50):
        slot.put(i)
        time.sleep(0.002)
    time.sleep(0.1)
    slot.close()
    thread.join(5.0)
    # every frame was either processed, dropped as stale, or discarded by close()
    assert slot.dropped + len(processed) in (49, 50)
    assert slot.dropped > 25
    assert processed == sorted(processed)


# -- the one pairing rule and late partners (sparse depth after its image) ------------------
MS = 1_000_000


def test_pairing_rule_policies_offline():
    partners = [(T0 - 30 * MS, 'a'), (T0 - 8 * MS, 'b'), (T0 + 9 * MS, 'c'), (T0 + 40 * MS, 'd')]
    assert PairingRule('exact').pick(T0 + 9 * MS, partners) == 'c'
    assert PairingRule('exact').pick(T0, partners) is None
    assert PairingRule.from_seconds('approximate', 0.010).pick(T0, partners) == 'b'
    assert PairingRule.from_seconds('approximate', 0.005).pick(T0, partners) is None
    assert PairingRule('latest').pick(T0, partners) == 'd'
    assert PairingRule('latest_before').pick(T0, partners) == 'b'
    assert PairingRule('latest_before').pick(T0 - 31 * MS, partners) is None


def test_late_sparse_depth_is_waited_for():
    sync = FrameSync(PairingRule('exact'), sparse_depth=True, max_wait_s=0.2)
    sync.add_camera_info(msg(T0, 'i0'))
    out = sync.add_image(msg(T0, 'f0'), received_ns=0)
    assert out.frames == [] and sync.pending == 1          # waits for its sparse depth
    out = sync.add_sparse_depth(msg(T0, 's0'))
    assert [(f.image.name, f.sparse_depth.name) for f in out.frames] == [('f0', 's0')]
    assert out.without_sparse_depth == 0 and sync.pending == 0


def test_sparse_depth_that_never_comes_is_given_up_after_the_wait():
    sync = FrameSync(PairingRule.from_seconds('approximate', 0.02), sparse_depth=True,
                     max_wait_s=0.1)
    sync.add_camera_info(msg(T0, 'i0'))
    sync.add_sparse_depth(msg(T0 - 15 * MS, 'early'))     # within tolerance, but earlier
    assert sync.add_image(msg(T0, 'f0'), received_ns=0).frames == []
    assert sync.expire(now_ns=50 * MS).frames == []         # still within the wait
    out = sync.expire(now_ns=100 * MS)
    assert [(f.image.name, f.sparse_depth.name) for f in out.frames] == [('f0', 'early')]
    # nothing within tolerance: the frame goes on without sparse depth, and is counted
    sync.add_camera_info(msg(T0 + 500 * MS, 'i1'))
    sync.add_image(msg(T0 + 500 * MS, 'f1'), received_ns=0)
    out = sync.expire(now_ns=100 * MS)
    assert [f.sparse_depth for f in out.frames] == [None] and out.without_sparse_depth == 1


def test_approximate_waits_for_a_nearer_partner_then_settles():
    sync = FrameSync(PairingRule.from_seconds('approximate', 0.02), sparse_depth=True)
    sync.add_camera_info(msg(T0, 'i0'))
    sync.add_image(msg(T0, 'f0'))
    assert sync.add_sparse_depth(msg(T0 - 10 * MS, 's-10')).frames == []   # may get nearer
    out = sync.add_sparse_depth(msg(T0 + 3 * MS, 's+3'))                  # at/after: settled
    assert [f.sparse_depth.name for f in out.frames] == ['s+3']


def test_a_lost_sparse_depth_is_known_when_a_later_one_arrives():
    sync = FrameSync(PairingRule('exact'), sparse_depth=True, max_wait_s=1.0)
    for i in range(2):
        sync.add_camera_info(msg(T0 + i * 33 * MS))
        sync.add_image(msg(T0 + i * 33 * MS, f'f{i}'))
    out = sync.add_sparse_depth(msg(T0 + 33 * MS, 's1'))    # f0's sparse depth was lost
    assert [(f.image.name, getattr(f.sparse_depth, 'name', None)) for f in out.frames] == [
        ('f0', None), ('f1', 's1')]
    assert out.without_sparse_depth == 1 and out.stale == 0 and sync.pending == 0


def test_a_frame_overtaken_while_waiting_is_a_stale_drop():
    sync = FrameSync(PairingRule('latest_before'), max_wait_s=1.0)
    sync.add_image(msg(T0, 'f0'))                            # waits: no camera_info yet
    sync.add_camera_info(msg(T0 - 5 * MS, 'i-5'))            # earlier: a later one may come
    assert sync.pending == 1
    out = sync.add_image(msg(T0 + 33 * MS, 'f1'))
    assert out.frames == []
    out = sync.add_camera_info(msg(T0 + 40 * MS, 'i40'))    # settles both
    assert [f.image.name for f in out.frames] == ['f0', 'f1'] and out.stale == 0
    sync = FrameSync(PairingRule('exact'), sparse_depth=True, max_wait_s=1.0)
    sync.add_camera_info(msg(T0))
    sync.add_image(msg(T0, 'f0'))                            # waits for sparse depth
    sync.add_camera_info(msg(T0 + 33 * MS))
    sync.add_sparse_depth(msg(T0 - 33 * MS))                # older: f0 may still get its own
    out = sync.add_image(msg(T0 + 33 * MS, 'f1'))
    assert out.frames == [] and sync.pending == 2
    out = sync.expire(now_ns=time.monotonic_ns() + 2 * NS)  # both given up, oldest first
    assert [f.image.name for f in out.frames] == ['f0', 'f1']


def test_disabled_sparse_depth_is_ignored():
    sync = FrameSync(PairingRule('exact'))
    assert sync.add_sparse_depth(msg(T0)).frames == []
    sync.add_camera_info(msg(T0))
    assert len(sync.add_image(msg(T0)).frames) == 1


def test_camera_info_later_than_the_wait_still_pairs():
    sync = FrameSync(PairingRule('exact'), max_wait_s=0.1)
    sync.add_image(msg(T0, 'f0'), received_ns=0)
    assert sync.expire(now_ns=500 * MS).frames == [] and sync.pending == 1   # still waiting
    out = sync.add_camera_info(msg(T0, 'i0'))
    assert [f.image.name for f in out.frames] == ['f0'] and out.errors == []


# -- rounds of several cameras (issue 13) ---------------------------------------------------
def test_round_slots_take_the_newest_of_each_camera_and_count_drops():
    import threading
    import time

    from depth_node.sync import RoundSlots
    dropped = []
    slots = RoundSlots(['a', 'b', 'c'], on_drop=lambda name, item: dropped.append((name, item)))
    slots.put('b', 1)
    slots.put('a', 2)
    assert slots.put('b', 3) is True and dropped == [('b', 1)]
    t0 = time.monotonic()
    assert slots.take_round(max_wait_s=0.2, timeout=1.0) == {'a': 2, 'b': 3}   # c: none
    assert 0.15 <= time.monotonic() - t0 < 2.0            # waited for c, but only that long
    assert slots.take_round(0.0, timeout=0.05) == {}      # nothing left
    # a round closes as soon as every camera has a frame
    timer = threading.Timer(0.05, lambda: [slots.put(n, n) for n in 'cab'])
    timer.start()
    t0 = time.monotonic()
    assert list(slots.take_round(max_wait_s=5.0, timeout=2.0)) == ['a', 'b', 'c']
    assert time.monotonic() - t0 < 2.0
    slots.put('a', 9)
    slots.close()
    assert slots.take_round(1.0, timeout=0.01) == {} and slots.put('a', 1) is False
    slots.reopen()
    slots.put('c', 1)
    assert slots.take_round(0.0, timeout=0.01) == {'c': 1} and slots.dropped == 1
