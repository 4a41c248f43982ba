"""The GPU path (torch tensors) of every stage after inference equals the numpy path.

Run with torch CPU tensors here (the same float32 operations as on CUDA); the CUDA variants
run where a GPU is present and skip otherwise.
"""

from __future__ import annotations

from camera_helpers import pinhole
from depth_node.clouds import (
    clear_device_rays,
    cloud_buffer,
    depth_to_cloud,
    device_ray_planes,
    pointcloud2_to_array,
)
from depth_node.device import to_host
from depth_node.images import colorize_depth, encode_depth, image_to_array, make_image
from depth_node.messages import rclpy_like_factory
from depth_node.metric import MetricConfig
from depth_node.pipeline import DepthPipeline, PipelineConfig
import numpy as np
import pytest
from test_pipeline_support import card, FakeModel

torch = pytest.importorskip('torch', reason='torch is not installed (depth_node[torch])')
DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='no CUDA device: GPU runs happen on GPU hosts'))]
W, H = 64, 48


def scene(seed: int = 0) -> np.ndarray:
    """Return a depth-like map with steps (flying pixels), NaN, +-Inf, zeros and negatives."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    depth = 0.5 + 4.0 * v / H + 0.02 * rng.standard_normal((H, W)).astype(np.float32)
    depth[10:30, 20:40] = 1.0                   # a box in front: edges for the filter
    depth[::7, ::5] = 25.0                      # beyond max_range
    depth[3, :10] = 0.05                        # too close
    marks = rng.random((H, W))
    depth[marks < 0.03] = np.nan
    depth[(marks >= 0.03) & (marks < 0.04)] = 0.0
    depth[(marks >= 0.04) & (marks < 0.05)] = -1.0
    depth[(marks >= 0.05) & (marks < 0.06)] = np.inf
    depth[(marks >= 0.06) & (marks < 0.065)] = -np.inf
    return depth.astype(np.float32)


def rgb_image(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


CAMERAS = {
    'pinhole': pinhole(W, H, 60.0, 58.0, 31.5, 23.5),
    'plumb_bob': pinhole(W, H, 60.0, 58.0, 31.5, 23.5, D=(-0.3, 0.1, 0.001, 0.002, 0.0),
                         model='plumb_bob'),
    # strong fisheye: some rays are undefined (NaN) at the border
    'equidistant': pinhole(W, H, 30.0, 30.0, 31.5, 23.5, D=(-0.3, 0.0, 0.0, 0.0),
                           model='equidistant'),
}


def same(a: np.ndarray, b: np.ndarray) -> None:
    """Identical arrays: every finite value bit for bit, NaN and +-Inf at the same places.

    (The sign bit of a NaN is not kept the same by every vectorised multiply.)
    """
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype.names:
        for name in a.dtype.names:
            same(np.ascontiguousarray(a[name]), np.ascontiguousarray(b[name]))
        return
    np.testing.assert_array_equal(a, b, strict=True)
    if a.dtype.kind == 'f':   # assert_array_equal takes 0.0 == -0.0: compare the bits
        finite = np.isfinite(a)
        assert a[finite].tobytes() == b[finite].tobytes()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('camera', sorted(CAMERAS))
@pytest.mark.parametrize('decimation', [1, 3])
@pytest.mark.parametrize('with_rgb', [False, True])
@pytest.mark.parametrize('ranges', [(None, None), (0.2, 4.0), (None, 3.0)])
def test_cloud_is_bit_identical(device, camera, decimation, with_rgb, ranges):
    depth = scene()
    rays = CAMERAS[camera].ray_table()
    rgb = rgb_image() if with_rgb else None
    expected = depth_to_cloud(depth, rays, rgb, decimation, *ranges)
    got = depth_to_cloud(torch.from_numpy(depth).to(device), rays,
                         None if rgb is None else torch.from_numpy(rgb).to(device),
                         decimation, *ranges)
    same(got[..., :3], expected[..., :3])
    if with_rgb:
        same(got[..., 3].view(np.uint32), expected[..., 3].view(np.uint32))
    assert np.isnan(got[..., 2]).any() and np.isfinite(got[..., 2]).any()


def test_cloud_goes_straight_into_the_payload():
    factory = rclpy_like_factory()
    depth = scene()
    rays = CAMERAS['plumb_bob'].ray_table()
    buffer, payload = cloud_buffer(factory, depth.shape, with_rgb=False, decimation=2)
    returned = depth_to_cloud(torch.from_numpy(depth), rays, decimation=2, out=buffer)
    assert returned is buffer
    same(np.frombuffer(payload, np.float32).reshape(buffer.shape),
         depth_to_cloud(depth, rays, decimation=2))
    with pytest.raises(ValueError, match='C-contiguous float32'):
        depth_to_cloud(torch.from_numpy(depth), rays, decimation=1, out=buffer)


def test_rays_stay_on_the_device_per_camera_and_decimation():
    clear_device_rays()
    rays = CAMERAS['equidistant'].ray_table()
    first = device_ray_planes(rays, 'cpu', 1)
    assert device_ray_planes(rays, 'cpu', 1) is first            # uploaded once
    assert device_ray_planes(rays, 'cpu', 2) is not first
    assert first[2] is not None and torch.isnan(first[2]).any()  # NaN rays void z as well
    other = device_ray_planes(CAMERAS['pinhole'].ray_table(), 'cpu', 1)
    assert other is not first and other[2] is None              # pinhole: z is the depth
    writeable = np.array(rays)
    assert device_ray_planes(writeable, 'cpu', 1) is not device_ray_planes(writeable, 'cpu', 1)
    np.testing.assert_array_equal(to_host(first[0]), np.ascontiguousarray(rays[..., 0]))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_depth_image_is_bit_identical(device, encoding, humble_factory):
    depth = scene()
    # millimetre ties and the clip limits: rounding must match OpenCV's
    depth[0, :6] = [0.0005, 0.0015, 0.0025, 65.5, 70.0, 1.2345]
    tensor = torch.from_numpy(depth).to(device)
    same(to_host(encode_depth(tensor, encoding)), encode_depth(depth, encoding))
    for factory in (humble_factory, rclpy_like_factory()):
        header = factory.header(1, 2, 'cam')
        expected = make_image(factory, header, encode_depth(depth, encoding), encoding)
        got = make_image(factory, header, encode_depth(tensor, encoding), encoding)
        same(image_to_array(got), image_to_array(expected))
        assert (got.step, got.encoding, got.height, got.width) == \
            (expected.step, expected.encoding, expected.height, expected.width)


def test_make_image_checks_tensors_like_arrays():
    factory = rclpy_like_factory()
    header = factory.header(0, 0, 'cam')
    with pytest.raises(Exception, match='does not fit encoding'):
        make_image(factory, header, torch.zeros((4, 4), dtype=torch.float64), '32FC1')
    with pytest.raises(Exception, match='does not fit encoding'):
        make_image(factory, header, torch.zeros((4, 4, 3), dtype=torch.uint8), 'mono8')
    msg = make_image(factory, header, torch.arange(12, dtype=torch.uint8).view(2, 2, 3),
                     'rgb8')
    np.testing.assert_array_equal(image_to_array(msg).reshape(-1), np.arange(12))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('limits', [(None, None), (0.0, 0.0), (1.0, 3.0), (2.0, None)])
def test_colorized_is_bit_identical(device, limits):
    depth = scene(3)
    got = colorize_depth(torch.from_numpy(depth).to(device), *limits)
    same(to_host(got), colorize_depth(depth, *limits))
    empty = np.full((4, 4), np.nan, np.float32)
    same(to_host(colorize_depth(torch.from_numpy(empty))), colorize_depth(empty))


class TensorModel(FakeModel):
    """The fake model on the GPU path: the raw map comes back as a tensor on ``device``."""

    def __init__(self, card, function, device):
        super().__init__(card, function)
        self.device = device

    def predict(self, rgb):
        raw, transform, timings = super().predict(rgb)
        return torch.from_numpy(raw.copy()).to(self.device), transform, timings


CASES = {
    'metric_canonical': ({'output_kind': 'metric_depth', 'canonical_focal_px': 300.0},
                         {}, lambda rgb: scene(5)),
    'relative_fixed': ({'output_kind': 'relative_depth'},
                       {'scale_source': 'fixed', 'fixed_scale': 1.5, 'fixed_shift': 0.1},
                       lambda rgb: scene(6)),
    'inverse_fixed': ({'output_kind': 'relative_inverse_depth'},
                      {'scale_source': 'fixed', 'fixed_scale': 2.0, 'fixed_shift': -0.05},
                      lambda rgb: 1.0 / np.clip(scene(7), 0.1, None)),
    'inverse_relative_only': ({'output_kind': 'relative_inverse_depth'}, {},
                              lambda rgb: np.abs(scene(8))),
}


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('settings', [
    {'point_cloud_fields': 'xyzrgb', 'point_decimation': 1},
    {'point_cloud_fields': 'xyz', 'point_decimation': 2, 'output_encoding': '16UC1',
     'colorize_min_depth': 0.5, 'colorize_max_depth': 4.0},
])
def test_pipeline_messages_equal_the_numpy_path(device, case, settings, humble_factory):
    card_fields, metric, function = CASES[case]
    model_card = card(network_image_width=W, network_image_height=H, **card_fields)
    config = PipelineConfig(metric=MetricConfig(min_range=0.2, max_range=4.0, **metric),
                            **settings)
    camera = CAMERAS['plumb_bob']
    factory = humble_factory
    header = factory.header(7, 8, 'cam')
    image = make_image(factory, header, rgb_image(), 'rgb8')
    messages = []
    for model in (FakeModel(model_card, function), TensorModel(model_card, function, device)):
        pipeline = DepthPipeline(model, config, log=lambda msg: None)
        result = pipeline.process(image, camera=camera)
        assert (result.depth is None) == (case == 'inverse_relative_only')
        messages.append(pipeline.outputs(result, header, factory))
    expected, got = messages
    assert set(got) == set(expected)
    for key in ('depth/image', 'depth/relative', 'depth/colorized'):
        if key in expected:
            same(image_to_array(got[key]), image_to_array(expected[key]))
    if 'points' in expected:
        same(pointcloud2_to_array(got['points']), pointcloud2_to_array(expected['points']))
    for key, msg in expected.items():   # every other field equal
        for name in ('height', 'width', 'step', 'encoding', 'point_step', 'row_step',
                     'is_dense', 'is_bigendian'):
            assert getattr(got[key], name, None) == getattr(msg, name, None), (key, name)


class Net(torch.nn.Module):
    """A small conv net: (1, 3, H, W) -> (1, H, W) positive output; counts its calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.LayerNorm(4)
        self.head = torch.nn.Conv2d(4, 1, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        y = self.conv(x)
        y = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return torch.nn.functional.softplus(self.head(y))[:, 0] + 0.5


def test_torch_backend_speed_options_keep_the_result():
    from depth_node.backends.torch import TorchBackend
    model_card = card(network_image_width=28, network_image_height=21)
    x = np.random.default_rng(0).standard_normal((1, 3, 21, 28)).astype(np.float32)
    plain = TorchBackend(Net(), model_card, device='cpu', log=lambda m: None)
    assert plain.module.calls == 0                       # CPU: no warm-up by default
    net = Net()
    fast = TorchBackend(net, model_card, device='cpu', precision='fp16', channels_last=True,
                        warmup=2, log=lambda m: None)
    assert net.calls == 2                                # warm-up at load (configure)
    assert fast.precision == 'fp32' and fast.channels_last   # the CPU computes fp32
    expected = plain.infer(x)
    assert isinstance(expected, np.ndarray) and expected.shape == (21, 28)
    got = fast.infer(torch.from_numpy(x))               # a tensor stays a tensor
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_depth_model_gpu_path_returns_device_tensors():
    from depth_node.backends.torch import TorchBackend
    from depth_node.runner import DepthModel
    model_card = card(network_image_width=28, network_image_height=21,
                      output_kind='metric_depth')
    backend = TorchBackend(Net(), model_card, device='cpu', log=lambda m: None)
    rgb = rgb_image()
    host = DepthModel(backend, model_card)
    device = DepthModel(backend, model_card, tensors=True)
    assert not host.tensors and device.tensors
    expected, transform, _ = host.predict(rgb)
    got, same_transform, timings = device.predict(rgb)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (H, W)
    assert same_transform == transform and timings['inference_ms'] >= 0
    # torch resizes in float, OpenCV in fixed point: close, not bit-identical
    np.testing.assert_allclose(got.numpy(), expected, rtol=0.05)


def test_host_array_passes_numpy_through_and_copies_tensors():
    torch = pytest.importorskip('torch')
    from depth_node.device import host_array
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert host_array(array) is array
    copied = host_array(torch.from_numpy(array.copy()))
    assert isinstance(copied, np.ndarray) and np.array_equal(copied, array)
