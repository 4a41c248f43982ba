"""Counting and rate-limited reporting of per-frame errors.

The node and the bag tool share this: every bad frame is counted by its error ``kind`` (for
diagnostics and summaries), and its message is logged at most once per ``interval_s`` per kind,
with the number of suppressed repeats appended to the next message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
import threading
import time

from depth_node.errors import DepthNodeError


class ErrorReporter:
    """Count errors by kind and log each kind at most once per ``interval_s`` seconds."""

    def __init__(self, log: Callable[[str], None], interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def report(self, error: DepthNodeError | str, message: str | None = None) -> bool:
        """Count ``error`` and log it unless the same kind was logged less than interval ago.

        :param error: a :class:`DepthNodeError` (its ``kind`` and text are used) or a kind.
        :param message: the text to log when ``error`` is a plain kind string.
        :returns: whether the message was logged.
        """
        if isinstance(error, DepthNodeError):
            kind, text = error.kind, str(error)
        else:
            kind, text = str(error), message or str(error)
        now = self._clock()
        with self._lock:
            self.counts[kind] += 1
            last = self._last.get(kind)
            if last is not None and now - last < self._interval_s:
                self._suppressed[kind] += 1
                return False
            self._last[kind] = now
            repeats = self._suppressed.pop(kind, 0)
        if repeats:
            text = f'{text} ({repeats} more like this since the last message)'
        self._log(f'[{kind}] {text}')
        return True

    def total(self) -> int:
        """Total number of errors counted, all kinds together."""
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        """Return a copy of the counts by kind."""
        with self._lock:
            return dict(self.counts)
