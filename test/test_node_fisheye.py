"""DepthNode on a real ROS 2 graph with a raw fisheye camera (issue 10 point 8).

The real T265 equidistant calibration as camera_info: the node warns once on /rosout that a
raw fisheye image goes into a pinhole-trained network, and depth/image is NaN where the
camera model has no ray (outside the image circle), frame after frame.
"""

from __future__ import annotations

import numpy as np
import pytest
import ros_graph

ros_graph.require_rclpy()

from camera_helpers import calibration  # noqa: E402, I100
from depth_node.calibration import load_calibration  # noqa: E402
from depth_node.pipeline import no_ray_mask  # noqa: E402
import node_helpers as helpers  # noqa: E402

WARN = 30


@pytest.fixture
def rig(graph):
    node = graph.depth_node(model=helpers.FakeModel(depth_m=2.0))
    assert node.trigger_configure().name == 'SUCCESS'
    assert node.trigger_activate().name == 'SUCCESS'
    col = ros_graph.Collector(graph, {'depth/image': 'Image', '/rosout': 'Log'})
    cam = ros_graph.Camera(graph)
    cam.wait_for_subscribers()
    col.wait_for_publishers('depth/image')
    ros_graph.wait_for(lambda: node._outputs['depth/image'].get_subscription_count() > 0)
    yield node, cam, col
    graph.remove_all()


def test_raw_fisheye_is_warned_once_and_nan_outside_the_image_circle(rig, graph, shared_data):
    node, cam, col = rig
    camera = load_calibration(calibration(shared_data, 't265_fisheye1_equidistant.yaml'),
                              frame_id='fisheye1_optical_frame')
    mask = no_ray_mask(camera)
    factory = graph.factory
    rgb = np.where(mask[..., None], 0, 128).astype(np.uint8).repeat(3, axis=2)
    for second in (1, 2, 3):
        header = factory.header(second, 0, camera.frame_id)
        cam.info_pub.publish(camera.to_camera_info(factory, header))
        cam.image_pub.publish(helpers.rgb_image(factory, rgb, (second, 0), camera.frame_id))
        col.wait('depth/image', second)
    for msg in col.messages['depth/image']:
        depth = np.frombuffer(bytes(msg.data), np.float32).reshape(mask.shape)
        assert np.isnan(depth[mask]).all()
        assert np.isfinite(depth[~mask]).mean() > 0.95
    ros_graph.sync_rosout(col, node)
    warned = ros_graph.log_lines(col, level=WARN, contains='equidistant (fisheye)')
    assert len(warned) == 1, warned
    assert 'image_is_rectified' in warned[0]
