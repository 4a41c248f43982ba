"""The options of ``depth-node bag``: its command line, checked, and the input's kind.

:func:`add_arguments` builds the flags (every node parameter is a flag too, from the one
table in :mod:`depth_node.parameters`); :func:`options_from_args` checks them into
:class:`Options`; :func:`check_inputs` checks what can be checked before the model loads.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_node import parameters
from depth_node.errors import DepthNodeError

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bag`` flags to its parser."""
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
    out.add_argument('--copy-other-topics', action='store_true',
                     help='also copy every topic the run does not read (TF, IMU, odometry, '
                     'other cameras, ...), so that with --copy-input the output bag plays '
                     'back alone')
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
    copy_other_topics: bool = False
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
    if values['model_file_path'] and not args.list:
        from depth_node.models.model_path import check_model_path
        check_model_path(str(values['model_file_path']))   # never a missing path to the hub
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
        copy_other_topics=args.copy_other_topics,
        points=not args.no_points and publish_points is not False, colorized=colorized,
        json_summary=args.json_summary, quiet=args.quiet, list_only=args.list)


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
