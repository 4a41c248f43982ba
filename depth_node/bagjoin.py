"""Joining the frames of a recording with their partners, offline, by the one pairing rule.

``depth-node bag`` reads a recording twice: a first pass indexes the stamps of the partner
streams (camera_info, sparse depth, the colour image of an xyzrgb cloud), the second reads the
images in log order. :class:`PartnerIndex` answers, for an image, *which* partner stamp the
:class:`~depth_node.sync.PairingRule` chooses (the node applies the same rule live, so a replay
pairs the same frames); :class:`PartnerBuffer` holds the partner messages read so far and the
frames waiting for one that comes later in the bag. Both are ROS-free and bag-free, so the
joining is unit-tested on plain stamps.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
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
