"""main(): one-line exit without ROS; clean spin/shutdown on the rclpy STAND-IN."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import threading
import time

import pytest
from rclpy_standin import harness, real_ros_available

REPO = Path(__file__).resolve().parents[1]
EXPECTED = ('depth_node: ROS 2 is not sourced (rclpy not importable): source '
            '/opt/ros/<distro>/setup.bash, or use `depth-node bag` for offline processing')

no_ros = pytest.mark.skipif(real_ros_available(),
                            reason='a real rclpy is importable here (ROS 2 is sourced)')


def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH')}
    env['PYTHONPATH'] = str(REPO)
    return env


@no_ros
@pytest.mark.parametrize('code', [
    'from depth_node.node import main; main()',
    # what the setuptools console script `depth_node` runs
    'import sys; from depth_node.node import main; sys.exit(main())',
    'import runpy; runpy.run_module("depth_node.node", run_name="__main__")',
])
def test_without_ros_one_line_and_exit_1(code):
    cmd = [sys.executable, '-c', code]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=clean_env(),
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ''
    assert proc.stderr.splitlines() == [EXPECTED]
    assert 'Traceback' not in proc.stderr


@no_ros
def test_installed_executable_without_ros():
    exe = shutil.which('depth_node')
    if exe is None:
        pytest.skip('the depth_node console script is not installed (pip install -e .)')
    proc = subprocess.run([exe], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 1 and proc.stdout == ''
    assert proc.stderr.splitlines() == [EXPECTED]


def test_node_module_imports_without_ros():
    code = ('import sys, depth_node.node as n; '
            'print(n.rclpy is None, n.NOT_SOURCED == n.NOT_SOURCED, "rclpy" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO, env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    if not real_ros_available():
        assert proc.stdout.split() == ['True', 'True', 'False']


def test_main_spins_and_shuts_down_cleanly_on_standin():
    pytest.importorskip('rosbags', reason='the rclpy stand-in builds messages with rosbags')
    with harness.standin_session() as node_module:
        import rclpy
        rclpy.try_shutdown()                 # main() calls rclpy.init() itself
        created = []
        original = node_module.DepthNode

        class Recording(original):

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                created.append(self)
        node_module.DepthNode = Recording
        result = {}
        try:
            thread = threading.Thread(target=lambda: result.setdefault(
                'rc', node_module.main(args=[])))
            thread.start()
            deadline = time.monotonic() + 10
            while not (created and created[0].transitions) and time.monotonic() < deadline:
                time.sleep(0.01)
            # autostart ran (configure fails: no model_file_path) and the node kept spinning
            expected = [('configure', 'failure', 'unconfigured')]
            assert created and created[0].transitions == expected
            assert thread.is_alive()
            rclpy.shutdown()                  # Ctrl-C / external shutdown
            thread.join(10)
            assert not thread.is_alive() and result['rc'] == 0
            assert created[0].destroyed and not rclpy.ok()
        finally:
            node_module.DepthNode = original
            rclpy.init()                      # the session's try_shutdown expects a context


def test_main_reports_bad_parameter_overrides_in_one_line(capsys):
    pytest.importorskip('rosbags', reason='the rclpy stand-in builds messages with rosbags')
    with harness.standin_session() as node_module:
        import rclpy
        from rclpy.exceptions import InvalidParameterTypeException
        from rclpy.parameter import Parameter
        rclpy.try_shutdown()
        original = node_module.DepthNode

        def bad_yaml(*args, **kwargs):       # what `min_range: 1` in a params file causes
            return original(parameter_overrides=[Parameter('min_range', value=1)])
        node_module.DepthNode = bad_yaml
        try:
            assert node_module.main(args=[]) == 1
        finally:
            node_module.DepthNode = original
            rclpy.init()
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and InvalidParameterTypeException.__name__ in err[0]
        assert 'min_range' in err[0] and 'cannot start' in err[0]
