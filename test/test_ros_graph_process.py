"""The node in its own process on a real ROS 2 graph: the colcon install, ros2 run, signals.

The package is built with ``colcon build`` into a temporary workspace (what users do), the node
is started from that install as ``ros2 run depth_node depth_node --ros-args ...`` or as the
installed console script, a camera in this process replays the real TUM frame at 10 Hz with
camera_info arriving 20 ms after each image, and the test checks the outputs, ``ros2 lifecycle``
and ``ros2 param`` against the running node, and that SIGINT, SIGTERM and a double SIGINT while
frames stream end the node with status 0 and no traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading
import time

from node_helpers import build_tiny_onnx, camera_info, rgb_image
import numpy as np
import pytest
import ros_graph

ros_graph.require_rclpy()
pytest.importorskip('onnxruntime',
                    reason='the node runs a tiny ONNX model: pip install onnxruntime')
cv2 = pytest.importorskip('cv2')

REPO = ros_graph.REPO
BIN = Path(sys.executable).parent
FRAME_ID = 'tum_rgb_optical_frame'
BAD_OUTPUT = ('Traceback', 'internal_error', 'Failed to publish log message',
              'KeyboardInterrupt', 'RCLError')


@pytest.fixture(scope='module')
def install(tmp_path_factory):
    """Build this package with colcon into a temporary workspace; returns the install prefix."""
    colcon = shutil.which('colcon') or str(BIN / 'colcon')
    if not os.path.exists(colcon):
        pytest.skip('colcon is not installed (pip install colcon-common-extensions colcon-ros)')
    prebuilt = os.environ.get('DEPTH_NODE_INSTALL_PREFIX')
    if prebuilt:
        return Path(prebuilt)
    ws = tmp_path_factory.mktemp('colcon_ws')
    src = ws / 'src' / 'depth_node'
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'build', 'install', 'log', '__pycache__', '*.egg-info', '.ruff_cache',
        '.pytest_cache', '.hypothesis', 'examples'))
    proc = subprocess.run([colcon, 'build', '--event-handlers', 'console_direct-'], cwd=ws,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ws / 'install' / 'depth_node'


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return build_tiny_onnx(tmp_path_factory.mktemp('model') / 'tiny.onnx')


@pytest.fixture(scope='module')
def tum_rgb(shared_data):
    bgr = cv2.imread(str(shared_data / 'rgbd' / 'open3d_tum' / 'TUM_color.png'))
    return np.ascontiguousarray(bgr[:, :, ::-1])


def node_env(install, tmp_path):
    env = ros_graph.isolated_env(tmp_path / 'ros_log')
    site = next((install / 'lib').glob('python3*/site-packages'))
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(
        [str(install)] + [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p])
    env['PYTHONPATH'] = os.pathsep.join(
        [str(site)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    env['PATH'] = os.pathsep.join([str(BIN), env.get('PATH', '')])
    return env


class Stream:
    """Replays the TUM frame at ``rate_hz``; camera_info follows each image after ``lag_s``."""

    def __init__(self, graph, rgb, rate_hz=10.0, lag_s=0.02, namespace='/cam'):
        self.camera = ros_graph.Camera(graph, namespace=namespace, image_topic='image_raw',
                                       name='replay_camera')
        self.graph, self.rgb, self.period, self.lag = graph, rgb, 1.0 / rate_hz, lag_s
        self.sent: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        factory = self.graph.factory
        while not self._stop.is_set():
            ns = time.time_ns()
            stamp = (ns // 1_000_000_000, ns % 1_000_000_000)
            self.camera.image_pub.publish(rgb_image(factory, self.rgb, stamp, FRAME_ID))
            time.sleep(self.lag)
            self.camera.info_pub.publish(camera_info(factory, stamp, FRAME_ID))
            self.sent.append(stamp)
            time.sleep(max(0.0, self.period - self.lag))

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5.0)


def start_node(cmd, env, tmp_path):
    log = open(tmp_path / 'node.log', 'w+')   # noqa: SIM115 - read after the process ends
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log


def finish(proc, log, timeout=30.0):
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait(5)
    log.seek(0)
    return rc, log.read()


def node_args(model, extra=()):
    return ['--ros-args', '-r', 'image:=/cam/image_raw', '-r', 'camera_info:=/cam/camera_info',
            '-p', f'model_file_path:={model}', '-p', 'backend:=onnxruntime',
            '-p', 'point_decimation:=2', *extra]


def stamp_of(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def ros2(env, *args, timeout=60, spin_times=(2, 2, 4, 8, 16)):
    """Run a ros2 CLI verb without the daemon (none is left running); retry "Node not found".

    Without a daemon the verb discovers the graph for the whole spin time; on a loaded machine
    discovery takes longer, so each retry waits longer.
    """
    for spin_time in spin_times:
        proc = subprocess.run([str(BIN / 'ros2'), *args, '--no-daemon',
                               '--spin-time', str(spin_time)],
                              env=env, capture_output=True, text=True, timeout=timeout)
        if 'not found' not in proc.stderr.lower():
            return proc
    return proc


def test_ros2_run_serves_frames_lifecycle_and_params(install, graph, model, tum_rgb, tmp_path):
    env = node_env(install, tmp_path)
    proc, log = start_node([str(BIN / 'ros2'), 'run', 'depth_node', 'depth_node',
                            *node_args(model)], env, tmp_path)
    col = ros_graph.Collector(graph, {'/depth/image': 'Image', '/points': 'PointCloud2'},
                              name='process_collector')
    stream = Stream(graph, tum_rgb)
    try:
        stream.camera.wait_for_subscribers(timeout=60)
        stream.start()
        depth = col.wait('/depth/image', 3, timeout=60)
        cloud = col.wait('/points', 1, timeout=30)[0]
        sent = set(stream.sent)
        for msg in depth:
            assert stamp_of(msg) in sent and msg.header.frame_id == FRAME_ID
            assert (msg.width, msg.height, msg.encoding) == (640, 480, '32FC1')
        assert (cloud.height, cloud.width) == (240, 320)          # point_decimation 2
        state = ros2(env, 'lifecycle', 'get', '/depth_node')
        assert state.returncode == 0 and state.stdout.startswith('active'), state
        got = ros2(env, 'param', 'get', '/depth_node', 'max_range')
        assert got.returncode == 0 and '20.0' in got.stdout, got
        done = ros2(env, 'param', 'set', '/depth_node', 'max_range', '15.0')
        assert 'Set parameter successful' in done.stdout, done
        refused = ros2(env, 'param', 'set', '/depth_node', 'min_range', '-1.0')
        assert 'parameter failed' in refused.stdout + refused.stderr, refused
        assert 'min_range' in refused.stdout + refused.stderr
        assert ros2(env, 'param', 'get', '/depth_node', 'max_range').stdout.strip().endswith(
            '15.0')
        down = ros2(env, 'lifecycle', 'set', '/depth_node', 'deactivate')
        assert 'Transitioning successful' in down.stdout, down
        assert ros2(env, 'lifecycle', 'get', '/depth_node').stdout.startswith('inactive')
    finally:
        stream.stop()
        os.killpg(proc.pid, signal.SIGINT)        # Ctrl-C reaches the terminal's process group
        rc, out = finish(proc, log)
    assert rc == 0, out[-3000:]
    assert not [b for b in BAD_OUTPUT if b in out], out[-3000:]


@pytest.mark.parametrize('signals', [
    (signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT),
    (signal.SIGTERM, signal.SIGINT)], ids=['sigint', 'sigterm', 'double-sigint',
                                           'sigterm-then-sigint'])
def test_signals_while_streaming_end_cleanly(install, graph, model, tum_rgb, tmp_path,
                                             signals):
    env = node_env(install, tmp_path)
    exe = install / 'lib' / 'depth_node' / 'depth_node'
    proc, log = start_node([str(exe), *node_args(model)], env, tmp_path)
    col = ros_graph.Collector(graph, {'/depth/image': 'Image', '/points': 'PointCloud2'},
                              name=f'signal_collector_{len(signals)}_{signals[0]}')
    stream = Stream(graph, tum_rgb, rate_hz=30.0, lag_s=0.005)
    try:
        stream.camera.wait_for_subscribers(timeout=60)
        stream.start()
        col.wait('/depth/image', 3, timeout=60)       # frames are streaming through the node
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.05)
        rc, out = finish(proc, log)
    finally:
        stream.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 0, out[-3000:]
    assert not [b for b in BAD_OUTPUT if b in out], out[-3000:]


def test_installed_launch_file_under_launch_testing(install, model, tmp_path):
    env = node_env(install, tmp_path)
    env['DEPTH_NODE_TEST_MODEL'] = str(model)
    launch_test = shutil.which('launch_test') or str(BIN / 'launch_test')
    proc = subprocess.run([launch_test, str(REPO / 'test' / 'launch' / 'depth_node_launch.py')],
                          env=env, capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'Ran 3 tests' in out and 'Ran 1 test' in out, out[-4000:]
    assert not [b for b in BAD_OUTPUT if b in out], out[-4000:]
