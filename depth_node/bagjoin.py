"""Joining the frames of a recording with their partners, offline, by the one pairing rule.

``depth-node bag`` reads a recording twice: a first pass indexes the stamps of the partner
streams (camera_info, sparse depth, the colour image of an xyzrgb cloud), the second reads the
images in log order. :class:`PartnerIndex` answers, for an image, *which* partner stamp the
:class:`~depth_node.sync.PairingRule` chooses (the node applies the same rule live, so a replay
pairs the same frames); :class:`PartnerBuffer` holds the partner messages read so far and the
frames waiting for one that comes later in the bag; :class:`FrameJoiner` uses both to hand
out each camera's frames in the order they were read, each with its partners, once nothing it
waits for is still to come. All are ROS-free and bag-free, so the joining is unit-tested on
plain stamps.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from depth_node.sync import PairingRule


class PartnerIndex:
    """The ``(log time, stamp)`` of one partner stream, and the rule that picks among them.

    :param rule: the pairing rule (``sync_policy``, ``sync_tolerance``).
    """

    def __init__(self, rule: PairingRule) -> None:
        self.rule = rule
        self._log: list[tuple[int, int]] = []       # (log time, stamp), in log order
        self._stamps: list[int] = []                # sorted stamps
        self._dirty = False

    def add(self, stamp: int, log_time: int) -> None:
        """Index one partner message."""
        self._log.append((log_time, stamp))
        self._dirty = True

    def __len__(self) -> int:
        return len(self._log)

    def _sort(self) -> None:
        if self._dirty:
            self._log.sort(key=lambda e: e[0])
            self._stamps = sorted(s for _, s in self._log)
            self._dirty = False

    def partner(self, stamp: int, log_time: int) -> int | None:
        """Return the stamp of the partner of an image (stamp, log time), or None.

        ``latest`` takes the last partner logged at or before the image (what a node replaying
        the bag has received); the other policies look at the stamps only, wherever they were
        logged (a LiDAR projection is often logged after its image).
        """
        self._sort()
        if self.rule.policy == 'latest':
            i = bisect_right(self._log, (log_time, float('inf')))
            candidates = self._log[i - 1:i]
            return self.rule.pick(stamp, [(s, s) for _, s in candidates])
        i = bisect_left(self._stamps, stamp)
        near = self._stamps[max(0, i - 1):i + 2]    # the neighbours decide every other policy
        return self.rule.pick(stamp, [(s, s) for s in near])


class PartnerBuffer:
    """Partner messages read so far (by stamp, bounded) and frames waiting for a later one.

    :param size: partner messages kept (the oldest is dropped beyond it).
    """

    def __init__(self, size: int = 256) -> None:
        self.size = max(1, size)
        self.messages: dict[int, Any] = {}
        self.waiting: dict[int, list[Any]] = defaultdict(list)

    def put(self, stamp: int, message: Any) -> list[Any]:
        """Keep a partner message; returns the frames that waited for it (no longer waiting)."""
        self.messages.pop(stamp, None)
        self.messages[stamp] = message
        while len(self.messages) > self.size:
            self.messages.pop(next(iter(self.messages)))
        return self.waiting.pop(stamp, [])

    def get(self, stamp: int | None) -> Any:
        """Return the partner message of that stamp read so far, or None."""
        return None if stamp is None else self.messages.get(stamp)

    def wait(self, stamp: int, frame: Any) -> None:
        """Let a frame wait for the partner of that stamp."""
        self.waiting[stamp].append(frame)

    def forget(self, frame: Any) -> None:
        """Stop a frame waiting (it goes on without the partner)."""
        for stamp in [s for s, frames in self.waiting.items() if frame in frames]:
            self.waiting[stamp].remove(frame)
            if not self.waiting[stamp]:
                del self.waiting[stamp]

    def discard(self, stamp: int | None) -> None:
        """Drop a buffered partner (its frame was left out)."""
        if stamp is not None:
            self.messages.pop(stamp, None)


#: frames of a camera waiting for their sparse depth or colour image, colour images buffered
#: for a later depth frame: at most this many (the oldest goes on without / is dropped).
MAX_BUFFERED = 64
#: sparse depth messages kept for later images
SPARSE_KEPT = 256


@dataclass(eq=False)
class PendingFrame:
    """An image read from the recording, with what is paired with it so far.

    ``camera`` is any hashable key of its camera; ``msg`` is whatever the caller keeps.
    """

    camera: Any
    msg: Any
    stamp: int
    log_time: int
    read_ms: float = 0.0
    sparse: Any = None
    rgb: Any = None
    sparse_stamp: int | None = None   # the stamp of its sparse depth (pairing rule)
    rgb_stamp: int | None = None      # the stamp of its colour image (pairing rule)
    need_sparse: bool = False         # its sparse depth is later in the recording
    need_rgb: bool = False            # its colour image is later in the recording
    rgb_note: str = ''                # why no colour image was found, for the message

    @property
    def waits(self) -> bool:
        """Whether something paired with it is still to come."""
        return self.need_sparse or self.need_rgb


class FrameJoiner:
    """Join each camera's frames with their sparse depth and colour image, in read order.

    The partner of a frame is the one its :class:`PartnerIndex` (the first pass) picks; a
    partner read earlier is taken from the buffer, one logged later is waited for. Frames of a
    camera come out in the order they went in, so a waiting frame holds back the later ones.
    Bounded: beyond ``max_waiting`` frames of a camera the oldest stops waiting (it goes on
    without its partner), beyond ``max_waiting`` colour images the oldest is dropped.

    :param sparse_index: the sparse depth stream's index, or None (no sparse depth).
    :param rgb_index: the colour image stream's index, or None (no colour image).
    """

    def __init__(self, sparse_index: PartnerIndex | None = None,
                 rgb_index: PartnerIndex | None = None, max_waiting: int = MAX_BUFFERED,
                 sparse_kept: int = SPARSE_KEPT) -> None:
        self.sparse_index = sparse_index
        self.rgb_index = rgb_index
        self.max_waiting = max(1, max_waiting)
        self.sparse = PartnerBuffer(sparse_kept)
        self.rgb = PartnerBuffer(self.max_waiting)
        self.queues: dict[Any, deque[PendingFrame]] = defaultdict(deque)

    def add_frame(self, frame: PendingFrame) -> list[PendingFrame]:
        """Queue a frame read from the recording; return the frames now ready, in order."""
        for kind, index, buffer in (('sparse', self.sparse_index, self.sparse),
                                    ('rgb', self.rgb_index, self.rgb)):
            if index is None:
                continue
            stamp = index.partner(frame.stamp, frame.log_time)
            partner = buffer.get(stamp)
            setattr(frame, f'{kind}_stamp', stamp)
            setattr(frame, kind, partner)
            setattr(frame, f'need_{kind}', partner is None and stamp is not None)
            if partner is None and stamp is not None:
                buffer.wait(stamp, frame)
        queue = self.queues[frame.camera]
        queue.append(frame)
        if len(queue) > self.max_waiting:   # bounded: the oldest stops waiting
            oldest = queue[0]
            if oldest.need_rgb:
                oldest.rgb_note = (f' (it comes more than {self.max_waiting} frames later in '
                                   'the bag)')
            self._settle(oldest)
        return self._drain(frame.camera)

    def add_sparse(self, stamp: int, message: Any, read_ms: float = 0.0) -> list[PendingFrame]:
        """Keep a sparse depth message; return the frames now ready, in order."""
        return self._deliver(self.sparse.put(stamp, message), 'sparse', message, read_ms)

    def add_rgb(self, stamp: int, message: Any, read_ms: float = 0.0) -> list[PendingFrame]:
        """Keep a colour image; return the frames now ready, in order."""
        return self._deliver(self.rgb.put(stamp, message), 'rgb', message, read_ms)

    def flush(self) -> list[PendingFrame]:
        """Stop every wait (the partners never came); return all frames left, in order."""
        ready: list[PendingFrame] = []
        for camera, queue in self.queues.items():
            for frame in queue:
                if frame.need_rgb:
                    frame.rgb_note = ' (it was indexed but could not be read)'
                self._settle(frame)
            ready += self._drain(camera)
        return ready

    def _deliver(self, frames: list[PendingFrame], kind: str, message: Any,
                 read_ms: float) -> list[PendingFrame]:
        ready: list[PendingFrame] = []
        for frame in frames:
            setattr(frame, kind, message)
            setattr(frame, f'need_{kind}', False)
            frame.read_ms += read_ms
            ready += self._drain(frame.camera)
        return ready

    def _settle(self, frame: PendingFrame) -> None:
        """Stop waiting: the frame goes on with what it has (a later drain hands it out)."""
        frame.need_sparse = frame.need_rgb = False
        self.sparse.forget(frame)
        self.rgb.forget(frame)

    def _drain(self, camera: Any) -> list[PendingFrame]:
        queue = self.queues[camera]
        ready = []
        while queue and not queue[0].waits:
            ready.append(queue.popleft())
        return ready
