"""``depth-node bag`` on image folders and videos: depth files and PLY clouds in a folder.

Per colour image (or video frame) ``<name>``: ``<name>_depth.png`` (16-bit millimetres,
0 = invalid: REP 118 ``16UC1``) or, with ``--output-encoding 32FC1``, ``<name>_depth.tiff``
(float32 metres, REP 117 NaN/Inf kept); ``<name>.ply`` (the valid points, unless
``--no-points``); ``<name>_relative.tiff`` (float32, unitless) for a relative model without
a metric scale; ``<name>_colorized.png`` with ``--colorized``. Depth images in the input
folder (single-channel 16-bit or float files) are left out and counted, not processed as
colour. ``--sparse-depth-dir`` pairs a metric depth file with each image by file name stem.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
import time
from typing import Any

from depth_node.bag_options import check_inputs, fit_calibration, IMAGE_SUFFIXES, Options
from depth_node.bag_summary import (
    FrameSink,
    log_stderr,
    mark_interrupted,
    progress_bar,
    Summary,
)
from depth_node.device import host_array
from depth_node.errors import DepthNodeError, InputError
import numpy as np

#: suffixes of the depth files of ``--sparse-depth-dir``
DEPTH_FILE_SUFFIXES = ('.png', '.tif', '.tiff', '.npy', '.pgm', '.exr')


def colour_of(stored: np.ndarray | None) -> np.ndarray | None:
    """Return a file's pixels as BGR uint8, or None when it holds depth (or nothing).

    8-bit grey, BGR and BGRA are colour; 16-bit 3- or 4-channel files are colour at 16 bits
    (scaled to 8); single-channel 16-bit and float files are depth images.
    """
    import cv2
    if stored is None:
        return None
    channels = 1 if stored.ndim == 2 else stored.shape[2]
    if stored.dtype != np.uint8:
        if channels == 1 or stored.dtype != np.uint16:
            return None
        stored = (stored >> 8).astype(np.uint8)
    if channels == 1:
        return cv2.cvtColor(stored, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(stored, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(stored[..., :3])


def read_frames(path: Path, kind: str) -> Iterator[tuple[str, Any, int]]:
    """(name, pixels as read or None if unreadable, stamp ns) of each image / video frame.

    Image files are read unchanged (bit depth and channels kept: :func:`colour_of` tells
    colour from depth); video frames are BGR uint8.
    """
    import cv2
    if kind == 'images':
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for i, file in enumerate(files):
            yield file.stem, cv2.imread(str(file), cv2.IMREAD_UNCHANGED), i * 1_000_000
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


def first_colour_size(path: Path, kind: str) -> tuple[str, tuple[int, int]] | None:
    """(name, (width, height)) of the first colour image or frame, or None if there is none."""
    for name, stored, _ in read_frames(path, kind):
        bgr = colour_of(stored)
        if bgr is not None:
            return name, (bgr.shape[1], bgr.shape[0])
    return None


def check_files(options: Options, kind: str, log: Callable[[str], None]) -> None:
    """Check an image folder or video run against its input, before the model loads.

    The calibration (``--camera-info`` / ``--intrinsics``) against the first colour image:
    another aspect ratio is a usage error, a rescale a loud WARNING.
    """
    check_inputs(options, kind)
    first = first_colour_size(options.input, kind)
    if first is not None:
        fit_calibration(options, f'{options.input}/{first[0]}', first[1], log)


class SparseDepthFolder:
    """The metric depth files of ``--sparse-depth-dir``, by file name stem."""

    def __init__(self, folder: Path, scale: float) -> None:
        self.scale = scale
        self.files: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in DEPTH_FILE_SUFFIXES:
                self.files.setdefault(path.stem, path)

    def depth_for(self, name: str) -> np.ndarray | None:
        """Return the depth (float32 metres, NaN = none) paired with ``name``, or None.

        :raises InputError: the file cannot be read as depth (counted by the caller).
        """
        from depth_node.evaluate import EvaluationError, load_depth_file
        path = self.files.get(name)
        if path is None:
            return None
        try:
            return load_depth_file(path, self.scale, what='sparse depth file',
                                   float_scale=False)
        except EvaluationError as exc:
            raise BadSparseDepthFileError(exc.message, exc.hint) from exc


class BadSparseDepthFileError(InputError):
    """A file of ``--sparse-depth-dir`` cannot be read as depth."""

    kind = 'bad_sparse_depth_file'


def process_files(options: Options, pipeline: Any, kind: str, factory: Any | None = None,
                  log: Callable[[str], None] = log_stderr) -> Summary:
    """Process an image folder or a video into depth files, clouds and previews.

    See the module doc for the files written. Returns the :class:`Summary`, ``exit_status``
    set; KeyboardInterrupt is caught (the summary says ``interrupted``).
    """
    from depth_node.messages import rosbags_factory
    check_inputs(options, kind)
    return FolderRun(options, pipeline, kind, factory or rosbags_factory('humble'), log).run()


class FolderRun:
    """One run over an image folder or a video: read, pair sparse depth, process, write."""

    def __init__(self, options: Options, pipeline: Any, kind: str, factory: Any,
                 log: Callable[[str], None]) -> None:
        self.options = options
        self.pipeline = pipeline
        self.kind = kind
        self.factory = factory
        self.frame_id = options.camera_frame_id or 'camera_optical_frame'
        self.summary = Summary(input=str(options.input), output=str(options.output), cameras=[
            {'camera_info': str(options.camera_info_file or options.calibration)}])
        self.sink = FrameSink(pipeline, self.summary, log)
        self.reporter = self.sink.reporter
        self.written: dict[str, int] = defaultdict(int)
        self.sparse = (SparseDepthFolder(options.sparse_depth_dir, options.sparse_depth_scale)
                       if options.sparse_depth_dir is not None else None)
        self.want = tuple(w for w in ('depth/image', 'points', 'depth/colorized')
                          if w in options.want)

    def run(self) -> Summary:
        """Do the whole run; returns the finished summary."""
        options, summary = self.options, self.summary
        options.output.mkdir(parents=True, exist_ok=True)
        progress = progress_bar(None, options.quiet)
        t_start = time.perf_counter()
        attempted = 0
        try:
            for name, stored, stamp in read_frames(options.input, self.kind):
                bgr = colour_of(stored)
                if bgr is None and stored is not None:
                    summary.depth_images_left_out += 1    # a depth image, not a colour one
                    continue
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
                self.process(name, bgr, stamp)
        except KeyboardInterrupt as exc:
            mark_interrupted(summary, exc)
        finally:
            summary.wall_s = round(time.perf_counter() - t_start, 3)
            if progress is not None:
                progress.close()
        return self.sink.finish(self.written)

    def process(self, name: str, bgr: np.ndarray | None, stamp: int) -> None:
        """Run the pipeline on one image and write its files (bad input counted)."""
        from depth_node.images import make_image
        if bgr is None:
            self.reporter.report('unreadable_file', f'{name}: OpenCV cannot read this image; '
                                 'skipped.')
            return
        t0 = time.perf_counter()
        header = self.factory.header(stamp // 1_000_000_000, stamp % 1_000_000_000,
                                     self.frame_id)
        msg = make_image(self.factory, header, bgr, 'bgr8')
        sparse = self.sparse_message(name, header)
        if self.options.camera_model is None:     # --intrinsics without a readable first image
            fit_calibration(self.options, name, (bgr.shape[1], bgr.shape[0]), log_stderr)
        read_ms = (time.perf_counter() - t0) * 1e3
        result = self.sink.process(msg, None, sparse, self.options.camera_model)
        if result is None:
            return
        t0 = time.perf_counter()
        self.write(name, result, header)
        self.summary.frames_written += 1
        self.sink.account(result, {'read_ms': read_ms,
                                   'write_ms': (time.perf_counter() - t0) * 1e3})

    def sparse_message(self, name: str, header: Any) -> Any:
        """Return the ``32FC1`` sparse depth image paired with ``name``, or None."""
        from depth_node.images import make_image
        if self.sparse is None:
            return None
        try:
            depth = self.sparse.depth_for(name)
        except InputError as exc:
            self.reporter.report(exc)
            return None
        if depth is None:
            return None
        return make_image(self.factory, header, np.nan_to_num(depth, nan=0.0), '32FC1')

    def write(self, name: str, result: Any, header: Any) -> None:
        """Write the files of one processed frame."""
        import cv2
        from depth_node.clouds import pointcloud2_to_array, write_ply
        from depth_node.images import encode_depth, image_to_array
        out_dir = self.options.output
        if result.metric:
            if self.options.depth_file_encoding == '32FC1':
                depth = host_array(result.depth).astype(np.float32, copy=False)
                cv2.imwrite(str(out_dir / f'{name}_depth.tiff'), depth)
                self.written['depth_tiff'] += 1
            else:
                cv2.imwrite(str(out_dir / f'{name}_depth.png'), encode_depth(result.depth,
                                                                             '16UC1'))
                self.written['depth_png'] += 1
        else:
            cv2.imwrite(str(out_dir / f'{name}_relative.tiff'),
                        host_array(result.relative).astype(np.float32, copy=False))
            self.written['relative_tiff'] += 1
        outputs = self.pipeline.outputs(result, header, self.factory, self.want)
        if 'points' in outputs:
            cloud = pointcloud2_to_array(outputs['points'])
            names = [n for n in ('x', 'y', 'z', 'rgb') if n in cloud.dtype.names]
            write_ply(out_dir / f'{name}.ply',
                      np.stack([cloud[n] for n in names], axis=-1).astype(np.float32))
            self.written['ply'] += 1
        if 'depth/colorized' in outputs:
            rgb = image_to_array(outputs['depth/colorized'])
            cv2.imwrite(str(out_dir / f'{name}_colorized.png'),
                        cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
            self.written['colorized_png'] += 1
