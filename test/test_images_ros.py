"""Agreement with cv_bridge on real rclpy messages (runs only on a ROS 2 machine)."""

from __future__ import annotations

from depth_node.images import depth_to_metres, image_to_rgb, make_depth_image, make_image
import numpy as np
import pytest

cv_bridge = pytest.importorskip('cv_bridge', reason='needs a ROS 2 installation (cv_bridge)')
sensor_msgs_msg = pytest.importorskip('sensor_msgs.msg',
                                      reason='needs a ROS 2 installation (sensor_msgs)')


@pytest.fixture(scope='module')
def ros_factory():
    from depth_node.node import rclpy_factory
    return rclpy_factory()


@pytest.mark.parametrize('encoding,channels', [
    ('rgb8', 3), ('bgr8', 3), ('rgba8', 4), ('bgra8', 4), ('mono8', 1), ('yuv422', 2),
    ('bayer_rggb8', 1), ('bayer_bggr8', 1), ('bayer_gbrg8', 1), ('bayer_grbg8', 1)])
def test_rgb_matches_cv_bridge(ros_factory, encoding, channels):
    rng = np.random.default_rng(0)
    shape = (12, 16) if channels == 1 else (12, 16, channels)
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    msg = make_image(ros_factory, ros_factory.header(1, 2, 'cam'), array, encoding)
    ours = image_to_rgb(msg)
    theirs = cv_bridge.CvBridge().imgmsg_to_cv2(msg, desired_encoding='rgb8')
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_depth_matches_cv_bridge(ros_factory, encoding):
    depth = np.linspace(0.5, 5.0, 6 * 8, dtype=np.float32).reshape(6, 8)
    msg = make_depth_image(ros_factory, ros_factory.header(1, 2, 'cam'), depth, encoding)
    theirs = cv_bridge.CvBridge().imgmsg_to_cv2(msg, desired_encoding='passthrough')
    scale = 0.001 if encoding == '16UC1' else 1.0
    assert np.allclose(depth_to_metres(msg), theirs.astype(np.float32) * scale)
