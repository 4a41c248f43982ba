"""The package's exception types.

Every error the package raises on bad input or bad configuration is a :class:`DepthNodeError`
with a ``kind`` (a short snake_case key, used as the counter name in diagnostics and in the bag
tool's summary) and a message that says what is wrong and what to do about it.

:class:`InputError` and its subclasses concern one frame: the node and the bag tool skip that
frame, count it by ``kind``, log a rate-limited message and carry on with the next frame.
:class:`ModelError` and its subclasses concern configuration (model, card, engine, backend):
they stop the node's configure transition or the tool's run with a clear message.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class DepthNodeError(Exception):
    """Base class of all depth_node errors: ``str(error)`` is what is wrong, then what to do."""

    kind = 'error'

    def __init__(self, message: str, hint: str = '') -> None:
        self.message = message
        self.hint = hint
        super().__init__(f'{message} {hint}'.strip() if hint else message)


class InputError(DepthNodeError):
    """One input frame or message cannot be used; skip it and serve the next one."""

    kind = 'bad_input'


class MalformedMessageError(InputError):
    """A message whose fields contradict each other in a way the decoders did not foresee."""

    kind = 'malformed_message'


class ImageFormatError(InputError):
    """Image data and its declared layout disagree (truncated data, step too small, ...)."""

    kind = 'bad_image'


class UnsupportedEncodingError(InputError):
    """The image encoding is unknown or not supported for this use."""

    kind = 'unsupported_encoding'


class CompressedImageError(InputError):
    """A sensor_msgs/CompressedImage payload could not be decoded."""

    kind = 'undecodable_compressed'


class CameraInfoError(InputError):
    """camera_info is malformed: NaN/Inf values, unknown distortion model, wrong D length."""

    kind = 'bad_camera_info'


class UncalibratedCameraError(CameraInfoError):
    """camera_info has an all-zero K: the camera is not calibrated, so no metric output."""

    kind = 'uncalibrated_camera'


class SizeMismatchError(InputError):
    """The image size does not match camera_info and cannot be reconciled by scaling."""

    kind = 'size_mismatch'


class MissingCameraInfoError(InputError):
    """No usable camera_info for this image (none received, or none close enough in time)."""

    kind = 'no_camera_info'


class ScaleUnavailableError(InputError):
    """A relative model has no usable metric scale for this frame."""

    kind = 'no_scale'


class ModelError(DepthNodeError):
    """The model, its card, its engine or its backend cannot be used."""

    kind = 'model'


class CardError(ModelError):
    """A model card is missing, malformed or inconsistent with the model file."""

    kind = 'bad_card'


class BackendUnavailableError(ModelError):
    """An optional dependency of the requested backend or tool is not installed."""

    kind = 'backend_unavailable'


class EngineError(ModelError):
    """A TensorRT engine is missing, corrupt, or built for another TensorRT version or GPU."""

    kind = 'engine'


class SelfTestError(ModelError):
    """The golden self-test failed: the backend computes something else than the reference."""

    kind = 'self_test_failed'


# Which extra of the package brings which optional module.
_EXTRAS = {
    'onnxruntime': 'onnxruntime',
    'onnx': 'onnxruntime',
    'torch': 'torch',
    'transformers': 'torch',
    'tensorrt': 'tensorrt',
    'rosbags': 'bag',
    'tqdm': 'bag',
}


def require(module: str, purpose: str = '') -> ModuleType:
    """Import an optional dependency, or raise :class:`BackendUnavailableError` saying how.

    :param module: the module to import, e.g. ``'onnxruntime'``.
    :param purpose: what it is needed for, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split('.')[0]
        extra = _EXTRAS.get(top)
        how = (f"pip install 'depth_node[{extra}]'" if extra else f'pip install {top}')
        needed = f' (needed for {purpose})' if purpose else ''
        raise BackendUnavailableError(
            f'Python module {module!r} is not installed{needed}: {exc}.',
            f'Install it with: {how}.') from exc
