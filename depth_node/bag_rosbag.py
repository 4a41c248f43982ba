"""``depth-node bag`` on recordings: ROS 1 bags and rosbag2 folders into a new rosbag2 bag.

The seams of a run, each its own part: choosing the cameras and partner topics
(:func:`select_cameras`, :func:`select_rgb_topic`), the first pass over camera_info and the
partners' stamps (:meth:`BagRun.index_partners`), joining frames with their partners
(:class:`~depth_node.bagjoin.FrameJoiner`, bag-free), running and writing a frame
(:meth:`BagRun.finish_frame`), and the summary (:class:`~depth_node.bag_summary.FrameSink`).

Several cameras run as the node runs them (``--batch``, default 0): the joined frames are
gathered into rounds of one frame per camera (a round closes when a camera would appear twice,
or at ``--batch N`` frames) and each round goes through the model as one batch
(:meth:`BagRun.finish_batch`). The outputs are those of one frame at a time (``--batch 1``),
written in the same order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
import time
from typing import Any

from depth_node.bag_options import fit_calibration, Options
from depth_node.bag_summary import (
    FrameSink,
    log_stderr,
    mark_interrupted,
    progress_bar,
    Summary,
)
from depth_node.bagio import (
    BagReadError,
    BagWriter,
    base_image_topic,
    CAMERA_INFO,
    camera_namespace,
    CameraTopicNames,
    COMPRESSED,
    deserialize,
    discover,
    IMAGE,
    IMAGE_TYPES,
    open_reader,
    peek_stamp_ns,
    ros1_to_ros2_cdr,
    sibling_camera_info,
    to_ros2,
    twin_note,
    UndeserializableMessageError,
)
from depth_node.bagjoin import FrameJoiner, MAX_BUFFERED, PartnerIndex, PendingFrame
from depth_node.errors import DepthNodeError, InputError
from depth_node.messages import stamp_ns
from depth_node.sync import PairingRule


class OutOfOrderStampError(InputError):
    """An image's stamp is not later than the last frame written for its camera."""

    kind = 'out_of_order_stamp'


class NoRgbForDepthError(InputError):
    """A depth frame of an xyzrgb run has no colour image paired by the pairing rule."""

    kind = 'no_rgb_for_depth'


@dataclass(eq=False)
class BagCameraStream:
    """One camera of the run: its topics, calibration, camera_info by stamp, frames seen."""

    topics: CameraTopicNames
    camera: Any = None                 # CameraModel from --camera-info FILE
    seen: int = 0
    last_stamp: int | None = None
    infos: dict[int, Any] = field(default_factory=dict)
    info_index: PartnerIndex = field(default_factory=lambda: PartnerIndex(PairingRule()))

    def camera_info_for(self, stamp: int, log_time: int) -> Any:
        """Return the camera_info the pairing rule gives an image, or None."""
        return self.infos.get(self.info_index.partner(stamp, log_time))


class LazyColour:
    """A colour image read from the bag, deserialized once, when a depth frame needs it."""

    def __init__(self, run: BagRun, conn: Any, raw: Any) -> None:
        self.run, self.conn, self.raw = run, conn, raw
        self._msg: Any = None
        self._done = False

    def message(self) -> Any:
        """Return the ROS 2 message, or None when it does not deserialize (counted once)."""
        if not self._done:
            self._done = True
            self._msg = self.run.read_message(self.conn, self.raw, 'undeserializable_rgb')
        return self._msg


def select_cameras(options: Options, topics: dict[str, str],
                   log: Callable[[str], None] | None = None) -> list[CameraTopicNames]:
    """Return the cameras to process, from the options and the bag's topics.

    Automatic discovery takes one camera per namespace (``log`` gets a note for each twin
    left out); explicit ``--image-topic`` s that would write the same output namespace are a
    usage error.
    """
    def need(topic: str, types: tuple[str, ...], what: str) -> str:
        if topic not in topics:
            raise DepthNodeError(f'{what} {topic!r} is not in the bag.',
                                 'Run with --list to see the image topics.')
        if topics[topic] not in types:
            raise DepthNodeError(f'{what} {topic!r} carries {topics[topic]}, not '
                                 f"{' or '.join(types)}.", 'Choose another topic (--list).')
        return topic

    def info_for(topic: str, msgtype: str) -> str | None:
        if options.calibration:
            return None
        if options.camera_info_topic:
            return need(options.camera_info_topic, (CAMERA_INFO,), 'camera_info topic')
        sibling = sibling_camera_info(topic, msgtype)
        if topics.get(sibling) == CAMERA_INFO:
            return sibling
        raise DepthNodeError(f'no camera_info for {topic!r} (looked for {sibling!r}).',
                             'Give --camera-info-topic TOPIC or --camera-info FILE.yaml.')

    if options.depth_topic:
        topic = need(options.depth_topic, (IMAGE, COMPRESSED), 'depth topic')
        return [CameraTopicNames(topic, topics[topic], info_for(topic, topics[topic]),
                                 camera_namespace(topic, topics[topic]))]
    if options.image_topics:
        out: list[CameraTopicNames] = []
        for topic in dict.fromkeys(options.image_topics):
            msgtype = need(topic, IMAGE_TYPES, 'image topic') and topics[topic]
            namespace = camera_namespace(topic, msgtype)
            clash = next((c for c in out if c.namespace == namespace), None)
            if clash is not None:
                raise DepthNodeError(
                    f'--image-topic {clash.image_topic} and --image-topic {topic} would both '
                    f'write their depth to {namespace.rstrip("/")}/depth/... (the same output '
                    'namespace: image_transport twins of one camera).',
                    'Give only one of them (the raw Image topic is lossless), or run the tool '
                    'once per topic into separate outputs.')
            out.append(CameraTopicNames(topic, msgtype, info_for(topic, msgtype), namespace))
        return out
    found = discover(topics)
    cameras, lonely = found.cameras, found.lonely
    if log is not None:
        for twin, chosen in sorted(found.twins.items()):
            log(f'note: {twin_note(twin, chosen)}.')
    if options.calibration:
        if len(lonely) + len(cameras) == 1:
            only = (cameras[0].image_topic if cameras else lonely[0])
            return [CameraTopicNames(only, topics[only], None,
                                     camera_namespace(only, topics[only]))]
        names = ', '.join([c.image_topic for c in cameras] + lonely)
        raise DepthNodeError(f'{options.calibration} applies to one camera, but the bag has '
                             f'several image topics: {names}.',
                             'Choose one with --image-topic TOPIC.')
    if not cameras:
        raise DepthNodeError('no image topic with a sibling camera_info topic in the bag'
                             + (f" (image topics without one: {', '.join(lonely)})"
                                if lonely else '') + '.',
                             'Give --image-topic TOPIC with --camera-info-topic TOPIC or '
                             '--camera-info FILE.yaml (see --list).')
    return cameras


def wants_rgb(options: Options) -> bool:
    """Whether the run colours the clouds of a depth topic (``xyzrgb`` points written)."""
    return bool(options.depth_topic and options.points
                and options.values.get('point_cloud_fields') == 'xyzrgb')


def colour_cameras(topics: dict[str, str], depth_topic: str) -> list[str]:
    """Return the colour image topics of a bag, one per camera: candidates to colour clouds.

    The cameras of :func:`~depth_node.bagio.discover` (with or without camera_info; one per
    namespace, the raw topic of raw + ``/compressed`` twins; depth-looking names left out),
    the depth topic and its twins excluded.
    """
    depth_base = base_image_topic(depth_topic, topics.get(depth_topic, IMAGE))
    others = {t: ty for t, ty in topics.items()
              if base_image_topic(t, ty) != depth_base}
    found = discover(others)
    return sorted([c.image_topic for c in found.cameras] + found.lonely)


def select_rgb_topic(options: Options, topics: dict[str, str],
                     log: Callable[[str], None] | None = None) -> str | None:
    """Return the colour image topic paired with the depth topic, or None (xyz clouds).

    ``--rgb-topic`` when given (DepthNodeError when it is not an image topic of the bag or is
    the depth topic); else, for ``--point-cloud-fields xyzrgb``, the bag's only colour camera
    (:func:`colour_cameras`), announced on ``log``; else None with a warning on ``log``.
    Returns None whenever no xyzrgb cloud is written (``--rgb-topic`` is then noted unused).
    """
    topic = options.rgb_topic
    if not options.depth_topic:
        return None
    if topic:
        if topic not in topics:
            raise DepthNodeError(f'--rgb-topic {topic!r} is not in the bag.',
                                 'Run with --list to see the image topics.')
        if topics[topic] not in IMAGE_TYPES:
            raise DepthNodeError(f'--rgb-topic {topic!r} carries {topics[topic]}, not '
                                 f"{' or '.join(IMAGE_TYPES)}.", 'Choose an image topic '
                                 '(--list).')
        if base_image_topic(topic, topics[topic]) == base_image_topic(
                options.depth_topic, topics.get(options.depth_topic, IMAGE)):
            raise DepthNodeError(f'--rgb-topic {topic!r} is the depth topic itself.',
                                 'Give the colour image registered to the depth image '
                                 '(e.g. /camera/color/image_raw).')
        if not wants_rgb(options):
            if log is not None:
                log(f'note: --rgb-topic {topic} is not read: the clouds are '
                    + ('not written (--no-points).' if not options.points else
                       'xyz; add --point-cloud-fields xyzrgb to colour them.'))
            return None
        return topic
    if not wants_rgb(options):
        return None
    candidates = colour_cameras(topics, options.depth_topic)
    if len(candidates) == 1:
        if log is not None:
            log(f'note: --point-cloud-fields xyzrgb: colouring the clouds of '
                f'{options.depth_topic} with {candidates[0]}, the only colour camera of the '
                'bag (paired by --sync-policy; it must be registered to the depth image, same '
                'size). Choose another with --rgb-topic.')
        return candidates[0]
    if log is not None:
        why = (f"several colour cameras ({', '.join(candidates)})" if candidates
               else 'no colour image topic')
        log(f'warning: --point-cloud-fields xyzrgb with --depth-topic: the bag has {why}, '
            'so the clouds are xyz. Give --rgb-topic TOPIC (a colour image registered to '
            'the depth image, same size) to colour them.')
    return None


def first_message(reader: Any, topic: str) -> tuple[Any, Any]:
    """Return the first (connection, ROS 2 message) of a topic, or (None, None)."""
    conns = [c for c in reader.connections if c.topic == topic]
    from depth_node.messages import rosbags_factory
    try:
        for conn, _, raw in reader.messages(conns):
            msg = deserialize(reader, raw, conn.msgtype, topic)
            if not reader.is_ros2:
                msg = to_ros2(msg, conn.msgtype, rosbags_factory('humble'))
            return conn, msg
    except (BagReadError, UndeserializableMessageError):
        pass
    return None, None


def check_sparse_depth_topic(options: Options, topics: dict[str, str], reader: Any,
                             log: Callable[[str], None] | None = None) -> None:
    """Refuse a ``--sparse-depth-topic`` that is not a depth image (DepthNodeError).

    Its type must be an image type and its first message a depth encoding (``16UC1``,
    ``32FC1``, ``mono16``) or a ``compressedDepth`` CompressedImage: an ``rgb8`` camera given
    by mistake is a usage error naming the supported encodings, not a run without scale.
    """
    from depth_node.images import DEPTH_ENCODINGS, is_compressed_depth
    topic = options.sparse_depth_topic
    if not topic:
        return
    if topics.get(topic) not in IMAGE_TYPES:
        raise DepthNodeError(f'sparse depth topic {topic!r} is not an image topic of the bag'
                             + (f' (it carries {topics[topic]})' if topic in topics else '')
                             + '.', 'Run with --list to see the image topics.')
    _, msg = first_message(reader, topic)
    if msg is not None:
        encoding = getattr(msg, 'encoding', None)
        if encoding is None:
            ok, what = is_compressed_depth(msg), f'CompressedImage format {msg.format!r}'
        else:
            ok, what = encoding in DEPTH_ENCODINGS, f'encoding {encoding!r}'
        if not ok:
            raise DepthNodeError(
                f'--sparse-depth-topic {topic} carries {what}, not depth: sparse depth must '
                f"be a depth image ({', '.join(DEPTH_ENCODINGS)}: 16-bit millimetres or "
                'float metres, REP 118) or a compressedDepth CompressedImage.',
                'Give the metric depth topic aligned to the image (e.g. '
                '/camera/aligned_depth_to_color/image_raw; see --list).')
    if log is not None and options.values.get('scale_source') != 'sparse_depth':
        log(f'note: --sparse-depth-topic {topic} is read but scale_source is '
            f"{options.values.get('scale_source')!r}; add --scale-source sparse_depth to "
            'use it.')


def image_size(msg: Any) -> tuple[int, int] | None:
    """Return (width, height) of an Image or CompressedImage message, or None if unknown."""
    if hasattr(msg, 'width'):
        return int(msg.width), int(msg.height)
    try:
        from depth_node.images import message_to_rgb
        height, width = message_to_rgb(msg).shape[:2]
    except (InputError, ValueError):
        return None
    return width, height


def check_calibration_size(options: Options, reader: Any, cameras: list[CameraTopicNames],
                           log: Callable[[str], None]) -> None:
    """Fit ``--camera-info FILE`` / ``--intrinsics`` to each camera's first image.

    See :func:`~depth_node.bag_options.fit_calibration`: another aspect ratio is a usage
    error before anything is written, a rescale a loud WARNING.
    """
    if not options.calibration:
        return
    for names in cameras:
        _, msg = first_message(reader, names.image_topic)
        size = None if msg is None else image_size(msg)
        if size is not None:
            fit_calibration(options, names.image_topic, size, log)


def check_bag(options: Options, reader: Any, log: Callable[[str], None]) -> None:
    """Every check of a bag run that needs the bag but not the model (DepthNodeError).

    Topics (cameras, ``--rgb-topic``, ``--sparse-depth-topic``) and the calibration file's
    size; run before the model loads and before the output exists.
    """
    topics = {c.topic: c.msgtype for c in reader.connections}
    cameras = select_cameras(options, topics)
    select_rgb_topic(options, topics)
    check_sparse_depth_topic(options, topics, reader)
    check_calibration_size(options, reader, cameras, log)


def process_bag(options: Options, pipeline: Any, factory: Any | None = None,
                log: Callable[[str], None] = log_stderr) -> Summary:
    """Process a ROS 1 or rosbag2 bag into a new rosbag2 MCAP bag at ``options.output``.

    :param pipeline: a :class:`~depth_node.pipeline.DepthPipeline` (or anything with the same
        ``process`` / ``process_depth`` / ``outputs`` methods).
    :param factory: ROS 2 message factory of the output (Humble by default).
    :returns: the :class:`Summary`, ``exit_status`` set. KeyboardInterrupt is caught: the bag
        is closed with what was written and the summary says ``interrupted``.
    """
    from depth_node.bag_options import check_inputs
    from depth_node.messages import rosbags_factory
    check_inputs(options, 'ros1')
    return BagRun(options, pipeline, factory or rosbags_factory('humble'), log).run()


class BagRun:
    """One run over a recording: select, index the partners, join, process, write, count."""

    def __init__(self, options: Options, pipeline: Any, factory: Any,
                 log: Callable[[str], None]) -> None:
        self.options = options
        self.pipeline = pipeline
        self.factory = factory
        self.log = log
        self.summary = Summary(input=str(options.input), output=str(options.output))
        self.sink = FrameSink(pipeline, self.summary, log, depth_input=bool(options.depth_topic))
        self.reporter = self.sink.reporter
        self.rule = PairingRule.from_values(options.values)
        self.cameras: dict[str, BagCameraStream] = {}
        self.conns_by_topic: dict[str, list[Any]] = defaultdict(list)
        self.rgb_topic: str | None = None
        self.sparse_topic = options.sparse_depth_topic
        self.info_topics: dict[str, list[BagCameraStream]] = defaultdict(list)
        self.copied: set[str] = set()
        self.joiner = FrameJoiner()
        self.reader: Any = None
        self.writer: Any = None
        self.progress: Any = None
        self.is_ros2 = True
        self.attempted = 0
        #: joined colour frames waiting for their round (batched runs only)
        self.round: list[PendingFrame] = []

    def run(self) -> Summary:
        """Do the whole run; returns the finished summary."""
        with open_reader(self.options.input) as reader:
            self.reader = reader
            self.is_ros2 = reader.is_ros2
            self.select()
            self.index_partners()
            self.process()
        return self.sink.finish(self.writer.counts)

    # -- the topics of the run --------------------------------------------------------------
    def select(self) -> None:
        """Choose cameras, camera_info, sparse depth and colour topics, and what is copied."""
        options, reader = self.options, self.reader
        topics = {c.topic: c.msgtype for c in reader.connections}
        for conn in reader.connections:
            self.conns_by_topic[conn.topic].append(conn)
        check_sparse_depth_topic(options, topics, reader, self.log)
        cameras = select_cameras(options, topics, self.log)
        if options.camera_model is None:     # --intrinsics: the camera at the images' size
            check_calibration_size(options, reader, cameras, self.log)
        for names in cameras:
            cam = BagCameraStream(names, options.camera_model, info_index=PartnerIndex(self.rule))
            self.cameras[names.image_topic] = cam
            if names.camera_info_topic:
                self.info_topics[names.camera_info_topic].append(cam)
        self.rgb_topic = select_rgb_topic(options, topics, self.log)
        calibration = str(options.camera_info_file or options.calibration)
        self.summary.cameras = [
            {'image_topic': c.topics.image_topic, 'namespace': c.topics.namespace,
             'camera_info': calibration if c.camera is not None else c.topics.camera_info_topic}
            for c in self.cameras.values()]
        if self.rgb_topic:
            self.summary.cameras[0]['rgb_topic'] = self.rgb_topic
        inputs = set(self.cameras) | set(self.info_topics) | {self.sparse_topic, self.rgb_topic}
        inputs.discard(None)
        if options.copy_input:
            self.copied |= inputs
        if options.copy_other_topics:
            outputs = {c.topics.output_topic(s) for c in self.cameras.values()
                       for s in options.want + ('camera_info',)}
            self.copied |= set(topics) - inputs - outputs

    def index_partners(self) -> None:
        """First pass: camera_info messages, and the stamps of sparse depth and colour images."""
        sparse_index = PartnerIndex(self.rule) if self.sparse_topic else None
        rgb_index = PartnerIndex(self.rule) if self.rgb_topic else None
        self.joiner = FrameJoiner(sparse_index, rgb_index, MAX_BUFFERED)
        topics = list(self.info_topics) + [t for t in (self.sparse_topic, self.rgb_topic) if t]
        conns = [c for t in topics for c in self.conns_by_topic[t]]
        try:
            for conn, log_time, raw in self.reader.messages(conns) if conns else ():
                if conn.topic in (self.sparse_topic, self.rgb_topic):
                    stamp = peek_stamp_ns(raw, self.is_ros2)
                    if stamp is not None:
                        index = sparse_index if conn.topic == self.sparse_topic else rgb_index
                        index.add(stamp, log_time)
                    continue
                msg = self.read_message(conn, raw, 'undeserializable_camera_info')
                if msg is None:
                    continue
                stamp = stamp_ns(msg)
                for cam in self.info_topics[conn.topic]:
                    cam.infos[stamp] = msg
                    cam.info_index.add(stamp, log_time)
        except BagReadError as exc:   # the second pass stops at the same place
            self.log(f'warning: indexing camera_info: {exc}')

    # -- the second pass --------------------------------------------------------------------
    def process(self) -> None:
        """Second pass: every message read in log order, the frames written; always closes."""
        from depth_node import __version__
        options = self.options
        self.writer = BagWriter(options.output, self.factory.typestore, custom_data={
            'depth_node.version': __version__, 'depth_node.input': str(options.input)})
        total = sum(c.msgcount for t in self.cameras for c in self.conns_by_topic[t])
        total = -(-total // options.every)
        self.progress = progress_bar(min(total, options.max_frames or total), options.quiet)
        t_start = time.perf_counter()
        try:
            try:
                self.read_messages()
            except BagReadError as exc:
                self.summary.read_error = str(exc)
                self.log(f'error: {exc}')
            self.finish_frames(self.joiner.flush())
            self.finish_batch()
        except KeyboardInterrupt as exc:
            mark_interrupted(self.summary, exc)
        finally:
            self.summary.wall_s = round(time.perf_counter() - t_start, 3)
            if self.progress is not None:
                self.progress.close()
            self.writer.close()

    def read_messages(self) -> None:
        """Dispatch the bag's messages in log order (stops at ``--max-frames``)."""
        read = set(self.cameras) | self.copied | {self.sparse_topic, self.rgb_topic}
        conns = [c for t in sorted(t for t in read if t) for c in self.conns_by_topic[t]]
        for conn, log_time, raw in self.reader.messages(conns):
            cam = self.cameras.get(conn.topic)
            if cam is not None:
                if not self.on_image(cam, conn, raw, log_time):
                    return
            elif conn.topic == self.rgb_topic:
                self.on_rgb(conn, raw, log_time)
            elif conn.topic == self.sparse_topic:
                self.on_sparse(conn, raw, log_time)
            else:
                self.copy(conn, raw, log_time)

    def on_image(self, cam: BagCameraStream, conn: Any, raw: Any, log_time: int) -> bool:
        """Read an image of a camera and queue it; False once ``--max-frames`` is reached."""
        options, summary = self.options, self.summary
        summary.frames_read += 1
        cam.seen += 1
        if (cam.seen - 1) % options.every:
            summary.frames_skipped_every += 1
            if conn.topic in self.copied:
                self.copy(conn, raw, log_time)
            return True
        if options.max_frames and self.attempted >= options.max_frames:
            summary.frames_read -= 1
            return False
        self.attempted += 1
        t0 = time.perf_counter()
        msg = self.read_message(conn, raw, '', log_time)
        if msg is None:
            if self.progress is not None:
                self.progress.update(1)
            return True
        frame = PendingFrame(cam, msg, stamp_ns(msg), log_time)
        frame.read_ms = (time.perf_counter() - t0) * 1e3
        self.finish_frames(self.joiner.add_frame(frame))
        return True

    def on_rgb(self, conn: Any, raw: Any, log_time: int) -> None:
        """Keep a colour image for the depth frames paired with it (deserialized lazily)."""
        if conn.topic in self.copied:
            self.copy(conn, raw, log_time)
        stamp = peek_stamp_ns(raw, self.is_ros2)
        if stamp is not None:
            self.finish_frames(self.joiner.add_rgb(stamp, LazyColour(self, conn, raw)))

    def on_sparse(self, conn: Any, raw: Any, log_time: int) -> None:
        """Keep a sparse depth image for the frames paired with it."""
        t0 = time.perf_counter()
        msg = self.read_message(conn, raw, 'undeserializable_sparse_depth', log_time)
        if msg is not None:
            read_ms = (time.perf_counter() - t0) * 1e3
            self.finish_frames(self.joiner.add_sparse(stamp_ns(msg), msg, read_ms))

    def read_message(self, conn: Any, raw: Any, error_kind: str,
                     log_time: int | None = None) -> Any:
        """Deserialize an input message as ROS 2, or None (counted under ``error_kind``).

        With ``log_time`` the message is also copied to the output when its topic is copied.
        """
        copy_it = log_time is not None and conn.topic in self.copied
        try:
            msg = deserialize(self.reader, raw, conn.msgtype, conn.topic)
        except UndeserializableMessageError as exc:
            if error_kind:
                self.reporter.report(error_kind, str(exc))
            else:
                self.reporter.report(exc)
            if copy_it and self.is_ros2:
                self.copy(conn, raw, log_time)
            return None
        if not self.is_ros2:
            msg = to_ros2(msg, conn.msgtype, self.factory)
        if copy_it:
            self.copy(conn, raw, log_time, msg)
        return msg

    def copy(self, conn: Any, raw: Any, log_time: int, msg: Any = None) -> None:
        """Copy an input message to the output (ROS 1 messages converted to ROS 2)."""
        if self.is_ros2:
            qos = list(getattr(conn.ext, 'offered_qos_profiles', []) or []) or None
            self.writer.write_raw(conn.topic, conn.msgtype, raw, log_time, qos,
                                  typestore=getattr(self.reader, 'typestore', None))
        elif msg is not None and conn.msgtype in IMAGE_TYPES + (CAMERA_INFO,):
            self.writer.write(conn.topic, msg, log_time)
        else:
            data = ros1_to_ros2_cdr(self.reader, self.factory.typestore, conn, raw)
            if data is None:
                self.reporter.report('uncopyable', f'{conn.topic} ({conn.msgtype}): this ROS 1 '
                                     'message cannot be converted to ROS 2 (type unknown to '
                                     'ROS 2 Humble, or a different definition); not copied.')
            else:
                self.writer.write_raw(conn.topic, conn.msgtype, data, log_time)

    # -- finishing frames -------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Frames per network call: 1 = one at a time; depth topics never batch."""
        if self.options.depth_topic or len(self.cameras) < 2 or \
                not hasattr(self.pipeline, 'process_batch'):   # a process()-only stand-in
            return 1
        return self.options.batch or len(self.cameras)

    def finish_frames(self, frames: list[PendingFrame]) -> None:
        """Process and write the frames the joiner handed out, in order (rounds if batching)."""
        size = self.batch_size
        for frame in frames:
            if size == 1:
                self.finish_frame(frame)
                continue
            if any(f.camera is frame.camera for f in self.round):
                self.finish_batch()
            self.round.append(frame)
            if len(self.round) >= size:
                self.finish_batch()

    def finish_batch(self) -> None:
        """Run the gathered round as one batch and write each frame's outputs, in order."""
        frames, self.round = self.round, []
        admitted = [(frame, info) for frame in frames
                    for ok, _, info in [self.admit(frame)] if ok]
        if not admitted:
            return
        results = self.sink.process_batch(
            [(frame.msg, info, frame.sparse, frame.camera.camera) for frame, info in admitted])
        for (frame, _), result in zip(admitted, results):
            if result is not None:
                self.write_frame(frame, result)

    def admit(self, frame: PendingFrame) -> tuple[bool, Any, Any]:
        """Check a joined frame before it runs: ``(ok, colour image, camera_info)``."""
        cam, stamp = frame.camera, frame.stamp
        if self.progress is not None:
            self.progress.update(1)
        if cam.last_stamp is not None and stamp <= cam.last_stamp:
            self.reporter.report(OutOfOrderStampError(
                f'{cam.topics.image_topic}: stamp {stamp / 1e9:.9f} s is not later than the '
                f'last frame written ({cam.last_stamp / 1e9:.9f} s).',
                'The frame is skipped; check the recording clock if this repeats.'))
            return False, None, None
        rgb = self.colour_of(frame)
        if self.rgb_topic and rgb is None:
            return False, None, None
        info = None if cam.camera is not None else cam.camera_info_for(stamp, frame.log_time)
        return True, rgb, info

    def finish_frame(self, frame: PendingFrame) -> None:
        """Run the pipeline on a joined frame and write its outputs (bad input counted)."""
        ok, rgb, info = self.admit(frame)
        if not ok:
            return
        result = self.sink.process(frame.msg, info, frame.sparse, frame.camera.camera, rgb)
        if result is not None:
            self.write_frame(frame, result)

    def write_frame(self, frame: PendingFrame, result: Any) -> None:
        """Write a processed frame's outputs and count it."""
        cam, msg, stamp = frame.camera, frame.msg, frame.stamp
        t0 = time.perf_counter()
        outputs = self.outputs(cam, msg, result)
        for topic, out in outputs.items():
            self.writer.write(topic, out, frame.log_time)
        write_ms = (time.perf_counter() - t0) * 1e3 - result.timings.get('encode_ms', 0.0) \
            - result.timings.get('cloud_ms', 0.0)
        if outputs:
            self.summary.frames_written += 1
            cam.last_stamp = stamp
        self.sink.account(result, {'read_ms': frame.read_ms, 'write_ms': write_ms})

    def colour_of(self, frame: PendingFrame) -> Any:
        """Return the colour image of an xyzrgb depth frame, or None (reported when needed)."""
        if not self.rgb_topic:
            return None
        rgb = None
        if frame.rgb is not None:
            t0 = time.perf_counter()
            rgb = frame.rgb.message()
            frame.read_ms += (time.perf_counter() - t0) * 1e3
            if rgb is None:
                frame.rgb_note = ' (its message could not be deserialized)'
        if rgb is None:
            self.reporter.report(NoRgbForDepthError(
                f'{frame.camera.topics.image_topic}: no colour image on {self.rgb_topic} for '
                f'the stamp {frame.stamp / 1e9:.9f} s ({self.rule.describe()}){frame.rgb_note}'
                ': the frame is skipped (the xyzrgb cloud topic keeps one layout).',
                'Record the registered colour image with the same stamps as the depth image, '
                'set --sync-policy / --sync-tolerance, or write xyz clouds '
                '(--point-cloud-fields xyz).'))
        return rgb

    def outputs(self, cam: BagCameraStream, msg: Any, result: Any) -> dict[str, Any]:
        """Return ``{output topic: message}`` of a processed frame.

        Besides the pipeline's outputs: ``<ns>/depth/camera_info`` with a relative map too,
        and with ``--camera-info FILE`` the calibration used as ``<ns>/camera_info``, so the
        output bag plays back alone.
        """
        stamp = msg.header.stamp
        header = self.factory.header(stamp.sec, stamp.nanosec, msg.header.frame_id)
        outputs = self.pipeline.outputs(result, header, self.factory, self.options.want)
        topics = {cam.topics.output_topic(k): v for k, v in outputs.items()}
        if outputs and result.camera is not None:
            info = None
            if 'depth/camera_info' not in outputs and 'depth/relative' in outputs:
                info = result.camera.to_camera_info(self.factory, header)
                topics[cam.topics.output_topic('depth/camera_info')] = info
            if cam.camera is not None:
                info = info or result.camera.to_camera_info(self.factory, header)
                topics[cam.topics.output_topic('camera_info')] = info
        return topics
