"""main(): one-line exit without ROS; on a real ROS 2 graph, spin and a clean shutdown.

"Without ROS" is made real in any environment: the subprocess finds, first on its path, an
``rclpy`` package whose import fails, as on a machine where ROS 2 is not sourced.
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

import pytest
import ros_graph

REPO = Path(__file__).resolve().parents[1]
EXPECTED = ('depth_node: ROS 2 is not sourced (rclpy not importable): source '
            '/opt/ros/<distro>/setup.bash, or use `depth-node bag` for offline processing')
MAIN = 'import sys; from depth_node.node import main; sys.exit(main())'


@pytest.fixture(scope='module')
def no_ros_env(tmp_path_factory):
    """Return an environment where ``import rclpy`` fails (ROS 2 not sourced)."""
    blocker = tmp_path_factory.mktemp('no_ros')
    (blocker / 'rclpy').mkdir()
    (blocker / 'rclpy' / '__init__.py').write_text(
        "raise ImportError('No module named rclpy (ROS 2 is not sourced)')\n")
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH')}
    env['PYTHONPATH'] = os.pathsep.join([str(blocker), str(REPO)])
    return env


@pytest.mark.parametrize('code', [
    'from depth_node.node import main; main()',
    # what the setuptools console script `depth_node` runs
    MAIN,
    'import runpy; runpy.run_module("depth_node.node", run_name="__main__")',
])
def test_without_ros_one_line_and_exit_1(code, no_ros_env):
    cmd = [sys.executable, '-c', code]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=no_ros_env,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ''
    assert proc.stderr.splitlines() == [EXPECTED]
    assert 'Traceback' not in proc.stderr


def test_installed_executable_without_ros(no_ros_env):
    exe = shutil.which('depth_node')
    if exe is None:
        pytest.skip('the depth_node console script is not installed (pip install -e .)')
    proc = subprocess.run([exe], capture_output=True, text=True, env=no_ros_env, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ''
    assert proc.stderr.splitlines() == [EXPECTED]


def test_node_module_imports_without_ros(no_ros_env):
    code = ('import sys, depth_node.node as n; '
            'print(n.rclpy is None, n.NOT_SOURCED == n.NOT_SOURCED, "rclpy" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO, env=no_ros_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['True', 'True', 'False']


class Running:
    """``main()`` in its own process on an isolated graph, its stderr read as it comes."""

    def __init__(self, *ros_args: str) -> None:
        env = ros_graph.isolated_env()
        env['PYTHONPATH'] = str(REPO)
        self.proc = subprocess.Popen(
            [sys.executable, '-c', MAIN, '--ros-args', *ros_args], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip('\n'))

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        return ros_graph.wait_for(lambda: next((x for x in self.lines if text in x), None),
                                  timeout, f'{text!r} on stderr (got {self.lines})')

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5.0)
        return rc, '\n'.join(self.lines)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_main_spins_and_shuts_down_cleanly(sig):
    ros_graph.require_rclpy()
    run = Running()
    try:
        # autostart ran (configure fails: no model_file_path) and the node kept spinning
        run.wait_for_line('autostart: configure failed')
        assert any('model_file_path is empty' in x for x in run.lines)
        time.sleep(0.2)
        assert run.proc.poll() is None
        run.proc.send_signal(sig)                # Ctrl-C / `kill` / launch's shutdown
    finally:
        rc, err = run.finish()
    assert rc == 0, err
    assert 'Traceback' not in err and 'internal_error' not in err


def test_main_reports_bad_parameter_overrides_in_one_line():
    ros_graph.require_rclpy()
    run = Running('-p', 'min_range:=1')          # what `min_range: 1` in a params file does
    rc, err = run.finish()
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert 'InvalidParameterTypeException' in lines[0]
    assert 'min_range' in lines[0] and 'cannot start' in lines[0]


def test_a_node_whose_init_raised_can_still_be_destroyed():
    """Kilted's context destroys its nodes at shutdown, also one whose __init__ raised."""
    ros_graph.require_rclpy()
    from rclpy.exceptions import InvalidParameterTypeException
    with ros_graph.session() as graph:
        node_class = graph.node_module.DepthNode

        class DestroyedOnFailure(node_class):

            def __init__(self, **kwargs):
                try:
                    super().__init__(**kwargs)
                except InvalidParameterTypeException:
                    self.destroy_node()     # what rclpy 9's Context._cleanup() does
                    raise

        graph.node_module.DepthNode = DestroyedOnFailure
        try:
            with pytest.raises(InvalidParameterTypeException, match='min_range'):
                graph.depth_node(min_range=1)
        finally:
            graph.node_module.DepthNode = node_class
