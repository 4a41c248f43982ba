"""Error types and the rate-limited error reporter."""

from __future__ import annotations

from depth_node import errors
from depth_node.errors import (
    BackendUnavailableError,
    ImageFormatError,
    InputError,
    ModelError,
    require,
    UncalibratedCameraError,
)
from depth_node.ratelimit import ErrorReporter
import pytest


class FakeClock:

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_error_text_says_what_and_what_to_do():
    exc = ImageFormatError('data is 30 bytes, expected 921600.', 'Check the publisher.')
    assert str(exc) == 'data is 30 bytes, expected 921600. Check the publisher.'
    assert exc.kind == 'bad_image' and isinstance(exc, InputError)
    assert issubclass(UncalibratedCameraError, errors.CameraInfoError)


def test_every_error_kind_is_distinct():
    kinds = [cls.kind for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.DepthNodeError)]
    assert len(kinds) == len(set(kinds))


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


def test_require_names_the_extra_to_install():
    with pytest.raises(BackendUnavailableError) as info:
        require('tensorrt_does_not_exist_here', 'engines')
    assert 'pip install' in str(info.value) and 'engines' in str(info.value)
    assert isinstance(info.value, ModelError)
    assert require('json').dumps([1]) == '[1]'
