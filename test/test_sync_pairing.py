"""FrameSync (image/camera_info pairing) and LatestSlot (stale-frame dropping), ROS-free."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from depth_node.errors import MissingCameraInfoError
from depth_node.sync import FrameSync, LatestSlot, StampCache
import pytest

NS = 1_000_000_000


def msg(stamp_ns, name=''):
    stamp = SimpleNamespace(sec=stamp_ns // NS, nanosec=stamp_ns % NS)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id='cam'), name=name)


T0 = 1_700_000_000 * NS


def test_exact_pairs_either_order():
    sync = FrameSync('exact')
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
    sync = FrameSync('exact')
    sync.add_camera_info(msg(T0 - 1))
    out = sync.add_image(msg(T0))
    assert out.frames == [] and out.errors == [] and sync.pending == 1   # may still come
    out = sync.add_camera_info(msg(T0 + 1))
    assert out.frames == [] and len(out.errors) == 1 and sync.pending == 0


def test_lost_camera_info_is_reported_when_a_newer_one_arrives():
    sync = FrameSync('exact')
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
    sync = FrameSync('approximate', tolerance_s=0.010)
    for offset, name in ((-30, 'far'), (-8, 'near'), (9, 'later')):
        sync.add_camera_info(msg(T0 + offset * 1_000_000, name))
    out = sync.add_image(msg(T0, 'f'))
    assert out.frames[0].camera_info.name == 'near'
    out = sync.add_image(msg(T0 + 100_000_000, 'f2'))   # 91 ms from the newest: waits
    assert out.frames == [] and sync.pending == 1


def test_latest_uses_newest_and_fails_without_any():
    sync = FrameSync('latest')
    out = sync.add_image(msg(T0))
    assert out.frames == [] and len(out.errors) == 1
    assert 'no camera_info has been received yet' in str(out.errors[0])
    sync.add_camera_info(msg(T0 - 5 * NS, 'old'))
    sync.add_camera_info(msg(T0 - 4 * NS, 'newest'))
    out = sync.add_image(msg(T0))
    assert out.frames[0].camera_info.name == 'newest'


def test_image_queue_overflow_reports_the_oldest():
    sync = FrameSync('exact', image_queue=2)
    errors = []
    for i in range(4):
        errors += sync.add_image(msg(T0 + i)).errors
    assert len(errors) == 2 and sync.pending == 2
    assert 'waited too long' in str(errors[0])


def test_configure_live_and_validation():
    sync = FrameSync('exact')
    sync.add_camera_info(msg(T0 + 5_000_000))
    assert sync.add_image(msg(T0)).frames == []
    sync.clear()
    sync.configure('approximate', 0.01)
    sync.add_camera_info(msg(T0 + 5_000_000))
    assert len(sync.add_image(msg(T0)).frames) == 1
    with pytest.raises(ValueError):
        sync.configure('nearest', 0.01)
    with pytest.raises(ValueError):
        sync.configure('exact', -1.0)


def test_stamp_cache_nearest():
    cache = StampCache(size=3)
    assert cache.nearest(T0, None) is None
    for i in range(5):
        cache.add(msg(T0 + i * 100_000_000, f's{i}'))
    assert cache.nearest(T0, None).name == 's4'
    assert cache.nearest(T0 + 310_000_000, 20_000_000).name == 's3'
    assert cache.nearest(T0, 20_000_000) is None       # s0 fell out of the cache


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
