"""launch_testing test of depth_node started by the INSTALLED launch/depth.launch.py.

Not collected by pytest directly: ``test/test_ros_graph_process.py`` runs it with the
``launch_test`` command against a ``colcon build`` install of the package (the path users
take), on an isolated graph. It includes ``share/depth_node/launch/depth.launch.py`` with a tiny
real ONNX model (``$DEPTH_NODE_TEST_MODEL``, ONNX Runtime on CPU) and the package's Fast DDS
profile (``dds_profile:=fastdds``), publishes images and camera_info, and checks that
depth/image, depth/camera_info and points arrive with the image's stamp and frame; that
best-effort and reliable subscribers both receive; that the lifecycle services drive the node;
and that it exits with status 0 when launch stops it.
"""

import os
from pathlib import Path
import sys
import time
import unittest

from ament_index_python.packages import get_package_share_directory
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing.actions
import launch_testing.asserts
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from node_helpers import build_tiny_onnx, K_TUM  # noqa: E402, I100

FRAME = 'launch_test_optical_frame'


def tiny_model():
    """Return the model named by $DEPTH_NODE_TEST_MODEL, or a fresh tiny ONNX model."""
    path = os.environ.get('DEPTH_NODE_TEST_MODEL')
    if path:
        return path
    import tempfile
    return str(build_tiny_onnx(Path(tempfile.mkdtemp(prefix='depth_node_launch_')) /
                               'tiny.onnx'))


@pytest.mark.launch_test
def generate_test_description():
    """Include the installed launch file with a tiny model and the Fast DDS profile."""
    launch_file = os.path.join(get_package_share_directory('depth_node'), 'launch',
                               'depth.launch.py')
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={'image': '/cam/image_raw', 'model_file_path': tiny_model(),
                          'backend': 'onnxruntime', 'dds_profile': 'fastdds',
                          'autostart': 'true'}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


def make_inputs(stamp):
    image = Image()
    image.header.stamp = stamp
    image.header.frame_id = FRAME
    image.height, image.width, image.encoding, image.step = 48, 64, 'rgb8', 64 * 3
    rng = np.random.default_rng(0)
    image.data = rng.integers(0, 255, 48 * 64 * 3, dtype=np.uint8).tobytes()
    info = CameraInfo()
    info.header = image.header
    info.height, info.width = 48, 64
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    k = np.array(K_TUM) * np.array([0.1, 1, 0.1, 1, 0.1, 0.1, 1, 1, 1])
    info.k = k.tolist()
    info.r = np.eye(3).reshape(-1).tolist()
    info.p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return image, info


class TestDepthNode(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('depth_node_tester')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def wait_state(self, label, timeout=60.0):
        client = self.node.create_client(GetState, '/depth_node/get_state')
        self.assertTrue(client.wait_for_service(timeout_sec=timeout))
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            future = client.call_async(GetState.Request())
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=5.0)
            state = future.result().current_state.label if future.result() else None
            if state == label:
                return state
            time.sleep(0.2)
        self.fail(f'depth_node stayed in state {state!r}, expected {label!r}')

    def exchange(self, topics, reliability=ReliabilityPolicy.RELIABLE, timeout=30.0):
        received = {name: [] for name in topics}
        qos = QoSProfile(depth=5, reliability=reliability)
        subs = [self.node.create_subscription(cls, name, received[name].append, qos)
                for name, cls in topics.items()]
        pub_image = self.node.create_publisher(Image, '/cam/image_raw', 5)
        pub_info = self.node.create_publisher(CameraInfo, '/cam/camera_info', 5)
        deadline = time.monotonic() + timeout
        stamp = None
        while time.monotonic() < deadline and not all(received.values()):
            stamp = self.node.get_clock().now().to_msg()
            image, info = make_inputs(stamp)
            pub_info.publish(info)
            pub_image.publish(image)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                rclpy.spin_once(self.node, timeout_sec=0.05)
        for sub in subs:
            self.node.destroy_subscription(sub)
        self.node.destroy_publisher(pub_image)
        self.node.destroy_publisher(pub_info)
        for name, msgs in received.items():
            self.assertTrue(msgs, f'nothing received on {name}')
        return received

    def test_1_outputs_carry_the_image_stamp(self):
        self.wait_state('active')
        got = self.exchange({'/depth/image': Image, '/depth/camera_info': CameraInfo,
                             '/points': PointCloud2})
        stamps = {name: {(m.header.stamp.sec, m.header.stamp.nanosec) for m in msgs}
                  for name, msgs in got.items()}
        common = set.intersection(*stamps.values())
        self.assertTrue(common, f'no stamp common to all outputs: {stamps}')
        for msgs in got.values():
            self.assertEqual(msgs[-1].header.frame_id, FRAME)
        depth = got['/depth/image'][-1]
        self.assertEqual((depth.width, depth.height, depth.encoding), (64, 48, '32FC1'))
        cloud = got['/points'][-1]
        # config/depth_node.yaml (the launch file's params_file) sets point_decimation 2
        self.assertEqual((cloud.width, cloud.height), (32, 24))

    def test_2_best_effort_and_reliable_subscribers(self):
        self.wait_state('active')
        for reliability in (ReliabilityPolicy.BEST_EFFORT, ReliabilityPolicy.RELIABLE):
            self.exchange({'/depth/image': Image}, reliability=reliability)

    def test_3_lifecycle_transitions(self):
        self.wait_state('active')
        client = self.node.create_client(ChangeState, '/depth_node/change_state')
        self.assertTrue(client.wait_for_service(timeout_sec=30.0))
        for label, state in (('deactivate', 'inactive'), ('cleanup', 'unconfigured'),
                             ('configure', 'inactive'), ('activate', 'active')):
            request = ChangeState.Request()
            request.transition.label = label
            future = client.call_async(request)
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=60.0)
            self.assertTrue(future.result() and future.result().success, label)
            self.wait_state(state)
        self.exchange({'/depth/image': Image})


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_code(self, proc_info):
        # launch stops the node with SIGINT: a clean shutdown is status 0
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
