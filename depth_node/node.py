"""The ROS 2 node: a thin rclpy lifecycle layer over the ROS-free pipeline.

``depth_node`` subscribes to a camera (``image`` or ``image/compressed``, and ``camera_info``;
``sparse_depth`` for ``scale_source: sparse_depth``) and publishes ``depth/image``,
``depth/camera_info``, ``points``, ``depth/relative``, ``depth/colorized`` and ``/diagnostics``.
See ``doc/ros_interface.md`` for topics, parameters and QoS.

Threading: subscription callbacks only pair image and camera_info (:mod:`depth_node.sync`) and
put the frame into its camera's one-element latest-frame slot; a worker thread takes the newest
frame, runs :class:`~depth_node.pipeline.DepthPipeline` and publishes. A frame replaced before
the worker took it is dropped and counted, so latency stays bounded when the model is slower
than the camera. Outputs without subscribers are not computed.

Several cameras (parameter ``cameras``): each camera has its own topics, pairing, latest-frame
slot, error counts, diagnostics status and output namespace; the worker takes rounds (the
newest frame of each camera that has one, waiting at most ``batch_max_wait`` for the others)
and runs each round as one batch through the one model
(:meth:`~depth_node.pipeline.DepthPipeline.process_batch`). A camera's bad frame is counted
for that camera and costs the others nothing.

This is the only module of the package that imports rclpy. Without a sourced ROS 2, importing
it still works and :func:`main` exits with a one-line message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
import functools
import os
import signal
import sys
import threading
import traceback
from typing import Any, TYPE_CHECKING

from depth_node import parameters
from depth_node.diagnostics import NodeDiagnostics, RollingStat
from depth_node.errors import DepthNodeError
from depth_node.messages import (
    MessageFactory,
    rclpy_byte_array,
    rclpy_float64_array,
    stamp_ns,
    stamp_of,
)
from depth_node.ratelimit import ErrorReporter
from depth_node.sync import Frame, FrameSync, PairingRule, RoundSlots, SyncOutput

if TYPE_CHECKING:   # imported when configuring (keeps `import depth_node.node` light)
    from depth_node.pipeline import DepthPipeline
    from depth_node.runner import DepthPredictor

NOT_SOURCED = ('depth_node: ROS 2 is not sourced (rclpy not importable): source '
               '/opt/ros/<distro>/setup.bash, or use `depth-node bag` for offline processing')

try:  # the only ROS imports of the package
    import rclpy
    from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        QoSPolicyKind,
        QoSProfile,
        ReliabilityPolicy,
    )
    try:  # Jazzy and newer
        from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    except ImportError:  # Humble
        from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks
    try:
        from rclpy.executors import ExternalShutdownException
    except ImportError:  # very old rclpy: Ctrl-C only arrives as KeyboardInterrupt
        class ExternalShutdownException(Exception):  # type: ignore[no-redef]
            """Placeholder for rclpy versions without ExternalShutdownException."""
    from builtin_interfaces.msg import Time as TimeMsg
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        SetParametersResult,
    )
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import (
        CameraInfo,
        CompressedImage,
        Image,
        PointCloud2,
        PointField,
        RegionOfInterest,
    )
    from std_msgs.msg import Header
    _ROS_IMPORT_ERROR: ImportError | None = None
except ImportError as _exc:
    rclpy = None
    LifecycleNode = object  # type: ignore[assignment,misc]
    _ROS_IMPORT_ERROR = _exc

#: output topic (relative name) -> message class name
OUTPUT_TOPICS = {
    'depth/image': 'Image',
    'depth/camera_info': 'CameraInfo',
    'points': 'PointCloud2',
    'depth/relative': 'Image',
    'depth/colorized': 'Image',
}

_MODEL_SUFFIXES = ('.onnx', '.engine', '.plan', '.trt', '.pt', '.pth', '.ts')


def rclpy_factory() -> MessageFactory:
    """Return the :class:`MessageFactory` of the rclpy message classes (array.array payloads)."""
    return MessageFactory(Header=Header, Time=TimeMsg, Image=Image,
                          CompressedImage=CompressedImage, CameraInfo=CameraInfo,
                          RegionOfInterest=RegionOfInterest, PointCloud2=PointCloud2,
                          PointField=PointField, byte_array=rclpy_byte_array,
                          float64_array=rclpy_float64_array)


def normalize_value(value: Any) -> Any:
    """Return a parameter value as ``parameters.py`` expects it (array.array / tuple -> list)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for v in value]


def parameter_descriptor(spec: parameters.ParameterSpec) -> Any:
    """Build the ParameterDescriptor of a parameter (ranges, choices, read-only)."""
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.array_of == 'string':
        # rclpy types [] as a byte array: a string list (cameras) needs dynamic typing
        descriptor.dynamic_typing = True
    if spec.choices:
        shown = ', '.join(repr(c) if c else "'' (from the model card)" for c in spec.choices)
        descriptor.additional_constraints = f'one of: {shown}'
    if spec.min_value is not None or spec.max_value is not None:
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            lo = int(spec.min_value) if spec.min_value is not None else -2**63
            hi = int(spec.max_value) if spec.max_value is not None else 2**63 - 1
            descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=0)]
        elif isinstance(spec.default, float):
            lo_f = float(spec.min_value) if spec.min_value is not None else -1.0e308
            hi_f = float(spec.max_value) if spec.max_value is not None else 1.0e308
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=lo_f, to_value=hi_f, step=0.0)]
    return descriptor


def qos_profile(name: str, depth: int) -> Any:
    """Return the QoS of an ``input_qos`` / ``output_qos`` value with a history depth."""
    if name == 'sensor_data':
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if name == 'reliable':
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if name == 'system_default':
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.SYSTEM_DEFAULT,
                          durability=DurabilityPolicy.SYSTEM_DEFAULT)
    raise ValueError(f'unknown QoS {name!r}: use sensor_data, reliable or system_default')


def _default_open_model(model_path: str, overrides: dict[str, Any],
                        **options: Any) -> DepthPredictor:
    from depth_node.runner import open_model
    return open_model(model_path, overrides, **options)


class CameraStream:
    """One camera of the node: topics, pairing, error counts, diagnostics, publishers.

    The single-camera node has one, named ``''``, on ``image``/``camera_info`` with the outputs
    at the node's namespace; with ``cameras`` there is one per camera.
    """

    def __init__(self, topics: parameters.NodeCameraTopics, values: Mapping[str, Any],
                 reporter: ErrorReporter, diagnostics: NodeDiagnostics) -> None:
        self.topics = topics
        self.name = topics.name
        self.sync = FrameSync(PairingRule.from_values(values),
                              sparse_depth=values['scale_source'] == 'sparse_depth',
                              max_wait_s=values['sync_max_wait'])
        self.reporter = reporter
        self.diagnostics = diagnostics
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.frames_without_sparse = 0
        self.image_topic = ''

    def endpoint(self, suffix: str) -> str:
        """Return the name events of this camera's topic ``suffix`` are reported under."""
        return f'{self.name}/{suffix}' if self.name else suffix


class DepthNode(LifecycleNode):
    """Monocular depth as a managed (lifecycle) node named ``depth_node``."""

    # True once __init__ has built every member: on Kilted and newer the context destroys
    # its nodes at shutdown, also one whose __init__ raised (a bad parameter override)
    _constructed = False

    def __init__(self, node_name: str = 'depth_node', *,
                 model_opener: Callable[..., DepthPredictor] | None = None,
                 **kwargs: Any) -> None:
        """Declare the parameters; with ``autostart`` configure and activate after spin starts.

        :param node_name: the node name.
        :param model_opener: replaces ``depth_node.runner.open_model`` (tests).
        :param kwargs: passed to ``rclpy.lifecycle.LifecycleNode`` (namespace,
            parameter_overrides, cli_args, ...).
        """
        if _ROS_IMPORT_ERROR is not None:
            raise RuntimeError(NOT_SOURCED) from _ROS_IMPORT_ERROR
        super().__init__(node_name, **kwargs)
        self._open_model = model_opener or _default_open_model
        for spec in parameters.PARAMETERS:
            self.declare_parameter(spec.name, spec.default, parameter_descriptor(spec))
        self._values = {spec.name: normalize_value(self.get_parameter(spec.name).value)
                        for spec in parameters.PARAMETERS}
        self._camera_errors = parameters.validate_cameras(self._values['cameras'])
        cameras = self._declare_cameras() if not self._camera_errors else []
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # validate in the set callback, apply once every callback accepted (Jazzy+; Humble's
        # rclpy has no post-set callback and applies in _on_set_parameters)
        self._has_post_set_callback = hasattr(self, 'add_post_set_parameters_callback')
        if self._has_post_set_callback:
            self.add_post_set_parameters_callback(self._on_parameters_set)

        self._factory = rclpy_factory()
        self._reporter = ErrorReporter(self.get_logger().warning)
        self.diagnostics = NodeDiagnostics()
        if not cameras:     # one camera, on image / camera_info, outputs in the node namespace
            self._streams = [CameraStream(parameters.NodeCameraTopics(''), self._values,
                                          self._reporter, self.diagnostics)]
        else:
            self._streams = [CameraStream(
                topics, self._values, ErrorReporter(functools.partial(
                    self._camera_warning, topics.name)), NodeDiagnostics())
                for topics in cameras]
        self._by_name = {stream.name: stream for stream in self._streams}
        self._multi = bool(cameras)
        # the first camera's, for tools and tests that look at the single-camera node
        self._sync = self._streams[0].sync
        self._outputs = self._streams[0].outputs
        self._sync_timer: Any | None = None
        self._slots = RoundSlots(self._by_name, on_drop=self._frame_dropped)
        self._batch_size = RollingStat()
        self._batch_inference_ms = RollingStat()
        self._rounds = 0
        self._qos_events: Counter[str] = Counter()
        self._internal_seen: set[tuple[str, str]] = set()
        self._model: DepthPredictor | None = None
        self._pipeline: DepthPipeline | None = None
        self._pending_config: tuple[Any, bool] | None = None
        self._backend_info: dict[str, str] = {}
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = 'unconfigured'
        self._configure_error = ''

        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(self._values['diagnostics_period'],
                                             self.publish_diagnostics)
        self._autostart_timer = None
        if self._values['autostart']:
            self._autostart_timer = self.create_timer(0.0, self._autostart)
        self._constructed = True

    # -- properties for tools and tests ----------------------------------------------------
    @property
    def state(self) -> str:
        """Return the lifecycle state label this node is in."""
        return self._state

    @property
    def values(self) -> dict[str, Any]:
        """Return a copy of the current parameter values."""
        return dict(self._values)

    @property
    def error_counts(self) -> dict[str, int]:
        """Errors counted by kind since start (all cameras together)."""
        counts: Counter[str] = Counter(self._reporter.snapshot())
        if self._multi:
            for stream in self._streams:
                counts.update(stream.reporter.snapshot())
        return dict(counts)

    @property
    def cameras(self) -> dict[str, CameraStream]:
        """Return the camera streams by name (``''`` for the single-camera node)."""
        return dict(self._by_name)

    def _declare_cameras(self) -> list[parameters.NodeCameraTopics]:
        """Declare ``<camera>.image_topic`` ... for each camera; return the cameras' topics."""
        cameras = []
        for name in self._values['cameras']:
            topics = {}
            for key, default in parameters.camera_defaults(name).items():
                spec = parameters.CAMERA_PARAMETERS[key]
                descriptor = ParameterDescriptor(description=f'camera {name}: {spec[1]}',
                                                 read_only=True)
                value = self.declare_parameter(f'{name}.{key}', default, descriptor).value
                topics[key] = str(value).strip() or default
            cameras.append(parameters.NodeCameraTopics(name, **topics))
        return cameras

    def _camera_warning(self, camera: str, message: str) -> None:
        self.get_logger().warning(f'camera {camera}: {message}')

    @property
    def worker_alive(self) -> bool:
        """Whether the worker thread runs."""
        return self._worker is not None and self._worker.is_alive()

    # -- parameters -------------------------------------------------------------------------
    def _parameter_changes(self, params: list[Any]) -> tuple[dict[str, Any], list[str]]:
        """Return the parameter values after ``params`` and the names of ours among them."""
        new = dict(self._values)
        changed = []
        for param in params:
            if param.name in parameters.BY_NAME:
                new[param.name] = normalize_value(param.value)
                changed.append(param.name)
        return new, changed

    def _on_set_parameters(self, params: list[Any]) -> Any:
        """Validate a parameter change; nothing changes here (another callback may refuse).

        The change is applied by :meth:`_on_parameters_set` once every set-parameters
        callback accepted it (rclpy's post-set callback, Jazzy and newer). Humble's rclpy has
        no post-set callback: there it is applied here, after our own checks, as the last step.
        """
        new, changed = self._parameter_changes(params)
        reasons = [r for name in changed if (r := parameters.validate(name, new[name]))]
        before = set(parameters.validate_all(self._values))
        reasons += [r for r in parameters.validate_all(new) if r not in before and
                    r not in reasons]
        if reasons:
            return SetParametersResult(successful=False, reason='; '.join(reasons))
        if not self._has_post_set_callback:
            self._on_parameters_set(params)
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, params: list[Any]) -> None:
        """Apply an accepted parameter change (post-set callback)."""
        new, changed = self._parameter_changes(params)
        if not changed:
            return
        old = self._values
        self._values = new
        self._apply_live_update(old, new, changed)

    def _apply_live_update(self, old: Mapping[str, Any], new: Mapping[str, Any],
                           changed: list[str]) -> None:
        if {'sync_policy', 'sync_tolerance', 'sync_max_wait', 'scale_source'} & set(changed):
            for stream in self._streams:
                stream.sync.configure(PairingRule.from_values(new),
                                      sparse_depth=new['scale_source'] == 'sparse_depth',
                                      max_wait_s=new['sync_max_wait'])
        if self._pipeline is not None:
            from depth_node.pipeline import PipelineConfig
            reset = bool(parameters.METRIC_PARAMETERS & set(changed))
            self._pending_config = (PipelineConfig.from_values(new), reset)
        if 'scale_source' in changed and self._state == 'active':
            self._update_sparse_subscription()
        self.get_logger().info('parameters updated: ' + ', '.join(
            f'{name}={new[name]!r}' for name in changed))

    # -- lifecycle --------------------------------------------------------------------------
    def _autostart(self) -> None:
        if self._autostart_timer is not None:
            self._autostart_timer.cancel()
        if self._state != 'unconfigured':
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(
                'autostart: configure failed (see above); the node stays unconfigured. Fix '
                'the parameters and configure it with: ros2 lifecycle set '
                f'{self.get_fully_qualified_name()} configure')
            return
        self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters, load the model (with its self-test), create publishers."""
        log = self.get_logger()
        self._configure_error = ''

        def fail(message: str) -> TransitionCallbackReturn:
            self._configure_error = message.splitlines()[0]
            log.error(message)
            return TransitionCallbackReturn.FAILURE

        values = dict(self._values)
        reasons = self._camera_errors + parameters.validate_all(values)
        if reasons:
            return fail('configure failed: invalid parameters: ' + '; '.join(reasons))
        path = values['model_file_path']
        if not path:
            return fail('configure failed: model_file_path is empty. Set it to an ONNX model '
                        '(with its .card.yaml beside it) or a TensorRT .engine, e.g. `ros2 '
                        'launch depth_node depth.launch.py model_file_path:=/path/model.onnx`; '
                        '`depth-node export` writes both.')
        if os.path.splitext(path)[1].lower() in _MODEL_SUFFIXES and not os.path.exists(path):
            return fail(f'configure failed: model file {path!r} does not exist. Check '
                        'model_file_path (absolute paths are safest in launch files).')
        try:
            from depth_node.pipeline import DepthPipeline, PipelineConfig
            model = self._open_model(path, parameters.card_overrides(values),
                                     **parameters.model_options(values, log.info))
        except DepthNodeError as exc:
            return fail(f'configure failed: cannot load model {path!r}: {exc}')
        except Exception as exc:  # noqa: BLE001 - anything a backend raises must not crash
            return fail(f'configure failed: unexpected {type(exc).__name__} while loading '
                        f'model {path!r}: {exc}\n{traceback.format_exc()}')
        self._model = model
        self._pipeline = DepthPipeline(model, PipelineConfig.from_values(values), log=log.info,
                                       warn=log.warning)
        self._pending_config = None
        try:
            info = model.info() if hasattr(model, 'info') else model.backend.info()
            self._backend_info = {str(k): str(v) for k, v in info.items()}
        except Exception:  # noqa: BLE001 - info is best effort
            self._backend_info = {}
        qos = qos_profile(values['output_qos'], values['output_qos_depth'])
        classes = {'Image': Image, 'CameraInfo': CameraInfo, 'PointCloud2': PointCloud2}
        for stream in self._streams:
            for suffix, cls_name in OUTPUT_TOPICS.items():
                events = PublisherEventCallbacks(incompatible_qos=functools.partial(
                    self._on_incompatible_qos, stream.topics.output(suffix)))
                stream.outputs[suffix] = self.create_lifecycle_publisher(
                    classes[cls_name], stream.topics.output(suffix), qos,
                    event_callbacks=events)
        card = getattr(model, 'card', None)
        if self._multi:
            limit = getattr(model, 'max_batch', 1)
            log.info(f'{len(self._streams)} cameras ({", ".join(self._by_name)}) in rounds of '
                     'one batch' + (' (this model has a fixed batch of 1: one network call '
                                    'per camera; export it with --dynamic-batch)'
                                    if limit == 1 else ''))
        log.info(f"configured: model {path!r} ({getattr(card, 'name', '') or 'no name'}, "
                 f"{getattr(card, 'output_kind', '?')}), "
                 + ', '.join(f'{k}={v}' for k, v in self._backend_info.items()))
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe, start the worker thread and enable the publishers."""
        values = self._values
        qos = qos_profile(values['input_qos'], values['input_qos_depth'])
        for stream in self._streams:
            topics = stream.topics
            if values['input_transport'] == 'compressed':
                topic = self.resolve_topic_name(topics.image_topic) + '/compressed'
                image_type = CompressedImage
            else:
                topic = topics.image_topic
                image_type = Image
            stream.image_topic = topic
            stream.inputs['image'] = self.create_subscription(
                image_type, topic, functools.partial(self._on_image, stream), qos,
                event_callbacks=self._sub_events(stream.endpoint('image')))
            stream.inputs['camera_info'] = self.create_subscription(
                CameraInfo, topics.camera_info_topic,
                functools.partial(self._on_camera_info, stream), qos,
                event_callbacks=self._sub_events(stream.endpoint('camera_info')))
        self._update_sparse_subscription()
        # images wait for late partners (sync_max_wait): a timer lets them go when it is over
        self._sync_timer = self.create_timer(
            min(0.02, max(0.002, values['sync_max_wait'] / 4)), self._expire_waiting)
        self._stop.clear()
        self._slots.reopen()
        self._worker = threading.Thread(target=self._worker_loop, name='depth_node_worker',
                                        daemon=True)
        self._worker.start()
        self._state = 'active'
        for stream in self._streams:
            self.get_logger().info(
                ('active: ' if not stream.name else f'active: camera {stream.name}: ')
                + f'{self.resolve_topic_name(stream.image_topic)} + '
                f'{self.resolve_topic_name(stream.topics.camera_info_topic)} '
                f"({values['input_qos']}, {values['sync_policy']} sync)"
                + (f' -> {self.resolve_topic_name(stream.topics.output("depth/image"))}, ...'
                   if stream.name else ''))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker and disable the publishers."""
        self._stop_processing()
        self._state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers and release the model (GPU memory)."""
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything and release the model, from any state."""
        self._stop_processing()
        self._release()
        self._state = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything; the node returns to unconfigured."""
        self.get_logger().error(f'error while in state {state.label!r}: releasing everything')
        self._stop_processing()
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop the worker and release the model, then destroy the node."""
        if self._constructed:
            self._stop_processing()
            self._release()
        super().destroy_node()

    def _sub_events(self, name: str) -> Any:
        return SubscriptionEventCallbacks(
            incompatible_qos=functools.partial(self._on_incompatible_qos, name))

    def _update_sparse_subscription(self) -> None:
        wanted = self._values['scale_source'] == 'sparse_depth'
        for stream in self._streams:
            existing = stream.inputs.get('sparse_depth')
            if wanted and existing is None:
                qos = qos_profile(self._values['input_qos'], self._values['input_qos_depth'])
                stream.inputs['sparse_depth'] = self.create_subscription(
                    Image, stream.topics.sparse_depth_topic,
                    functools.partial(self._on_sparse_depth, stream), qos,
                    event_callbacks=self._sub_events(stream.endpoint('sparse_depth')))
            elif not wanted and existing is not None:
                self.destroy_subscription(stream.inputs.pop('sparse_depth'))

    def _stop_processing(self) -> None:
        for stream in self._streams:
            for sub in stream.inputs.values():
                self.destroy_subscription(sub)
            stream.inputs.clear()
        if self._sync_timer is not None:
            self.destroy_timer(self._sync_timer)
            self._sync_timer = None
        self._stop.set()
        self._slots.close()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=30.0)
            if worker.is_alive() and self.context.ok():
                self.get_logger().warning('the worker thread did not stop within 30 s (a '
                                          'frame is still being processed)')
        for stream in self._streams:
            stream.sync.clear()

    def _release(self) -> None:
        for stream in self._streams:
            for pub in stream.outputs.values():
                self.destroy_lifecycle_publisher(pub)
            stream.outputs.clear()
        model, self._model = self._model, None
        self._pipeline = None
        self._backend_info = {}
        if model is not None:
            try:
                model.close()
            except Exception as exc:  # noqa: BLE001 - freeing must not raise
                self.get_logger().warning(f'closing the model failed: {exc}')

    # -- input callbacks (executor threads: only pairing and hand-over) ----------------------
    def _on_image(self, stream: CameraStream, msg: Any) -> None:
        stream.diagnostics.image_received()
        if self._multi:
            self.diagnostics.image_received()
        self._handle(stream, stream.sync.add_image(msg))

    def _on_camera_info(self, stream: CameraStream, msg: Any) -> None:
        self._handle(stream, stream.sync.add_camera_info(msg))

    def _on_sparse_depth(self, stream: CameraStream, msg: Any) -> None:
        self._handle(stream, stream.sync.add_sparse_depth(msg))

    def _expire_waiting(self) -> None:
        for stream in self._streams:
            self._handle(stream, stream.sync.expire())

    def _handle(self, stream: CameraStream, out: SyncOutput) -> None:
        for error in out.errors:
            stream.reporter.report(error)
        if out.stale:
            self._count_drops(stream, out.stale)
        stream.frames_without_sparse += out.without_sparse_depth
        for frame in out.frames:
            self._slots.put(stream.name, frame)

    def _frame_dropped(self, camera: str, _frame: Any) -> None:
        self._count_drops(self._by_name[camera], 1)

    def _count_drops(self, stream: CameraStream, count: int) -> None:
        stream.diagnostics.frame_dropped(count)
        if self._multi:
            self.diagnostics.frame_dropped(count)

    @property
    def _frames_without_sparse(self) -> int:
        return sum(stream.frames_without_sparse for stream in self._streams)

    def _on_incompatible_qos(self, endpoint: str, info: Any) -> None:
        self._qos_events[endpoint] += 1
        kind = getattr(info, 'last_policy_kind', None)
        try:  # rmw reports the policy as an int
            policy = QoSPolicyKind(int(kind)).name
        except (TypeError, ValueError):
            policy = str(kind)
        if any(endpoint == s or endpoint.endswith('/' + s) for s in OUTPUT_TOPICS):
            self.diagnostics.subscriber_refused(endpoint, policy)
            hint = self._output_qos_hint(endpoint, policy)
        elif policy == 'RELIABILITY':
            hint = (f'the publisher of {endpoint} is best effort and input_qos is '
                    f"{self._values['input_qos']!r} (reliable): set input_qos sensor_data "
                    '(best effort receives from any publisher).')
        else:
            hint = (f'the publisher of {endpoint} offers a QoS ({policy}) incompatible with '
                    f"input_qos {self._values['input_qos']!r}; use input_qos sensor_data.")
        self._reporter.report('incompatible_qos',
                              f'incompatible QoS on {endpoint} (policy {policy}): {hint}')

    def _output_qos_hint(self, endpoint: str, policy: str) -> str:
        offered = self._values['output_qos']
        if policy == 'DURABILITY':
            return (f'a subscriber of {endpoint} requests transient_local durability (latched '
                    'messages); this node publishes volatile (sensor data is never latched): '
                    'make the subscriber volatile (rviz: Durability Policy Volatile).')
        if policy == 'RELIABILITY':
            return (f'a subscriber of {endpoint} requests reliable delivery but output_qos is '
                    f'{offered!r} (best effort): set output_qos reliable, or make the '
                    'subscriber best effort.')
        return (f'a subscriber of {endpoint} requests a {policy.lower()} this node does not '
                f'offer (output_qos {offered!r}): match the subscriber to it.')

    # -- worker -----------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            frames = self._slots.take_round(self._values['batch_max_wait'], timeout=0.5)
            if frames:
                self.process_round([(self._by_name[name], frame)
                                    for name, frame in frames.items()])

    def wanted_outputs(self, stream: CameraStream | None = None) -> list[str]:
        """Return the outputs that have subscribers and are enabled (lazy computation).

        :param stream: the camera (default: the first, or only, camera).
        """
        values = self._values
        want = []
        outputs = (stream or self._streams[0]).outputs
        for suffix, pub in list(outputs.items()):
            if pub.get_subscription_count() == 0:
                continue
            if suffix == 'points' and not values['publish_points']:
                continue
            if suffix == 'depth/colorized' and not values['publish_colorized']:
                continue
            want.append(suffix)
        return want

    def process_frame(self, frame: Frame) -> bool:
        """Run the pipeline on one frame of the first camera and publish; never raises."""
        return self.process_round([(self._streams[0], frame)])[0]

    def process_round(self, frames: list[tuple[CameraStream, Frame]]) -> list[bool]:
        """Run one round (one frame per camera) as one batch and publish; never raises.

        A round of one frame runs :meth:`DepthPipeline.process`, more frames one
        :meth:`DepthPipeline.process_batch`. Returns per frame whether it published.
        """
        done = [False] * len(frames)
        pipeline = self._pipeline
        if pipeline is None:
            return done
        jobs: list[tuple[int, CameraStream, Frame, list[str]]] = []
        try:
            pending, self._pending_config = self._pending_config, None
            if pending is not None:
                pipeline.config = pending[0]
                if pending[1]:
                    pipeline.reset()
            for i, (stream, frame) in enumerate(frames):
                want = self.wanted_outputs(stream)
                if want:
                    jobs.append((i, stream, frame, want))
            if not jobs:
                return done
            if len(jobs) == 1:
                frame = jobs[0][2]
                result = pipeline.process(frame.image, frame.camera_info, frame.sparse_depth)
                results: list[Any] = [result]
                timings = {'batch_size': 1.0, 'model_calls': 1.0,
                           'inference_ms': result.timings.get('inference_ms', float('nan'))}
            else:
                from depth_node.pipeline import BatchItem
                results, timings = pipeline.process_batch([
                    BatchItem(frame.image, frame.camera_info, frame.sparse_depth)
                    for _, _, frame, _ in jobs])
        except Exception as exc:  # noqa: BLE001 - the worker must keep serving
            for stream in [job[1] for job in jobs] or [frames[0][0]]:
                self._failed(stream, exc)
            return done
        self._rounds += 1
        self._batch_size.add(timings.get('batch_size', float(len(jobs))))
        self._batch_inference_ms.add(timings.get('inference_ms', float('nan')))
        for (i, stream, frame, want), result in zip(jobs, results):
            if isinstance(result, Exception):
                self._failed(stream, result)
                continue
            try:
                done[i] = self._publish(pipeline, stream, frame, result, want)
            except Exception as exc:  # noqa: BLE001 - the worker must keep serving
                self._failed(stream, exc)
        return done

    def _publish(self, pipeline: Any, stream: CameraStream, frame: Frame, result: Any,
                 want: list[str]) -> bool:
        """Build and publish one camera's outputs of a frame; record its diagnostics."""
        sec, nanosec = stamp_of(frame.image)
        header = self._factory.header(sec, nanosec, frame.image.header.frame_id)
        messages = pipeline.outputs(result, header, self._factory, want)
        if not self.context.ok():   # shut down (Ctrl-C, SIGTERM) while processing
            return False
        for suffix, msg in messages.items():
            pub = stream.outputs.get(suffix)
            if pub is not None:
                pub.publish(msg)
        latency = (self.get_clock().now().nanoseconds - stamp_ns(frame.image)) / 1e9
        stream.diagnostics.frame_published(result.timings, latency, result.scale,
                                           result.metric)
        if self._multi:
            self.diagnostics.frame_published(result.timings, latency, result.scale,
                                             result.metric)
        if not messages:
            stream.reporter.report('nothing_to_publish',
                                   f'frame produced none of the subscribed outputs {want}: '
                                   + self._why_not_metric(result))
        return bool(messages)

    def _failed(self, stream: CameraStream, exc: Exception) -> None:
        """Count and report a frame of ``stream`` that failed (rate-limited)."""
        if isinstance(exc, DepthNodeError):
            if self.context.ok():
                stream.reporter.report(exc)
            return
        if not self.context.ok():   # publishing raced with shutdown: a normal event
            return
        key = (type(exc).__name__, str(exc)[:200])
        stream.reporter.report('internal_error',
                               f'unexpected {type(exc).__name__} while processing a frame: '
                               f'{exc} (a bug: please report it with the traceback)')
        if key not in self._internal_seen and len(self._internal_seen) < 100:
            self._internal_seen.add(key)
            self.get_logger().error(''.join(traceback.format_exception(exc)))

    def _why_not_metric(self, result: Any) -> str:
        if result.metric:
            return 'check the outputs.'
        source = self._values['scale_source']
        if source == 'none':
            return ('a relative model without scale_source only publishes depth/relative and '
                    'depth/colorized; set scale_source for metric outputs.')
        message = getattr(result.scale, 'message', '') if result.scale is not None else ''
        return (f'scale_source {source} has no usable scale for this frame yet'
                + (f' ({message})' if message else '')
                + '; metric outputs start with the first accepted fit, depth/relative is '
                'published meanwhile.')

    # -- diagnostics ------------------------------------------------------------------------
    def diagnostics_report(self) -> Any:
        """Return the current :class:`~depth_node.diagnostics.DiagnosticsReport` of the node.

        With ``cameras`` it covers all cameras together and the batches (size, inference);
        :meth:`camera_reports` has one per camera.
        """
        values = self._values
        subscribers = sum(pub.get_subscription_count() for stream in self._streams
                          for pub in stream.outputs.values())
        first = self._streams[0]
        extra: dict[str, Any] = {}
        if self._multi:
            size, inference = self._batch_size.summary(), self._batch_inference_ms.summary()
            extra.update({
                'cameras': ', '.join(self._by_name),
                'batch rounds': self._rounds,
                'batch size mean': f"{size['mean']:.2f}" if size else 'n/a',
                'batch size last': f"{size['last']:.0f}" if size else 'n/a',
                'batch inference mean (ms)': f"{inference['mean']:.1f}" if inference else 'n/a',
                'batch inference max (ms)': f"{inference['max']:.1f}" if inference else 'n/a',
            })
        else:
            extra['image topic'] = self.resolve_topic_name(first.image_topic or 'image')
        extra.update({
            'sync policy': values['sync_policy'],
            'images waiting for partners': sum(s.sync.pending for s in self._streams),
            'frames without sparse depth': self._frames_without_sparse,
            'output subscribers': subscribers,
            'qos incompatible events': sum(self._qos_events.values()),
            'scale_source': values['scale_source'],
        })
        if self._configure_error and self._state == 'unconfigured':
            extra['configure error'] = self._configure_error
        return self.diagnostics.report(state=self._state, errors=self.error_counts,
                                       backend_info=self._backend_info, extra=extra,
                                       subscribers=subscribers if first.outputs else None)

    def camera_reports(self) -> dict[str, Any]:
        """Return one diagnostics report per camera; empty for the single-camera node.

        Each :class:`~depth_node.diagnostics.DiagnosticsReport` has that camera's rates,
        latency, stale drops, scale and errors.
        """
        if not self._multi:
            return {}
        reports = {}
        for stream in self._streams:
            subscribers = sum(pub.get_subscription_count() for pub in stream.outputs.values())
            extra = {
                'camera': stream.name,
                'image topic': self.resolve_topic_name(stream.image_topic or
                                                       stream.topics.image_topic),
                'camera_info topic': self.resolve_topic_name(stream.topics.camera_info_topic),
                'output namespace': self.resolve_topic_name(stream.topics.output('')
                                                            .rstrip('/') or '~'),
                'images waiting for partners': stream.sync.pending,
                'frames without sparse depth': stream.frames_without_sparse,
                'output subscribers': subscribers,
            }
            reports[stream.name] = stream.diagnostics.report(
                state=self._state, errors=stream.reporter.snapshot(), extra=extra,
                subscribers=subscribers if stream.outputs else None)
        return reports

    def publish_diagnostics(self) -> None:
        """Publish one diagnostic_msgs/DiagnosticArray on /diagnostics."""
        try:
            report = self.diagnostics_report()
            levels = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN,
                      2: DiagnosticStatus.ERROR, 3: DiagnosticStatus.STALE}
            status = DiagnosticStatus(
                level=levels[report.level], name=f'{self.get_name()}: monocular depth',
                message=report.message,
                hardware_id=self._backend_info.get('device', 'none'),
                values=[KeyValue(key=k, value=v) for k, v in report.values])
            statuses = [status]
            for camera, camera_report in self.camera_reports().items():
                statuses.append(DiagnosticStatus(
                    level=levels[camera_report.level],
                    name=f'{self.get_name()}: camera {camera}', message=camera_report.message,
                    hardware_id=self._backend_info.get('device', 'none'),
                    values=[KeyValue(key=k, value=v) for k, v in camera_report.values]))
            msg = DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                  status=statuses)
            self._diag_pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never take the node down
            self.get_logger().error(f'publishing diagnostics failed: {exc}',
                                    throttle_duration_sec=30.0)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run depth_node depth_node`` (Humble and Jazzy)."""
    if _ROS_IMPORT_ERROR is not None:
        raise SystemExit(NOT_SOURCED)
    rclpy.init(args=args)
    try:
        node = DepthNode()
    except Exception as exc:  # noqa: BLE001 - e.g. a parameter override of the wrong type
        print(f'depth_node: cannot start: {type(exc).__name__}: {exc} (check the parameter '
              'file against doc/ros_interface.md)', file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001 - e.g. RCLError 'context is invalid' from a second signal
        if rclpy.ok():
            raise
    finally:
        # shutting down is a normal event: a second Ctrl-C or SIGTERM during the cleanup must
        # not turn it into a traceback
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
