"""Decoding the real images recorded in the shared bags (read with rosbags)."""

from __future__ import annotations

import cv2
from depth_node.errors import CompressedImageError, ImageFormatError, InputError
from depth_node.images import depth_to_metres, image_to_array, image_to_rgb, message_to_rgb
import numpy as np
import pytest

pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')


def read_topic(path, topic):
    """All deserialized messages of one topic of a bag (ROS 1 or rosbag2)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore, Stores
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        assert connections, f'{topic} not in {path}'
        return [reader.deserialize(raw, conn.msgtype)
                for conn, _, raw in reader.messages(connections=connections)]


@pytest.fixture(scope='module')
def tum_bag(shared_data):
    return shared_data / 'bags' / 'tum_rgbd_sample_mcap'


def test_tum_raw_rgb_equals_png(tum_bag, shared_data):
    (msg,) = read_topic(tum_bag, '/camera/color/image_raw')
    assert msg.encoding == 'rgb8'
    rgb = image_to_rgb(msg)
    png = cv2.imread(str(shared_data / 'rgbd' / 'open3d_tum' / 'TUM_color.png'),
                     cv2.IMREAD_COLOR)
    assert rgb.shape == (480, 640, 3)
    assert np.array_equal(rgb, cv2.cvtColor(png, cv2.COLOR_BGR2RGB))
    assert np.shares_memory(rgb, msg.data)   # zero-copy decode


def test_tum_jpeg_close_to_raw(tum_bag):
    (raw,) = read_topic(tum_bag, '/camera/color/image_raw')
    (jpeg,) = read_topic(tum_bag, '/camera/color/image_raw/compressed')
    decoded = message_to_rgb(jpeg)
    reference = image_to_rgb(raw).astype(np.float64)
    assert decoded.shape == reference.shape
    error = np.abs(decoded.astype(np.float64) - reference)
    assert error.mean() < 3.0          # q95 JPEG
    # channel order: per-channel means agree (a BGR/RGB swap would not)
    assert np.allclose(decoded.reshape(-1, 3).mean(0), reference.reshape(-1, 3).mean(0),
                       atol=2.0)


def test_tum_depth_gt(tum_bag, shared_data):
    (msg,) = read_topic(tum_bag, '/camera/depth_registered/image_gt')
    depth = depth_to_metres(msg)
    png = cv2.imread(str(shared_data / 'rgbd' / 'open3d_tum' / 'TUM_depth.png'),
                     cv2.IMREAD_UNCHANGED)
    expected = np.where(png == 0, np.nan, png.astype(np.float32) / 5000)
    assert np.allclose(depth, expected, equal_nan=True, rtol=1e-6)
    assert 0.75 < np.isfinite(depth).mean() < 0.85


@pytest.mark.parametrize('camera', ['fisheye1', 'fisheye2'])
def test_t265_ros1_and_ros2_bags_agree(shared_data, camera):
    topic = f'/camera/{camera}/image_raw'
    ros1 = read_topic(shared_data / 'bags' / 't265_trimmed_locoffice.bag', topic)
    ros2 = read_topic(shared_data / 'bags' / 't265_trimmed_locoffice_ros2', topic)
    assert len(ros1) == len(ros2) == 3
    for one, two in zip(ros1, ros2):
        assert one.encoding == two.encoding == 'mono8'
        grey1, grey2 = image_to_array(one), image_to_array(two)
        assert grey1.shape == (800, 848)
        assert np.array_equal(grey1, grey2)
        assert 20 < grey1.mean() < 235 and grey1.std() > 5   # a real picture, not blank
        rgb = image_to_rgb(two)
        assert rgb.shape == (800, 848, 3) and np.array_equal(rgb[..., 1], grey2)


@pytest.mark.parametrize('storage', ['test_bag_mcap', 'test_bag_sqlite3'])
def test_malformed_synthetic_bags(shared_data, storage):
    path = shared_data / 'bags' / 'rosbags_rs_synthetic' / storage
    images = read_topic(path, '/test/sensor_msgs/image')
    assert images
    for msg in images:
        with pytest.raises(ImageFormatError) as info:
            image_to_rgb(msg)
        assert 'truncated' in str(info.value) and '30' in str(info.value)
        assert str(msg.step * msg.height) in str(info.value)
    compressed = read_topic(path, '/test/sensor_msgs/compressed_image')
    assert compressed
    for msg in compressed:
        with pytest.raises(CompressedImageError) as info:
            message_to_rgb(msg)
        assert isinstance(info.value, InputError)
        assert 'jpeg' in str(info.value)
