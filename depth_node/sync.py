"""The one pairing rule of depth_node, the frame sync of the node, and its latest-frame slot.

ROS-free so that it can be unit-tested: messages are read only through ``header.stamp``.

:class:`PairingRule` decides which message of a partner stream (camera_info, sparse depth,
ground truth, a colour image) belongs to an image stamp. The node, ``depth-node bag`` and
``depth-node evaluate`` all use it, with the same parameters (``sync_policy``,
``sync_tolerance``), so a recording replayed into the node and the same recording processed
offline pair the same frames. Policies:

``exact``
    the partner with the same stamp (what image_transport's camera publishers send);
``approximate``
    the partner with the nearest stamp within ``sync_tolerance``;
``latest``
    the most recent partner received, whatever its stamp (drivers that publish camera_info
    at a low rate or with a constant stamp); before the first one arrived, an image waits
    for it at most ``max_wait_s``;
``latest_before``
    the partner with the largest stamp not after the image (a calibration or a scale
    reference that is valid from its stamp on).

:class:`FrameSync` applies the rule live, where partners arrive in any order and often after
the image (a LiDAR projection typically tens of milliseconds later). An image waits until the
rule's choice can no longer change (see :meth:`PairingRule.settled`), at most ``max_wait_s``;
then it goes on with the best partner received so far. An image without camera_info is
reported as :class:`~depth_node.errors.MissingCameraInfoError`; one without sparse depth goes
on without it (the metric layer then holds the last scale) and is counted.

:class:`LatestSlot` holds the newest frame for the worker thread: putting a frame replaces an
unprocessed one, which is counted as a stale drop, so latency stays bounded when the model is
slower than the camera.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import threading
import time
from typing import Any

from depth_node import parameters
from depth_node.errors import MissingCameraInfoError
from depth_node.messages import stamp_ns

SYNC_POLICIES = parameters.choices('sync_policy')


def _fmt_ns(ns: int) -> str:
    return f'{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'


@dataclass(frozen=True)
class PairingRule:
    """Which partner message belongs to an image stamp (one rule for node, bag and evaluate).

    :param policy: one of :data:`SYNC_POLICIES`.
    :param tolerance_ns: largest stamp difference for ``approximate``, nanoseconds.
    """

    policy: str = 'exact'
    tolerance_ns: int = 0

    def __post_init__(self) -> None:
        if self.policy not in SYNC_POLICIES:
            raise ValueError(f'sync policy must be one of {SYNC_POLICIES}, got {self.policy!r}')
        if self.tolerance_ns < 0:
            raise ValueError(f'sync tolerance must be >= 0 s, got {self.tolerance_ns / 1e9}')

    @classmethod
    def from_seconds(cls, policy: str, tolerance_s: float) -> PairingRule:
        """Build a rule from a policy name and a tolerance in seconds."""
        if tolerance_s < 0:
            raise ValueError(f'sync tolerance must be >= 0 s, got {tolerance_s}')
        return cls(policy, int(round(tolerance_s * 1e9)))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> PairingRule:
        """Build the rule from parameter values (``sync_policy``, ``sync_tolerance``)."""
        return cls.from_seconds(values['sync_policy'], values['sync_tolerance'])

    def pick(self, stamp: int, candidates: Sequence[tuple[int, Any]]) -> Any | None:
        """Return the partner for ``stamp`` among ``(stamp_ns, message)`` in arrival order.

        ``latest`` takes the last candidate: offline, pass only the messages recorded before
        the image.
        """
        if not candidates:
            return None
        if self.policy == 'latest':
            return candidates[-1][1]
        if self.policy == 'latest_before':
            best = None
            for s, item in candidates:
                if s <= stamp and (best is None or s >= best[0]):
                    best = (s, item)
            return None if best is None else best[1]
        window = self.tolerance_ns if self.policy == 'approximate' else 0
        best, best_diff = None, None
        for s, item in candidates:
            diff = abs(s - stamp)
            if diff <= window and (best_diff is None or diff < best_diff):
                best, best_diff = item, diff
        return best

    def settled(self, stamp: int, newest_stamp: int | None) -> bool:
        """Whether no partner arriving later can change :meth:`pick` for ``stamp``.

        Partner stamps grow over time, so once a partner at or after the image stamp has
        arrived, nothing later is nearer (``approximate``) or a later one not after the image
        (``latest_before``); ``exact`` is settled once the match or a later stamp arrived.
        """
        if self.policy == 'latest':
            return True
        return newest_stamp is not None and newest_stamp >= stamp

    def impossible(self, stamp: int, newest_stamp: int | None) -> bool:
        """Whether no partner can come any more for ``stamp`` (given growing stamps)."""
        if self.policy in ('latest', 'latest_before') or newest_stamp is None:
            return False
        window = self.tolerance_ns if self.policy == 'approximate' else 0
        return newest_stamp > stamp + window

    def describe(self) -> str:
        """Return the rule in words, for messages."""
        if self.policy == 'approximate':
            return f'approximate sync within {self.tolerance_ns / 1e6:g} ms'
        return f'{self.policy} sync'


@dataclass
class Frame:
    """One image with what it was paired with, ready for the pipeline."""

    image: Any
    camera_info: Any
    sparse_depth: Any | None = None
    #: monotonic clock (ns) when the image callback received the image
    received_ns: int = field(default_factory=time.monotonic_ns)


@dataclass
class SyncOutput:
    """What one call of :class:`FrameSync` produced."""

    #: complete frames, oldest first
    frames: list[Frame] = field(default_factory=list)
    #: images given up for want of camera_info
    errors: list[MissingCameraInfoError] = field(default_factory=list)
    #: images overtaken, while they waited, by a newer complete frame (stale drops)
    stale: int = 0
    #: frames that went on without sparse depth (none paired within the wait)
    without_sparse_depth: int = 0

    def extend(self, other: SyncOutput) -> SyncOutput:
        """Append another output to this one; returns self."""
        self.frames += other.frames
        self.errors += other.errors
        self.stale += other.stale
        self.without_sparse_depth += other.without_sparse_depth
        return self


class _Partners:
    """The recent messages of one partner stream, in arrival order."""

    def __init__(self, size: int) -> None:
        self.items: deque[tuple[int, Any]] = deque(maxlen=max(1, size))
        self.newest: int | None = None

    def add(self, msg: Any) -> int:
        stamp = stamp_ns(msg)
        self.items.append((stamp, msg))
        self.newest = stamp if self.newest is None else max(self.newest, stamp)
        return stamp

    def clear(self) -> None:
        self.items.clear()
        self.newest = None


@dataclass
class _Waiting:
    stamp: int
    image: Any
    received_ns: int


class FrameSync:
    """Pair images with camera_info and, optionally, sparse depth, live (thread-safe).

    :param rule: the pairing rule (policy and tolerance).
    :param sparse_depth: whether frames also wait for a sparse depth partner.
    :param max_wait_s: longest an image waits for a partner that may still arrive, seconds.
    :param image_queue: images kept waiting.
    :param partner_queue: camera_info / sparse depth messages kept for pairing.
    """

    def __init__(self, rule: PairingRule | None = None, *, sparse_depth: bool = False,
                 max_wait_s: float = 0.1, image_queue: int = 5, partner_queue: int = 30) -> None:
        self._lock = threading.Lock()
        self._images: deque[_Waiting] = deque()
        self._infos = _Partners(partner_queue)
        self._sparse = _Partners(partner_queue)
        self._image_queue = max(1, image_queue)
        self.rule = rule or PairingRule()
        self.sparse_depth = sparse_depth
        self.max_wait_ns = int(round(max_wait_s * 1e9))

    def configure(self, rule: PairingRule | None = None, *, sparse_depth: bool | None = None,
                  max_wait_s: float | None = None) -> None:
        """Change the rule, whether sparse depth is waited for, or the wait (live update)."""
        with self._lock:
            if rule is not None:
                self.rule = rule
            if sparse_depth is not None:
                self.sparse_depth = sparse_depth
                if not sparse_depth:
                    self._sparse.clear()
            if max_wait_s is not None:
                if max_wait_s < 0:
                    raise ValueError(f'sync wait must be >= 0 s, got {max_wait_s}')
                self.max_wait_ns = int(round(max_wait_s * 1e9))

    @property
    def pending(self) -> int:
        """Images waiting for a partner."""
        with self._lock:
            return len(self._images)

    def clear(self) -> None:
        """Forget every queued image and partner message (on deactivate)."""
        with self._lock:
            self._images.clear()
            self._infos.clear()
            self._sparse.clear()

    # -- inputs -----------------------------------------------------------------------------
    def add_image(self, image: Any, received_ns: int | None = None) -> SyncOutput:
        """Offer an image; returns the frames completed now (this one, if its partners are in)."""
        received = time.monotonic_ns() if received_ns is None else received_ns
        with self._lock:
            self._images.append(_Waiting(stamp_ns(image), image, received))
            return self._resolve(received)

    def add_camera_info(self, info: Any) -> SyncOutput:
        """Offer a camera_info; returns the waiting frames it completes (and given-up ones)."""
        with self._lock:
            self._infos.add(info)
            return self._resolve(time.monotonic_ns())

    def add_sparse_depth(self, depth: Any) -> SyncOutput:
        """Offer a sparse depth image; returns the waiting frames it completes."""
        with self._lock:
            if not self.sparse_depth:
                return SyncOutput()
            self._sparse.add(depth)
            return self._resolve(time.monotonic_ns())

    def expire(self, now_ns: int | None = None) -> SyncOutput:
        """Let images whose wait is over go on with the partners they have (call on a timer)."""
        with self._lock:
            if not self._images:
                return SyncOutput()
            return self._resolve(time.monotonic_ns() if now_ns is None else now_ns)

    # -- pairing ----------------------------------------------------------------------------
    def _resolve(self, now_ns: int) -> SyncOutput:
        out = SyncOutput()
        rule, infos, sparse = self.rule, self._infos, self._sparse
        keep: list[_Waiting] = []
        overflow = len(self._images) - self._image_queue
        for index, waiting in enumerate(self._images):
            stamp = waiting.stamp
            if rule.impossible(stamp, infos.newest) and rule.pick(stamp, infos.items) is None:
                out.errors.append(self._missing(stamp, 'newer camera_info already received'))
                continue
            timed_out = now_ns - waiting.received_ns >= self.max_wait_ns
            forced = index < overflow
            # latest: the first camera_info may be delivered after the first image (two topics
            # have no common order), so an image waits for it, at most max_wait
            info_settled = rule.settled(stamp, infos.newest) and not (
                rule.policy == 'latest' and infos.newest is None)
            ready = info_settled and (
                not self.sparse_depth or rule.settled(stamp, sparse.newest)
                or rule.impossible(stamp, sparse.newest))
            if not (ready or timed_out or forced):
                keep.append(waiting)
                continue
            info = rule.pick(stamp, infos.items)
            if info is None and not forced and rule.policy != 'latest' and not info_settled:
                # its camera_info may still come: wait until it cannot (a newer one arrived)
                # or the queue is full; sync_max_wait bounds only the wait for a better partner
                keep.append(waiting)
                continue
            if info is None:
                why = ('none received' if rule.policy == 'latest' else
                       'waited too long' if forced else 'none at or before the image')
                out.errors.append(self._missing(stamp, why))
                continue
            frame = Frame(waiting.image, info, received_ns=waiting.received_ns)
            if self.sparse_depth:
                frame.sparse_depth = rule.pick(stamp, sparse.items)
                out.without_sparse_depth += frame.sparse_depth is None
            # an older image still waiting is overtaken: the worker wants the newest frame
            out.stale += len(keep)
            keep.clear()
            out.frames.append(frame)
        self._images = deque(keep)
        return out

    def _missing(self, stamp: int, why: str) -> MissingCameraInfoError:
        newest = self._infos.newest
        if newest is not None:
            seen = (f'; the newest camera_info has stamp {_fmt_ns(newest)} '
                    f'({(newest - stamp) / 1e6:+.1f} ms from the image)')
        else:
            seen = '; no camera_info has been received yet'
        hint = {
            'exact': 'Publish camera_info with the same stamp as the image (sibling topic of '
                     'the image), or set sync_policy to approximate (sync_tolerance) or latest.',
            'approximate': 'Raise sync_tolerance, or set sync_policy to latest if the driver '
                           'stamps camera_info independently of the image.',
            'latest': 'Check that camera_info is published on the sibling topic of the image '
                      'and that its QoS is compatible (input_qos).',
            'latest_before': 'camera_info must be stamped at or before the image; check the '
                             'driver, or set sync_policy to latest.',
        }[self.rule.policy]
        return MissingCameraInfoError(
            f'image stamped {_fmt_ns(stamp)} has no camera_info ({self.rule.policy} sync, '
            f'{why}){seen}.', hint)


class _HandOver:
    """What the worker hand-overs share: a condition, and closing to stop the worker."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closed = False

    def _discard(self) -> None:
        """Drop the pending items (called with the condition held)."""

    def close(self) -> None:
        """Wake the worker and refuse further items; pending items are discarded."""
        with self._cond:
            self._closed = True
            self._discard()
            self._cond.notify_all()

    def reopen(self) -> None:
        """Accept items again after :meth:`close`."""
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        with self._cond:
            return self._closed


class LatestSlot(_HandOver):
    """A one-element hand-over from the callbacks to the worker that keeps only the newest.

    :param on_drop: called with each frame replaced before the worker took it.
    """

    def __init__(self, on_drop: Callable[[Any], None] | None = None) -> None:
        super().__init__()
        self._item: Any | None = None
        self._on_drop = on_drop
        self.dropped = 0
        self.accepted = 0

    def put(self, item: Any) -> bool:
        """Offer the newest item; returns True when it replaced an unprocessed (stale) one."""
        with self._cond:
            if self._closed:
                return False
            stale = self._item
            self._item = item
            self.accepted += 1
            if stale is not None:
                self.dropped += 1
            self._cond.notify()
        if stale is not None and self._on_drop is not None:
            self._on_drop(stale)
        return stale is not None

    def take(self, timeout: float | None = None) -> Any | None:
        """Wait for an item and remove it; None on timeout or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def _discard(self) -> None:
        self._item = None


class RoundSlots(_HandOver):
    """Latest-frame slots of several cameras, taken by the worker in rounds (one batch each).

    Each camera keeps only its newest unprocessed item (a replaced one is dropped and counted,
    as in :class:`LatestSlot`). :meth:`take_round` waits for the first item of any camera, then
    at most ``max_wait_s`` for the cameras that have none yet, and returns every camera's item:
    a camera without a new frame (stopped, slower) never holds the others back longer than
    that.

    :param names: the cameras, in the order rounds list them.
    :param on_drop: called with ``(camera, item)`` for each item replaced before it was taken.
    """

    def __init__(self, names: Iterable[str],
                 on_drop: Callable[[str, Any], None] | None = None) -> None:
        super().__init__()
        self.names = tuple(names)
        self._items: dict[str, Any] = {}
        self._first: float | None = None
        self._on_drop = on_drop
        self.dropped = 0

    def put(self, name: str, item: Any) -> bool:
        """Offer camera ``name``'s newest item; True when it replaced an unprocessed one."""
        with self._cond:
            if self._closed:
                return False
            stale = self._items.get(name)
            self._items[name] = item
            if self._first is None:
                self._first = time.monotonic()
            if stale is not None:
                self.dropped += 1
            self._cond.notify_all()
        if stale is not None and self._on_drop is not None:
            self._on_drop(name, stale)
        return stale is not None

    def take_round(self, max_wait_s: float = 0.0, timeout: float | None = None
                   ) -> dict[str, Any]:
        """Wait for a round and remove its items: ``{camera: item}`` in camera order.

        Empty on ``timeout`` (no item at all) or when closed.
        """
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._items:
                return {}
            deadline = (self._first or time.monotonic()) + max(0.0, max_wait_s)
            while not self._closed and len(self._items) < len(self.names):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._closed:
                return {}
            items, self._items, self._first = self._items, {}, None
        return {name: items[name] for name in self.names if name in items}

    def _discard(self) -> None:
        self._items = {}
        self._first = None
