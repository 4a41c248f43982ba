"""Command-line pieces every tool shares: help layout, ``WxH`` resolutions, card override flags.

The flags of the parameter table (:func:`add_parameter_flags`: ``min_range`` ->
``--min-range``, default None = keep the parameter's default) and what only command lines
need: the help layout, the one ``WxH`` parser, the card override flags.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
import json
from typing import Any

from depth_node import parameters
from depth_node.parameters import CARD_GROUP


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


def print_figures(figures: Mapping[str, Any], as_json: bool, hide: Iterable[str] = (),
                  key_width: int = 0) -> None:
    """Print a benchmark's figures: one JSON object (all of them), or ``key: value`` lines.

    :param hide: keys left out of the lines (long series such as ``samples``).
    :param key_width: right-align the keys to this width in the lines.
    """
    if as_json:
        print(json.dumps(figures))
        return
    hidden = set(hide)
    for key, value in figures.items():
        if key not in hidden:
            print(f'{key:>{key_width}}: {value}' if key_width else f'{key}: {value}')


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
    add_parameter_flags(group, groups=(CARD_GROUP,))


def _float_arg(text: str) -> float:
    """Parse a float flag; a fraction such as ``1/255`` is accepted too."""
    try:
        if '/' in text:
            num, den = text.split('/', 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None


class ThreeFloats(argparse.Action):
    """Parse a 3-value option: ``--image-mean 0.485 0.456 0.406`` or ``0.485,0.456,0.406``.

    Both spellings are accepted wherever a per-channel option appears (the bag tool, the
    benchmarks), and the value is stored as a list of 3 floats.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        """Parse the tokens into 3 floats, or stop with a usage error saying what is wrong."""
        tokens = [t for v in (values if isinstance(values, list) else [values])
                  for t in str(v).replace(',', ' ').split()]
        try:
            numbers = [float(t) for t in tokens]
        except ValueError:
            numbers = []
        if len(numbers) != 3 or len(tokens) != 3:
            parser.error(f'{option_string} needs 3 numbers, one per channel (e.g. '
                         f'{option_string} 0.485 0.456 0.406 or 0.485,0.456,0.406), got '
                         f'{" ".join(str(v) for v in values)!r}')
        setattr(namespace, self.dest, numbers)


def add_parameter_flags(parser: argparse.ArgumentParser, groups: Iterable[str] | None = None,
                        include_node_only: bool = False) -> None:
    """Add ``--flag`` options for the parameters (default None = keep the parameter default)."""
    wanted = set(groups) if groups is not None else None
    for spec in parameters.PARAMETERS:
        if (wanted is not None and spec.group not in wanted) or \
                (spec.node_only and not include_node_only):
            continue
        shown = 'from the model card' if spec.card_field else repr(spec.default)
        kwargs: dict[str, Any] = {'dest': spec.name, 'default': None,
                                  'help': f'{spec.description} (default: {shown})'}
        if isinstance(spec.default, bool):
            kwargs['action'] = argparse.BooleanOptionalAction
        elif isinstance(spec.default, list):
            kwargs.update(action=ThreeFloats, nargs='+', metavar='V',
                          help=f'{spec.description} Spaces or commas between the values '
                               f'(default: {shown}).')
        else:
            kwargs['type'] = _float_arg if isinstance(spec.default, float) else type(spec.default)
            if spec.choices:
                kwargs['choices'] = [c for c in spec.choices if c]
        parser.add_argument(spec.flag, **kwargs)


def values_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Parameter values: the defaults, replaced by every flag given on the command line."""
    values = parameters.defaults()
    for spec in parameters.PARAMETERS:
        given = getattr(args, spec.name, None)
        if given is not None:
            values[spec.name] = list(given) if isinstance(given, (list, tuple)) else given
    return values
