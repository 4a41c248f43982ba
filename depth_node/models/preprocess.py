"""Pre- and post-processing of images for a depth network, driven by the model card.

Preprocessing fits the image to the network size (``resize`` mode of the card), then applies
one fused per-channel normalisation ``x = pixel * a + b`` with ``a = pixel_scale / stddev`` and
``b = -mean / stddev`` in the channel order of ``input_encoding`` and writes it straight into
the network's input layout (``nchw`` or ``nhwc``). Resizing runs on the uint8 image with
OpenCV (``cv2.resize``), so only network-sized data is ever converted to float.

Geometry (all in pixel coordinates with pixel *centres* at integer positions, as ROS
CameraInfo and ``cv2.resize`` use them)::

    network_x = image_x * scale_x + offset_x        network_y = image_y * scale_y + offset_y

* ``stretch``: the image is resized to the network size; ``scale = network / image`` per axis.
* ``keep_aspect_pad`` (letterbox): resized by ``s = min(Wn/W, Hn/H)`` (rounded to whole
  pixels per axis, the exact per-axis factor is reported) and centred; the border is 0 *after*
  normalisation, i.e. the mean colour of the training set for mean/std models (black when the
  card has no mean). ``valid_box`` is the image content inside the network input.
* ``keep_aspect_crop``: resized by ``s = max(Wn/W, Hn/H)`` and centre-cropped; the image rows
  or columns outside the crop get no prediction (NaN after :func:`postprocess`).

The half-pixel term follows from the centre convention: ``cv2.resize`` maps destination pixel
centre ``u`` to source ``(u + 0.5) / s - 0.5``, hence ``offset = 0.5 * s - 0.5 + placement``.

When the backend runs on CUDA, :class:`TorchPreprocessor` does the same maths with torch on
the device (``torch.nn.functional.interpolate``), and :func:`postprocess_torch` brings the
output back to the image resolution there before the one device-to-host copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TYPE_CHECKING
import warnings

import cv2
from depth_node.errors import ImageFormatError
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from depth_node.models.card import ModelCard

_CV2_INTERPOLATION = {
    'nearest': cv2.INTER_NEAREST_EXACT,   # pixel-centre aligned, like the Transform
    'linear': cv2.INTER_LINEAR,
    'cubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
}
_TORCH_MODE = {'nearest': 'nearest-exact', 'linear': 'bilinear', 'cubic': 'bicubic',
               'area': 'area'}


@dataclass(frozen=True)
class Transform:
    """Exactly what preprocessing did: ``network px = image px * scale + offset`` per axis.

    ``valid_box`` is ``(x0, y0, x1, y1)`` (exclusive end) of the image content in network
    pixels: the whole network input except for ``keep_aspect_pad``.
    """

    image_width: int
    image_height: int
    network_width: int
    network_height: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    valid_box: tuple[int, int, int, int]

    @property
    def resized_size(self) -> tuple[int, int]:
        """``(width, height)`` the whole image was resized to before padding or cropping."""
        return (round(self.image_width * self.scale_x), round(self.image_height * self.scale_y))

    @property
    def placement(self) -> tuple[int, int]:
        """Top-left of the resized image in the network input (negative when cropped)."""
        return (round(self.offset_x - 0.5 * self.scale_x + 0.5),
                round(self.offset_y - 0.5 * self.scale_y + 0.5))

    def image_to_network(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Map image pixel coordinates to network pixel coordinates."""
        return x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y

    def network_to_image(self, u: Any, v: Any) -> tuple[Any, Any]:
        """Map network pixel coordinates to image pixel coordinates."""
        return (u - self.offset_x) / self.scale_x, (v - self.offset_y) / self.scale_y

    def apply_to_camera(self, camera: Any) -> Any:
        """Return the camera as the network sees it (intrinsics scaled and shifted, network size).

        :param camera: a :class:`depth_node.camera.CameraModel` of the *image*.
        """
        return camera.with_transform(self.scale_x, self.scale_y, self.offset_x, self.offset_y,
                                     self.network_width, self.network_height)


def compute_transform(image_width: int, image_height: int, card: ModelCard) -> Transform:
    """Return the :class:`Transform` preprocessing applies to this image size for this card."""
    wn, hn = card.network_image_width, card.network_image_height
    w, h = image_width, image_height
    if card.resize == 'stretch':
        rw, rh, px, py = wn, hn, 0, 0
    else:
        s = min(wn / w, hn / h) if card.resize == 'keep_aspect_pad' else max(wn / w, hn / h)
        rw, rh = max(1, round(w * s)), max(1, round(h * s))
        if card.resize == 'keep_aspect_pad':
            rw, rh = min(rw, wn), min(rh, hn)
        else:
            rw, rh = max(rw, wn), max(rh, hn)
        if card.resize == 'keep_aspect_pad':
            px, py = (wn - rw) // 2, (hn - rh) // 2
        else:
            px, py = -((rw - wn) // 2), -((rh - hn) // 2)
    sx, sy = rw / w, rh / h
    box = (max(px, 0), max(py, 0), min(px + rw, wn), min(py + rh, hn))
    return Transform(w, h, wn, hn, sx, sy, 0.5 * sx - 0.5 + px, 0.5 * sy - 0.5 + py, box)


def normalisation(card: ModelCard) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Return the fused normalisation ``x = pixel * a + b`` and RGB source of each network channel.

    The RGB source indices are ``(0, 1, 2)`` for rgb8 and ``(2, 1, 0)`` for bgr8.
    """
    std = np.asarray(card.image_stddev, np.float64)
    a = (card.pixel_scale / std).astype(np.float32)
    b = (-np.asarray(card.image_mean, np.float64) / std).astype(np.float32)
    order = (0, 1, 2) if card.input_encoding == 'rgb8' else (2, 1, 0)
    return a, b, order


def check_rgb(rgb: Any) -> np.ndarray:
    """Validate an RGB image: (H, W, 3) uint8; raise ImageFormatError otherwise."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or \
            rgb.dtype != np.uint8:
        desc = (f'{rgb.dtype} array of shape {rgb.shape}' if isinstance(rgb, np.ndarray)
                else type(rgb).__name__)
        raise ImageFormatError(f'The model input must be an (H, W, 3) uint8 RGB image: {desc}.',
                               'Convert the image with depth_node.images.message_to_rgb first.')
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageFormatError(f'The image is too small ({rgb.shape[1]}x{rgb.shape[0]}).',
                               'Send images of at least 2x2 pixels.')
    return rgb


def normalise_into(src: np.ndarray, dst: np.ndarray, card: ModelCard,
                   coefficients: tuple | None = None) -> np.ndarray:
    """Normalise a uint8 RGB (h, w, 3) image into ``dst`` in one pass per channel; return ``dst``.

    ``dst`` is float32, (3, h, w) for nchw or (h, w, 3) for nhwc.
    """
    a, b, order = coefficients or normalisation(card)
    if card.layout == 'nchw':
        for c in range(3):
            np.multiply(src[:, :, order[c]], a[c], out=dst[c])
            dst[c] += b[c]
    else:
        view = src if order == (0, 1, 2) else src[:, :, ::-1]
        if dst.flags.c_contiguous and view.flags.c_contiguous and np.all(a == a[0]) \
                and np.all(b == b[0]):
            # the same factor for every channel (e.g. x / 255): one flat pass, 10x faster
            # than numpy's broadcast over a trailing axis of 3
            flat = dst.reshape(-1)
            np.multiply(view.reshape(-1), a[0], out=flat)
            if b[0]:
                flat += b[0]
        else:
            np.multiply(view, a, out=dst)
            dst += b
    return dst


class Preprocessor:
    """Card-driven preprocessing with cached geometry and a reused output buffer.

    The returned tensor is this object's buffer: it is overwritten by the next call, so
    consume it (run the network) before preprocessing the next image.
    """

    def __init__(self, card: ModelCard) -> None:
        """:param card: the model card (network size, resize mode, normalisation, layout)."""
        self.card = card
        self._coefficients = normalisation(card)
        self._interp = _CV2_INTERPOLATION[card.interpolation]
        self._buffer = np.zeros(card.input_shape(), np.float32)
        self._transforms: dict[tuple[int, int], Transform] = {}

    def transform_for(self, width: int, height: int) -> Transform:
        """Return the (cached) transform for an image size."""
        key = (width, height)
        t = self._transforms.get(key)
        if t is None:
            t = self._transforms[key] = compute_transform(width, height, self.card)
        return t

    def __call__(self, rgb: np.ndarray, out: np.ndarray | None = None
                 ) -> tuple[np.ndarray, Transform]:
        """Preprocess one RGB uint8 image; returns ``(tensor, transform)``.

        :param out: a (1, ...) slot of a batch tensor to write into instead of this object's
            buffer (only the image content is written: zero the slot when its transform
            changes, see :meth:`DepthModel.predict_batch`).
        """
        rgb = check_rgb(rgb)
        t = self.transform_for(rgb.shape[1], rgb.shape[0])
        rw, rh = t.resized_size
        resized = rgb if (rw, rh) == (rgb.shape[1], rgb.shape[0]) else cv2.resize(
            rgb, (rw, rh), interpolation=self._interp)
        px, py = t.placement
        x0, y0, x1, y1 = t.valid_box
        src = resized[y0 - py:y1 - py, x0 - px:x1 - px]
        target = self._buffer if out is None else out
        buf = target[0]
        dst = buf[:, y0:y1, x0:x1] if self.card.layout == 'nchw' else buf[y0:y1, x0:x1]
        normalise_into(src, dst, self.card, self._coefficients)
        return target, t


def preprocess(rgb: np.ndarray, card: ModelCard) -> tuple[np.ndarray, Transform]:
    """Preprocess one image into a new tensor ((1, 3, H, W) or (1, H, W, 3) float32).

    :param rgb: (H, W, 3) uint8 RGB image.
    :param card: the model card.
    :returns: ``(tensor, transform)``. Use :class:`Preprocessor` in loops (no allocation).
    """
    return Preprocessor(card)(rgb)


def output_to_2d(output: Any) -> Any:
    """Squeeze a network output to one (H, W) map; raise if it is not a single map."""
    shape = tuple(output.shape)
    if len(shape) != 2:
        kept = [d for d in shape if d != 1]
        if len(kept) != 2:
            from depth_node.errors import ModelError
            raise ModelError(f'The network output has shape {shape}, not one depth map.',
                             'Check output_name in the model card: it must name the (1, H, W) '
                             'or (1, 1, H, W) depth output.')
        output = output.reshape(kept)
    return output


def output_to_batch(output: Any, n: int) -> Any:
    """Reshape a batch output to ``n`` (H, W) maps: (n, H, W), (n, 1, H, W) -> (n, H, W)."""
    shape = tuple(output.shape)
    if len(shape) == 3 and shape[0] == n:
        return output
    kept = [d for d in shape[1:] if d != 1]
    if not shape or shape[0] != n or len(kept) != 2:
        from depth_node.errors import ModelError
        raise ModelError(f'The network output for a batch of {n} has shape {shape}, not {n} '
                         'depth maps.', 'Check output_name in the model card, and that the '
                         'model was exported with a batch axis (export --dynamic-batch).')
    return output.reshape((n, *kept))


def _output_geometry(shape: tuple[int, int], t: Transform) -> tuple:
    """Placement of the image in an output map of ``shape`` (it may differ from the input)."""
    ho, wo = shape
    fx, fy = wo / t.network_width, ho / t.network_height
    rw, rh = t.resized_size
    px, py = t.placement
    return (round(px * fx), round(py * fy), max(1, round(rw * fx)), max(1, round(rh * fy)))


def postprocess(output: np.ndarray, transform: Transform, interpolation: str = 'linear',
                out: np.ndarray | None = None) -> np.ndarray:
    """Bring a network-resolution map back to the image resolution (float32 (H, W)).

    The pad border is removed (``keep_aspect_pad``), image parts cut off by
    ``keep_aspect_crop`` become NaN, and the map is resized to the image size. The output may
    have another resolution than the network input (it is then scaled proportionally).

    :param output: (H_n, W_n) map (or any shape that squeezes to it), float.
    :param transform: the :class:`Transform` of the preprocessing.
    :param interpolation: ``nearest`` | ``linear`` | ``cubic`` | ``area``.
    :param out: optional (H, W) float32 buffer for the result.
    """
    t = transform
    output = output_to_2d(np.asarray(output))
    if output.dtype != np.float32:
        output = output.astype(np.float32)
    px, py, rw, rh = _output_geometry(output.shape, t)
    ho, wo = output.shape
    if px >= 0 and py >= 0:   # stretch or pad: cut the content out (a view)
        content = output[py:py + rh, px:px + rw]
    else:                     # crop: put the map into a NaN canvas of the resized image
        content = np.full((rh, rw), np.nan, np.float32)
        content[max(-py, 0):max(-py, 0) + min(ho, rh), max(-px, 0):max(-px, 0) + min(wo, rw)] = \
            output[max(py, 0):max(py, 0) + min(ho, rh), max(px, 0):max(px, 0) + min(wo, rw)]
    size = (t.image_width, t.image_height)
    if content.shape == (t.image_height, t.image_width):
        if out is None:
            return np.array(content, np.float32)
        out[...] = content
        return out
    flag = _CV2_INTERPOLATION[interpolation]
    if out is None:
        return cv2.resize(content, size, interpolation=flag)
    cv2.resize(content, size, dst=out, interpolation=flag)
    return out


# --- torch / GPU path ---------------------------------------------------------------------------
def _interpolate(x: Any, size: tuple[int, int], interpolation: str) -> Any:
    """``F.interpolate`` with the mode matching the cv2 flag (``size`` is (h, w))."""
    import torch.nn.functional as F
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = _TORCH_MODE[interpolation]
    if mode == 'area' and (size[0] > x.shape[-2] or size[1] > x.shape[-1]):
        mode = 'bilinear'   # cv2 INTER_AREA upscales bilinearly
    if mode in ('bilinear', 'bicubic'):
        return F.interpolate(x, size=size, mode=mode, align_corners=False)
    return F.interpolate(x, size=size, mode=mode)


class TorchPreprocessor:
    """The same preprocessing with torch on a device (for CUDA backends).

    Resizing runs in float on the device and is rounded to whole uint8 levels afterwards, like
    OpenCV's uint8 resize. The returned tensor is reused by the next call.
    """

    def __init__(self, card: ModelCard, device: str = 'cuda') -> None:
        """:param card: the model card. :param device: torch device string."""
        from depth_node.errors import require
        torch = require('torch', 'GPU preprocessing')
        self.card = card
        self.device = torch.device(device)
        a, b, order = normalisation(card)
        self._a = torch.as_tensor(a, device=self.device).view(1, 3, 1, 1)
        self._b = torch.as_tensor(b, device=self.device).view(1, 3, 1, 1)
        self._order = list(order)
        wn, hn = card.network_image_width, card.network_image_height
        self._buffer = torch.zeros((1, 3, hn, wn), dtype=torch.float32, device=self.device)
        self._transforms: dict[tuple[int, int], Transform] = {}
        self._staging: dict[tuple[int, ...], Any] = {}

    def __call__(self, rgb: np.ndarray, out: Any = None) -> tuple[Any, Transform]:
        """Preprocess one RGB uint8 image; returns ``(tensor on the device, transform)``.

        :param out: a (1, 3, H, W) slot of a batch tensor on the device to write into (nchw
            cards only; see :meth:`Preprocessor.__call__`).
        """
        import torch
        rgb = check_rgb(rgb)
        key = (rgb.shape[1], rgb.shape[0])
        t = self._transforms.get(key)
        if t is None:
            t = self._transforms[key] = compute_transform(key[0], key[1], self.card)
        with warnings.catch_warnings():   # a read-only image (a message view) is only read
            warnings.simplefilter('ignore', UserWarning)
            src = torch.from_numpy(np.ascontiguousarray(rgb))
        if self.device.type == 'cuda':
            # one pinned staging buffer per image size: a fast asynchronous upload
            host = self._staging.get(rgb.shape)
            if host is None:
                host = self._staging[rgb.shape] = torch.empty(rgb.shape, dtype=torch.uint8,
                                                              pin_memory=True)
            host.copy_(src)
            src = host.to(self.device, non_blocking=True)
        x = src.permute(2, 0, 1)[self._order].unsqueeze(0).float()
        rw, rh = t.resized_size
        if (rw, rh) != key:
            x = _interpolate(x, (rh, rw), self.card.interpolation).round_().clamp_(0, 255)
        px, py = t.placement
        x0, y0, x1, y1 = t.valid_box
        x = x[:, :, y0 - py:y1 - py, x0 - px:x1 - px]
        target = self._buffer if out is None else out
        dst = target[:, :, y0:y1, x0:x1]
        torch.addcmul(self._b, x, self._a, out=dst) if dst.is_contiguous() else \
            dst.copy_(x * self._a + self._b)
        if self.card.layout == 'nhwc' and out is None:
            return self._buffer.permute(0, 2, 3, 1).contiguous(), t
        return target, t


def postprocess_torch(output: Any, transform: Transform, interpolation: str = 'linear',
                      to_numpy: bool = True) -> Any:
    """:func:`postprocess` with torch on the output's device; one copy to the host at the end.

    :param output: torch tensor (or numpy array) that squeezes to (H_n, W_n).
    :param to_numpy: return a numpy array (else a torch tensor on the device).
    """
    import torch
    t = transform
    if not isinstance(output, torch.Tensor):
        output = torch.from_numpy(np.asarray(output))
    output = output_to_2d(output).float()
    px, py, rw, rh = _output_geometry(tuple(output.shape), t)
    ho, wo = output.shape
    if px >= 0 and py >= 0:
        content = output[py:py + rh, px:px + rw]
    else:
        content = torch.full((rh, rw), float('nan'), dtype=torch.float32, device=output.device)
        content[max(-py, 0):max(-py, 0) + min(ho, rh), max(-px, 0):max(-px, 0) + min(wo, rw)] = \
            output[max(py, 0):max(py, 0) + min(ho, rh), max(px, 0):max(px, 0) + min(wo, rw)]
    result = _interpolate(content[None, None], (t.image_height, t.image_width),
                          interpolation)[0, 0]
    if not to_numpy:
        return result
    return result.contiguous().cpu().numpy()
