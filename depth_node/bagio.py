"""Reading and writing helpers of the ``depth-node bag`` tool (rosbags based, no ROS).

- :func:`discover`: image + camera_info pairs found by image_transport sibling naming, one
  camera per namespace.
- :class:`BagReader` (:func:`open_reader`): rosbags' AnyReader, every failure a
  :class:`BagReadError`.
- :func:`to_ros2`: ROS 1 ``sensor_msgs`` messages (as rosbags deserializes them from a ``.bag``)
  converted to the ROS 2 Humble message classes of a :class:`~depth_node.messages.MessageFactory`.
- :func:`peek_stamp_ns`: a message's ``header.stamp`` read from its serialized bytes, without
  deserializing the payload (used to index big depth topics cheaply).
- :class:`BagWriter`: a rosbag2 MCAP writer (metadata version 8, which ``ros2 bag`` on Humble
  and Jazzy and Foxglove read) that registers connections on first use.

``rosbags`` is optional for the package: it is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
import queue
import struct
import threading
from typing import Any

from depth_node.errors import DepthNodeError, InputError, require

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
IMAGE_TYPES = (IMAGE, COMPRESSED)

#: rosbag2 metadata version written: 8 keeps offered_qos_profiles a YAML string, which both
#: Humble's and Jazzy's ``ros2 bag`` parse (version 9 writes a YAML list that Humble rejects).
METADATA_VERSION = 8


class UndeserializableMessageError(InputError):
    """The serialized message cannot be decoded as its declared type (truncated, corrupt)."""

    kind = 'undeserializable'


@dataclass(frozen=True)
class CameraTopicNames:
    """One camera of a bag: its image topic, paired camera_info topic and output namespace."""

    image_topic: str
    image_type: str
    camera_info_topic: str | None
    namespace: str

    @property
    def compressed(self) -> bool:
        """Whether the image topic carries ``sensor_msgs/CompressedImage``."""
        return self.image_type == COMPRESSED

    def output_topic(self, suffix: str) -> str:
        """Return the output topic ``<namespace>/<suffix>`` (``suffix`` like ``depth/image``)."""
        return f"{self.namespace.rstrip('/')}/{suffix}"


def base_image_topic(topic: str, msgtype: str) -> str:
    """Return the image_transport base topic: ``/a/image_raw/compressed`` -> ``/a/image_raw``."""
    if msgtype == COMPRESSED and topic.endswith('/compressed'):
        return topic[:-len('/compressed')]
    return topic


def camera_namespace(topic: str, msgtype: str = IMAGE) -> str:
    """Return the namespace of an image topic: the parent of its image_transport base topic."""
    parent = str(PurePosixPath(base_image_topic(topic, msgtype)).parent)
    return parent if parent != '.' else '/'


def sibling_camera_info(topic: str, msgtype: str = IMAGE) -> str:
    """Return the camera_info topic image_transport pairs with an image topic."""
    return f"{camera_namespace(topic, msgtype).rstrip('/')}/camera_info"


def looks_like_depth(topic: str) -> bool:
    """Whether a topic name suggests a depth image (``/camera/depth/...``, ``.../depth/image``).

    Automatic discovery leaves these out: they are inputs for ``--depth-topic`` or
    ``--sparse-depth-topic``, or the outputs of an earlier run.
    """
    return any('depth' in part for part in topic.lower().split('/'))


def _preference(topic: str, msgtype: str) -> tuple[int, str]:
    """Sort key of the image topics of one namespace: raw (lossless) first, then by name."""
    return (0 if msgtype == IMAGE else 1, topic)


@dataclass
class Discovery:
    """What :func:`discover` found: cameras, image topics without camera_info, twins left out.

    ``twins`` maps each image topic left out to the topic used for its camera: image_transport
    publishes one camera under one namespace (``<ns>/image_raw`` and its ``/compressed``
    twin share ``<ns>/camera_info``), and both would write the same ``<ns>/depth/...`` outputs.
    """

    cameras: list[CameraTopicNames]
    lonely: list[str]
    twins: dict[str, str]


def discover(topics: dict[str, str]) -> Discovery:
    """Pair the image topics of a bag with camera_info topics by image_transport naming.

    One camera per namespace: when several image topics share a namespace (an image raw and
    as ``<image>/compressed``, or ``image`` and ``compressed_image`` beside one camera_info),
    the raw (lossless) topic is used, else the first by name; the others are reported as
    twins. Depth-looking topics (see :func:`looks_like_depth`) are left out.

    :param topics: topic name -> message type.
    """
    by_namespace: dict[str, list[str]] = {}
    for topic in sorted(topics):
        msgtype = topics[topic]
        if msgtype in IMAGE_TYPES and not looks_like_depth(topic):
            by_namespace.setdefault(camera_namespace(topic, msgtype), []).append(topic)
    found = Discovery([], [], {})
    for namespace, group in sorted(by_namespace.items()):
        group.sort(key=lambda t: _preference(t, topics[t]))
        chosen, msgtype = group[0], topics[group[0]]
        for twin in group[1:]:
            found.twins[twin] = chosen
        info = sibling_camera_info(chosen, msgtype)
        if topics.get(info) == CAMERA_INFO:
            found.cameras.append(CameraTopicNames(chosen, msgtype, info, namespace))
        else:
            found.lonely.append(chosen)
    found.cameras.sort(key=lambda c: c.image_topic)
    found.lonely.sort()
    return found


def discover_cameras(topics: dict[str, str]) -> tuple[list[CameraTopicNames], list[str]]:
    """Return (cameras with a sibling camera_info, image topics without one).

    See :func:`discover`.
    """
    found = discover(topics)
    return found.cameras, found.lonely


def twin_note(twin: str, chosen: str) -> str:
    """Say that ``twin`` is left out because ``chosen`` is the same camera (same namespace)."""
    return (f'{twin} is the same camera as {chosen} (same namespace '
            f'{camera_namespace(chosen)}, same outputs): using {chosen}; choose the other with '
            '--image-topic')


def describe_topics(topics: dict[str, str], counts: dict[str, int]) -> str:
    """Return a listing of the image topics of a bag and what they pair with (for ``--list``)."""
    found = discover(topics)
    cameras, lonely = found.cameras, found.lonely
    lines = ['cameras (image + camera_info, processed by default):']
    for cam in cameras:
        lines.append(f"  {cam.image_topic} [{cam.image_type.rsplit('/', 1)[-1]}, "
                     f'{counts.get(cam.image_topic, 0)} msgs] + {cam.camera_info_topic} '
                     f'-> outputs under {cam.namespace}')
    if not cameras:
        lines.append('  (none)')
    lines.append('image topics without camera_info (need --image-topic and --camera-info '
                 'FILE.yaml):')
    lines.extend(f'  {t} [{counts.get(t, 0)} msgs]' for t in lonely)
    if not lonely:
        lines.append('  (none)')
    if found.twins:
        lines.append('left out, same camera as a topic above (image_transport twins: one '
                     'camera per namespace):')
        lines.extend(f"  {t} [{topics[t].rsplit('/', 1)[-1]}, {counts.get(t, 0)} msgs]: "
                     f'same camera as {chosen}, which is used' for t, chosen in
                     sorted(found.twins.items()))
    other = [t for t, ty in sorted(topics.items()) if ty in IMAGE_TYPES
             and t not in lonely and t not in found.twins
             and all(t != c.image_topic for c in cameras)]
    if other:
        lines.append('other image topics (depth images: usable with --depth-topic or '
                     '--sparse-depth-topic):')
        lines.extend(f"  {t} [{topics[t].rsplit('/', 1)[-1]}, {counts.get(t, 0)} msgs]"
                     for t in other)
    return '\n'.join(lines)


# -- reading ----------------------------------------------------------------------------------
class BagReadError(DepthNodeError):
    """The input bag cannot be opened or read on (not a bag, truncated, corrupt)."""

    kind = 'unreadable_bag'


_REPAIR_HINT = ('Check that it is a ROS 1 .bag file or a rosbag2 folder (metadata.yaml and its '
                '.mcap or .db3 file) and that it is complete: a recording that was killed '
                'can be truncated. An MCAP file cut short can be repaired with the mcap CLI '
                '(`mcap recover IN.mcap -o OUT.mcap`), a ROS 1 bag with `rosbag reindex`.')


class BagReader:
    """A ``rosbags.highlevel.AnyReader`` whose every failure is a :class:`BagReadError`.

    Use as a context manager (opens the bag). :meth:`messages` raises :class:`BagReadError`
    when the bag cannot be read on (the messages yielded before it are good).
    """

    def __init__(self, path: Path) -> None:
        highlevel = require('rosbags.highlevel', 'reading bags')
        typesys = require('rosbags.typesys', 'reading bags')
        self.path = Path(path)
        try:
            self._reader = highlevel.AnyReader(
                [self.path], default_typestore=typesys.get_typestore(typesys.Stores.ROS2_HUMBLE))
        except Exception as exc:  # AnyReaderError, FileNotFoundError, ...
            raise BagReadError(f'cannot open the bag {str(self.path)!r}: {exc}',
                               _REPAIR_HINT) from exc
        self._open = False

    def __enter__(self) -> BagReader:
        try:
            self._reader.open()
        except Exception as exc:  # AnyReaderError 'File magic is invalid', OSError, ...
            raise BagReadError(f'cannot read the bag {str(self.path)!r}: '
                               f'{type(exc).__name__}: {exc}', _REPAIR_HINT) from exc
        self._open = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._open:
            self._open = False
            self._reader.close()

    @property
    def connections(self) -> list[Any]:
        """Return the bag's connections, one per recorded topic and type."""
        return self._reader.connections

    @property
    def typestore(self) -> Any:
        """Return the typestore of the bag's message definitions."""
        return self._reader.typestore

    @property
    def is_ros2(self) -> bool:
        """Whether the bag is a rosbag2 bag (CDR), not a ROS 1 bag."""
        return bool(self._reader.is2)

    def deserialize(self, raw: bytes | memoryview, msgtype: str) -> Any:
        """Deserialize one message (see :func:`deserialize` for the error handling)."""
        return self._reader.deserialize(raw, msgtype)

    def messages(self, connections: Any = ()) -> Iterator[tuple[Any, int, Any]]:
        """Yield (connection, log time ns, raw bytes); :class:`BagReadError` when it breaks."""
        iterator = self._reader.messages(connections=connections)
        count = 0
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # ReaderError, OverflowError, struct.error, zstd ...
                raise BagReadError(
                    f'reading the bag {str(self.path)!r} failed after {count} message(s): '
                    f'{type(exc).__name__}: {exc}',
                    'The rest of the bag cannot be read (truncated or corrupt recording); '
                    'what was read before is kept. ' + _REPAIR_HINT.split('. ', 1)[1]) from exc
            count += 1
            yield item


def open_reader(path: Path) -> BagReader:
    """Return a :class:`BagReader` for a ROS 1 ``.bag`` or a rosbag2 folder (``with`` opens it).

    rosbag2 bags without embedded message definitions are read with the ROS 2 Humble types.
    Every open or read failure is a :class:`BagReadError` naming the file.
    """
    return BagReader(path)


def peek_stamp_ns(raw: bytes | memoryview, is_ros2: bool) -> int | None:
    """``header.stamp`` in ns of a serialized message whose first field is a std_msgs/Header.

    ROS 2 CDR: 4-byte encapsulation header, then int32 sec, uint32 nanosec (byte order from
    the encapsulation). ROS 1: uint32 seq, then uint32 sec, uint32 nsec, little endian.
    Returns None when the bytes are too short.
    """
    data = bytes(raw[:12])
    if len(data) < 12:
        return None
    if is_ros2:
        order = '<' if data[1] & 1 else '>'
        sec, nanosec = struct.unpack(order + 'iI', data[4:12])
    else:
        sec, nanosec = struct.unpack('<II', data[4:12])
    return sec * 1_000_000_000 + nanosec


def deserialize(reader: Any, raw: bytes | memoryview, msgtype: str, topic: str) -> Any:
    """Deserialize one message, raising :class:`UndeserializableMessageError` when it is bad."""
    try:
        return reader.deserialize(raw, msgtype)
    except Exception as exc:  # AnyReaderError, struct.error, IndexError, ValueError ...
        raise UndeserializableMessageError(
            f'a {msgtype} message on {topic} cannot be deserialized ({len(raw)} bytes): '
            f'{type(exc).__name__}: {exc}',
            'The recording is corrupt or truncated at this message; it is skipped.') from exc


def to_ros2(msg: Any, msgtype: str, factory: Any) -> Any:
    """Return a ROS 1 Image / CompressedImage / CameraInfo as the factory's ROS 2 message.

    ROS 1 headers carry a ``seq`` and CameraInfo spells ``D K R P`` in capitals; ROS 2 has no
    seq and ``d k r p``. Payloads are shared, not copied. Other types are returned unchanged.
    """
    h = msg.header
    header = factory.header(h.stamp.sec, h.stamp.nanosec, h.frame_id)
    if msgtype == IMAGE:
        return factory.Image(header=header, height=msg.height, width=msg.width,
                             encoding=msg.encoding, is_bigendian=msg.is_bigendian,
                             step=msg.step, data=msg.data)
    if msgtype == COMPRESSED:
        return factory.CompressedImage(header=header, format=msg.format, data=msg.data)
    if msgtype == CAMERA_INFO:
        roi = msg.roi
        return factory.CameraInfo(
            header=header, height=msg.height, width=msg.width,
            distortion_model=msg.distortion_model,
            d=factory.float64_array(_field(msg, 'd')),
            k=factory.fixed_float64_array(_field(msg, 'k')),
            r=factory.fixed_float64_array(_field(msg, 'r')),
            p=factory.fixed_float64_array(_field(msg, 'p')),
            binning_x=msg.binning_x, binning_y=msg.binning_y,
            roi=factory.RegionOfInterest(x_offset=roi.x_offset, y_offset=roi.y_offset,
                                         height=roi.height, width=roi.width,
                                         do_rectify=roi.do_rectify))
    return msg


def _same_layout(msgtype: str, ros1: Any, ros2: Any, seen: set[str]) -> bool:
    """Whether a ROS 1 definition serializes like the ROS 2 one (std_msgs/Header's seq aside)."""
    if msgtype in seen or msgtype == 'std_msgs/msg/Header':
        return True
    seen.add(msgtype)
    try:
        fields1, fields2 = ros1.get_msgdef(msgtype).fields, ros2.get_msgdef(msgtype).fields
    except Exception:  # TypesysError: unknown to one of them
        return False
    return len(fields1) == len(fields2) and all(
        _same_field(d1, d2, ros1, ros2, seen) for (_, d1), (_, d2) in zip(fields1, fields2))


def _same_field(d1: Any, d2: Any, ros1: Any, ros2: Any, seen: set[str]) -> bool:
    (kind1, value1), (kind2, value2) = d1, d2
    if kind1 != kind2:
        return False
    if isinstance(value1, str):          # a nested message type
        return value1 == value2 and _same_layout(value1, ros1, ros2, seen)
    if isinstance(value1[0], tuple):    # array / sequence: (element, length)
        return value1[1] == value2[1] and _same_field(value1[0], value2[0], ros1, ros2, seen)
    return value1 == value2             # a base type: (name, bound)


def ros1_to_ros2_cdr(reader: Any, typestore: Any, conn: Any, raw: bytes | memoryview
                     ) -> bytes | None:
    """Return a ROS 1 message as ROS 2 CDR bytes of ``typestore`` (Humble), or None.

    None when the type is unknown to the typestore, its ROS 1 definition has another layout
    than the ROS 2 one, or the bytes do not convert (corrupt). ``std_msgs/Header`` loses its
    ``seq``, as in ROS 2.
    """
    if not _same_layout(conn.msgtype, reader.typestore, typestore, set()):
        return None
    try:
        return bytes(typestore.ros1_to_cdr(bytes(raw), conn.msgtype))
    except Exception:  # SerdeError, struct.error, IndexError ...
        return None


def _field(msg: Any, name: str) -> Any:
    value = getattr(msg, name, None)
    return getattr(msg, name.upper()) if value is None else value


# -- writing ----------------------------------------------------------------------------------
def output_qos() -> list[Any]:
    """Return the offered QoS recorded for the output topics: reliable, volatile, keep last.

    ``ros2 bag play`` republishes with it; reliable serves both reliable and best-effort
    subscribers (rviz, Nav2). Durations 0 mean "default" (infinite) in rmw.
    """
    interfaces = require('rosbags.interfaces', 'writing bags')
    from depth_node.parameters import BY_NAME
    zero = interfaces.QosTime(sec=0, nsec=0)
    return [interfaces.Qos(
        history=interfaces.QosHistory.KEEP_LAST,
        depth=int(BY_NAME['output_qos_depth'].default),
        reliability=interfaces.QosReliability.RELIABLE,
        durability=interfaces.QosDurability.VOLATILE,
        deadline=zero, lifespan=zero,
        liveliness=interfaces.QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False)]


class BagWriter:
    """Write CDR messages of one typestore into a new rosbag2 MCAP bag.

    Connections are registered on first use with the message definition of the typestore
    (Foxglove and ``ros2 bag`` decode with it). Messages are serialized in the caller's thread
    (the serialized bytes are owned copies, so the pipeline may reuse its buffers at once);
    with ``threaded=True`` the MCAP storage work (record framing, chunking, file writes) runs
    in one background thread, in order, overlapping the next frame's inference. Use as a
    context manager, or call :meth:`close` in a ``finally``: it drains the queue and writes
    the index and metadata, so the bag is valid whatever happened before.

    :param path: the output folder; must not exist.
    :param typestore: the ROS 2 typestore the messages belong to.
    :param custom_data: string key/values stored in metadata.yaml ``custom_data``.
    :param threaded: write in a background thread (bounded queue of ``queue_size`` messages).
    """

    def __init__(self, path: Path, typestore: Any, custom_data: dict[str, str] | None = None,
                 threaded: bool = True, queue_size: int = 32) -> None:
        rosbag2 = require('rosbags.rosbag2', 'writing bags')
        path = Path(path)
        if path.exists():
            raise DepthNodeError(f'the output {str(path)!r} exists already.',
                                 'Choose a new output path or delete the old one.')
        self.path = path
        self.typestore = typestore
        self._writer = rosbag2.Writer(path, version=METADATA_VERSION,
                                      storage_plugin=rosbag2.StoragePlugin.MCAP)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._writer.open()
        self._connections: dict[tuple[str, str], Any] = {}
        self._qos = output_qos()
        self.counts: dict[str, int] = {}
        self.closed = False
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=queue_size)
            self._thread = threading.Thread(target=self._work, name='bag-writer', daemon=True)
            self._thread.start()

    def _connection(self, topic: str, msgtype: str, qos: list[Any] | None = None,
                    typestore: Any = None) -> Any:
        key = (topic, msgtype)
        conn = self._connections.get(key)
        if conn is None:
            store = self.typestore
            if typestore is not None and msgtype not in store.fielddefs:
                store = typestore    # a type of the input bag the output typestore lacks
            conn = self._writer.add_connection(
                topic, msgtype, typestore=store,
                offered_qos_profiles=self._qos if qos is None else qos)
            self._connections[key] = conn
        return conn

    def _store(self, topic: str, msgtype: str, data: Any, log_time_ns: int,
               qos: list[Any] | None, typestore: Any = None) -> None:
        self._writer.write(self._connection(topic, msgtype, qos, typestore), int(log_time_ns),
                           data)

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._store(*item)
                except BaseException as exc:  # reported to the caller on its next call
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise DepthNodeError(f'writing {str(self.path)!r} failed: {error}',
                                 'Check the free disk space and the output path.') from error

    def write(self, topic: str, msg: Any, log_time_ns: int) -> int:
        """Serialize ``msg`` (CDR, little endian) and write it; returns the bytes written."""
        msgtype = msg.__msgtype__
        data = self.typestore.serialize_cdr(msg, msgtype)
        self.write_raw(topic, msgtype, data, log_time_ns)
        return len(data)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, log_time_ns: int,
                  qos: list[Any] | None = None, typestore: Any = None) -> None:
        """Write serialized CDR bytes (owned by the writer from now on: do not modify).

        :param typestore: where to find the message definition of a type the writer's own
            typestore does not know (a custom type of the input bag).
        """
        self._check()
        if self._queue is not None:
            self._queue.put((topic, msgtype, data, log_time_ns, qos, typestore))
        else:
            self._store(topic, msgtype, data, log_time_ns, qos, typestore)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        """Drain the queue, write the MCAP summary and metadata.yaml; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._thread is not None:
            while True:     # even on Ctrl-C: the queued messages are part of the bag
                try:
                    self._queue.put(None)
                    self._thread.join()
                    break
                except KeyboardInterrupt:
                    continue
        self._writer.close()
        self._check()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
