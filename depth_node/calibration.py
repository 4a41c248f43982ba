"""Loading camera calibration files, the way camera_calibration_parsers does.

:func:`load_calibration` reads one file by its suffix: ``.json`` (a CameraInfo as JSON, the
Isaac ROS layout), ``.ini`` (camera_calibration_parsers' INI format, as written by the
``cameracalibrator``'s ``ost.txt``) and anything else as camera_calibration_parsers YAML.
:func:`camera_from_dict` builds the :class:`~depth_node.camera.CameraModel` of a parsed file.
Errors name the file and say what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from depth_node.camera import CameraModel, default_projection
from depth_node.errors import CameraInfoError, DepthNodeError
import numpy as np

INI_SUFFIXES = ('.ini', '.txt')

#: INI matrix keywords -> (calibration key, rows)
_INI_MATRICES = {'camera matrix': ('camera_matrix', 3),
                 'distortion': ('distortion_coefficients', 1),
                 'rectification': ('rectification_matrix', 3),
                 'projection': ('projection_matrix', 3)}


def load_calibration(path: str | Path, frame_id: str | None = None,
                     rectified: bool = False) -> CameraModel:
    """Return the camera of a calibration file: YAML, JSON (``.json``), INI (``.ini``/``.txt``).

    :param path: the file.
    :param frame_id: the frame to use (default: the file's ``header.frame_id`` if any, else '').
    :param rectified: the image stream is rectified (use P, no distortion).
    :raises CameraInfoError: unreadable, unparsable or invalid calibration (names the file).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CameraInfoError(f'cannot read calibration file {str(path)!r}: {exc.strerror}.',
                              'Check the path (absolute, or relative to the working '
                              'directory).') from exc
    suffix = path.suffix.lower()
    try:
        if suffix == '.json':
            data = json.loads(text)
        elif suffix in INI_SUFFIXES:
            data = parse_ini(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CameraInfoError(f'calibration file {str(path)!r} does not parse: {exc}.',
                              'Fix the file syntax.') from exc
    try:
        return camera_from_dict(data, frame_id=frame_id, rectified=rectified)
    except DepthNodeError as exc:
        raise type(exc)(f'{path}: {exc.message}', exc.hint) from exc


def parse_ini(text: str) -> dict[str, Any]:
    """Parse camera_calibration_parsers' INI format into the keys of its YAML format.

    ``[image]`` holds ``width`` and ``height`` (value on the next line); the camera's section
    holds ``camera matrix`` (3 rows), ``distortion`` (1 row), ``rectification`` (3 rows) and
    ``projection`` (3 rows); ``#`` starts a comment. ValueError on anything else.
    """
    lines = [line.split('#', 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    data: dict[str, Any] = {}
    i = 0
    while i < len(lines):
        line = lines[i].lower()
        i += 1
        if line.startswith('[') and line.endswith(']'):
            if line != '[image]':
                data['camera_name'] = lines[i - 1][1:-1]
            continue
        if line in ('width', 'height'):
            data[f'image_{line}'] = int(lines[i])
            i += 1
        elif line in _INI_MATRICES:
            key, rows = _INI_MATRICES[line]
            data[key] = [float(v) for row in lines[i:i + rows] for v in row.split()]
            i += rows
        else:
            raise ValueError(f'unexpected line {lines[i - 1]!r} in an INI calibration')
    return data


def camera_from_dict(data: dict, frame_id: str | None = None,
                     rectified: bool = False) -> CameraModel:
    """Camera of a parsed calibration (calibration YAML or INI, Isaac JSON, echo).

    Matrices may be ``{rows, cols, data}`` mappings or flat lists; keys may be
    ``camera_matrix``/``K``/``k``, ``distortion_coefficients``/``D``/``d``,
    ``rectification_matrix``/``R``/``r`` (missing: identity), ``projection_matrix``/``P``/
    ``p`` (missing: ``[K | 0]``), ``image_width``/``width``, ``image_height``/``height``.
    A missing ``distortion_model`` with coefficients means plumb_bob (as
    camera_calibration_parsers assumes) or rational_polynomial for 8 of them.

    :param data: the parsed mapping.
    :param frame_id: the frame to use (default: ``header.frame_id`` of the data, else '').
    :param rectified: the image stream is rectified (use P, no distortion).
    """
    if not isinstance(data, dict):
        raise CameraInfoError(f'calibration is a {type(data).__name__}, not a mapping.',
                              'Give a camera_calibration_parsers YAML or a CameraInfo JSON file.')

    def pick(*names: str) -> Any:
        for name in names:
            if name in data and data[name] is not None:
                return data[name]
        return None

    def matrix(value: Any, name: str) -> Any:
        if isinstance(value, dict):
            if 'data' not in value:
                raise CameraInfoError(f'calibration {name} has no data list.',
                                      f'Write {name} as {{rows: R, cols: C, data: [...]}}.')
            values = list(value['data'])
            rows, cols = value.get('rows'), value.get('cols')
            if rows is not None and cols is not None and int(rows) * int(cols) != len(
                    values):
                raise CameraInfoError(f'calibration {name} says {rows}x{cols} but has '
                                      f'{len(values)} values.', f'Fix {name} in the file.')
            return values
        return value

    k = matrix(pick('camera_matrix', 'K', 'k'), 'camera_matrix')
    if k is None:
        raise CameraInfoError('calibration has no camera_matrix / K.',
                              'Give a camera_calibration_parsers YAML (camera_matrix, '
                              'distortion_coefficients, ...) or a CameraInfo JSON with K.')
    d = matrix(pick('distortion_coefficients', 'D', 'd'), 'distortion_coefficients')
    d = [] if d is None else d
    r = matrix(pick('rectification_matrix', 'R', 'r'), 'rectification_matrix')
    p = matrix(pick('projection_matrix', 'P', 'p'), 'projection_matrix')
    model = pick('distortion_model', 'camera_model')
    if model is None:
        n_d = len(np.asarray(d, dtype=np.float64).reshape(-1))
        model = '' if n_d == 0 else ('rational_polynomial' if n_d == 8 else 'plumb_bob')
    header = data.get('header') or {}
    roi = data.get('roi') or {}
    if frame_id is None:
        frame_id = header.get('frame_id', '') if isinstance(header, dict) else ''
    width = pick('image_width', 'width')
    height = pick('image_height', 'height')
    if width is None or height is None:
        raise CameraInfoError('calibration has no image_width/image_height.',
                              'Add the calibrated image size (image_width, image_height).')
    return CameraModel(width=width, height=height, K=k, D=d,
                       R=np.eye(3) if r is None else r,
                       P=default_projection(k) if p is None else p,
                       distortion_model=model,
                       binning_x=pick('binning_x') or 1, binning_y=pick('binning_y') or 1,
                       roi=(int(roi.get('x_offset', 0)), int(roi.get('y_offset', 0)),
                            int(roi.get('width', 0)), int(roi.get('height', 0)),
                            bool(roi.get('do_rectify', False))),
                       frame_id=frame_id, rectified=rectified)
