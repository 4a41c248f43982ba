"""Command-line pieces every tool shares: help layout, ``WxH`` resolutions, card override flags.

The flags of the parameter table come from :func:`depth_node.parameters.add_arguments`; this
module adds what only command lines need.
"""

from __future__ import annotations

import argparse

from depth_node.parameters import add_arguments, CARD_GROUP


class HelpFormatter(argparse.HelpFormatter):
    """Show an option's default in its help only when it says something (not None/flags)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ''
        default = action.default
        if ('%(default)' in help_text or default in (None, True, False, argparse.SUPPRESS)
                or action.nargs == 0 or not action.option_strings):
            return help_text
        return help_text + ' (default: %(default)s)'


def parse_resolution(text: str) -> tuple[int, int]:
    """``'640x480'`` -> ``(640, 480)``: the one parser of ``--resolution`` values."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'resolution {text!r} is not WIDTHxHEIGHT, e.g. 640x480') from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f'resolution {text!r} must be positive')
    return width, height


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--field-name`` option per overridable card field (default None) and --card.

    The flags come from the parameter table (:mod:`depth_node.parameters`), so they are the
    same in every tool and as ROS parameters.

    :param parser: the parser (or argument group) to extend.
    """
    group = parser.add_argument_group(
        'model card overrides', 'override fields of the model card (or give them for a '
        'card-less ONNX file); see doc/model_card.md')
    group.add_argument('--card', dest='card_path', default=None, metavar='CARD.yaml',
                       help='model card file (default: <model>.card.yaml beside the model)')
    add_arguments(group, groups=(CARD_GROUP,))
