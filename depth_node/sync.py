"""Pairing images with their camera_info, and the latest-frame slot of the node's worker.

ROS-free so that it can be unit-tested: messages are read only through ``header.stamp``.

:class:`FrameSync` pairs each image with a camera_info by one of three policies:

``exact``
    the camera_info with the same stamp (what image_transport's camera publishers send);
``approximate``
    the camera_info with the nearest stamp within ``tolerance_s``;
``latest``
    the most recent camera_info received, whatever its stamp (for drivers that publish
    camera_info at a low rate or with a constant stamp).

Either message may arrive first. An image whose camera_info has not arrived yet waits in a
short queue; it is given up, and reported as :class:`~depth_node.errors.MissingCameraInfoError`,
when a camera_info newer than any possible partner arrives, or when the queue overflows.

:class:`LatestSlot` holds the newest frame for the worker thread: putting a frame replaces an
unprocessed one, which is counted as a stale drop, so latency stays bounded when the model is
slower than the camera.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import threading
import time
from typing import Any

from depth_node.errors import MissingCameraInfoError
from depth_node.messages import stamp_ns

SYNC_POLICIES = ('exact', 'approximate', 'latest')


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
    """What one call of :class:`FrameSync` produced: complete frames and given-up images."""

    frames: list[Frame] = field(default_factory=list)
    errors: list[MissingCameraInfoError] = field(default_factory=list)


def _fmt_ns(ns: int) -> str:
    return f'{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'


class FrameSync:
    """Pair images with camera_info messages (thread-safe).

    :param policy: ``'exact'``, ``'approximate'`` or ``'latest'``.
    :param tolerance_s: largest stamp difference for ``approximate``, seconds.
    :param image_queue: images kept waiting for their camera_info.
    :param info_queue: camera_info messages kept for pairing.
    """

    def __init__(self, policy: str = 'exact', tolerance_s: float = 0.02, image_queue: int = 5,
                 info_queue: int = 30) -> None:
        self._lock = threading.Lock()
        self._images: deque[tuple[int, Any, int]] = deque()
        self._infos: deque[tuple[int, Any]] = deque(maxlen=max(1, info_queue))
        self._image_queue = max(1, image_queue)
        self.policy = 'exact'
        self.tolerance_ns = 0
        self.configure(policy, tolerance_s)

    def configure(self, policy: str, tolerance_s: float) -> None:
        """Change the policy and tolerance (live parameter update)."""
        if policy not in SYNC_POLICIES:
            raise ValueError(f'sync policy must be one of {SYNC_POLICIES}, got {policy!r}')
        if tolerance_s < 0:
            raise ValueError(f'sync tolerance must be >= 0 s, got {tolerance_s}')
        with self._lock:
            self.policy = policy
            self.tolerance_ns = int(round(tolerance_s * 1e9))

    @property
    def pending(self) -> int:
        """Images waiting for their camera_info."""
        with self._lock:
            return len(self._images)

    def clear(self) -> None:
        """Forget every queued image and camera_info (on deactivate)."""
        with self._lock:
            self._images.clear()
            self._infos.clear()

    # -- matching ---------------------------------------------------------------------------
    def _window_ns(self) -> int:
        return self.tolerance_ns if self.policy == 'approximate' else 0

    def _match(self, stamp: int) -> Any | None:
        """Return the camera_info for an image stamp under the current policy, or None."""
        if not self._infos:
            return None
        if self.policy == 'latest':
            return self._infos[-1][1]
        window = self._window_ns()
        best, best_diff = None, None
        for info_stamp, info in self._infos:
            diff = abs(info_stamp - stamp)
            if diff <= window and (best_diff is None or diff < best_diff):
                best, best_diff = info, diff
        return best

    def _missing(self, stamp: int, why: str) -> MissingCameraInfoError:
        if self._infos:
            newest = self._infos[-1][0]
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
        }[self.policy]
        return MissingCameraInfoError(
            f'image stamped {_fmt_ns(stamp)} has no camera_info ({self.policy} sync, '
            f'{why}){seen}.', hint)

    # -- inputs -----------------------------------------------------------------------------
    def add_image(self, image: Any, received_ns: int | None = None) -> SyncOutput:
        """Offer an image; returns the frame if its camera_info is known, else queues it."""
        stamp = stamp_ns(image)
        received = time.monotonic_ns() if received_ns is None else received_ns
        out = SyncOutput()
        with self._lock:
            info = self._match(stamp)
            if info is not None:
                out.frames.append(Frame(image, info, received_ns=received))
                return out
            if self.policy == 'latest':
                out.errors.append(self._missing(stamp, 'none received'))
                return out
            if self._infos and self._infos[-1][0] > stamp + self._window_ns():
                # camera_info stamps only grow: this image's camera_info was lost
                out.errors.append(self._missing(stamp, 'newer camera_info already received'))
                return out
            self._images.append((stamp, image, received))
            while len(self._images) > self._image_queue:
                old_stamp, _, _ = self._images.popleft()
                out.errors.append(self._missing(old_stamp, 'waited too long'))
        return out

    def add_camera_info(self, info: Any) -> SyncOutput:
        """Offer a camera_info; returns the queued images it completes (and given-up ones)."""
        stamp = stamp_ns(info)
        out = SyncOutput()
        with self._lock:
            self._infos.append((stamp, info))
            window = self._window_ns()
            keep: deque[tuple[int, Any, int]] = deque()
            for image_stamp, image, received in self._images:
                match = self._match(image_stamp)
                if match is not None:
                    out.frames.append(Frame(image, match, received_ns=received))
                elif self.policy != 'latest' and stamp > image_stamp + window:
                    out.errors.append(self._missing(image_stamp,
                                                    'newer camera_info already received'))
                else:
                    keep.append((image_stamp, image, received))
            self._images = keep
        return out


class StampCache:
    """The last few messages of an auxiliary topic (sparse depth), looked up by stamp."""

    def __init__(self, size: int = 10) -> None:
        self._lock = threading.Lock()
        self._items: deque[tuple[int, Any]] = deque(maxlen=max(1, size))

    def add(self, msg: Any) -> None:
        """Remember a message."""
        with self._lock:
            self._items.append((stamp_ns(msg), msg))

    def nearest(self, stamp: int, tolerance_ns: int | None) -> Any | None:
        """Return the message nearest to ``stamp`` within ``tolerance_ns`` (None = the newest)."""
        with self._lock:
            if not self._items:
                return None
            if tolerance_ns is None:
                return self._items[-1][1]
            best = min(self._items, key=lambda item: abs(item[0] - stamp))
            return best[1] if abs(best[0] - stamp) <= tolerance_ns else None

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()


class LatestSlot:
    """A one-element hand-over from the callbacks to the worker that keeps only the newest.

    :param on_drop: called with each frame replaced before the worker took it.
    """

    def __init__(self, on_drop: Callable[[Any], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._item: Any | None = None
        self._closed = False
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

    def close(self) -> None:
        """Wake the worker and refuse further items; a pending item is discarded."""
        with self._cond:
            self._closed = True
            self._item = None
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
