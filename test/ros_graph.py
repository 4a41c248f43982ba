"""A real ROS 2 graph for the node tests (PyPI ROS 2 Jazzy rclpy and Fast DDS); not a test module.

Every test process gets its own isolated graph: a ``ROS_DOMAIN_ID`` of its own, discovery
limited to this machine, logs in a temporary folder and the package's Fast DDS profile for
large images (``config/fastdds_large_images.xml``). :func:`session` starts rclpy in this
process with a multi-threaded executor spinning in the background, so DepthNode, a camera
replaying frames and collectors talk over real DDS, with real callback order, QoS matching and
signal handling. :func:`isolated_env` gives the same settings to a node started in its own
process (``ros2 run``, ``ros2 launch``, ``launch_test``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
import os
from pathlib import Path
import tempfile
import threading
import time
from typing import Any

from depth_node.dds import fastdds_environment
import pytest

REPO = Path(__file__).resolve().parents[1]
FASTDDS_PROFILE = REPO / 'config' / 'fastdds_large_images.xml'

_DOMAIN_ID: int | None = None


def domain_id() -> int:
    """Return this test process's ROS_DOMAIN_ID (1-100, stable within the process)."""
    global _DOMAIN_ID
    if _DOMAIN_ID is None:
        _DOMAIN_ID = 1 + os.getpid() % 100   # concurrent test processes differ
    return _DOMAIN_ID


def isolated_env(log_dir: str | os.PathLike | None = None,
                 base: dict[str, str] | None = None, domain: int | None = None) -> dict[str, str]:
    """Return an environment for an isolated ROS 2 graph on this machine."""
    env = dict(os.environ if base is None else base)
    log_dir = str(log_dir or tempfile.mkdtemp(prefix='depth_node_ros_log_'))
    env.update({
        'ROS_DOMAIN_ID': str(domain_id() if domain is None else domain),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_LOG_DIR': log_dir,
        'ROS_HOME': log_dir,
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'RCUTILS_LOGGING_BUFFERED_STREAM': '0',
        'PYTHONUNBUFFERED': '1',
    })
    env.update(fastdds_environment(FASTDDS_PROFILE, env))
    env.pop('ROS_LOCALHOST_ONLY', None)
    return env


def require_rclpy() -> Any:
    """Import the real rclpy or skip the test with the reason."""
    return pytest.importorskip(
        'rclpy', reason='a real ROS 2 rclpy is not importable: install the PyPI ROS 2 Jazzy '
        'wheels as .ci/run does (ros-jazzy-rclpy[fastrtps], ../shared/ros2-wheels)')


class Graph:
    """rclpy initialised in this process, with an executor spinning on a background thread."""

    def __init__(self) -> None:
        rclpy = require_rclpy()
        import depth_node.node as node_module
        from rclpy.executors import MultiThreadedExecutor
        os.environ.update(isolated_env())
        self.rclpy = rclpy
        self.node_module = node_module
        self.context = rclpy.Context()
        rclpy.init(context=self.context,
                   signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
        self.factory = node_module.rclpy_factory()
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self._nodes: list[Any] = []
        self._cycles = 0
        #: exceptions the background executor raised (it spins on after them)
        self.spin_errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._spin, name='ros_graph_spin', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception as exc:  # noqa: BLE001 - keep spinning the graph's other nodes
                if not self.context.ok():   # the context was shut down under the executor
                    break
                self.spin_errors.append(exc)
                import sys
                import traceback
                print('ros_graph: executor: ' + ''.join(traceback.format_exception(exc)),
                      file=sys.stderr)
            self._cycles += 1

    def add(self, node: Any) -> Any:
        """Spin ``node`` on the background executor; returns it."""
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def depth_node(self, model: Any = None, **overrides: Any) -> Any:
        """Create a DepthNode (not started unless ``autostart=True``) with parameter overrides."""
        from node_helpers import opener_for
        from rclpy.parameter import Parameter
        overrides.setdefault('autostart', False)
        overrides.setdefault('model_file_path', 'zoo-model')
        namespace = overrides.pop('namespace', None)
        spin = overrides.pop('spin', True)
        kwargs = {'namespace': namespace} if namespace else {}
        if overrides.get('cli_args') is not None:
            kwargs['cli_args'] = overrides.pop('cli_args')
        overrides.pop('cli_args', None)
        node = self.node_module.DepthNode(
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
            model_opener=opener_for(model) if model is not None else None,
            context=self.context, **kwargs)
        if not spin:    # spun later with :meth:`spin` (e.g. to watch autostart from the start)
            self._nodes.append(node)
            return node
        return self.add(node)

    def spin(self, node: Any) -> Any:
        """Start spinning a node made with ``depth_node(..., spin=False)``; returns it."""
        self.executor.add_node(node)
        return node

    def plain_node(self, name: str, namespace: str | None = None) -> Any:
        """Create a plain rclpy node on this graph."""
        kwargs = {'namespace': namespace} if namespace else {}
        return self.add(self.rclpy.create_node(name, context=self.context, **kwargs))

    def remove_all(self) -> None:
        """Destroy every node created through this graph.

        The nodes leave the executor first, and are destroyed once its wait set no longer holds
        them: rclpy defers destroying a node in use, and a node named like one not destroyed
        yet shares (and then loses) that node's /rosout publisher.
        """
        for node in self._nodes:
            try:
                self.executor.remove_node(node)
            except Exception:  # noqa: BLE001
                pass
        if self._nodes and self._thread.is_alive():
            cycles = self._cycles
            self.executor.wake()
            wait_for(lambda: self._cycles >= cycles + 2 or not self._thread.is_alive(), 5.0,
                     'the executor to let go of the nodes')
        for node in reversed(self._nodes):
            node.destroy_node()
            # rclpy's LifecycleNode.destroy_node leaves its state machine, which holds the rcl
            # node (and its /rosout registration) until garbage collection: free it now
            machine = getattr(node, '_state_machine', None)
            if machine is not None:
                machine.destroy_when_not_in_use()
        self._nodes.clear()

    def close(self) -> None:
        """Destroy the nodes and shut rclpy down."""
        self.remove_all()
        self.rclpy.try_shutdown(context=self.context)
        self._thread.join(5.0)


@contextmanager
def session() -> Iterator[Graph]:
    """Start a real graph for a test module; yields the :class:`Graph`."""
    graph = Graph()
    try:
        yield graph
    finally:
        graph.close()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = '') -> Any:
    """Poll ``condition`` until it returns something true; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what or condition}')
        time.sleep(0.01)


def qos(kind: str = 'reliable', depth: int = 5) -> Any:
    """Reliable | best_effort | transient_local (reliable + transient local) QoS profiles."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    if kind == 'best_effort':
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)
    if kind == 'transient_local':
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


CLASSES = {
    'Image': ('sensor_msgs.msg', 'Image'),
    'CompressedImage': ('sensor_msgs.msg', 'CompressedImage'),
    'CameraInfo': ('sensor_msgs.msg', 'CameraInfo'),
    'PointCloud2': ('sensor_msgs.msg', 'PointCloud2'),
    'DiagnosticArray': ('diagnostic_msgs.msg', 'DiagnosticArray'),
    'Log': ('rcl_interfaces.msg', 'Log'),
    'TransitionEvent': ('lifecycle_msgs.msg', 'TransitionEvent'),
}


def message_class(name: str) -> Any:
    """Return a message class by short name (Image, CameraInfo, PointCloud2, ...)."""
    import importlib
    module, cls = CLASSES[name]
    return getattr(importlib.import_module(module), cls)


class Collector:
    """A node subscribed to topics, collecting what arrives (thread-safe)."""

    def __init__(self, graph: Graph, topics: dict[str, str], namespace: str | None = None,
                 reliability: str = 'reliable', name: str = 'collector') -> None:
        self.node = graph.plain_node(name, namespace)
        self.messages: dict[str, list] = {t: [] for t in topics}
        self.received_ns: dict[str, list[int]] = {t: [] for t in topics}
        self._cond = threading.Condition()
        self.subs = {}
        for topic, cls in topics.items():
            # /rosout is transient local (depth 1000): lines logged before discovery arrive too
            profile = qos('transient_local', 1000) if cls == 'Log' else qos(reliability)
            self.subs[topic] = self.node.create_subscription(
                message_class(cls), topic, lambda msg, t=topic: self._got(t, msg), profile)

    def _got(self, topic: str, msg: Any) -> None:
        with self._cond:
            self.messages[topic].append(msg)
            self.received_ns[topic].append(time.time_ns())
            self._cond.notify_all()

    def wait(self, topic: str, count: int = 1, timeout: float = 10.0,
             where: Callable[[Any], bool] | None = None) -> list:
        """Wait until ``count`` messages (matching ``where``) arrived on ``topic``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages[topic] if where is None or where(m)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'{topic}: got {len(got)} messages, expected {count} '
                                         f'within {timeout} s')
                self._cond.wait(left)

    def count(self, topic: str) -> int:
        """Messages received on ``topic`` so far."""
        with self._cond:
            return len(self.messages[topic])

    def wait_for_publishers(self, topic: str, timeout: float = 10.0) -> None:
        """Wait until ``topic`` is matched by at least one publisher (discovery is done)."""
        sub = self.subs[topic]
        wait_for(lambda: sub.get_publisher_count() > 0, timeout, f'a publisher of {topic}')


def sync_rosout(collector: Collector, node: Any, timeout: float = 10.0) -> None:
    """Log a probe line from ``node`` and wait for it on ``/rosout``.

    Lines of one node arrive in order: afterwards every line it logged before is in
    ``collector`` (so a count of lines is final).
    """
    probe = f'rosout probe {time.monotonic_ns()}'
    node.get_logger().info(probe)
    name = node.get_name()
    collector.wait('/rosout', 1, timeout, where=lambda m: m.msg == probe
                   and m.name.split('.')[-1] == name)


def log_lines(collector: Collector, node_name: str = 'depth_node', level: int | None = None,
              contains: str = '') -> list[str]:
    """Lines the node logged to /rosout (collector subscribed to ``/rosout`` as 'Log')."""
    with collector._cond:
        logs = list(collector.messages['/rosout'])
    return [m.msg for m in logs if m.name.split('.')[-1] == node_name
            and (level is None or m.level == level) and contains in m.msg]


class Camera:
    """A camera driver on the graph: image (raw or compressed), camera_info, sparse_depth."""

    def __init__(self, graph: Graph, namespace: str | None = None,
                 reliability: str = 'best_effort',
                 compressed: bool = False, image_topic: str = 'image',
                 info_topic: str = 'camera_info', sparse_topic: str = 'sparse_depth',
                 name: str = 'camera') -> None:
        self.node = graph.plain_node(name, namespace)
        profile = qos(reliability)
        self.image_pub = self.node.create_publisher(
            message_class('CompressedImage' if compressed else 'Image'),
            image_topic + ('/compressed' if compressed else ''), profile)
        self.info_pub = self.node.create_publisher(message_class('CameraInfo'), info_topic,
                                                   profile)
        self.sparse_pub = self.node.create_publisher(message_class('Image'), sparse_topic,
                                                     profile)

    def wait_for_subscribers(self, timeout: float = 10.0, sparse: bool = False) -> None:
        """Wait until the node's subscriptions matched these publishers."""
        pubs = [self.image_pub, self.info_pub] + ([self.sparse_pub] if sparse else [])
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), timeout,
                 'the depth node to subscribe the camera topics')
