"""Rolling statistics of the node for /diagnostics, without ROS.

:class:`NodeDiagnostics` is fed by the node (image received, frame processed, frame published,
frame dropped) and produces, once per period, a :class:`DiagnosticsReport`: a level (the
``diagnostic_msgs/DiagnosticStatus`` constants), a one-line message and a list of
``(key, value)`` string pairs. The node copies that into a ``DiagnosticArray``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
import math
import threading
import time
from typing import Any

import numpy as np

# diagnostic_msgs/DiagnosticStatus levels
OK = 0
WARN = 1
ERROR = 2
STALE = 3
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}


class RateMeter:
    """Events per second over a rolling time window.

    :param window_s: the window length, seconds.
    :param clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, window_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def tick(self, now: float | None = None) -> None:
        """Record one event."""
        now = self._clock() if now is None else now
        with self._lock:
            self._times.append(now)
            self.total += 1
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second in the window ending now (0 when fewer than two events)."""
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            n = len(self._times)
            if n < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (n - 1) / span if span > 0 else 0.0

    def count(self, now: float | None = None) -> int:
        """Events in the window ending now."""
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            return len(self._times)


class RollingStat:
    """Mean, max and percentiles of the last ``size`` samples (e.g. milliseconds)."""

    def __init__(self, size: int = 100) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        """Record one sample (NaN / Inf ignored)."""
        if math.isfinite(value):
            with self._lock:
                self._values.append(float(value))

    def summary(self) -> dict[str, float]:
        """``{'last', 'mean', 'median', 'p95', 'max', 'n'}``; empty dict without samples."""
        with self._lock:
            values = np.fromiter(self._values, dtype=np.float64, count=len(self._values))
        if values.size == 0:
            return {}
        median, p95 = np.percentile(values, (50, 95))
        return {'last': float(values[-1]), 'mean': float(values.mean()),
                'median': float(median), 'p95': float(p95), 'max': float(values.max()),
                'n': float(values.size)}


@dataclass
class DiagnosticsReport:
    """One diagnostics status: level, message and key/value pairs (all strings)."""

    level: int
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, str]:
        """Return the values as a dict (for tests and logs)."""
        return dict(self.values)


def _ms(summary: Mapping[str, float], key: str = 'mean') -> str:
    return f'{summary[key]:.1f}' if summary else 'n/a'


def _scale_values(scale: Any | None) -> list[tuple[str, str]]:
    """Return the key/values of the last scale report (none without one)."""
    if scale is None:
        return []
    values = [
        ('scale', f"{getattr(scale, 'scale', float('nan')):.6g}"),
        ('shift', f"{getattr(scale, 'shift', float('nan')):.6g}"),
        ('scale source', str(getattr(scale, 'source', ''))),
        ('scale quality', f"{getattr(scale, 'quality', float('nan')):.4g}"),
        ('scale points', str(getattr(scale, 'n_points', ''))),
        ('scale accepted', str(getattr(scale, 'accepted', ''))),
    ]
    if getattr(scale, 'message', ''):
        values.append(('scale message', str(scale.message)))
    return values


class NodeDiagnostics:
    """Everything the node reports on /diagnostics, updated from any thread.

    :param window_s: window of the rates, seconds.
    :param clock: monotonic clock in seconds.
    """

    def __init__(self, window_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.window_s = window_s
        self.input_rate = RateMeter(window_s, clock)
        self.output_rate = RateMeter(window_s, clock)
        self.inference_ms = RollingStat()
        self.total_ms = RollingStat()
        self.latency_ms = RollingStat()
        self.stage_ms: dict[str, RollingStat] = {}
        self._lock = threading.Lock()
        self.stale_drops = 0
        self.last_scale: Any | None = None
        self.last_metric: bool | None = None
        self._last_errors: dict[str, int] = {}
        self._last_report_time: float | None = None
        #: output topic -> (QoS policy, count, clock time of the last refusal)
        self.refused: dict[str, tuple[str, int, float]] = {}

    def subscriber_refused(self, topic: str, policy: str) -> None:
        """Count a subscriber of ``topic`` that was refused for an incompatible QoS policy.

        ``get_subscription_count()`` does not count such a subscriber, so without this the
        node would look idle while the subscriber receives nothing.
        """
        with self._lock:
            _, count, _ = self.refused.get(topic, ('', 0, 0.0))
            self.refused[topic] = (policy, count + 1, self._clock())

    def image_received(self) -> None:
        """Count an image that arrived on the input topic."""
        self.input_rate.tick()

    def frame_dropped(self, count: int = 1) -> None:
        """Count a frame replaced in the latest-frame slot before it was processed."""
        with self._lock:
            self.stale_drops += count

    def frame_published(self, timings: Mapping[str, float], latency_s: float | None,
                        scale: Any | None = None, metric: bool | None = None) -> None:
        """Record a frame that was processed and whose outputs were published.

        :param timings: the pipeline's per-stage milliseconds.
        :param latency_s: publish time minus the image stamp, seconds (None if unknown).
        :param scale: the frame's :class:`~depth_node.metric.ScaleReport` (or None).
        :param metric: whether the frame produced metric depth.
        """
        self.output_rate.tick()
        if 'inference_ms' in timings:
            self.inference_ms.add(timings['inference_ms'])
        self.total_ms.add(sum(v for v in timings.values() if math.isfinite(v)))
        with self._lock:
            for key, value in timings.items():
                self.stage_ms.setdefault(key, RollingStat()).add(value)
            if scale is not None:
                self.last_scale = scale
            if metric is not None:
                self.last_metric = metric
        if latency_s is not None:
            self.latency_ms.add(latency_s * 1e3)

    def report(self, *, state: str = 'active', errors: Mapping[str, int] | None = None,
               backend_info: Mapping[str, str] | None = None,
               extra: Mapping[str, Any] | None = None,
               subscribers: int | None = None) -> DiagnosticsReport:
        """Build the status for now.

        :param state: the lifecycle state label ('active', 'inactive', ...).
        :param errors: the error counts by kind since start (``ErrorReporter.snapshot()``).
        :param backend_info: ``model.backend.info()``.
        :param extra: more key/values to append (QoS events, settings).
        :param subscribers: subscribers of all outputs together (0 = idle by design: outputs
            without subscribers are not computed); None when unknown.
        """
        now = self._clock()
        errors = dict(errors or {})
        with self._lock:
            new_errors = {k: v - self._last_errors.get(k, 0) for k, v in errors.items()
                          if v - self._last_errors.get(k, 0) > 0}
            self._last_errors = errors
            stale_drops = self.stale_drops
            scale = self.last_scale
            metric = self.last_metric
            stages = {k: s.summary() for k, s in self.stage_ms.items()}
            refused = dict(self.refused)
        in_rate = self.input_rate.rate(now)
        out_rate = self.output_rate.rate(now)
        n_in = self.input_rate.count(now)
        n_out = self.output_rate.count(now)
        inference = self.inference_ms.summary()
        latency = self.latency_ms.summary()
        total = self.total_ms.summary()

        values: list[tuple[str, str]] = [
            ('state', state),
            ('input rate (Hz)', f'{in_rate:.2f}'),
            ('output rate (Hz)', f'{out_rate:.2f}'),
            ('images received', str(self.input_rate.total)),
            ('frames published', str(self.output_rate.total)),
            ('inference mean (ms)', _ms(inference)),
            # robust to a slow first inference (engine warm-up, memory planning)
            ('inference median (ms)', _ms(inference, 'median')),
            ('inference max (ms)', _ms(inference, 'max')),
            ('processing mean (ms)', _ms(total)),
            ('latency mean (ms)', _ms(latency)),
            ('latency p95 (ms)', _ms(latency, 'p95')),
            ('latency max (ms)', _ms(latency, 'max')),
            ('stale frames dropped', str(stale_drops)),
            ('errors', str(sum(errors.values()))),
        ]
        if refused:
            values.append(('subscribers refused (incompatible QoS)', ', '.join(
                f'{topic}: {policy} x{count}, {now - when:.0f} s ago'
                for topic, (policy, count, when) in sorted(refused.items()))))
        for kind in sorted(errors):
            values.append((f'errors: {kind}', str(errors[kind])))
        for stage in sorted(stages):
            if stages[stage]:
                values.append((f'stage {stage} mean', _ms(stages[stage])))
        values.extend(_scale_values(scale))
        if metric is not None:
            values.append(('output', 'metric depth' if metric else 'relative only'))
        for key, value in (backend_info or {}).items():
            values.append((f'backend {key}', str(value)))
        for key, value in (extra or {}).items():
            values.append((str(key), str(value)))

        level, message = self._level(state, n_in, n_out, new_errors, metric, scale, subscribers)
        recent = {t: r for t, r in refused.items() if now - r[2] <= self.window_s * 6}
        if refused and level == OK and (recent or (n_out == 0 and subscribers == 0)):
            topic, (policy, _, _) = max((recent or refused).items(), key=lambda r: r[1][2])
            level = WARN
            message = (f'{message}; but a subscriber of {topic} was refused (incompatible '
                       f'{policy.lower()}): it receives nothing, see output_qos')
        self._last_report_time = now
        return DiagnosticsReport(level=level, message=message, values=values)

    def _level(self, state: str, n_in: int, n_out: int, new_errors: Mapping[str, int],
               metric: bool | None, scale: Any | None,
               subscribers: int | None = None) -> tuple[int, str]:
        if state != 'active':
            return STALE, f'node is {state}, not processing (activate it to start)'
        if n_in == 0:
            return WARN, (f'no images in the last {self.window_s:g} s: check the image topic '
                          'remapping and input_qos')
        if new_errors:
            top = max(new_errors, key=new_errors.get)
            level = ERROR if n_out == 0 else WARN
            return level, (f'{sum(new_errors.values())} bad frames since the last report '
                           f'(mostly {top})')
        if n_out == 0 and subscribers == 0:
            return OK, 'idle: no output has subscribers, so nothing is computed'
        if n_out == 0:
            return WARN, 'images arrive but nothing was published yet'
        if metric is False:
            return WARN, 'relative depth only: no metric scale (see scale_source)'
        if scale is not None and getattr(scale, 'accepted', True) is False:
            return WARN, f"scale fit rejected: {getattr(scale, 'message', '')}".rstrip(': ')
        return OK, 'publishing'
