"""Error types: what was wrong and what to do, distinct kinds, missing optional dependencies."""

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
import pytest


def test_error_text_says_what_and_what_to_do():
    exc = ImageFormatError('data is 30 bytes, expected 921600.', 'Check the publisher.')
    assert str(exc) == 'data is 30 bytes, expected 921600. Check the publisher.'
    assert exc.kind == 'bad_image' and isinstance(exc, InputError)
    assert issubclass(UncalibratedCameraError, errors.CameraInfoError)


def test_every_error_kind_is_distinct():
    kinds = [cls.kind for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.DepthNodeError)]
    assert len(kinds) == len(set(kinds))


def test_require_names_the_extra_to_install():
    with pytest.raises(BackendUnavailableError) as info:
        require('tensorrt_does_not_exist_here', 'engines')
    assert 'pip install' in str(info.value) and 'engines' in str(info.value)
    assert isinstance(info.value, ModelError)
    assert require('json').dumps([1]) == '[1]'
