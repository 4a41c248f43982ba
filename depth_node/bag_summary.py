"""What a ``depth-node bag`` run did: counts, timings, scale statistics and the exit status.

:class:`FrameSink` runs the pipeline on one frame (bad input counted, never raised) and
accounts for its result; :class:`Summary` is the printed summary and the ``--json-summary``
content; :func:`exit_status` maps it to the documented exit status. Shared by bags
(:mod:`depth_node.bag_rosbag`) and image folders / videos (:mod:`depth_node.bag_folders`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
import math
import re
import sys
from typing import Any

from depth_node.errors import InputError
from depth_node.ratelimit import ErrorReporter
import numpy as np

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_NOTHING = 4
EXIT_NOT_METRIC = 5
EXIT_INTERRUPTED = 130      # SIGINT (Ctrl-C): 128 + 2
EXIT_TERMINATED = 143       # SIGTERM: 128 + 15
EXIT_HANGUP = 129           # SIGHUP: 128 + 1
#: exit status of a run stopped by each signal (the shell's 128 + signal number)
SIGNAL_EXIT = {'SIGINT': EXIT_INTERRUPTED, 'SIGTERM': EXIT_TERMINATED, 'SIGHUP': EXIT_HANGUP}
#: relative-only reason of a run that asked for no metric scale (not a failure)
NO_SCALE_ASKED = 'no scale source (scale_source none)'


def log_stderr(message: str) -> None:
    """Print a message on stderr without breaking the progress bar."""
    try:
        from tqdm import tqdm
        tqdm.write(message, file=sys.stderr)
    except ImportError:
        print(message, file=sys.stderr)


def mark_interrupted(summary: Summary, exc: KeyboardInterrupt) -> None:
    """Record in the summary that the run was stopped by a signal (SIGINT unless said)."""
    summary.interrupted = True
    summary.signal = getattr(exc, 'signal_name', 'SIGINT')


@dataclass
class Summary:
    """What a run did; :meth:`to_dict` is the ``--json-summary`` content."""

    input: str = ''  # noqa: A003
    output: str = ''
    cameras: list[dict[str, Any]] = field(default_factory=list)
    frames_read: int = 0
    frames_processed: int = 0
    frames_written: int = 0
    frames_metric: int = 0
    frames_relative_only: int = 0
    relative_only_reasons: dict[str, int] = field(default_factory=dict)
    #: per reason, the last message with its numbers (``relative_only_reasons`` counts alike)
    relative_only_examples: dict[str, str] = field(default_factory=dict)
    frames_skipped_every: int = 0
    #: image folders: depth images (single-channel 16-bit or float files) left out
    depth_images_left_out: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    messages_written: dict[str, int] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float | int] = field(default_factory=dict)
    wall_s: float = 0.0
    inference_fraction: float = 0.0
    interrupted: bool = False
    signal: str = ''   # SIGINT, SIGTERM or SIGHUP when interrupted
    read_error: str = ''
    exit_status: int = EXIT_OK

    @property
    def not_metric(self) -> bool:
        """Whether metres were asked for and not one frame written is metric."""
        return bool(self.frames_written and not self.frames_metric and any(
            reason != NO_SCALE_ASKED for reason in self.relative_only_reasons))

    @property
    def skipped_total(self) -> int:
        """Frames skipped for bad input, all reasons together."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-serializable data."""
        data = dict(self.__dict__)
        data['skipped_total'] = self.skipped_total
        return data

    def format(self) -> str:  # noqa: A003
        """Human-readable summary for stderr."""
        lines = [f'{self.input} -> {self.output}' + (f'  (INTERRUPTED by {self.signal})'
                                                     if self.interrupted else '')]
        lines.append(f'frames: {self.frames_read} read, {self.frames_written} written, '
                     f'{self.skipped_total} skipped for bad input'
                     + (f', {self.frames_skipped_every} left out by --every'
                        if self.frames_skipped_every else '')
                     + (f', {self.depth_images_left_out} depth images left out (16-bit or '
                        'float single-channel files: depth, not colour)'
                        if self.depth_images_left_out else '')
                     + (f', {self.frames_relative_only} relative only (no metric scale)'
                        if self.frames_relative_only else ''))
        for kind, count in sorted(self.skipped.items()):
            lines.append(f'  skipped {kind}: {count}')
        for reason, count in sorted(self.relative_only_reasons.items()):
            example = self.relative_only_examples.get(reason, '')
            lines.append(f'  relative only, {reason}: {count}'
                         + (f' (last: {example})' if example and example != reason else ''))
        if self.not_metric:
            lines.append('NOT ONE METRIC FRAME: metres were asked for, but every frame written '
                         'is relative only (see the reasons above); exit status '
                         f'{EXIT_NOT_METRIC}.')
        if self.read_error:
            lines.append(f'INPUT UNREADABLE from there on, stopped early: {self.read_error}')
        if self.stage_ms:
            stages = ', '.join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in
                               self.stage_ms.items())
            lines.append(f'mean ms per frame: {stages}')
        if self.scale:
            lines.append('scale: ' + ', '.join(
                f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
                for k, v in self.scale.items()))
        lines.append(f'wall {self.wall_s:.2f} s, inference {100 * self.inference_fraction:.1f}'
                     f' % of it; exit status {self.exit_status}')
        return '\n'.join(lines)


class Stats:
    """Per-stage time sums and scale values over the processed frames."""

    ORDER = ('read_ms', 'decode_ms', 'preprocess_ms', 'inference_ms', 'postprocess_ms',
             'metric_ms', 'encode_ms', 'cloud_ms', 'write_ms')

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.scales: list[float] = []

    def add(self, timings: dict[str, float]) -> None:
        """Add one frame's stage times."""
        for key, value in timings.items():
            self.sums[key] += float(value)
            self.counts[key] += 1

    def means(self) -> dict[str, float]:
        """Return the mean milliseconds per stage, in pipeline order."""
        keys = [k for k in self.ORDER if k in self.sums] + sorted(
            k for k in self.sums if k not in self.ORDER)
        return {k: round(self.sums[k] / self.counts[k], 3) for k in keys}

    def scale_summary(self) -> dict[str, float | int]:
        """Return count, mean, min and max of the accepted scale fits (empty if none)."""
        if not self.scales:
            return {}
        values = np.asarray(self.scales, dtype=np.float64)
        return {'accepted_fits': int(values.size), 'mean': float(values.mean()),
                'min': float(values.min()), 'max': float(values.max())}


def exit_status(summary: Summary) -> int:
    """Return the documented exit status of a finished run (see doc/bag.md)."""
    if summary.interrupted:
        return SIGNAL_EXIT.get(summary.signal, EXIT_INTERRUPTED)
    if summary.frames_written == 0:
        return EXIT_NOTHING
    if summary.not_metric:
        return EXIT_NOT_METRIC
    if summary.skipped_total or summary.read_error:
        return EXIT_SKIPPED
    return EXIT_OK


def progress_bar(total: int | None, quiet: bool) -> Any:
    """Return a tqdm bar on a terminal (disabled otherwise or when quiet), or None."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit='frame', file=sys.stderr, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty(), desc='depth-node bag')


class FrameSink:
    """Run the pipeline on a frame, count bad input, keep the statistics.

    :param depth_input: frames are depth images (``--depth-topic``), not colour images.
    """

    def __init__(self, pipeline: Any, summary: Summary, log: Callable[[str], None],
                 depth_input: bool = False) -> None:
        self.pipeline = pipeline
        self.depth_input = depth_input
        self.reporter = ErrorReporter(log)
        self.stats = Stats()
        self.summary = summary
        self.reasons = ReasonCounter()

    def process(self, msg: Any, camera_info: Any, sparse: Any, camera: Any,
                rgb: Any = None) -> Any:
        """Return the pipeline's FrameResult, or None when the frame was bad (counted).

        ``rgb`` (depth topics only) is the registered colour image of an xyzrgb cloud.
        """
        self.summary.frames_processed += 1
        try:
            if self.depth_input:
                return self.pipeline.process_depth(msg, camera_info, rgb, camera=camera)
            return self.pipeline.process(msg, camera_info, sparse, camera=camera)
        except InputError as exc:
            self.reporter.report(exc)
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            # Malformed messages that slipped past the decoders' checks: still one bad frame,
            # never a crash of the whole run.
            self.reporter.report('malformed_message',
                                 f'a frame could not be processed ({type(exc).__name__}: '
                                 f'{exc}); skipped.')
        return None

    def process_batch(self, items: list[tuple[Any, Any, Any, Any]]) -> list[Any]:
        """Run colour frames of several cameras as one batch; per frame a result or None.

        ``items`` are ``(msg, camera_info, sparse, camera)``; a frame's result is its
        FrameResult, or None when it was bad (counted). A bad frame costs the others of the
        batch nothing.
        """
        from depth_node.pipeline import BatchItem
        self.summary.frames_processed += len(items)
        results, _ = self.pipeline.process_batch(
            [BatchItem(msg, info, sparse, camera) for msg, info, sparse, camera in items])
        out = []
        for result in results:
            if isinstance(result, InputError):
                self.reporter.report(result)
                result = None
            elif isinstance(result, Exception):
                raise result
            out.append(result)
        return out

    def account(self, result: Any, extra: dict[str, float]) -> None:
        """Count a processed frame: its stage times, metric or not (and why), its scale."""
        timings = dict(result.timings)
        timings.update(extra)
        self.stats.add(timings)
        report = result.scale
        self.summary.frames_metric += bool(result.metric)
        if not result.metric:
            self.summary.frames_relative_only += 1
            self.reasons.add(relative_only_reason(report, numbers=True))
            self.summary.relative_only_reasons = self.reasons.counts()
            self.summary.relative_only_examples = self.reasons.examples()
        elif report is not None and report.accepted and report.source not in ('model', 'none') \
                and math.isfinite(report.scale):
            self.stats.scales.append(float(report.scale))

    def finish(self, written: dict[str, int]) -> Summary:
        """Fill in the summary's totals and exit status (``wall_s`` set before); return it."""
        summary, stats = self.summary, self.stats
        summary.skipped = self.reporter.snapshot()
        summary.messages_written = dict(written)
        summary.stage_ms = stats.means()
        summary.scale = stats.scale_summary()
        inference_s = stats.sums.get('inference_ms', 0.0) / 1e3
        summary.inference_fraction = (round(inference_s / summary.wall_s, 4) if summary.wall_s
                                      else 0.0)
        summary.exit_status = exit_status(summary)
        return summary


class ReasonCounter:
    """Count alike reasons (the same words, other numbers) and show the range of each number.

    ``'ground_plane: the fitted floor normal is 41.2 deg ...'`` and ``'... 47.9 deg ...'``
    are one reason, shown as ``'... is 41.2..47.9 deg ...'`` with a count of 2.
    """

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._ranges: dict[str, list[tuple[float, str, float, str]]] = {}
        self._last: dict[str, str] = {}

    def add(self, reason: str) -> None:
        """Count one reason (with its numbers)."""
        key = _NUMBER.sub('\x00', reason)      # the words; each number a placeholder
        numbers = [m.group(0) for m in _NUMBER.finditer(reason)]
        ranges = self._ranges.get(key)
        if ranges is None or len(ranges) != len(numbers):
            ranges = [(float(n), n, float(n), n) for n in numbers]
        else:
            ranges = [(lo, lo_text, hi, hi_text) if lo <= float(n) <= hi else
                      (float(n), n, hi, hi_text) if float(n) < lo else (lo, lo_text, float(n), n)
                      for (lo, lo_text, hi, hi_text), n in zip(ranges, numbers)]
        self._ranges[key] = ranges
        self._count[key] = self._count.get(key, 0) + 1
        self._last[key] = reason

    def _shown(self, key: str) -> str:
        words = key.split('\x00')
        numbers = [lo if lo == hi else f'{lo}..{hi}' for _, lo, _, hi in self._ranges[key]]
        return ''.join(w + n for w, n in zip(words, numbers + ['']))

    def counts(self) -> dict[str, int]:
        """Return {reason with its numbers (or their range): frames}."""
        return {self._shown(k): n for k, n in self._count.items()}

    def examples(self) -> dict[str, str]:
        """Return {reason as in :meth:`counts`: its last message, numbers as they were}."""
        return {self._shown(k): self._last[k] for k in self._count}


_NO_SCALE = re.compile(r'^no metric scale \((?P<source>[^)]*)\): (?P<why>.*?)'
                       r'(; publishing the relative map only)?$', re.S)
_NUMBER = re.compile(r'(?<![A-Za-z_])[-+]?\d+(\.\d+)?(e[-+]?\d+)?')


def relative_only_reason(report: Any, numbers: bool = False) -> str:
    """Return a short key of why a frame got no metric scale (numbers as N, to count alike).

    With ``numbers`` the numbers are kept (the message as it was; :class:`ReasonCounter`
    counts alike ones and shows their ranges).

    From the metric layer's ``ScaleReport.message``: ``'no scale source (scale_source
    none)'``, ``'sparse_depth: no sparse depth image for this frame'``, ``'ground_plane: only
    N of N floor points are inliers (need N)'``, ...
    """
    if report is None:
        return 'no scale report'
    source = str(getattr(report, 'source', '') or '')
    message = str(getattr(report, 'message', '') or '').strip()
    if source == 'none':
        return 'no scale source (scale_source none)'
    match = _NO_SCALE.match(message)
    if match:
        reason = f"{match.group('source')}: {match.group('why')}"
    else:
        reason = f'{source}: {message}' if source and message else (message or 'unknown')
    return reason if numbers else _NUMBER.sub('N', reason)
