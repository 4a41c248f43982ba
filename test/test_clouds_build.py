"""Organized point clouds: the TUM oracle, validity, decimation, ranges, rgb, PLY, layout."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import cv2
from depth_node.clouds import (
    cloud_buffer,
    cloud_fields,
    depth_to_cloud,
    make_pointcloud2,
    pointcloud2_to_array,
    write_ply,
)
from depth_node.errors import SizeMismatchError
from depth_node.messages import numpy_byte_array, rclpy_byte_array, rclpy_like_factory
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import numpy as np
import pytest

FX, FY, CX, CY = 525.0, 525.0, 319.5, 239.5


def pinhole_rays(width, height, fx=FX, fy=FY, cx=CX, cy=CY, read_only=True):
    """Rays (x/z, y/z, 1) through the pixel centres, from the plain pinhole formula."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    rays = rays.astype(np.float32)
    rays.flags.writeable = not read_only
    return rays


@pytest.fixture(scope='module')
def tum_depth(shared_data):
    raw = cv2.imread(str(shared_data / 'rgbd' / 'open3d_tum' / 'TUM_depth.png'),
                     cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16
    depth = raw.astype(np.float32) / 5000.0     # 0 stays 0: invalid
    return raw, depth


@pytest.fixture(scope='module')
def tum_rgb(shared_data):
    bgr = cv2.imread(str(shared_data / 'rgbd' / 'open3d_tum' / 'TUM_color.png'))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_oracle(cloud, raw, depth):
    """Every valid point reprojects with K to its own pixel centre and keeps its z."""
    height, width = depth.shape
    valid = raw > 0
    assert 0.75 < valid.mean() < 0.85
    x, y, z = cloud[..., 0], cloud[..., 1], cloud[..., 2]
    assert np.isnan(cloud[~valid][:, :3]).all()
    assert np.isfinite(cloud[valid][:, :3]).all()
    assert np.array_equal(z[valid], depth[valid])
    v, u = np.mgrid[0:height, 0:width]
    u_proj = FX * x[valid] / z[valid] + CX
    v_proj = FY * y[valid] / z[valid] + CY
    assert np.abs(u_proj - u[valid]).max() < 1e-3
    assert np.abs(v_proj - v[valid]).max() < 1e-3


def test_tum_oracle_pinhole(tum_depth):
    raw, depth = tum_depth
    cloud = depth_to_cloud(depth, pinhole_rays(640, 480))
    assert cloud.shape == (480, 640, 3) and cloud.dtype == np.float32
    check_oracle(cloud, raw, depth)


def test_tum_oracle_with_camera_model(tum_depth):
    from depth_node.calibration import camera_from_dict
    model = camera_from_dict({
        'image_width': 640, 'image_height': 480, 'distortion_model': 'plumb_bob',
        'camera_matrix': {'rows': 3, 'cols': 3, 'data': [FX, 0, CX, 0, FY, CY, 0, 0, 1]},
        'distortion_coefficients': {'rows': 1, 'cols': 5, 'data': [0, 0, 0, 0, 0]}})
    raw, depth = tum_depth
    check_oracle(depth_to_cloud(depth, model.ray_table()), raw, depth)


def test_tum_xyzrgb_and_decimation(tum_depth, tum_rgb):
    raw, depth = tum_depth
    rays = pinhole_rays(640, 480)
    cloud = depth_to_cloud(depth, rays, rgb=tum_rgb, decimation=3)
    assert cloud.shape == (160, 214, 4)
    full = depth_to_cloud(depth, rays)
    assert np.array_equal(cloud[..., :3], full[::3, ::3], equal_nan=True)
    packed = cloud[..., 3].view(np.uint32)
    sub = tum_rgb[::3, ::3].astype(np.uint32)
    assert np.array_equal(packed, (sub[..., 0] << 16) | (sub[..., 1] << 8) | sub[..., 2])
    assert (packed >> 24 == 0).all()


def reference_cloud(depth, rays, min_range=None, max_range=None):
    depth = depth.astype(np.float64)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(depth) & (depth > 0)
        if min_range is not None:
            valid &= depth >= min_range
        if max_range is not None:
            valid &= depth <= max_range
    z = np.where(valid, depth, np.nan)
    return (rays.astype(np.float64) * z[..., None]).astype(np.float32)


special = st.one_of(st.floats(min_value=-5, max_value=50, width=32),
                    st.sampled_from([0.0, np.nan, np.inf, -np.inf, -0.0, 1e-40]))


@settings(max_examples=150, deadline=None)
@given(depth=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9),
                        elements=special),
       decimation=st.integers(1, 3),
       min_range=st.sampled_from([None, 0.5, 2.0]),
       max_range=st.sampled_from([None, 3.0, 40.0]),
       read_only=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_cloud_matches_reference(depth, decimation, min_range, max_range, read_only, dtype):
    height, width = depth.shape
    rays = pinhole_rays(width, height, 3.0, 4.0, width / 2, height / 2, read_only)
    got = depth_to_cloud(depth.astype(dtype), rays, decimation=decimation,
                         min_range=min_range, max_range=max_range)
    expected = reference_cloud(depth, rays, min_range, max_range)[::decimation, ::decimation]
    assert got.shape == expected.shape
    nan_rows = np.isnan(expected).any(axis=-1)
    assert np.isnan(got[nan_rows]).all()
    assert np.allclose(got[~nan_rows], expected[~nan_rows], rtol=1e-6, atol=1e-30)


def test_nan_rays_void_the_point():
    rays = pinhole_rays(4, 3, 2.0, 2.0, 2.0, 1.5, read_only=False)
    rays[1, 2] = np.nan
    rays.flags.writeable = False
    cloud = depth_to_cloud(np.full((3, 4), 2.0, np.float32), rays)
    assert np.isnan(cloud[1, 2]).all()
    assert np.isfinite(np.delete(cloud.reshape(-1, 3), 1 * 4 + 2, axis=0)).all()


def test_ray_cache_follows_the_table():
    depth = np.full((3, 4), 2.0, np.float32)
    rays_a = pinhole_rays(4, 3, 1.0, 1.0, 0.0, 0.0)
    rays_b = pinhole_rays(4, 3, 2.0, 2.0, 0.0, 0.0)
    a = depth_to_cloud(depth, rays_a).copy()
    b = depth_to_cloud(depth, rays_b).copy()
    assert a[2, 3, 0] == pytest.approx(6.0) and b[2, 3, 0] == pytest.approx(3.0)
    assert np.array_equal(depth_to_cloud(depth, rays_a), a)


def test_out_buffer_is_used_and_checked():
    depth = np.ones((4, 6), np.float32)
    rays = pinhole_rays(6, 4, 2.0, 2.0, 3.0, 2.0)
    out = np.empty((2, 3, 3), np.float32)
    assert depth_to_cloud(depth, rays, decimation=2, out=out) is out
    with pytest.raises(ValueError):
        depth_to_cloud(depth, rays, out=out)


def test_size_mismatch():
    with pytest.raises(SizeMismatchError):
        depth_to_cloud(np.ones((4, 6), np.float32), pinhole_rays(6, 5))
    with pytest.raises(SizeMismatchError):
        depth_to_cloud(np.ones((4, 6), np.float32), pinhole_rays(6, 4),
                       rgb=np.zeros((4, 6, 3), np.float32))


@pytest.mark.parametrize('with_rgb', [False, True])
@pytest.mark.parametrize('byte_array', ['rclpy', 'numpy'])
def test_pointcloud2_layout_and_readback(with_rgb, byte_array):
    factory = rclpy_like_factory()
    if byte_array == 'numpy':
        factory = replace(factory, byte_array=numpy_byte_array)
    height, width = 3, 5      # not square: catches the (H, W) <-> (W, H) trap
    depth = np.arange(1, 16, dtype=np.float32).reshape(height, width)
    depth[1, 1] = np.nan
    rgb = np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)
    cloud = depth_to_cloud(depth, pinhole_rays(width, height, 2.0, 2.0, 2.0, 1.0),
                           rgb=rgb if with_rgb else None)
    header = SimpleNamespace(frame_id='cam')
    msg = make_pointcloud2(factory, header, cloud)
    point_step = 16 if with_rgb else 12
    assert (msg.height, msg.width, msg.point_step) == (height, width, point_step)
    assert msg.row_step == width * point_step and not msg.is_dense and not msg.is_bigendian
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == \
        cloud_fields(with_rgb)
    assert len(msg.data) == height * width * point_step
    points = pointcloud2_to_array(msg)
    assert points.shape == (height, width)
    for axis, name in enumerate('xyz'):
        assert np.array_equal(points[name], cloud[..., axis], equal_nan=True)
    assert points['z'][2, 4] == 15.0 and np.isnan(points['x'][1, 1])
    if with_rgb:
        packed = points['rgb'].view(np.uint32)
        assert packed[0, 1] == (3 << 16) | (4 << 8) | 5


def test_pointcloud2_to_array_padding_and_big_endian():
    fields = [SimpleNamespace(name='x', offset=0, datatype=7, count=1),
              SimpleNamespace(name='i', offset=6, datatype=4, count=1)]
    rows = []
    for r in range(2):
        row = b''
        for c in range(3):
            row += np.array([r * 10 + c], '>f4').tobytes() + b'\0\0'
            row += np.array([100 + c], '>u2').tobytes()
        rows.append(row + b'\xee' * 4)      # row padding
    msg = SimpleNamespace(height=2, width=3, fields=fields, is_bigendian=True, point_step=8,
                          row_step=28, data=np.frombuffer(b''.join(rows), np.uint8))
    points = pointcloud2_to_array(msg)
    assert points['x'].tolist() == [[0, 1, 2], [10, 11, 12]]
    assert points['i'].tolist() == [[100, 101, 102]] * 2


def test_write_ply(tmp_path):
    depth = np.array([[1.0, np.nan], [2.0, 0.0]], np.float32)
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [9, 9, 9]]], np.uint8)
    cloud = depth_to_cloud(depth, pinhole_rays(2, 2, 1.0, 1.0, 0.0, 0.0), rgb=rgb)
    path = tmp_path / 'cloud.ply'
    write_ply(path, cloud)
    blob = path.read_bytes()
    head, body = blob.split(b'end_header\n')
    assert b'binary_little_endian' in head and b'element vertex 2' in head
    rows = np.frombuffer(body, dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                      ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')])
    assert rows['z'].tolist() == [1.0, 2.0]
    assert rows['x'].tolist() == [0.0, 0.0] and rows['y'].tolist() == [0.0, 2.0]
    assert rows[0][['red', 'green', 'blue']].tolist() == (255, 0, 0)
    assert rows[1][['red', 'green', 'blue']].tolist() == (0, 0, 255)
    write_ply(tmp_path / 'xyz.ply', cloud[..., :3])
    assert b'element vertex 2' in (tmp_path / 'xyz.ply').read_bytes()


@pytest.mark.parametrize('byte_array', ['rclpy', 'numpy'])
@pytest.mark.parametrize('with_rgb', [False, True])
def test_cloud_buffer_is_the_payload(byte_array, with_rgb):
    factory = rclpy_like_factory()
    if byte_array == 'numpy':
        factory = replace(factory, byte_array=numpy_byte_array)
    depth = np.linspace(0.5, 3.0, 7 * 9, dtype=np.float32).reshape(7, 9)
    depth[2, 2] = 0.0
    rays = pinhole_rays(9, 7, 4.0, 4.0, 4.0, 3.0)
    rgb = np.full((7, 9, 3), 200, np.uint8) if with_rgb else None
    buffer, payload = cloud_buffer(factory, depth.shape, with_rgb, decimation=2)
    assert buffer.shape == (4, 5, 4 if with_rgb else 3)
    assert (byte_array == 'rclpy') == (type(payload).__name__ == 'array')
    depth_to_cloud(depth, rays, rgb, decimation=2, out=buffer)
    msg = make_pointcloud2(factory, SimpleNamespace(frame_id='cam'), buffer, payload)
    assert msg.data is payload          # no copy: the message holds the cloud's own memory
    expected = depth_to_cloud(depth, rays, rgb, decimation=2)
    points = pointcloud2_to_array(msg)
    assert np.array_equal(points['z'], expected[..., 2], equal_nan=True)
    assert np.isnan(points['x'][1, 1])
    with pytest.raises(ValueError):
        make_pointcloud2(factory, None, expected, payload)


def test_cloud_buffer_unknown_factory_copies():
    factory = replace(rclpy_like_factory(), byte_array=lambda a: bytes(np.ascontiguousarray(a)))
    buffer, payload = cloud_buffer(factory, (2, 3))
    assert payload is None and buffer.shape == (2, 3, 3)
    buffer[:] = 1.5
    msg = make_pointcloud2(factory, None, buffer, payload)
    assert pointcloud2_to_array(msg)['y'].tolist() == [[1.5] * 3] * 2
    assert rclpy_byte_array is not factory.byte_array
