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

This module is the entry point (:func:`run`); the parts live beside it: the options
(:mod:`depth_node.bag_options`), recordings (:mod:`depth_node.bag_rosbag`), joining frames with
their partners (:mod:`depth_node.bagjoin`), image folders and videos
(:mod:`depth_node.bag_folders`), the summary and exit statuses (:mod:`depth_node.bag_summary`)
and reading and writing bags (:mod:`depth_node.bagio`).

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
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
import json
import signal
import sys
import threading
from typing import Any

from depth_node import parameters
from depth_node.bag_folders import check_files, process_files
from depth_node.bag_options import (  # noqa: F401  (the bag tool's names, in one place)
    add_arguments,
    check_inputs,
    check_output,
    clear_output,
    EPILOG,
    IMAGE_SUFFIXES,
    input_kind,
    Options,
    options_from_args,
    VIDEO_SUFFIXES,
)
from depth_node.bag_rosbag import (  # noqa: F401
    BagCameraStream,
    BagRun,
    check_bag,
    check_sparse_depth_topic,
    NoRgbForDepthError,
    OutOfOrderStampError,
    process_bag,
    select_cameras,
    select_rgb_topic,
)
from depth_node.bag_summary import (  # noqa: F401
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_NOT_METRIC,
    EXIT_NOTHING,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    log_stderr,
    progress_bar,
    relative_only_reason,
    Summary,
)
from depth_node.bagio import describe_topics, open_reader
from depth_node.errors import DepthNodeError


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


def add_parser(subparsers: Any) -> None:
    """Create the ``bag`` subcommand parser."""
    parser = subparsers.add_parser(
        'bag', help='add depth images and point clouds to a recorded bag',
        description=__doc__.split('\n\n')[0] + ' Reads ROS 1 bags and rosbag2 (MCAP, SQLite3) '
        'bags, image folders and videos; writes a rosbag2 MCAP bag (or PNG + PLY files).',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)


def build_pipeline(options: Options, log: Callable[[str], None] = log_stderr) -> Any:
    """Return the :class:`~depth_node.pipeline.DepthPipeline` for the options (loads the model)."""
    from depth_node.pipeline import DepthPipeline, PipelineConfig
    values = options.values
    config = PipelineConfig.from_values(values)
    model = None
    if not options.depth_topic:
        from depth_node.runner import open_model
        model = open_model(values['model_file_path'], overrides=parameters.card_overrides(values),
                           **parameters.model_options(values, log))
    return DepthPipeline(model, config, log=log)


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
    check_output(options, kind)
    if kind in ('ros1', 'rosbag2'):
        with open_reader(options.input) as reader:   # topic errors before the model loads
            check_bag(options, reader, log_stderr)
    else:
        check_files(options, kind, log_stderr)
    pipeline = build_pipeline(options)
    removed = clear_output(options, kind)
    if removed:
        log_stderr(f'--overwrite: removed {removed} file(s) of an earlier run from '
                   f'{str(options.output)!r}.')
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
