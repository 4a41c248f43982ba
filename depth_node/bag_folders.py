"""``depth-node bag`` on image folders and videos: depth PNGs and PLY clouds in a folder."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
import time
from typing import Any

from depth_node.bag_options import check_inputs, IMAGE_SUFFIXES, Options
from depth_node.bag_summary import (
    FrameSink,
    log_stderr,
    mark_interrupted,
    progress_bar,
    Summary,
)
from depth_node.device import host_array
from depth_node.errors import DepthNodeError
import numpy as np


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
                  log: Callable[[str], None] = log_stderr) -> Summary:
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
    sink = FrameSink(pipeline, summary, log)
    reporter = sink.reporter
    want = ('depth/image', 'points') if options.points else ('depth/image',)
    progress = progress_bar(None, options.quiet)
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
        mark_interrupted(summary, exc)
    finally:
        summary.wall_s = round(time.perf_counter() - t_start, 3)
        if progress is not None:
            progress.close()
    return sink.finish(written)
