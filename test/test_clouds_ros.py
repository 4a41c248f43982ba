"""Agreement with sensor_msgs_py.point_cloud2 on real rclpy messages (ROS 2 machine only)."""

from __future__ import annotations

from depth_node.clouds import depth_to_cloud, make_pointcloud2
import numpy as np
import pytest

point_cloud2 = pytest.importorskip('sensor_msgs_py.point_cloud2',
                                   reason='needs a ROS 2 installation (sensor_msgs_py)')


@pytest.fixture(scope='module')
def ros_factory():
    from depth_node.node import rclpy_factory
    return rclpy_factory()


@pytest.mark.parametrize('with_rgb', [False, True])
def test_read_points_agrees(ros_factory, with_rgb):
    height, width = 3, 5
    depth = np.arange(1, 16, dtype=np.float32).reshape(height, width)
    depth[1, 2] = np.nan
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    rays = np.stack([(u - 2) / 4, (v - 1) / 4, np.ones_like(u)], axis=-1)
    rgb = np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)
    cloud = depth_to_cloud(depth, rays, rgb=rgb if with_rgb else None)
    msg = make_pointcloud2(ros_factory, ros_factory.header(1, 2, 'cam'), cloud)
    names = ('x', 'y', 'z', 'rgb') if with_rgb else ('x', 'y', 'z')
    points = point_cloud2.read_points(msg, field_names=names, skip_nans=False)
    flat = cloud.reshape(-1, len(names))
    for index, name in enumerate(names):
        got = np.asarray(points[name], dtype=np.float32).reshape(-1)
        assert np.array_equal(got.view(np.uint32), flat[:, index].view(np.uint32)) or \
            np.array_equal(got, flat[:, index], equal_nan=True)
    # the same layout sensor_msgs_py builds itself from an (H*W,) structured array
    reference = point_cloud2.create_cloud(msg.header, msg.fields,
                                          [tuple(p) for p in flat.tolist()])
    assert reference.point_step == msg.point_step
    assert [f.name for f in reference.fields] == [f.name for f in msg.fields]
    assert len(point_cloud2.read_points_list(msg, skip_nans=True)) == height * width - 1


@pytest.mark.parametrize('check_fields', ['0', '1'])
def test_cloud_and_depth_payloads_go_into_rclpy_messages_without_a_copy(ros_factory,
                                                                        monkeypatch,
                                                                        check_fields):
    """The cloud is written into the published payload: not copied by the message classes.

    rclpy's classes copy a uint8[] value in the constructor and, with unchecked fields (the
    Jazzy default, ROS_PYTHON_CHECK_FIELDS=0), again in the setter.
    """
    from depth_node.clouds import cloud_buffer
    from depth_node.images import make_depth_image
    import sensor_msgs.msg._point_cloud2 as generated
    if hasattr(generated, 'ros_python_check_fields'):
        monkeypatch.setattr(generated, 'ros_python_check_fields', check_fields)
    depth = np.full((48, 64), 2.0, np.float32)
    rays = np.zeros((48, 64, 3), np.float32)
    rays[..., 2] = 1.0
    buffer, payload = cloud_buffer(ros_factory, depth.shape)
    cloud = depth_to_cloud(depth, rays, out=buffer)
    msg = make_pointcloud2(ros_factory, ros_factory.header(1, 2, 'cam'), cloud, payload)
    assert msg.data is payload
    assert np.shares_memory(np.frombuffer(msg.data, np.uint8), buffer)
    assert getattr(msg, '_check_fields', None) in (None, check_fields == '1')
    image = make_depth_image(ros_factory, msg.header, depth, '32FC1')
    assert np.array_equal(np.frombuffer(image.data, np.float32), depth.reshape(-1))
    assert getattr(image, '_check_fields', None) in (None, False, True)
