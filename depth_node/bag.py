"""``depth-node bag INPUT OUTPUT``: add depth images and point clouds to a recording, offline.

Inputs: a ROS 1 ``.bag``, a rosbag2 folder (MCAP or SQLite3), a folder of images or a video
file. Bags produce a new rosbag2 MCAP bag; image folders and videos produce 16-bit PNG depth
maps (millimetres, 0 = invalid) and PLY point clouds in the OUTPUT folder.

Every frame goes through :class:`depth_node.pipeline.DepthPipeline`, the node's own per-frame
code path. This module only reads, pairs, counts and writes. Bad frames (truncated or
undecodable images, unknown encodings, unusable or mismatching camera_info, stamps going
backwards, no camera_info, no colour image for an xyzrgb depth frame) are skipped with a
rate-limited message and counted by reason; every good frame is processed and written. See
``doc/bag.md``.

Exit status: 0 every readable frame was processed; 3 some frames were skipped for bad input
(the summary counts them by reason) or the bag became unreadable part way (truncated or
corrupt: the output holds what was done); 4 nothing could be processed; 5 metres were asked
for (a scale source, or a metric model) but not one frame written is metric; 2 usage or
configuration error (checked before the model loads, an unreadable bag included); 130, 143,
129 interrupted by SIGINT (Ctrl-C), SIGTERM (``timeout``, ``kill``, ``docker stop``,
systemd), SIGHUP: the output is closed and valid, with what was done, and the summary is
printed.
"""

from __future__ import annotations

import argparse
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import re
import signal
import sys
import threading
import time
from typing import Any

from depth_node import parameters
from depth_node.bagio import (
    BagReadError,
    BagWriter,
    base_image_topic,
    CAMERA_INFO,
    camera_namespace,
    CameraTopics,
    COMPRESSED,
    describe_topics,
    deserialize,
    discover,
    IMAGE,
    IMAGE_TYPES,
    open_reader,
    peek_stamp_ns,
    sibling_camera_info,
    to_ros2,
    twin_note,
    UndeserializableMessageError,
)
from depth_node.bagjoin import PartnerBuffer, PartnerIndex
from depth_node.device import host_array
from depth_node.errors import DepthNodeError, InputError
from depth_node.messages import stamp_ns
from depth_node.ratelimit import ErrorReporter
from depth_node.sync import PairingRule
import numpy as np

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_NOTHING = 4
EXIT_NOT_METRIC = 5
EXIT_INTERRUPTED = 130      # SIGINT (Ctrl-C): 128 + 2
EXIT_TERMINATED = 143       # SIGTERM: 128 + 15
EXIT_HANGUP = 129           # SIGHUP: 128 + 1
#: exit status of a run stopped by each signal (the shell's 128 + signal number)
SIGNAL_EXIT = {'SIGINT': EXIT_INTERRUPTED, 'SIGTERM': EXIT_TERMINATED, 'SIGHUP': EXIT_HANGUP}
#: relative-only reason of a run that asked for no metric scale (not a failure)
NO_SCALE_ASKED = 'no scale source (scale_source none)'

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v', '.mpg', '.mpeg')

EPILOG = """\
exit status:
  0    every readable frame was processed and written
  3    some frames were skipped for bad input (the summary counts them by reason), or
       the bag became unreadable part way (truncated/corrupt): the output bag is valid and
       holds the frames before that point (summary: read_error)
  4    nothing could be processed (no frame written; the output bag is still valid)
  5    not one metric frame written although metres were asked for (a scale source or
       a metric model): no sparse depth paired, floor rejected, ...; the summary says why
  2    usage or configuration error (bad option, model or card, a bag that cannot be
       opened, two image topics for one output namespace, a bad --rgb-topic)
  130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM (timeout, kill, docker stop,
       systemd), 129 by SIGHUP: the output holds what was done and is valid; the
       summary is printed

pairing: camera_info, --sparse-depth-topic and --rgb-topic messages are paired with an
image by the node's rule, --sync-policy (exact, approximate within --sync-tolerance, latest
logged before the image, latest_before = largest stamp not after the image; default exact),
so replaying the bag into the node pairs the same frames; a partner logged later waits.
--depth-topic with --point-cloud-fields xyzrgb: the colour image paired by that rule
from --rgb-topic, else from the bag's only colour camera (raw topic of raw + /compressed
twins; logged); a depth frame without one is skipped (no_rgb_for_depth), so the cloud
topic keeps one layout. No --rgb-topic and several (or no) colour cameras: xyz clouds and
a warning.
one camera per namespace: discovery uses the raw topic of raw + /compressed twins.
outputs per camera go under the camera namespace (the image topic's parent):
  <ns>/depth/image, <ns>/depth/camera_info, <ns>/points, <ns>/depth/relative (relative
  model without scale), <ns>/depth/colorized (with --colorized); stamps and frame_id of the
  input image, message log time = the input image's log time.
"""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would raise KeyboardInterrupt."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.signal_name = name


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (handled like Ctrl-C) in this block.

    Only the first signal raises: a second one while the output is being closed is ignored,
    so the bag is always finished. The previous handlers come back afterwards. Outside the
    main thread (where Python cannot set handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def handler(signum: int, _frame: Any) -> None:
        if raised:
            return
        raised.append(signum)
        raise Terminated(signal.Signals(signum).name)

    names = [n for n in ('SIGTERM', 'SIGHUP') if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), handler) for n in names}
    try:
        yield
    finally:
        for name, old in previous.items():
            signal.signal(getattr(signal, name), old)


def _interrupted(summary: Any, exc: KeyboardInterrupt) -> None:
    summary.interrupted = True
    summary.signal = getattr(exc, 'signal_name', 'SIGINT')


class OutOfOrderStampError(InputError):
    """An image's stamp is not later than the last frame written for its camera."""

    kind = 'out_of_order_stamp'


class NoRgbForDepthError(InputError):
    """A depth frame of an xyzrgb run has no colour image paired by the pairing rule."""

    kind = 'no_rgb_for_depth'


# -- command line -----------------------------------------------------------------------------
def add_parser(subparsers: Any) -> None:
    """Create the ``bag`` subcommand parser."""
    parser = subparsers.add_parser(
        'bag', help='add depth images and point clouds to a recorded bag',
        description=__doc__.split('\n\n')[0] + ' Reads ROS 1 bags and rosbag2 (MCAP, SQLite3) '
        'bags, image folders and videos; writes a rosbag2 MCAP bag (or PNG + PLY files).',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', type=Path, help='ROS 1 .bag, rosbag2 folder, image folder or '
                        'video file')
    parser.add_argument('output', type=Path, nargs='?', default=None,
                        help='output rosbag2 folder (bags) or output folder (images, video); '
                        'not needed with --list')
    io = parser.add_argument_group('topics and input')
    io.add_argument('--list', action='store_true',
                    help='list the image topics and their camera_info pairs, then exit')
    io.add_argument('--image-topic', action='append', default=None, metavar='TOPIC',
                    help='image topic to process (raw Image or .../compressed); repeat for '
                    'several cameras; default: every image topic with a sibling camera_info')
    io.add_argument('--camera-info-topic', default=None, metavar='TOPIC',
                    help='camera_info topic for a single --image-topic / --depth-topic '
                    '(default: the image_transport sibling <ns>/camera_info)')
    io.add_argument('--camera-info', type=Path, default=None, metavar='FILE',
                    help='calibration file (camera_calibration_parsers YAML or camera_info '
                    'JSON) for recordings without camera_info; overrides camera_info topics; '
                    'required for image folders and videos')
    io.add_argument('--depth-topic', default=None, metavar='TOPIC',
                    help='no model: turn this existing depth image topic (16UC1 mm / 32FC1 m) '
                    'into filtered depth and point clouds (a depth_image_proc replacement)')
    io.add_argument('--rgb-topic', default=None, metavar='TOPIC',
                    help='with --depth-topic and --point-cloud-fields xyzrgb: the colour '
                    'image registered to the depth image (same size; raw Image or '
                    ".../compressed), paired by --sync-policy; default: the bag's only "
                    'colour camera, if it has exactly one')
    io.add_argument('--sparse-depth-topic', default=None, metavar='TOPIC',
                    help='metric depth topic aligned to the image, paired by --sync-policy, for '
                    '--scale-source sparse_depth')
    io.add_argument('--max-frames', type=int, default=0, metavar='N',
                    help='stop after N frames processed (0 = all)')
    io.add_argument('--every', type=int, default=1, metavar='N',
                    help='process every N-th image of each camera')
    out = parser.add_argument_group('output')
    out.add_argument('--copy-input', action='store_true',
                     help='also copy the input topics (images, camera_info, sparse depth, '
                     'colour images of --rgb-topic)')
    out.add_argument('--no-points', action='store_true', help='do not write point clouds')
    out.add_argument('--colorized', action='store_true',
                     help='also write <ns>/depth/colorized previews')
    out.add_argument('--json-summary', type=Path, default=None, metavar='FILE',
                     help='write the summary as JSON to FILE')
    out.add_argument('--quiet', action='store_true', help='no progress bar')
    model = parser.add_argument_group('model (any parameter below overrides the card)')
    model.add_argument('--model', dest='model_file_path', default=None, metavar='MODEL',
                       help='ONNX model (with its .card.yaml beside it) or TensorRT engine')
    model.add_argument('--card', dest='card_file_path', default=None, metavar='FILE',
                       help='model card when it is not beside the model')
    params = parser.add_argument_group('node parameters (same names as the ROS parameters)')
    parameters.add_arguments(params)
    for action in params._group_actions:
        if action.dest == 'publish_colorized':   # the node's default (True) means nothing here
            action.help = ('same as --colorized: also write <ns>/depth/colorized previews '
                           '(default: not written by the bag tool)')
    parser.set_defaults(func=run)


@dataclass
class Options:
    """What ``run`` was asked to do, checked (see :func:`options_from_args`)."""

    input: Path  # noqa: A003
    output: Path | None
    values: dict[str, Any]
    image_topics: list[str] | None = None
    camera_info_topic: str | None = None
    camera_info_file: Path | None = None
    depth_topic: str | None = None
    rgb_topic: str | None = None
    sparse_depth_topic: str | None = None
    max_frames: int = 0
    every: int = 1
    copy_input: bool = False
    points: bool = True
    colorized: bool = False
    json_summary: Path | None = None
    quiet: bool = False
    list_only: bool = False
    camera_model: Any = None   # CameraModel of camera_info_file, loaded by check_inputs
    camera_frame_id: str = ''  # the calibration file's own frame_id ('' if it has none)

    @property
    def want(self) -> tuple[str, ...]:
        """Return the pipeline outputs to write."""
        want = ['depth/image', 'depth/camera_info', 'depth/relative']
        if self.points:
            want.append('points')
        if self.colorized:
            want.append('depth/colorized')
        return tuple(want)


def options_from_args(args: argparse.Namespace) -> Options:
    """Check the command line and turn it into :class:`Options` (DepthNodeError if bad)."""
    values = parameters.values_from_args(args)
    reasons = parameters.validate_all(values)
    if reasons:
        raise DepthNodeError('invalid option value(s): ' + '; '.join(reasons) + '.',
                             'See depth-node bag --help for the allowed values.')
    if args.every < 1 or args.max_frames < 0:
        raise DepthNodeError('--every must be >= 1 and --max-frames >= 0.',
                             'Give positive numbers.')
    if args.depth_topic and values['model_file_path']:
        raise DepthNodeError('--depth-topic and --model exclude each other.',
                             'Use --depth-topic to filter an existing depth topic without a '
                             'model, or --model to predict depth from images.')
    if getattr(args, 'rgb_topic', None) and not args.depth_topic and not args.list:
        raise DepthNodeError('--rgb-topic colours the point clouds of a --depth-topic, but no '
                             '--depth-topic was given.',
                             'Add --depth-topic TOPIC, or drop --rgb-topic (with --model the '
                             "clouds are coloured by the model's own input image).")
    if not args.list and not args.depth_topic and not values['model_file_path']:
        raise DepthNodeError('no model given.', 'Pass --model MODEL.onnx (export one with '
                             '`depth-node export`), or --depth-topic TOPIC to use an existing '
                             'depth topic.')
    if not args.list and args.output is None:
        raise DepthNodeError('no OUTPUT given.', 'Give the output bag or folder path after '
                             'the input.')
    if args.camera_info is not None and not args.camera_info.is_file():
        raise DepthNodeError(f'calibration file {str(args.camera_info)!r} not found.',
                             'Give an existing camera_calibration_parsers YAML file.')
    if args.camera_info is not None and args.image_topic and len(args.image_topic) > 1:
        raise DepthNodeError(f"--camera-info {str(args.camera_info)!r} is one camera's "
                             'calibration, but it would apply to several image topics: '
                             f"{', '.join(args.image_topic)}.",
                             'Run one camera at a time (one --image-topic) with its own '
                             'calibration file.')
    if values.get('scale_source') == 'sparse_depth' and not args.sparse_depth_topic \
            and not args.depth_topic and not args.list:
        raise DepthNodeError('--scale-source sparse_depth needs metric depth to fit the scale '
                             'to, but no --sparse-depth-topic was given.',
                             'Add --sparse-depth-topic TOPIC (a metric depth image aligned to '
                             'the camera image, e.g. /camera/aligned_depth_to_color/image_raw; '
                             'see --list), or choose --scale-source fixed or ground_plane.')
    if args.camera_info_topic and args.image_topic and len(args.image_topic) > 1:
        raise DepthNodeError('--camera-info-topic needs a single --image-topic.',
                             'Run once per camera, or rely on sibling camera_info topics.')
    publish_points = values.get('publish_points', True)
    colorized = bool(args.colorized or getattr(args, 'publish_colorized', None))
    return Options(
        input=args.input, output=args.output, values=values, image_topics=args.image_topic,
        camera_info_topic=args.camera_info_topic, camera_info_file=args.camera_info,
        depth_topic=args.depth_topic, rgb_topic=getattr(args, 'rgb_topic', None),
        sparse_depth_topic=args.sparse_depth_topic,
        max_frames=args.max_frames, every=args.every, copy_input=args.copy_input,
        points=not args.no_points and publish_points is not False, colorized=colorized,
        json_summary=args.json_summary, quiet=args.quiet, list_only=args.list)


def _stderr(message: str) -> None:
    try:
        from tqdm import tqdm
        tqdm.write(message, file=sys.stderr)
    except ImportError:
        print(message, file=sys.stderr)


def build_pipeline(options: Options, log: Callable[[str], None] = _stderr) -> Any:
    """Return the :class:`~depth_node.pipeline.DepthPipeline` for the options (loads the model)."""
    from depth_node.pipeline import DepthPipeline, PipelineConfig
    values = options.values
    config = PipelineConfig.from_values(values)
    model = None
    if not options.depth_topic:
        from depth_node.models.runner import open_model
        model = open_model(values['model_file_path'], overrides=parameters.card_overrides(values),
                           **parameters.model_options(values, log))
    return DepthPipeline(model, config, log=log)


def input_kind(path: Path) -> str:
    """``'ros1'``, ``'rosbag2'``, ``'images'`` or ``'video'`` (DepthNodeError if none)."""
    if not path.exists():
        raise DepthNodeError(f'input {str(path)!r} does not exist.', 'Check the path.')
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == '.bag':
            return 'ros1'
        if suffix in VIDEO_SUFFIXES:
            return 'video'
        if suffix in ('.mcap', '.db3'):
            raise DepthNodeError(f'{str(path)!r} is a single rosbag2 storage file.',
                                 'Give the bag folder (the one holding metadata.yaml).')
        raise DepthNodeError(f'cannot tell what {str(path)!r} is (suffix {suffix!r}).',
                             'Give a .bag file, a rosbag2 folder, an image folder or a video '
                             f"file ({', '.join(VIDEO_SUFFIXES)}).")
    if (path / 'metadata.yaml').is_file() or any(path.glob('*.mcap')) \
            or any(path.glob('*.db3')):
        return 'rosbag2'
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        return 'images'
    raise DepthNodeError(f'{str(path)!r} holds neither a rosbag2 bag nor images.',
                         'Give a rosbag2 folder (metadata.yaml + .mcap/.db3) or a folder of '
                         f"images ({', '.join(IMAGE_SUFFIXES)}).")


def check_inputs(options: Options, kind: str) -> None:
    """Check what can be checked without the model, and load the calibration file.

    Runs before the model loads (a TensorRT build can take minutes), so a bad calibration,
    a missing one or an option that does not apply to the input fails at once.
    Sets ``options.camera_model`` (labelled with the file name when the file names no
    frame, so messages about it name the file) and ``options.camera_frame_id``.
    """
    if kind in ('images', 'video'):
        if options.camera_info_file is None:
            raise DepthNodeError(f'{kind} input needs a calibration.',
                                 'Give --camera-info FILE.yaml (camera_calibration_parsers '
                                 'YAML).')
        for flag, value in (('--depth-topic', options.depth_topic),
                            ('--rgb-topic', options.rgb_topic),
                            ('--sparse-depth-topic', options.sparse_depth_topic)):
            if value:
                raise DepthNodeError(f'{flag} only applies to bags, not to {kind} input.',
                                     f'Drop {flag}; use --model and --camera-info.')
    if options.camera_info_file is not None and options.camera_model is None:
        from depth_node.camera import CameraModel
        camera = CameraModel.from_file(options.camera_info_file)  # DepthNodeError if bad
        options.camera_frame_id = camera.frame_id
        if not camera.frame_id:
            camera = CameraModel.from_file(options.camera_info_file,
                                           frame_id=str(options.camera_info_file))
        options.camera_model = camera


# -- statistics and summary -------------------------------------------------------------------
@dataclass
class Summary:
    """What a run did; :meth:`to_dict` is the ``--json-summary`` content."""

    input: str = ''  # noqa: A003
    output: str = ''
    cameras: list[dict[str, Any]] = field(default_factory=list)
    frames_read: int = 0
    frames_processed: int = 0
    frames_written: int = 0
    frames_metric: int = 0
    frames_relative_only: int = 0
    relative_only_reasons: dict[str, int] = field(default_factory=dict)
    #: per reason, the last message with its numbers (``relative_only_reasons`` counts alike)
    relative_only_examples: dict[str, str] = field(default_factory=dict)
    frames_skipped_every: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    messages_written: dict[str, int] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float | int] = field(default_factory=dict)
    wall_s: float = 0.0
    inference_fraction: float = 0.0
    interrupted: bool = False
    signal: str = ''   # SIGINT, SIGTERM or SIGHUP when interrupted
    read_error: str = ''
    exit_status: int = EXIT_OK

    @property
    def not_metric(self) -> bool:
        """Whether metres were asked for and not one frame written is metric."""
        return bool(self.frames_written and not self.frames_metric and any(
            reason != NO_SCALE_ASKED for reason in self.relative_only_reasons))

    @property
    def skipped_total(self) -> int:
        """Frames skipped for bad input, all reasons together."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-serializable data."""
        data = dict(self.__dict__)
        data['skipped_total'] = self.skipped_total
        return data

    def format(self) -> str:  # noqa: A003
        """Human-readable summary for stderr."""
        lines = [f'{self.input} -> {self.output}' + (f'  (INTERRUPTED by {self.signal})'
                                                     if self.interrupted else '')]
        lines.append(f'frames: {self.frames_read} read, {self.frames_written} written, '
                     f'{self.skipped_total} skipped for bad input'
                     + (f', {self.frames_skipped_every} left out by --every'
                        if self.frames_skipped_every else '')
                     + (f', {self.frames_relative_only} relative only (no metric scale)'
                        if self.frames_relative_only else ''))
        for kind, count in sorted(self.skipped.items()):
            lines.append(f'  skipped {kind}: {count}')
        for reason, count in sorted(self.relative_only_reasons.items()):
            example = self.relative_only_examples.get(reason, '')
            lines.append(f'  relative only, {reason}: {count}'
                         + (f' (last: {example})' if example and example != reason else ''))
        if self.not_metric:
            lines.append('NOT ONE METRIC FRAME: metres were asked for, but every frame written '
                         'is relative only (see the reasons above); exit status '
                         f'{EXIT_NOT_METRIC}.')
        if self.read_error:
            lines.append(f'INPUT UNREADABLE from there on, stopped early: {self.read_error}')
        if self.stage_ms:
            stages = ', '.join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in
                               self.stage_ms.items())
            lines.append(f'mean ms per frame: {stages}')
        if self.scale:
            lines.append('scale: ' + ', '.join(
                f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
                for k, v in self.scale.items()))
        lines.append(f'wall {self.wall_s:.2f} s, inference {100 * self.inference_fraction:.1f}'
                     f' % of it; exit status {self.exit_status}')
        return '\n'.join(lines)


class _Stats:
    """Per-stage time sums and scale values over the processed frames."""

    ORDER = ('read_ms', 'decode_ms', 'preprocess_ms', 'inference_ms', 'postprocess_ms',
             'metric_ms', 'encode_ms', 'cloud_ms', 'write_ms')

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.scales: list[float] = []

    def add(self, timings: dict[str, float]) -> None:
        for key, value in timings.items():
            self.sums[key] += float(value)
            self.counts[key] += 1

    def means(self) -> dict[str, float]:
        keys = [k for k in self.ORDER if k in self.sums] + sorted(
            k for k in self.sums if k not in self.ORDER)
        return {k: round(self.sums[k] / self.counts[k], 3) for k in keys}

    def scale_summary(self) -> dict[str, float | int]:
        if not self.scales:
            return {}
        values = np.asarray(self.scales, dtype=np.float64)
        return {'accepted_fits': int(values.size), 'mean': float(values.mean()),
                'min': float(values.min()), 'max': float(values.max())}


def _exit_status(summary: Summary) -> int:
    if summary.interrupted:
        return SIGNAL_EXIT.get(summary.signal, EXIT_INTERRUPTED)
    if summary.frames_written == 0:
        return EXIT_NOTHING
    if summary.not_metric:
        return EXIT_NOT_METRIC
    if summary.skipped_total or summary.read_error:
        return EXIT_SKIPPED
    return EXIT_OK


def _progress(total: int | None, quiet: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit='frame', file=sys.stderr, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty(), desc='depth-node bag')


# -- frame processing shared by bags and files ------------------------------------------------
class _FrameSink:
    """Run the pipeline on a frame, count bad input, keep the statistics."""

    def __init__(self, pipeline: Any, options: Options, reporter: ErrorReporter,
                 stats: _Stats, summary: Summary) -> None:
        self.pipeline = pipeline
        self.options = options
        self.reporter = reporter
        self.stats = stats
        self.summary = summary

    def run(self, msg: Any, camera_info: Any, sparse: Any, camera: Any,
            rgb: Any = None) -> Any:
        """Return the pipeline's FrameResult, or None when the frame was bad (counted).

        ``rgb`` (depth topics only) is the registered colour image of an xyzrgb cloud.
        """
        self.summary.frames_processed += 1
        try:
            if self.options.depth_topic:
                return self.pipeline.process_depth(msg, camera_info, rgb, camera=camera)
            return self.pipeline.process(msg, camera_info, sparse, camera=camera)
        except InputError as exc:
            self.reporter.report(exc)
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            # Malformed messages that slipped past the decoders' checks: still one bad frame,
            # never a crash of the whole run.
            self.reporter.report('malformed_message',
                                 f'a frame could not be processed ({type(exc).__name__}: '
                                 f'{exc}); skipped.')
        return None

    def account(self, result: Any, extra: dict[str, float]) -> None:
        timings = dict(result.timings)
        timings.update(extra)
        self.stats.add(timings)
        report = result.scale
        self.summary.frames_metric += bool(result.metric)
        if not result.metric:
            self.summary.frames_relative_only += 1
            reason = relative_only_reason(report)
            reasons = self.summary.relative_only_reasons
            reasons[reason] = reasons.get(reason, 0) + 1
            self.summary.relative_only_examples[reason] = relative_only_reason(report,
                                                                               numbers=True)
        elif report is not None and report.accepted and report.source not in ('model', 'none') \
                and math.isfinite(report.scale):
            self.stats.scales.append(float(report.scale))


_NO_SCALE = re.compile(r'^no metric scale \((?P<source>[^)]*)\): (?P<why>.*?)'
                       r'(; publishing the relative map only)?$', re.S)
_NUMBER = re.compile(r'(?<![A-Za-z_])[-+]?\d+(\.\d+)?(e[-+]?\d+)?')


def relative_only_reason(report: Any, numbers: bool = False) -> str:
    """Return a short key of why a frame got no metric scale (numbers as N, to count alike).

    With ``numbers`` the numbers are kept (the message as it was, for the summary).

    From the metric layer's ``ScaleReport.message``: ``'no scale source (scale_source
    none)'``, ``'sparse_depth: no sparse depth image for this frame'``, ``'ground_plane: only
    N of N floor points are inliers (need N)'``, ...
    """
    if report is None:
        return 'no scale report'
    source = str(getattr(report, 'source', '') or '')
    message = str(getattr(report, 'message', '') or '').strip()
    if source == 'none':
        return 'no scale source (scale_source none)'
    match = _NO_SCALE.match(message)
    if match:
        reason = f"{match.group('source')}: {match.group('why')}"
    else:
        reason = f'{source}: {message}' if source and message else (message or 'unknown')
    return reason if numbers else _NUMBER.sub('N', reason)


# -- bags -------------------------------------------------------------------------------------
#: frames of a camera waiting for their sparse depth or colour image, colour images buffered
#: for a later depth frame: at most this many (the oldest goes on without / is dropped).
MAX_BUFFERED = 64


@dataclass
class _Camera:
    topics: CameraTopics
    camera: Any = None                 # CameraModel from --camera-info FILE
    seen: int = 0
    last_stamp: int | None = None
    infos: dict[int, Any] = field(default_factory=dict)
    info_index: PartnerIndex = field(default_factory=lambda: PartnerIndex(PairingRule()))
    queue: deque = field(default_factory=deque)   # _Frame s read, not finished, in order

    def camera_info_for(self, stamp: int, log_time: int) -> Any:
        """Return the camera_info the pairing rule gives an image, or None."""
        return self.infos.get(self.info_index.partner(stamp, log_time))


@dataclass(eq=False)
class _Frame:
    """An image (or depth image) read from the bag, with what is paired with it so far."""

    cam: _Camera
    msg: Any
    stamp: int
    log_time: int
    read_ms: float
    sparse: Any = None
    rgb: Any = None
    need_sparse: bool = False   # its sparse depth is later in the bag
    need_rgb: bool = False      # its colour image is later in the bag
    rgb_stamp: int | None = None   # the stamp of its colour image (pairing rule)
    rgb_note: str = ''          # why no colour image was found, for the message

    @property
    def waits(self) -> bool:
        """Whether something paired with it is still to come."""
        return self.need_sparse or self.need_rgb


def _select_cameras(options: Options, topics: dict[str, str],
                    log: Callable[[str], None] | None = None) -> list[CameraTopics]:
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
        if options.camera_info_file is not None:
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
        return [CameraTopics(topic, topics[topic], info_for(topic, topics[topic]),
                             camera_namespace(topic, topics[topic]))]
    if options.image_topics:
        out: list[CameraTopics] = []
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
            out.append(CameraTopics(topic, msgtype, info_for(topic, msgtype), namespace))
        return out
    found = discover(topics)
    cameras, lonely = found.cameras, found.lonely
    if log is not None:
        for twin, chosen in sorted(found.twins.items()):
            log(f'note: {twin_note(twin, chosen)}.')
    if options.camera_info_file is not None:
        if len(lonely) + len(cameras) == 1:
            only = (cameras[0].image_topic if cameras else lonely[0])
            return [CameraTopics(only, topics[only], None, camera_namespace(only, topics[only]))]
        names = ', '.join([c.image_topic for c in cameras] + lonely)
        raise DepthNodeError('--camera-info FILE applies to one camera, but the bag has '
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


def process_bag(options: Options, pipeline: Any, factory: Any | None = None,
                log: Callable[[str], None] = _stderr) -> Summary:
    """Process a ROS 1 or rosbag2 bag into a new rosbag2 MCAP bag at ``options.output``.

    :param pipeline: a :class:`~depth_node.pipeline.DepthPipeline` (or anything with the same
        ``process`` / ``process_depth`` / ``outputs`` methods).
    :param factory: ROS 2 message factory of the output (Humble by default).
    :returns: the :class:`Summary`, ``exit_status`` set. KeyboardInterrupt is caught: the bag
        is closed with what was written and the summary says ``interrupted``.
    """
    from depth_node.messages import rosbags_factory
    factory = factory or rosbags_factory('humble')
    summary = Summary(input=str(options.input), output=str(options.output))
    reporter = ErrorReporter(log)
    stats = _Stats()
    sink = _FrameSink(pipeline, options, reporter, stats, summary)
    check_inputs(options, 'ros1')
    camera_model = options.camera_model

    reader = open_reader(options.input)
    with reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        cameras = {t.image_topic: _Camera(t, camera_model)
                   for t in _select_cameras(options, topics, log)}
        is2 = reader.is2
        conns_by_topic: dict[str, list[Any]] = defaultdict(list)
        for conn in reader.connections:
            conns_by_topic[conn.topic].append(conn)
        rgb_topic = select_rgb_topic(options, topics, log)
        summary.cameras = [{'image_topic': c.topics.image_topic,
                            'camera_info': (str(options.camera_info_file)
                                            if c.camera is not None
                                            else c.topics.camera_info_topic),
                            'namespace': c.topics.namespace} for c in cameras.values()]
        if rgb_topic:
            summary.cameras[0]['rgb_topic'] = rgb_topic
        sparse_topic = options.sparse_depth_topic
        if sparse_topic and topics.get(sparse_topic) not in IMAGE_TYPES:
            raise DepthNodeError(f'sparse depth topic {sparse_topic!r} is not an image topic '
                                 'of the bag.', 'Run with --list to see the image topics.')
        if sparse_topic and options.values.get('scale_source') != 'sparse_depth':
            log(f'note: --sparse-depth-topic {sparse_topic} is read but scale_source is '
                f"{options.values.get('scale_source')!r}; add --scale-source sparse_depth to "
                'use it.')

        # pass 1: camera_info (small) and the stamps of the sparse depth and colour topics
        info_topics = {c.topics.camera_info_topic: c for c in cameras.values()
                       if c.topics.camera_info_topic}
        by_info: dict[str, list[_Camera]] = defaultdict(list)
        for cam in cameras.values():
            if cam.topics.camera_info_topic:
                by_info[cam.topics.camera_info_topic].append(cam)
        index_conns = [c for t in info_topics for c in conns_by_topic[t]]
        if sparse_topic:
            index_conns += conns_by_topic[sparse_topic]
        if rgb_topic:
            index_conns += conns_by_topic[rgb_topic]
        rule = PairingRule.from_values(options.values)
        sparse_index, rgb_index = PartnerIndex(rule), PartnerIndex(rule)
        for cam in cameras.values():
            cam.info_index = PartnerIndex(rule)
        try:
            for conn, log_time, raw in reader.messages(index_conns) if index_conns else ():
                if conn.topic in (sparse_topic, rgb_topic):
                    stamp = peek_stamp_ns(raw, is2)
                    if stamp is not None:
                        (sparse_index if conn.topic == sparse_topic else rgb_index).add(
                            stamp, log_time)
                    continue
                try:
                    msg = deserialize(reader, raw, conn.msgtype, conn.topic)
                except UndeserializableMessageError as exc:
                    reporter.report('undeserializable_camera_info', str(exc))
                    continue
                if not is2:
                    msg = to_ros2(msg, CAMERA_INFO, factory)
                stamp = stamp_ns(msg)
                for cam in by_info[conn.topic]:
                    cam.infos[stamp] = msg
                    cam.info_index.add(stamp, log_time)
        except BagReadError as exc:   # the second pass stops at the same place
            log(f'warning: indexing camera_info: {exc}')

        # pass 2: images (and sparse depth, and copies) in log-time order
        read_topics = set(cameras)
        if sparse_topic:
            read_topics.add(sparse_topic)
        if rgb_topic:
            read_topics.add(rgb_topic)
        if options.copy_input:
            read_topics |= set(info_topics)
        main_conns = [c for t in sorted(read_topics) for c in conns_by_topic[t]]
        total = sum(c.msgcount for t in cameras for c in conns_by_topic[t])
        total = -(-total // options.every)
        if options.max_frames:
            total = min(total, options.max_frames)

        from depth_node import __version__
        writer = BagWriter(options.output, factory.typestore, custom_data={
            'depth_node.version': __version__, 'depth_node.input': str(options.input)})
        progress = _progress(total, options.quiet)
        sparse_buffer = PartnerBuffer(256)          # stamp -> message
        rgb_buffer = PartnerBuffer(MAX_BUFFERED)    # stamp -> (connection, raw bytes)
        attempted = 0
        t_start = time.perf_counter()

        def finish_frame(frame: _Frame) -> None:
            cam, msg, stamp = frame.cam, frame.msg, frame.stamp
            if progress is not None:
                progress.update(1)
            if cam.last_stamp is not None and stamp <= cam.last_stamp:
                reporter.report(OutOfOrderStampError(
                    f'{cam.topics.image_topic}: stamp {stamp / 1e9:.9f} s is not later than the '
                    f'last frame written ({cam.last_stamp / 1e9:.9f} s).',
                    'The frame is skipped; check the recording clock if this repeats.'))
                return
            if rgb_topic and frame.rgb is None:
                reporter.report(NoRgbForDepthError(
                    f'{cam.topics.image_topic}: no colour image on {rgb_topic} for the stamp '
                    f'{stamp / 1e9:.9f} s ({rule.describe()}){frame.rgb_note}: the frame is '
                    'skipped (the xyzrgb cloud topic keeps one layout).',
                    'Record the registered colour image with the same stamps as the depth '
                    'image, set --sync-policy / --sync-tolerance, or write xyz clouds '
                    '(--point-cloud-fields xyz).'))
                return
            info = None if cam.camera is not None else cam.camera_info_for(stamp, frame.log_time)
            result = sink.run(msg, info, frame.sparse, cam.camera, frame.rgb)
            if result is None:
                return
            t0 = time.perf_counter()
            header = factory.header(msg.header.stamp.sec, msg.header.stamp.nanosec,
                                    msg.header.frame_id)
            outputs = pipeline.outputs(result, header, factory, options.want)
            for suffix, out in outputs.items():
                writer.write(cam.topics.output_topic(suffix), out, frame.log_time)
            write_ms = (time.perf_counter() - t0) * 1e3 - result.timings.get('encode_ms', 0.0) \
                - result.timings.get('cloud_ms', 0.0)
            if outputs:
                summary.frames_written += 1
                cam.last_stamp = stamp
            sink.account(result, {'read_ms': frame.read_ms, 'write_ms': write_ms})

        def drain(cam: _Camera) -> None:
            """Finish the camera's frames in arrival order, up to the first still waiting."""
            while cam.queue and not cam.queue[0].waits:
                finish_frame(cam.queue.popleft())

        def settle(frame: _Frame) -> None:
            """Stop waiting: the frame goes on with what it has (a later drain finishes it)."""
            frame.need_sparse = frame.need_rgb = False
            sparse_buffer.forget(frame)
            rgb_buffer.forget(frame)

        def flush_pending() -> None:
            """Finish the frames whose sparse depth or colour image never came (unreadable)."""
            for cam in cameras.values():
                for frame in cam.queue:
                    if frame.need_rgb:
                        frame.rgb_note = ' (it was indexed but could not be read)'
                    settle(frame)
                drain(cam)

        def colour(conn: Any, raw: Any) -> Any:
            """Deserialize a colour image (None if it cannot be: counted)."""
            try:
                msg = deserialize(reader, raw, conn.msgtype, conn.topic)
            except UndeserializableMessageError as exc:
                reporter.report('undeserializable_rgb', str(exc))
                return None
            return msg if is2 else to_ros2(msg, conn.msgtype, factory)

        def copy(conn: Any, raw: bytes | memoryview, msg: Any, log_time: int) -> None:
            if is2:
                qos = list(getattr(conn.ext, 'offered_qos_profiles', []) or []) or None
                writer.write_raw(conn.topic, conn.msgtype, raw, log_time, qos)
            elif msg is not None:
                writer.write(conn.topic, to_ros2(msg, conn.msgtype, factory), log_time)

        def read_input(conn: Any, raw: bytes | memoryview, log_time: int, copy_it: bool,
                       on_error: Callable[[UndeserializableMessageError], Any]) -> Any:
            """Deserialize an input message as ROS 2 (copied to the output if asked).

            Returns None, after ``on_error(exc)``, when the message does not deserialize.
            """
            try:
                msg = deserialize(reader, raw, conn.msgtype, conn.topic)
            except UndeserializableMessageError as exc:
                on_error(exc)
                if copy_it:
                    copy(conn, raw, None, log_time)
                return None
            if not is2:
                msg = to_ros2(msg, conn.msgtype, factory)
            if copy_it:
                copy(conn, raw, msg, log_time)
            return msg

        try:
            for conn, log_time, raw in reader.messages(main_conns):
                topic = conn.topic
                cam = cameras.get(topic)
                is_input_copy = options.copy_input and (
                    cam is not None or topic in (sparse_topic, rgb_topic)
                    or topic in info_topics)
                if cam is None and topic == rgb_topic:
                    if is_input_copy:
                        copy(conn, raw, None if is2 else _try_deserialize(reader, raw, conn),
                             log_time)
                    stamp = peek_stamp_ns(raw, is2)
                    if stamp is None:
                        continue
                    frames = rgb_buffer.put(stamp, (conn, raw))
                    if not frames:
                        continue
                    t0 = time.perf_counter()
                    msg = colour(conn, raw)
                    read_ms = (time.perf_counter() - t0) * 1e3
                    for frame in frames:
                        frame.rgb = msg
                        frame.read_ms += read_ms
                        if msg is None:
                            frame.rgb_note = ' (its message could not be deserialized)'
                        frame.need_rgb = False
                        if not frame.waits:
                            settle(frame)
                        drain(frame.cam)
                    continue
                if cam is None and topic != sparse_topic:
                    if is_input_copy:
                        msg = None
                        if not is2:
                            try:
                                msg = deserialize(reader, raw, conn.msgtype, topic)
                            except UndeserializableMessageError:
                                msg = None
                        copy(conn, raw, msg, log_time)
                    continue
                if topic == sparse_topic and cam is None:
                    t0 = time.perf_counter()
                    msg = read_input(conn, raw, log_time, is_input_copy,
                                     lambda exc: reporter.report('undeserializable_sparse_depth',
                                                                 str(exc)))
                    if msg is None:
                        continue
                    frames = sparse_buffer.put(stamp_ns(msg), msg)
                    read_ms = (time.perf_counter() - t0) * 1e3
                    for frame in frames:
                        frame.sparse = msg
                        frame.read_ms += read_ms
                        frame.need_sparse = False
                        if not frame.waits:
                            settle(frame)
                        drain(frame.cam)
                    continue

                # an image of a camera
                summary.frames_read += 1
                cam.seen += 1
                if (cam.seen - 1) % options.every:
                    summary.frames_skipped_every += 1
                    if is_input_copy:
                        copy(conn, raw, None if is2 else _try_deserialize(reader, raw, conn),
                             log_time)
                    continue
                if options.max_frames and attempted >= options.max_frames:
                    summary.frames_read -= 1
                    break
                attempted += 1
                t0 = time.perf_counter()
                msg = read_input(conn, raw, log_time, is_input_copy, reporter.report)
                if msg is None:
                    if progress is not None:
                        progress.update(1)
                    continue
                stamp = stamp_ns(msg)
                frame = _Frame(cam, msg, stamp, log_time, 0.0)
                if sparse_topic:   # the partner the rule picks; it may come later in the bag
                    partner = sparse_index.partner(stamp, log_time)
                    frame.sparse = sparse_buffer.get(partner)
                    frame.need_sparse = frame.sparse is None and partner is not None
                    if frame.need_sparse:
                        sparse_buffer.wait(partner, frame)
                if rgb_topic:
                    frame.rgb_stamp = rgb_index.partner(stamp, log_time)
                    buffered = rgb_buffer.get(frame.rgb_stamp)
                    if buffered is not None:
                        frame.rgb = colour(*buffered)
                        if frame.rgb is None:
                            frame.rgb_note = ' (its message could not be deserialized)'
                    elif frame.rgb_stamp is not None:
                        frame.need_rgb = True
                        rgb_buffer.wait(frame.rgb_stamp, frame)
                frame.read_ms = (time.perf_counter() - t0) * 1e3
                cam.queue.append(frame)
                if len(cam.queue) > MAX_BUFFERED:   # bounded: the oldest stops waiting
                    oldest = cam.queue[0]
                    if oldest.need_rgb:
                        oldest.rgb_note = (f' (it comes more than {MAX_BUFFERED} frames '
                                           'later in the bag)')
                    settle(oldest)
                drain(cam)
            flush_pending()
        except BagReadError as exc:
            summary.read_error = str(exc)
            log(f'error: {exc}')
            flush_pending()
        except KeyboardInterrupt as exc:
            _interrupted(summary, exc)
        finally:
            summary.wall_s = round(time.perf_counter() - t_start, 3)
            if progress is not None:
                progress.close()
            writer.close()
    _finish_summary(summary, stats, reporter, writer.counts)
    return summary


def _try_deserialize(reader: Any, raw: bytes | memoryview, conn: Any) -> Any:
    try:
        return deserialize(reader, raw, conn.msgtype, conn.topic)
    except UndeserializableMessageError:
        return None


def _finish_summary(summary: Summary, stats: _Stats, reporter: ErrorReporter,
                    written: dict[str, int]) -> None:
    summary.skipped = reporter.snapshot()
    summary.messages_written = dict(written)
    summary.stage_ms = stats.means()
    summary.scale = stats.scale_summary()
    inference_s = stats.sums.get('inference_ms', 0.0) / 1e3
    summary.inference_fraction = round(inference_s / summary.wall_s, 4) if summary.wall_s else 0.0
    summary.exit_status = _exit_status(summary)


# -- image folders and videos -----------------------------------------------------------------
def _frames(path: Path, kind: str) -> Iterator[tuple[str, Any, int]]:
    """(name, BGR uint8 image or None if unreadable, stamp ns) of each image / video frame."""
    import cv2
    if kind == 'images':
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for i, file in enumerate(files):
            yield file.stem, cv2.imread(str(file), cv2.IMREAD_COLOR), i * 1_000_000
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DepthNodeError(f'OpenCV cannot open the video {str(path)!r}.',
                             'Check the file, or extract its frames into a folder of images.')
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            msec = capture.get(cv2.CAP_PROP_POS_MSEC)
            yield f'frame_{index:06d}', frame, int(round(msec * 1e6)) if msec > 0 else index
            index += 1
    finally:
        capture.release()


def process_files(options: Options, pipeline: Any, kind: str, factory: Any | None = None,
                  log: Callable[[str], None] = _stderr) -> Summary:
    """Process an image folder or a video into ``<name>_depth.png`` + ``<name>.ply`` files.

    PNGs are 16-bit millimetres with 0 = invalid (REP 118 16UC1); relative models without a
    metric scale write ``<name>_relative.tiff`` (float32, unitless) instead and no cloud.
    """
    import cv2
    from depth_node.clouds import pointcloud2_to_array, write_ply
    from depth_node.images import encode_depth, make_image
    from depth_node.messages import rosbags_factory
    check_inputs(options, kind)
    factory = factory or rosbags_factory('humble')
    camera = options.camera_model
    frame_id = options.camera_frame_id or 'camera_optical_frame'
    out_dir = options.output
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(input=str(options.input), output=str(out_dir),
                      cameras=[{'camera_info': str(options.camera_info_file)}])
    reporter = ErrorReporter(log)
    stats = _Stats()
    sink = _FrameSink(pipeline, options, reporter, stats, summary)
    want = ('depth/image', 'points') if options.points else ('depth/image',)
    progress = _progress(None, options.quiet)
    t_start = time.perf_counter()
    written: dict[str, int] = defaultdict(int)
    attempted = 0
    try:
        for name, bgr, stamp in _frames(options.input, kind):
            summary.frames_read += 1
            if (summary.frames_read - 1) % options.every:
                summary.frames_skipped_every += 1
                continue
            if options.max_frames and attempted >= options.max_frames:
                summary.frames_read -= 1
                break
            attempted += 1
            if progress is not None:
                progress.update(1)
            header = factory.header(stamp // 1_000_000_000, stamp % 1_000_000_000, frame_id)
            if bgr is None:
                reporter.report('unreadable_file', f'{name}: OpenCV cannot read this image; '
                                'skipped.')
                continue
            t0 = time.perf_counter()
            msg = make_image(factory, header, np.ascontiguousarray(bgr), 'bgr8')
            read_ms = (time.perf_counter() - t0) * 1e3
            result = sink.run(msg, None, None, camera)
            if result is None:
                continue
            t0 = time.perf_counter()
            if result.metric:
                depth_mm = encode_depth(result.depth, '16UC1')   # numpy or a device tensor
                cv2.imwrite(str(out_dir / f'{name}_depth.png'), depth_mm)
                written['depth_png'] += 1
                outputs = pipeline.outputs(result, header, factory, want)
                if 'points' in outputs:
                    cloud = pointcloud2_to_array(outputs['points'])
                    names = [n for n in ('x', 'y', 'z', 'rgb') if n in cloud.dtype.names]
                    write_ply(out_dir / f'{name}.ply',
                              np.stack([cloud[n] for n in names], axis=-1).astype(np.float32))
                    written['ply'] += 1
            else:
                cv2.imwrite(str(out_dir / f'{name}_relative.tiff'),
                            host_array(result.relative).astype(np.float32, copy=False))
                written['relative_tiff'] += 1
            summary.frames_written += 1
            sink.account(result, {'read_ms': read_ms,
                                  'write_ms': (time.perf_counter() - t0) * 1e3})
    except KeyboardInterrupt as exc:
        _interrupted(summary, exc)
    finally:
        summary.wall_s = round(time.perf_counter() - t_start, 3)
        if progress is not None:
            progress.close()
    _finish_summary(summary, stats, reporter, written)
    return summary


# -- entry point ------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Run ``depth-node bag``; returns the exit status (see the module doc)."""
    options = options_from_args(args)
    kind = input_kind(options.input)
    if options.list_only:
        if kind not in ('ros1', 'rosbag2'):
            raise DepthNodeError('--list applies to bags.', 'Give a .bag file or rosbag2 '
                                 'folder.')
        with open_reader(options.input) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            counts: dict[str, int] = defaultdict(int)
            for c in reader.connections:
                counts[c.topic] += c.msgcount
            print(describe_topics(topics, counts))
        return EXIT_OK
    check_inputs(options, kind)   # everything that can fail fast, before the model loads
    if kind in ('ros1', 'rosbag2'):
        if options.output.exists():
            raise DepthNodeError(f'the output {str(options.output)!r} exists already.',
                                 'Choose a new output path or delete the old one.')
        with open_reader(options.input) as reader:   # topic errors before the model loads
            topics = {c.topic: c.msgtype for c in reader.connections}
            _select_cameras(options, topics)
            select_rgb_topic(options, topics)
    pipeline = build_pipeline(options)
    try:
        with signals_as_interrupt():
            if kind in ('ros1', 'rosbag2'):
                summary = process_bag(options, pipeline)
            else:
                summary = process_files(options, pipeline, kind)
    finally:
        model = getattr(pipeline, 'model', None)
        if model is not None and hasattr(model, 'close'):
            model.close()
    print(summary.format(), file=sys.stderr)
    if options.json_summary is not None:
        options.json_summary.write_text(json.dumps(summary.to_dict(), indent=2) + '\n')
    return summary.exit_status
