"""DDS configuration for camera-sized messages: which file, through which variable.

The package ships a Fast DDS profile and a Cyclone DDS configuration for large images
(``config/fastdds_large_images.xml``, ``config/cyclonedds_large_images.xml``). A DDS reads
its file from an environment variable, and Fast DDS renamed its variable: Fast DDS 2.x
(Humble, Jazzy) reads only ``FASTRTPS_DEFAULT_PROFILES_FILE``; Fast DDS 3 (Kilted and newer)
reads ``FASTDDS_DEFAULT_PROFILES_FILE`` and warns on every start when it finds the old one,
even with both set. :func:`fastdds_profile_variable` picks the one the running ROS 2 reads.

No ROS import here: the launch file, the benchmark and the tests share these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
import importlib.metadata
import os
from pathlib import Path

FASTDDS_2_VARIABLE = 'FASTRTPS_DEFAULT_PROFILES_FILE'
FASTDDS_3_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
CYCLONEDDS_VARIABLE = 'CYCLONEDDS_URI'
# ROS 2 distributions that ship Fast DDS 2.x; later ones ship Fast DDS 3
FASTDDS_2_DISTROS = ('foxy', 'galactic', 'humble', 'iron', 'jazzy')
# rclpy's major version of the first distribution with Fast DDS 3 (Kilted: rclpy 9)
FASTDDS_3_RCLPY_MAJOR = 9
PROFILE_FILES = {'fastdds': 'fastdds_large_images.xml',
                 'cyclonedds': 'cyclonedds_large_images.xml'}


def package_config_file(name: str) -> Path | None:
    """Return ``config/<name>`` of the source tree or of the colcon install; None if absent."""
    here = Path(__file__).resolve().parents[1] / 'config' / name
    if here.is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory('depth_node')) / 'config' / name
    except Exception:  # noqa: BLE001 - ament_index absent or the package not installed
        return None
    return installed if installed.is_file() else None


def fastdds_profile_variable(environ: Mapping[str, str] | None = None) -> str:
    """Return the environment variable through which this ROS 2's Fast DDS reads a profile.

    ``ROS_DISTRO`` decides where it is set (a sourced ROS 2); otherwise the installed rclpy's
    version (the PyPI ``ros-<distro>-rclpy`` wheels); Fast DDS 2's variable when neither says.
    """
    environ = os.environ if environ is None else environ
    distro = environ.get('ROS_DISTRO', '').strip().lower()
    if distro:
        return FASTDDS_2_VARIABLE if distro in FASTDDS_2_DISTROS else FASTDDS_3_VARIABLE
    try:
        major = int(importlib.metadata.version('rclpy').split('.')[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return FASTDDS_2_VARIABLE
    return FASTDDS_3_VARIABLE if major >= FASTDDS_3_RCLPY_MAJOR else FASTDDS_2_VARIABLE


def fastdds_environment(profile: str | os.PathLike[str],
                        environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``{variable: path}`` that makes Fast DDS load the profile ``profile``."""
    return {fastdds_profile_variable(environ): str(profile)}


def is_cyclonedds_config(path: str | os.PathLike[str]) -> bool:
    """Whether the XML file at ``path`` is a Cyclone DDS configuration (not a Fast DDS one)."""
    with open(path, encoding='utf-8') as stream:
        return '<CycloneDDS' in stream.read(4096)


def dds_environment(profile: str, config_dir: str | os.PathLike[str],
                    environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that apply a DDS configuration for large images.

    :param profile: ``fastdds`` or ``cyclonedds`` (the package's files in ``config_dir``), a
        path to an XML file (Cyclone DDS when its root element is ``CycloneDDS``, else a Fast
        DDS profile), or empty for none.
    :raises ValueError: for a name that is neither, naming the choices.
    """
    profile = profile.strip()
    if not profile:
        return {}
    if profile in PROFILE_FILES:
        path = Path(config_dir) / PROFILE_FILES[profile]
    else:
        path = Path(os.path.expanduser(profile)).resolve()
        if not path.is_file():
            raise ValueError(f'dds_profile {profile!r} is neither fastdds, cyclonedds nor an '
                             'existing XML file')
    if is_cyclonedds_config(path):
        return {CYCLONEDDS_VARIABLE: f'file://{path}'}
    return fastdds_environment(path, environ)
