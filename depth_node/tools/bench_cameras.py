"""``depth-node bench node --cameras N``: N cameras through one node, against N nodes.

Two runs on an isolated real ROS 2 graph, with the same N cameras in this process
(``/cam<i>/image`` and ``/cam<i>/camera_info``, reliable, one frame each per round, stamps
apart by 1 ns so every output is told apart) and probes on every ``/cam<i>/depth/image``:

* ``batched``: one node process with the parameter ``cameras`` (one model instance; each round
  runs as one batch when the model has a batch axis, ``depth-node export --dynamic-batch``);
* ``separate``: N single-camera node processes (``__ns:=/cam<i>``), one model instance each,
  as a robot runs them without ``cameras``.

A round is timed from publishing its N frames to the arrival of the last ``depth/image``; the
next round starts then (closed loop). Figures: ``<run>_round_ms_p50`` / ``_p95``,
``<run>_per_camera_ms`` (round / N), ``batched_over_separate`` (ratio of the round medians),
``<run>_rss_mib`` (resident memory of the node processes together) and
``<run>_model_instances``.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
import statistics
import subprocess
import threading
import time
from typing import Any

from depth_node.errors import DepthNodeError
from depth_node.tools import bench_node
from depth_node.tools.arguments import print_figures
from depth_node.tools.bench_node import (
    _percentile,
    enter_isolated_graph,
    init_context,
    node_command,
    node_parameters,
    pinhole_camera_info,
    process_status,
    spin_in_background,
    stop_processes,
)
import numpy as np


class CamerasRig:
    """N cameras and probes in this process; one node with ``cameras``, or N nodes."""

    def __init__(self, model: str, width: int, height: int, cameras: int, batched: bool,
                 backend: str = 'auto', extra_parameters: dict[str, Any] | None = None) -> None:
        rclpy, self.log_dir, self.env = enter_isolated_graph('depth_node_bench_cams_')
        self.names = [f'cam{i}' for i in range(cameras)]
        # reliable input: N large frames published back to back must all arrive (best effort
        # loses some on a loaded machine, and a lost frame is no figure of the node)
        params = {'model_file_path': model, 'backend': backend, 'point_decimation': 1,
                  'self_test': False, 'input_qos': 'reliable', **(extra_parameters or {})}
        if batched:
            commands = [node_command({**params, 'cameras': f"[{','.join(self.names)}]"})]
        else:
            commands = [node_command(params, ['-r', f'__ns:=/{name}']) for name in self.names]
        self.logs = [open(Path(self.log_dir) / f'node{i}.log', 'w+')  # noqa: SIM115
                     for i in range(len(commands))]
        self.nodes = [subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
                      for cmd, log in zip(commands, self.logs)]
        self._rclpy = rclpy
        self.context = init_context(rclpy)
        self._build_graph(width, height)

    def _build_graph(self, width: int, height: int) -> None:
        from depth_node.images import make_image
        from depth_node.node import rclpy_factory
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        self.factory = rclpy_factory()
        self.node_ros = self._rclpy.create_node('depth_node_bench_cameras',
                                                context=self.context)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.arrivals: dict[int, int] = {}
        self._lock = threading.Lock()
        self.pubs = []
        for name in self.names:
            self.pubs.append((
                self.node_ros.create_publisher(Image, f'/{name}/image', reliable),
                self.node_ros.create_publisher(CameraInfo, f'/{name}/camera_info', reliable)))
            self.node_ros.create_subscription(Image, f'/{name}/depth/image', self._arrived,
                                              reliable)
        rng = np.random.default_rng(0)
        self.images = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
                       for _ in self.names]
        self._make_image = make_image
        self.width, self.height = width, height
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node_ros)
        self._spin = spin_in_background(self.executor, self.context)

    def _arrived(self, msg: Any) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self.arrivals[stamp] = now

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of every node's log."""
        tails = []
        for log in self.logs:
            log.flush()
            log.seek(0)
            tails.append(log.read()[-chars:])
        return '\n'.join(tails)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until every camera is subscribed and every depth/image has a publisher."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(node.poll() is not None for node in self.nodes):
                raise DepthNodeError('a node exited during start-up:\n' + self.log_tail())
            if 'configure failed' in self.log_tail():
                raise DepthNodeError('a node could not configure:\n' + self.log_tail())
            if all(image.get_subscription_count() > 0 for image, _ in self.pubs) and all(
                    self.node_ros.count_publishers(f'/{n}/depth/image') > 0
                    for n in self.names):
                return
            time.sleep(0.05)
        raise DepthNodeError('the nodes did not come up within the timeout:\n'
                             + self.log_tail())

    def send_round(self) -> list[int]:
        """Publish one frame per camera (stamps 1 ns apart); returns the stamps."""
        ns = time.time_ns()
        stamps = []
        for i, ((image, info), rgb) in enumerate(zip(self.pubs, self.images)):
            stamp = ns + i
            header = self.factory.header(stamp // 1_000_000_000, stamp % 1_000_000_000,
                                         f'{self.names[i]}_optical')
            info.publish(pinhole_camera_info(self.factory, header, self.width, self.height))
            image.publish(self._make_image(self.factory, header, rgb, 'rgb8'))
            stamps.append(stamp)
        return stamps

    def wait_round(self, stamps: list[int], timeout: float) -> int | None:
        """Wait for every output of a round; returns the last arrival (ns) or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = [self.arrivals.get(s) for s in stamps]
            if all(got):
                return max(got)
            time.sleep(0.0005)
        return None

    def first_round(self, timeout: float = 180.0, resend_s: float = 5.0) -> None:
        """Send rounds until one arrives whole (a best-effort camera may lose the first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.wait_round(self.send_round(), resend_s) is not None:
                return
            if any(node.poll() is not None for node in self.nodes):
                break
        raise DepthNodeError('the nodes published no complete round (their logs follow):\n'
                             + self.log_tail())

    def rss_kb(self) -> int:
        """Resident memory of the node processes together, kB."""
        return sum(process_status(node.pid)['rss_kb'] for node in self.nodes)

    def close(self) -> None:
        """Stop the node processes (SIGINT, as Ctrl-C) and rclpy."""
        stop_processes(self.nodes)
        for log in self.logs:
            log.close()
        self._rclpy.try_shutdown(context=self.context)
        self._spin.join(5.0)


def _measure(bench: CamerasRig, rounds: int) -> tuple[list[float], int]:
    """Closed-loop rounds after warm-up: their times (ms), and the rounds that never ended."""
    bench.wait_ready()
    bench.first_round()
    for _ in range(2):
        bench.wait_round(bench.send_round(), 30.0)
    times, lost = [], 0
    for _ in range(rounds):
        start = time.time_ns()
        last = bench.wait_round(bench.send_round(), 30.0)
        if last is None:
            lost += 1
        else:
            times.append((last - start) / 1e6)
    return times, lost


def run_cameras_bench(model: str, width: int, height: int, cameras: int, rounds: int = 20,
                      backend: str = 'auto', card: str | None = None,
                      params: list[str] | None = None) -> dict[str, Any]:
    """Measure N cameras: one batched node against N single-camera nodes (module docstring)."""
    if cameras < 2:
        raise DepthNodeError(f'--cameras {cameras}: the comparison needs at least 2 cameras.',
                             'Give --cameras 2 or more (or leave it out for one camera).')
    figures: dict[str, Any] = {'model': str(model), 'resolution': f'{width}x{height}',
                               'backend': backend, 'cameras': cameras, 'rounds': rounds}
    extra = node_parameters(card, params)
    for run, batched in (('batched', True), ('separate', False)):
        with closing(CamerasRig(model, width, height, cameras, batched, backend,
                                extra)) as bench:
            times, lost = _measure(bench, rounds)
            rss = bench.rss_kb()
        p50 = statistics.median(times) if times else float('nan')
        figures.update({
            f'{run}_round_ms_p50': round(p50, 3),
            f'{run}_round_ms_p95': round(_percentile(times, 95), 3),
            f'{run}_per_camera_ms': round(p50 / cameras, 3),
            f'{run}_rounds_lost': lost,
            f'{run}_rss_mib': round(rss / 1024, 1),
            f'{run}_model_instances': 1 if batched else cameras,
        })
    separate = figures['separate_round_ms_p50']
    figures['batched_over_separate'] = round(figures['batched_round_ms_p50'] / separate, 3) \
        if separate > 0 else float('nan')
    return figures


def run(args: Any) -> int:
    """Entry point of ``depth-node bench node``: ``--cameras N`` here, else the one camera."""
    if not args.cameras:
        return bench_node.run(args)
    width, height = args.resolution
    figures = run_cameras_bench(args.model, width, height, args.cameras, args.frames,
                                args.backend, card=args.card, params=args.param)
    print_figures(figures, args.json)
    return 0
