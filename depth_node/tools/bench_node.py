"""``depth-node bench node``: the node in its own process on a real ROS 2 graph, measured.

The node is started as ``python -m depth_node.node`` on an isolated graph (its own
``ROS_DOMAIN_ID``, localhost discovery, the package's Fast DDS profile for large images). A
camera in this process publishes a frame below the model's rate (each image stamped with the
time it is published, camera_info right after); probes record when ``depth/image`` and
``points`` arrive. A plain rclpy relay, in a process of its own, republishes the same images
unchanged, measured in the same run: the graph's own cost of moving one image between
processes. Figures:

``latency_ms_p50`` / ``_p95``: input stamp to receipt of ``depth/image``;
``points_latency_ms_p50``; ``inference_ms`` (the node's own median, from ``/diagnostics``);
``overhead_ms = latency_ms_p50 - inference_ms``; ``relay_ms_p50``;
``overhead_ratio = overhead_ms / relay_ms_p50``; ``received`` and ``dropped`` (the node's
counters). :func:`soak` drives many frames as fast as the node takes them and samples the
node's resident memory and thread count (the soak test uses it).
"""

from __future__ import annotations

import argparse
from contextlib import closing
import json
import os
from pathlib import Path
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from depth_node import parameters
from depth_node.dds import (
    fastdds_environment,
    fastdds_profile_variable,
    package_config_file,
    PROFILE_FILES,
)
from depth_node.errors import DepthNodeError
from depth_node.tools.arguments import print_figures
import numpy as np

RELAY_CODE = """
import sys, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node('depth_node_bench_relay')
pub = node.create_publisher(Image, '/bench/relay', qos_profile_sensor_data)
node.create_subscription(Image, '/bench/image_raw', pub.publish, qos_profile_sensor_data)
try:
    rclpy.spin(node)
except BaseException:
    pass
"""


def fastdds_profile() -> Path | None:
    """Return the package's Fast DDS profile for large images (source tree or install)."""
    return package_config_file(PROFILE_FILES['fastdds'])


def isolated_env(log_dir: str) -> dict[str, str]:
    """Return this environment on a graph of its own (domain, localhost, logs, Fast DDS)."""
    env = dict(os.environ)
    env.update({'ROS_DOMAIN_ID': str(101 + (os.getpid() + random.randrange(7)) % 115),
                'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'ROS_LOG_DIR': log_dir,
                'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp', 'PYTHONUNBUFFERED': '1'})
    env.pop('ROS_LOCALHOST_ONLY', None)
    profile = fastdds_profile()
    if profile is not None:
        env.update(fastdds_environment(profile, env))
    else:
        print("depth-node bench node: WARNING: the package's Fast DDS profile for large images "
              '(config/fastdds_large_images.xml) was not found; camera-sized messages between '
              'processes may be lost (doc/ros_interface.md, "Large images and DDS")',
              file=sys.stderr)
    return env


def enter_isolated_graph(prefix: str) -> tuple[Any, str, dict[str, str]]:
    """Import rclpy and put this process on a graph of its own; returns (rclpy, log_dir, env).

    The node processes get ``env``; this process takes its domain, discovery range, RMW and
    Fast DDS profile, so its probes see them.
    """
    try:
        import rclpy
    except ImportError as exc:
        raise DepthNodeError('`depth-node bench node` needs a ROS 2 rclpy (a sourced ROS 2, '
                             'or the PyPI ros-jazzy-* wheels)', str(exc)) from exc
    log_dir = tempfile.mkdtemp(prefix=prefix)
    env = isolated_env(log_dir)
    os.environ.update({k: env[k] for k in (
        'ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'RMW_IMPLEMENTATION')})
    variable = fastdds_profile_variable(env)
    if variable in env:
        os.environ[variable] = env[variable]
    return rclpy, log_dir, env


def node_command(params: dict[str, Any], ros_args: list[str] | tuple[str, ...] = ()
                 ) -> list[str]:
    """Return the command line of a node process: ``python -m depth_node.node --ros-args``."""
    cmd = [sys.executable, '-m', 'depth_node.node', '--ros-args', *ros_args]
    for key, value in params.items():
        cmd += ['-p', f'{key}:={json.dumps(value) if isinstance(value, bool) else value}']
    return cmd


def init_context(rclpy: Any) -> Any:
    """Return a fresh rclpy context of this process (no signal handlers: the tool's own)."""
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    return context


def spin_in_background(executor: Any, context: Any) -> threading.Thread:
    """Spin ``executor`` on a daemon thread until ``context`` shuts down; returns the thread."""
    def loop() -> None:
        try:
            while context.ok():
                executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - shut down under the executor
            pass
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def stop_processes(processes: list[Any]) -> None:
    """Stop processes as Ctrl-C does (SIGINT to each group); SIGKILL those that hang."""
    running = [proc for proc in processes if proc is not None]
    for proc in running:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    for proc in running:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float('nan')


def process_status(pid: int) -> dict[str, int]:
    """Resident memory (kB) and thread count of a process, from /proc."""
    out = {}
    with open(f'/proc/{pid}/status', encoding='ascii') as stream:
        for line in stream:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'Threads'):
                out[key] = int(value.split()[0])
    return {'rss_kb': out.get('VmRSS', 0), 'threads': out.get('Threads', 0)}


def pinhole_camera_info(factory: Any, header: Any, width: int, height: int) -> Any:
    """Return a distortion-free CameraInfo: fx = fy = 0.8 * width, principal point centred."""
    f, cx, cy = 0.8 * width, width / 2.0, height / 2.0
    array = factory.fixed_float64_array
    return factory.CameraInfo(
        header=header, height=height, width=width, distortion_model='plumb_bob',
        d=factory.float64_array(np.zeros(5)),
        k=array(np.array([f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0])),
        r=array(np.eye(3).reshape(-1)),
        p=array(np.array([f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0])),
        binning_x=0, binning_y=0,
        roi=factory.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                     do_rectify=False))


class Rig:
    """The node (and optionally a relay) in their own processes, a camera and probes here."""

    def __init__(self, model: str, width: int, height: int, backend: str = 'auto',
                 relay: bool = True, extra_parameters: dict[str, Any] | None = None) -> None:
        rclpy, self.log_dir, self.env = enter_isolated_graph('depth_node_bench_')
        params = {'model_file_path': model, 'backend': backend, 'point_decimation': 1,
                  'self_test': False, **(extra_parameters or {})}
        cmd = node_command(params, ['-r', 'image:=/bench/image_raw',
                                    '-r', 'camera_info:=/bench/camera_info'])
        self.node_log = open(Path(self.log_dir) / 'node.log', 'w+')  # noqa: SIM115
        self.node = subprocess.Popen(cmd, env=self.env, stdout=self.node_log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.relay = subprocess.Popen([sys.executable, '-c', RELAY_CODE], env=self.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True) if relay else None
        self._rclpy = rclpy
        self.context = init_context(rclpy)
        self._build_graph(width, height, relay)

    def _build_graph(self, width: int, height: int, relay: bool) -> None:
        from depth_node.images import make_image
        from depth_node.node import rclpy_factory
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        self.factory = rclpy_factory()
        self.node_ros = self._rclpy.create_node('depth_node_bench', context=self.context)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node_ros.create_publisher(Image, '/bench/image_raw',
                                                        qos_profile_sensor_data)
        self.info_pub = self.node_ros.create_publisher(CameraInfo, '/bench/camera_info',
                                                       qos_profile_sensor_data)
        self.arrivals: dict[str, dict[int, int]] = {'depth': {}, 'points': {}, 'relay': {}}
        self.frame_ids: list[str] = []
        self.diagnostics: dict[str, str] = {}
        self._lock = threading.Lock()

        def probe(name: str) -> Any:
            def callback(msg: Any) -> None:
                now = time.time_ns()
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                with self._lock:
                    self.arrivals[name][stamp] = now
                    if name == 'depth':
                        self.frame_ids.append(msg.header.frame_id)
            return callback
        self.node_ros.create_subscription(Image, '/depth/image', probe('depth'), reliable)
        self.node_ros.create_subscription(PointCloud2, '/points', probe('points'), reliable)
        if relay:
            self.node_ros.create_subscription(Image, '/bench/relay', probe('relay'),
                                              qos_profile_sensor_data)

        def on_diagnostics(msg: Any) -> None:
            for status in msg.status:
                if status.name.startswith('depth_node'):
                    with self._lock:
                        self.diagnostics = {kv.key: kv.value for kv in status.values}
        self.node_ros.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics,
                                          reliable)
        rng = np.random.default_rng(0)
        self.rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        self._make_image = make_image
        self.width, self.height = width, height
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node_ros)
        self._spin = spin_in_background(self.executor, self.context)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the node subscribed the camera and publishes depth/image."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node.poll() is not None:
                raise DepthNodeError('the node exited during start-up:\n' + self.log_tail())
            if 'configure failed' in self.log_tail():
                raise DepthNodeError('the node could not configure (its log follows); fix '
                                     'the model, card or flags:\n' + self.log_tail())
            ready = (self.image_pub.get_subscription_count() >= (2 if self.relay else 1)
                     and self.node_ros.count_publishers('/depth/image') > 0)
            if ready:
                return
            time.sleep(0.05)
        raise DepthNodeError('the node did not come up within the timeout:\n' + self.log_tail())

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of the node's log."""
        self.node_log.flush()
        self.node_log.seek(0)
        return self.node_log.read()[-chars:]

    def send(self) -> int:
        """Publish one frame stamped now (and its camera_info); returns the stamp in ns."""
        ns = time.time_ns()
        header = self.factory.header(ns // 1_000_000_000, ns % 1_000_000_000, 'bench_optical')
        self.image_pub.publish(self._make_image(self.factory, header, self.rgb, 'rgb8'))
        self.info_pub.publish(pinhole_camera_info(self.factory, header, self.width,
                                                  self.height))
        return ns

    def first_output(self, timeout: float = 120.0, resend_s: float = 5.0) -> float:
        """Send frames until the first depth/image arrives; returns its latency in seconds.

        A best-effort camera may lose the first frame, so a frame is sent again every
        ``resend_s``; raises at once when the node exits or says it has nothing to publish.
        """
        deadline = time.monotonic() + timeout
        sent: list[tuple[int, float]] = []
        while time.monotonic() < deadline:
            if not sent or time.monotonic() - sent[-1][1] > resend_s:
                sent.append((self.send(), time.monotonic()))
            time.sleep(0.05)
            with self._lock:
                arrived = [(stamp, t) for stamp, t in sent if stamp in self.arrivals['depth']]
            if arrived:
                return time.monotonic() - arrived[0][1]
            if self.node.poll() is not None or '[nothing_to_publish]' in self.log_tail():
                break
        raise DepthNodeError('the node published no depth/image (its log follows); a '
                             'relative model needs a scale source, e.g. --param '
                             'scale_source=fixed:\n' + self.log_tail())

    def wait_output(self, stamp: int, timeout: float) -> bool:
        """Wait until depth/image of ``stamp`` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if stamp in self.arrivals['depth']:
                    return True
            time.sleep(0.0005)
        return False

    def close(self) -> None:
        """Stop the processes (SIGINT, as Ctrl-C) and rclpy."""
        stop_processes([self.node, self.relay])
        self._rclpy.try_shutdown(context=self.context)
        self._spin.join(5.0)


def rig(*args: Any, **kwargs: Any) -> closing[Rig]:
    """Return a :class:`Rig` as a context manager that always closes it."""
    return closing(Rig(*args, **kwargs))


def _latencies(rig_: Rig, sent: list[int], name: str) -> list[float]:
    with rig_._lock:
        arrivals = dict(rig_.arrivals[name])
    return [(arrivals[s] - s) / 1e6 for s in sent if s in arrivals]


# a relative model publishes depth/image only with a scale source; metric models ignore it
DEFAULT_NODE_PARAMETERS = {'scale_source': 'fixed'}


def node_parameters(card: str | None = None, params: list[str] | None = None
                    ) -> dict[str, Any]:
    """Node parameters of a benchmark run: the defaults, the card file, ``NAME=VALUE`` items."""
    values: dict[str, Any] = dict(DEFAULT_NODE_PARAMETERS)
    if card:
        values['card_file_path'] = str(card)
    for item in params or ():
        name, sep, value = item.partition('=')
        if not sep or not name.strip():
            raise DepthNodeError(f'--param {item!r} is not NAME=VALUE',
                                 'Write node parameters as e.g. --param scale_source=fixed.')
        values[name.strip()] = value
    return values


def run_node_bench(model: str, width: int, height: int, frames: int = 50,
                   backend: str = 'auto', rate: float | None = None,
                   card: str | None = None, params: list[str] | None = None
                   ) -> dict[str, Any]:
    """Measure the node on a real graph (see the module docstring); returns the figures."""
    with rig(model, width, height, backend=backend,
             extra_parameters=node_parameters(card, params)) as bench:
        bench.wait_ready()
        first_ms = bench.first_output() * 1e3
        period = 1.0 / rate if rate else max(0.05, 2.0 * first_ms / 1e3)
        for _ in range(3):                        # warm-up frames, not measured
            bench.wait_output(bench.send(), 10 * period + 5)
        sent = []
        for _ in range(frames):
            start = time.monotonic()
            sent.append(bench.send())
            time.sleep(max(0.0, period - (time.monotonic() - start)))
        bench.wait_output(sent[-1], 10 * period + 5)
        time.sleep(max(1.2, period))              # one more /diagnostics period
        depth = _latencies(bench, sent, 'depth')
        points = _latencies(bench, sent, 'points')
        relay = _latencies(bench, sent, 'relay')
        diag = dict(bench.diagnostics)
    # the median: a slow first inference (warm-up) stays in the node's window of 100 frames
    inference = float(diag.get('inference median (ms)', 'nan'))
    p50 = statistics.median(depth) if depth else float('nan')
    relay_p50 = statistics.median(relay) if relay else float('nan')
    overhead = p50 - inference
    return {
        'model': str(model), 'resolution': f'{width}x{height}', 'backend': backend,
        'frames_sent': frames, 'rate_hz': round(1.0 / period, 3),
        'inference_ms': inference, 'latency_ms_p50': p50,
        'latency_ms_p95': _percentile(depth, 95), 'points_latency_ms_p50':
            statistics.median(points) if points else float('nan'),
        'overhead_ms': overhead, 'relay_ms_p50': relay_p50,
        'overhead_ratio': overhead / relay_p50 if relay_p50 > 0 else float('nan'),
        'received': int(diag.get('images received', -1)),
        'published': len(depth), 'dropped': int(diag.get('stale frames dropped', -1)),
        'errors': int(diag.get('errors', -1)),
    }


def soak(model: str, width: int, height: int, frames: int, backend: str = 'auto',
         sample_every: int = 100, card: str | None = None, params: list[str] | None = None
         ) -> dict[str, Any]:
    """Drive ``frames`` frames as fast as the node takes them; memory, threads and counters."""
    samples: list[dict[str, int]] = []
    with rig(model, width, height, backend=backend, relay=False,
             extra_parameters=node_parameters(card, params)) as bench:
        bench.wait_ready()
        sent: list[int] = []
        for i in range(frames):
            stamp = bench.send()
            sent.append(stamp)
            bench.wait_output(stamp, 2.0)
            if i % sample_every == 0:
                samples.append({'frame': i, **process_status(bench.node.pid)})
        time.sleep(1.5)                           # the last /diagnostics period
        samples.append({'frame': frames, **process_status(bench.node.pid)})
        with bench._lock:
            arrived = dict(bench.arrivals['depth'])
            frame_ids = list(bench.frame_ids)
            diag = dict(bench.diagnostics)
    sent_set = set(sent)
    # after warm-up (the first fifth) the allocator swings by a few frame buffers; a leak is a
    # trend: compare the peak of the last half with the peak of the half before it
    warm = samples[len(samples) // 5:] or samples
    half = max(1, len(warm) // 2)
    rss = [s['rss_kb'] for s in warm]
    threads = [s['threads'] for s in warm]
    growth = max(rss[half:] or rss) / max(rss[:half]) - 1.0
    return {
        'frames_sent': frames, 'outputs': len(arrived),
        'wrong_stamps': sum(1 for s in arrived if s not in sent_set),
        'wrong_frame_ids': sum(1 for f in frame_ids if f != 'bench_optical'),
        'received': int(diag.get('images received', -1)),
        'published': int(diag.get('frames published', -1)),
        'dropped': int(diag.get('stale frames dropped', -1)),
        'errors': int(diag.get('errors', -1)),
        'rss_kb_after_warmup_min': min(rss), 'rss_kb_after_warmup_max': max(rss),
        'rss_growth': growth,
        'threads_min': min(threads), 'threads_max': max(threads),
        # a leak grows to the end; a short-lived thread (seen once under load) does not
        'threads_start': threads[0], 'threads_end': threads[-1],
        'samples': samples,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``depth-node bench node``."""
    from depth_node.tools.arguments import parse_resolution
    parser.add_argument('--model', required=True, help='model file (ONNX with its card, ...)')
    parser.add_argument('--card', default=None,
                        help='model card file, when it is not <model>.card.yaml beside the '
                             'model (the node parameter card_file_path)')
    parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help='node parameter, repeatable (default scale_source=fixed, so a '
                             'relative model publishes depth/image; metric models ignore it)')
    parser.add_argument('--resolution', type=parse_resolution, default=(640, 480),
                        metavar='WxH', help='image size (default 640x480)')
    parser.add_argument('--frames', type=int, default=50, help='measured frames (default 50)')
    parser.add_argument('--backend', default=parameters.default('backend'),
                        help='node backend parameter')
    parser.add_argument('--rate', type=float, default=None,
                        help='camera rate, Hz (default: half the rate of the first frame)')
    parser.add_argument('--cameras', type=int, default=0, metavar='N',
                        help='N cameras instead: one node with the parameter cameras (one '
                             'model, batched rounds) against N single-camera nodes; --frames '
                             'rounds each (depth_node/tools/bench_cameras.py)')
    parser.add_argument('--soak', action='store_true',
                        help='soak instead: --frames frames as fast as the node takes them; '
                             'memory, threads and counters')
    parser.add_argument('--json', action='store_true', help='print one JSON object')


def run(args: argparse.Namespace) -> int:
    """Entry point of ``depth-node bench node``."""
    width, height = args.resolution
    if args.soak:
        figures = soak(args.model, width, height, args.frames, args.backend, card=args.card,
                       params=args.param)
    else:
        figures = run_node_bench(args.model, width, height, args.frames, args.backend,
                                 args.rate, card=args.card, params=args.param)
    print_figures(figures, args.json, hide=('samples',))
    return 0
