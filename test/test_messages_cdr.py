"""Every message the codecs build is a valid ROS 2 message (rosbags CDR, Humble and Jazzy)."""

from __future__ import annotations

from depth_node.clouds import cloud_buffer, depth_to_cloud, make_pointcloud2, pointcloud2_to_array
from depth_node.images import (
    compressed_to_rgb,
    depth_to_metres,
    image_to_rgb,
    make_compressed,
    make_depth_image,
    make_image,
)
import numpy as np
import pytest


def roundtrip(factory, msg):
    raw = factory.typestore.serialize_cdr(msg, msg.__msgtype__)
    assert isinstance(raw, (bytes, bytearray, memoryview, np.ndarray)) and len(raw) > 0
    return factory.typestore.deserialize_cdr(raw, msg.__msgtype__)


def same_header(a, b):
    assert (a.header.stamp.sec, a.header.stamp.nanosec, a.header.frame_id) == \
        (b.header.stamp.sec, b.header.stamp.nanosec, b.header.frame_id)


@pytest.fixture
def header(factory):
    return factory.header(1_700_000_000, 123_456_789, 'tum_rgb_optical_frame')


@pytest.fixture(scope='module')
def depth():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.3, 8.0, (6, 10)).astype(np.float32)
    depth[0, 0], depth[1, 2], depth[2, 3], depth[3, 4] = np.nan, np.inf, -np.inf, 0.0
    return depth


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_depth_image_cdr(factory, header, depth, encoding):
    msg = make_depth_image(factory, header, depth, encoding)
    back = roundtrip(factory, msg)
    same_header(msg, back)
    assert (back.height, back.width, back.encoding, back.step, back.is_bigendian) == \
        (msg.height, msg.width, encoding, msg.step, msg.is_bigendian)
    assert np.array_equal(np.asarray(back.data), np.asarray(msg.data))
    assert np.array_equal(depth_to_metres(back), depth_to_metres(msg), equal_nan=True)
    if encoding == '32FC1':    # REP 117 values survive the wire
        metres = depth_to_metres(back)
        assert metres[1, 2] == np.inf and metres[2, 3] == -np.inf and np.isnan(metres[0, 0])


def test_rgb_image_cdr(factory, header):
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    back = roundtrip(factory, make_image(factory, header, rgb, 'rgb8'))
    assert np.array_equal(image_to_rgb(back), rgb)


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_compressed_cdr(factory, header, fmt):
    v, u = np.mgrid[0:24, 0:32]
    rgb = np.stack([u * 7, v * 9, 255 - u * 7], axis=-1).astype(np.uint8)
    msg = make_compressed(factory, header, rgb, fmt)
    back = roundtrip(factory, msg)
    same_header(msg, back)
    assert back.format == msg.format == f'rgb8; {fmt} compressed bgr8'
    assert np.array_equal(np.asarray(back.data), np.asarray(msg.data))
    error = np.abs(compressed_to_rgb(back).astype(int) - rgb)
    if fmt == 'png':
        assert error.max() == 0
    else:   # q95 JPEG with chroma subsampling
        assert error.mean() < 4 and error.max() <= 24


@pytest.mark.parametrize('with_rgb', [False, True])
def test_pointcloud2_cdr(factory, header, depth, with_rgb):
    height, width = depth.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    rays = np.stack([(u - 4.5) / 5.0, (v - 2.5) / 5.0, np.ones_like(u)], axis=-1)
    rgb = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cloud, payload = cloud_buffer(factory, depth.shape, with_rgb)
    depth_to_cloud(depth, rays, rgb=rgb if with_rgb else None, out=cloud)
    msg = make_pointcloud2(factory, header, cloud, payload)
    assert np.array_equal(pointcloud2_to_array(make_pointcloud2(factory, header, cloud))['z'],
                          cloud[..., 2], equal_nan=True)
    back = roundtrip(factory, msg)
    same_header(msg, back)
    assert (back.height, back.width, back.point_step, back.row_step, back.is_dense) == \
        (height, width, 16 if with_rgb else 12, width * (16 if with_rgb else 12), False)
    assert [(f.name, f.offset, f.datatype, f.count) for f in back.fields] == \
        [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    points = pointcloud2_to_array(back)
    for axis, name in enumerate('xyz'):
        assert np.array_equal(points[name], cloud[..., axis], equal_nan=True)
    if with_rgb:
        assert np.array_equal(points['rgb'].view(np.uint32), cloud[..., 3].view(np.uint32))
