"""The options of ``depth-node bag``: its command line, checked, and the input's kind.

:func:`add_arguments` builds the flags (every node parameter is a flag too, from the one
table in :mod:`depth_node.parameters`); :func:`options_from_args` checks them into
:class:`Options`; :func:`check_inputs` checks what can be checked before the model loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

from depth_node import parameters
from depth_node.errors import DepthNodeError
from depth_node.tools.arguments import add_parameter_flags, values_from_args

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
  2    usage or configuration error, before the model loads and before anything is
       written (bad option, model or card, a --model that is no model kind, a bag that
       cannot be opened, two image topics for one output namespace, a bad --rgb-topic,
       a non-depth --sparse-depth-topic, a --camera-info of another aspect ratio than
       the images, an existing non-empty OUTPUT without --overwrite)
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
                    'image folders and videos need it or --intrinsics')
    io.add_argument('--intrinsics', type=_intrinsics, default=None, metavar='FX,FY,CX,CY',
                    help='pinhole intrinsics in pixels of the input images (no distortion), '
                    'instead of a --camera-info file; one camera')
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
    io.add_argument('--sparse-depth-dir', type=Path, default=None, metavar='DIR',
                    help='image folders and videos: metric depth images aligned to the images, '
                    'paired by file name stem (a.jpg <-> DIR/a.png; video frames: '
                    'frame_000000), for --scale-source sparse_depth: 16-bit PNG (see '
                    '--sparse-depth-scale), float TIFF or .npy in metres; 0/NaN = none')
    io.add_argument('--sparse-depth-scale', type=float, default=0.001, metavar='M',
                    help='metres per stored unit of the integer files of --sparse-depth-dir '
                    '(default 0.001: millimetres; TUM RGB-D: 0.0002)')
    io.add_argument('--max-frames', type=int, default=0, metavar='N',
                    help='stop after N frames processed (0 = all)')
    io.add_argument('--every', type=int, default=1, metavar='N',
                    help='process every N-th image of each camera')
    io.add_argument('--batch', type=int, default=0, metavar='N',
                    help='frames per network call: 0 (default) = one frame of each camera '
                         'together, as the node does with several cameras; 1 = one frame at '
                         'a time. The outputs are the same; batching needs a model with a '
                         'batch axis (depth-node export --dynamic-batch) to be faster')
    _add_output_arguments(parser.add_argument_group('output'))
    model = parser.add_argument_group('model (any parameter below overrides the card)')
    model.add_argument('--model', dest='model_file_path', default=None, metavar='MODEL',
                       help='ONNX model (with its .card.yaml beside it) or TensorRT engine')
    model.add_argument('--card', dest='card_file_path', default=None, metavar='FILE',
                       help='model card when it is not beside the model')
    params = parser.add_argument_group('node parameters (same names as the ROS parameters)')
    add_parameter_flags(params)
    for action in params._group_actions:
        if action.dest == 'publish_colorized':   # the node's default (True) means nothing here
            action.help = ('same as --colorized: also write <ns>/depth/colorized previews '
                           '(default: not written by the bag tool)')


def _add_output_arguments(out: Any) -> None:
    """Add the flags of the output group."""
    out.add_argument('--copy-input', action='store_true',
                     help='also copy the input topics (images, camera_info, sparse depth, '
                     'colour images of --rgb-topic)')
    out.add_argument('--copy-other-topics', action='store_true',
                     help='also copy every topic the run does not read (TF, IMU, odometry, '
                     'other cameras, ...), so that with --copy-input the output bag plays '
                     'back alone')
    out.add_argument('--overwrite', action='store_true',
                     help='replace an existing non-empty OUTPUT: a bag written before, or the '
                     'files depth-node bag wrote in an output folder (all removed first, so '
                     'no stale file stays); anything else there is never deleted')
    out.add_argument('--no-points', action='store_true', help='do not write point clouds')
    out.add_argument('--colorized', action='store_true',
                     help='also write <ns>/depth/colorized previews (folders: '
                     '<name>_colorized.png)')
    out.add_argument('--json-summary', type=Path, default=None, metavar='FILE',
                     help='write the summary as JSON to FILE')
    out.add_argument('--quiet', action='store_true', help='no progress bar')


@dataclass
class Options:
    """What ``run`` was asked to do, checked (see :func:`options_from_args`)."""

    input: Path  # noqa: A003
    output: Path | None
    values: dict[str, Any]
    image_topics: list[str] | None = None
    camera_info_topic: str | None = None
    camera_info_file: Path | None = None
    intrinsics: tuple[float, float, float, float] | None = None
    depth_topic: str | None = None
    rgb_topic: str | None = None
    sparse_depth_topic: str | None = None
    sparse_depth_dir: Path | None = None
    sparse_depth_scale: float = 0.001
    overwrite: bool = False
    depth_file_encoding: str = '16UC1'   # image folders: 16UC1 PNG (mm) or 32FC1 TIFF (m)
    max_frames: int = 0
    every: int = 1
    batch: int = 0
    copy_input: bool = False
    copy_other_topics: bool = False
    points: bool = True
    colorized: bool = False
    json_summary: Path | None = None
    quiet: bool = False
    list_only: bool = False
    camera_model: Any = None   # CameraModel of camera_info_file / intrinsics (check_inputs)
    camera_frame_id: str = ''  # the calibration file's own frame_id ('' if it has none)

    @property
    def calibration(self) -> str:
        """The calibration given on the command line, in words ('' if none)."""
        if self.camera_info_file is not None:
            return f'--camera-info {str(self.camera_info_file)!r}'
        if self.intrinsics is not None:
            return '--intrinsics ' + ','.join(f'{v:g}' for v in self.intrinsics)
        return ''

    @property
    def want(self) -> tuple[str, ...]:
        """Return the pipeline outputs to write."""
        want = ['depth/image', 'depth/camera_info', 'depth/relative']
        if self.points:
            want.append('points')
        if self.colorized:
            want.append('depth/colorized')
        return tuple(want)


def _intrinsics(text: str) -> tuple[float, float, float, float]:
    """Parse ``fx,fy,cx,cy`` (argparse type)."""
    try:
        values = tuple(float(v) for v in text.replace(' ', '').split(','))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) \
            or values[0] <= 0 or values[1] <= 0:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not fx,fy,cx,cy: four numbers in pixels, fx and fy > 0 '
            '(e.g. 525,525,319.5,239.5)')
    return values   # type: ignore[return-value]


def options_from_args(args: argparse.Namespace) -> Options:
    """Check the command line and turn it into :class:`Options` (DepthNodeError if bad)."""
    values = values_from_args(args)
    reasons = parameters.validate_all(values)
    if reasons:
        raise DepthNodeError('invalid option value(s): ' + '; '.join(reasons) + '.',
                             'See depth-node bag --help for the allowed values.')
    if args.every < 1 or args.max_frames < 0 or getattr(args, 'batch', 0) < 0:
        raise DepthNodeError('--every must be >= 1, --max-frames and --batch >= 0.',
                             'Give positive numbers.')
    _check_model_flags(args, values)
    if not args.list and args.output is None:
        raise DepthNodeError('no OUTPUT given.', 'Give the output bag or folder path after '
                             'the input.')
    _check_calibration_flags(args)
    if values.get('scale_source') == 'sparse_depth' and not args.sparse_depth_topic \
            and not args.sparse_depth_dir and not args.depth_topic and not args.list:
        raise DepthNodeError('--scale-source sparse_depth needs metric depth to fit the scale '
                             'to, but no --sparse-depth-topic was given.',
                             'Add --sparse-depth-topic TOPIC (a metric depth image aligned to '
                             'the camera image, e.g. /camera/aligned_depth_to_color/image_raw; '
                             'see --list; image folders: --sparse-depth-dir DIR), or choose '
                             '--scale-source fixed or ground_plane.')
    if args.sparse_depth_dir is not None and not args.sparse_depth_dir.is_dir():
        raise DepthNodeError(f'--sparse-depth-dir {str(args.sparse_depth_dir)!r} is not a '
                             'folder.', 'Give the folder of depth images paired by name.')
    if not args.sparse_depth_scale > 0:
        raise DepthNodeError('--sparse-depth-scale must be > 0.', 'Give metres per unit.')
    publish_points = values.get('publish_points', True)
    colorized = bool(args.colorized or getattr(args, 'publish_colorized', None))
    return Options(
        input=args.input, output=args.output, values=values, image_topics=args.image_topic,
        camera_info_topic=args.camera_info_topic, camera_info_file=args.camera_info,
        intrinsics=args.intrinsics,
        depth_topic=args.depth_topic, rgb_topic=getattr(args, 'rgb_topic', None),
        sparse_depth_topic=args.sparse_depth_topic, sparse_depth_dir=args.sparse_depth_dir,
        sparse_depth_scale=args.sparse_depth_scale, overwrite=args.overwrite,
        depth_file_encoding=getattr(args, 'output_encoding', None) or '16UC1',
        max_frames=args.max_frames, every=args.every, batch=getattr(args, 'batch', 0),
        copy_input=args.copy_input,
        copy_other_topics=args.copy_other_topics,
        points=not args.no_points and publish_points is not False, colorized=colorized,
        json_summary=args.json_summary, quiet=args.quiet, list_only=args.list)


def _check_model_flags(args: argparse.Namespace, values: dict[str, Any]) -> None:
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


def _check_calibration_flags(args: argparse.Namespace) -> None:
    if args.camera_info is not None and args.intrinsics is not None:
        raise DepthNodeError('--camera-info and --intrinsics exclude each other.',
                             'Give one calibration: a file, or fx,fy,cx,cy.')
    if args.camera_info is not None and not args.camera_info.is_file():
        raise DepthNodeError(f'calibration file {str(args.camera_info)!r} not found.',
                             'Give an existing camera_calibration_parsers YAML file.')
    given = (f'--camera-info {str(args.camera_info)!r}' if args.camera_info is not None
             else '--intrinsics' if args.intrinsics is not None else '')
    if given and args.image_topic and len(args.image_topic) > 1:
        raise DepthNodeError(f"{given} is one camera's calibration, but it would apply to "
                             f"several image topics: {', '.join(args.image_topic)}.",
                             'Run one camera at a time (one --image-topic) with its own '
                             'calibration file.')
    if args.camera_info_topic and args.image_topic and len(args.image_topic) > 1:
        raise DepthNodeError('--camera-info-topic needs a single --image-topic.',
                             'Run once per camera, or rely on sibling camera_info topics.')


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
        if not options.calibration:
            raise DepthNodeError(f'{kind} input needs a calibration.',
                                 'Give --camera-info FILE.yaml (camera_calibration_parsers '
                                 'YAML) or --intrinsics fx,fy,cx,cy (pixels).')
        for flag, value in (('--depth-topic', options.depth_topic),
                            ('--rgb-topic', options.rgb_topic),
                            ('--sparse-depth-topic', options.sparse_depth_topic)):
            if value:
                raise DepthNodeError(f'{flag} only applies to bags, not to {kind} input.',
                                     f'Drop {flag}; use --model and --camera-info'
                                     + (' (sparse depth: --sparse-depth-dir DIR).'
                                        if 'sparse' in flag else '.'))
    elif options.sparse_depth_dir is not None:
        raise DepthNodeError('--sparse-depth-dir applies to image folders and videos.',
                             'For a bag give --sparse-depth-topic TOPIC.')
    if options.camera_info_file is not None and options.camera_model is None:
        from depth_node.calibration import load_calibration
        camera = load_calibration(options.camera_info_file)  # DepthNodeError if bad
        options.camera_frame_id = camera.frame_id
        if not camera.frame_id:
            camera = load_calibration(options.camera_info_file,
                                      frame_id=str(options.camera_info_file))
        options.camera_model = camera


def fit_calibration(options: Options, source: str, size: tuple[int, int],
                    log: Callable[[str], None]) -> None:
    """Fit the command line's calibration to the first image of ``source`` (``size`` = w, h).

    ``--intrinsics`` becomes ``options.camera_model`` at that size. A ``--camera-info`` file
    of another aspect ratio is a usage error (DepthNodeError: exit 2; run before the model
    loads and before anything is written, so the re-run is not blocked); one of the same
    aspect ratio at another size is rescaled, with a loud WARNING on ``log``.
    """
    from depth_node.errors import SizeMismatchError
    if options.camera_model is None and options.intrinsics is not None:
        from depth_node.calibration import camera_from_dict
        fx, fy, cx, cy = options.intrinsics
        options.camera_model = camera_from_dict({
            'image_width': size[0], 'image_height': size[1], 'distortion_model': 'plumb_bob',
            'camera_matrix': [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
            'distortion_coefficients': [0.0] * 5}, frame_id=options.calibration)
    camera = options.camera_model
    if camera is None:
        return
    own = (camera.image_width, camera.image_height)
    try:
        _, rescaled = camera.matched_to_image(*size)
    except SizeMismatchError:
        raise DepthNodeError(
            f'{options.calibration} is a calibration of {own[0]}x{own[1]} images, but '
            f'{source} carries {size[0]}x{size[1]} images: the aspect ratios differ '
            f'({own[0] / own[1]:.4f} vs {size[0] / size[1]:.4f}), so it is not the '
            'calibration of this camera at any resolution.',
            'Give the calibration file of this camera (--image-topic chooses the camera of '
            'a bag), or recalibrate it at this resolution.') from None
    if rescaled:
        log(f'WARNING: {options.calibration} is a calibration of {own[0]}x{own[1]} images, '
            f'but {source} carries {size[0]}x{size[1]} images (same aspect ratio): its '
            f'intrinsics are SCALED by {size[0] / own[0]:.4g} to the image size. Check it is '
            'this camera at another resolution (binning, a resized stream); else give the '
            'right calibration.')


# -- the output -------------------------------------------------------------------------------
#: what depth-node bag writes into an output folder (``--overwrite`` removes only these)
FOLDER_OUTPUTS = ('*_depth.png', '*_depth.tiff', '*_relative.tiff', '*_colorized.png', '*.ply')
#: what a rosbag2 output folder holds
BAG_OUTPUTS = ('metadata.yaml', '*.mcap')


def _ours(output: Path, kind: str) -> tuple[list[Path], list[Path]]:
    """(files depth-node bag writes, anything else) in an existing output folder."""
    patterns = BAG_OUTPUTS if kind in ('ros1', 'rosbag2') else FOLDER_OUTPUTS
    ours, others = [], []
    for entry in sorted(output.iterdir()):
        (ours if entry.is_file() and any(entry.match(p) for p in patterns) else others).append(
            entry)
    return ours, others


def check_output(options: Options, kind: str) -> None:
    """Refuse an existing non-empty OUTPUT unless ``--overwrite`` (DepthNodeError).

    With ``--overwrite`` the output may only hold what depth-node bag writes there (a bag:
    ``metadata.yaml`` and ``.mcap`` files; a folder: ``*_depth.png``, ``*_depth.tiff``,
    ``*_relative.tiff``, ``*_colorized.png``, ``*.ply``): nothing else is ever deleted.
    """
    output = options.output
    if output is None or not output.exists():
        return
    if not output.is_dir():
        raise DepthNodeError(f'the output {str(output)!r} exists and is a file.',
                             'Give a folder path (new, or one written by depth-node bag).')
    ours, others = _ours(output, kind)
    if not ours and not others:
        return
    if not options.overwrite:
        raise DepthNodeError(f'the output {str(output)!r} exists and is not empty '
                             f'({len(ours) + len(others)} entries).',
                             'Choose a new output path, or give --overwrite to replace what '
                             'depth-node bag wrote there.')
    if others:
        raise DepthNodeError(f'--overwrite: the output {str(output)!r} holds '
                             f'{len(others)} entries depth-node bag does not write (e.g. '
                             f'{others[0].name!r}), which are never deleted.',
                             'Choose another output path, or empty that folder yourself.')


def clear_output(options: Options, kind: str) -> int:
    """Remove what an earlier run wrote in OUTPUT (after :func:`check_output`); return count.

    A bag output folder is removed entirely (a new bag is written there); an output folder
    keeps existing, without a stale file of an earlier run beside the new ones.
    """
    output = options.output
    if output is None or not output.is_dir():
        return 0
    ours, others = _ours(output, kind)
    if others:   # checked before; never delete what is not ours
        check_output(options, kind)
    for path in ours:
        path.unlink()
    if kind in ('ros1', 'rosbag2'):
        output.rmdir()
    return len(ours)
