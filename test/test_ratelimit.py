"""The rate-limited error reporter: every error counted, each kind logged once per interval."""

from __future__ import annotations

from depth_node.errors import ImageFormatError
from depth_node.ratelimit import ErrorReporter


class FakeClock:

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reporter_counts_everything_and_logs_each_kind_once_per_interval():
    logged: list[str] = []
    clock = FakeClock()
    reporter = ErrorReporter(logged.append, interval_s=5.0, clock=clock)
    for _ in range(10):
        reporter.report(ImageFormatError('truncated'))
    reporter.report('no_camera_info', 'no camera_info yet')
    assert reporter.counts['bad_image'] == 10 and reporter.total() == 11
    assert logged == ['[bad_image] truncated', '[no_camera_info] no camera_info yet']
    clock.now = 6.0
    assert reporter.report(ImageFormatError('truncated'))
    assert logged[-1] == '[bad_image] truncated (9 more like this since the last message)'
    assert reporter.snapshot() == {'bad_image': 11, 'no_camera_info': 1}
