"""launch_testing integration test of depth_node on a real ROS 2 graph (ROS 2 machines only).

Starts the node with a tiny real ONNX model (ONNX Runtime on CPU), publishes an image and its
camera_info, and checks that depth/image, depth/camera_info and points arrive with the
image's stamp and frame; that best-effort and reliable subscribers both receive; and that the
lifecycle services drive the node. Run by `colcon test` (pytest with the launch_testing
plugin); skipped without ROS 2.
"""

import os
import tempfile
import time
import unittest

import numpy as np
import pytest

pytest.importorskip(
    'launch_testing', reason='launch_testing is not installed: source ROS 2 (Humble/Jazzy) and '
    'run `colcon test --packages-select depth_node`')
rclpy = pytest.importorskip('rclpy', reason='rclpy is not importable: source ROS 2')
if getattr(rclpy, 'STANDIN', False):
    pytest.skip('the rclpy stand-in is on sys.path, not a real ROS 2', allow_module_level=True)
pytest.importorskip('onnxruntime', reason='the launch test runs a tiny ONNX model: '
                    'pip install onnx onnxruntime')

import launch  # noqa: E402, I100
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy_standin.harness import build_tiny_onnx, K_TUM  # noqa: E402, I100
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

MODEL_DIR = tempfile.mkdtemp(prefix='depth_node_launch_test_')
FRAME = 'launch_test_optical_frame'


@pytest.mark.launch_test
def generate_test_description():
    model = build_tiny_onnx(os.path.join(MODEL_DIR, 'tiny.onnx'))
    node = launch_ros.actions.Node(
        package='depth_node', executable='depth_node', name='depth_node', output='screen',
        parameters=[{'model_file_path': str(model), 'backend': 'onnxruntime',
                     'autostart': True, 'sync_policy': 'exact'}],
        remappings=[('image', '/cam/image_raw'), ('camera_info', '/cam/camera_info')])
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), \
        {'depth_node': node}


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
        self.assertEqual((cloud.width, cloud.height), (64, 48))

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

    def test_exit_code(self, proc_info, depth_node):
        # SIGINT from launch: 0 after a clean shutdown (-2 if rclpy re-raises it)
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2],
                                               process=depth_node)
