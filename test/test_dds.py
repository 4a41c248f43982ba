"""The DDS configuration for large images: which file, through which environment variable."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from depth_node import dds
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'config'


@pytest.mark.parametrize('distro, variable', [
    ('humble', 'FASTRTPS_DEFAULT_PROFILES_FILE'),
    ('jazzy', 'FASTRTPS_DEFAULT_PROFILES_FILE'),
    ('kilted', 'FASTDDS_DEFAULT_PROFILES_FILE'),
    ('rolling', 'FASTDDS_DEFAULT_PROFILES_FILE'),
])
def test_ros_distro_picks_the_fast_dds_variable(distro, variable):
    assert dds.fastdds_profile_variable({'ROS_DISTRO': distro}) == variable


@pytest.mark.parametrize('version, variable', [
    ('7.1.6', 'FASTRTPS_DEFAULT_PROFILES_FILE'),     # ros-jazzy-rclpy
    ('9.1.2', 'FASTDDS_DEFAULT_PROFILES_FILE'),      # ros-kilted-rclpy
])
def test_without_ros_distro_the_rclpy_version_decides(monkeypatch, version, variable):
    monkeypatch.setattr(importlib.metadata, 'version', lambda name: version)
    assert dds.fastdds_profile_variable({}) == variable


def test_without_any_hint_fast_dds_2_is_assumed(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, 'version', missing)
    assert dds.fastdds_profile_variable({}) == 'FASTRTPS_DEFAULT_PROFILES_FILE'


def test_package_profiles_by_name():
    fast = dds.dds_environment('fastdds', CONFIG, {'ROS_DISTRO': 'kilted'})
    assert fast == {'FASTDDS_DEFAULT_PROFILES_FILE': str(CONFIG / 'fastdds_large_images.xml')}
    cyclone = dds.dds_environment(' cyclonedds ', CONFIG, {'ROS_DISTRO': 'jazzy'})
    assert cyclone == {'CYCLONEDDS_URI': f'file://{CONFIG / "cyclonedds_large_images.xml"}'}
    assert dds.dds_environment('', CONFIG) == {}


def test_own_xml_files_are_recognised(tmp_path):
    cyclone = tmp_path / 'cyclone.xml'
    cyclone.write_text('<?xml version="1.0"?>\n<CycloneDDS><Domain/></CycloneDDS>\n')
    fast = tmp_path / 'fast.xml'
    fast.write_text((CONFIG / 'fastdds_large_images.xml').read_text())
    assert dds.dds_environment(str(cyclone), CONFIG) == {'CYCLONEDDS_URI': f'file://{cyclone}'}
    assert dds.dds_environment(str(fast), CONFIG, {'ROS_DISTRO': 'jazzy'}) == {
        'FASTRTPS_DEFAULT_PROFILES_FILE': str(fast)}
    with pytest.raises(ValueError, match='neither fastdds, cyclonedds nor an existing XML'):
        dds.dds_environment(str(tmp_path / 'missing.xml'), CONFIG)


def test_launch_file_applies_the_profile_through_the_package_function(monkeypatch):
    spec = importlib.util.spec_from_file_location('depth_launch_dds', REPO / 'launch' /
                                                  'depth.launch.py')
    pytest.importorskip('launch_ros', reason='launch_ros is not installed (source ROS 2)')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv('ROS_DISTRO', 'kilted')
    env = module.dds_environment('fastdds', module.package_config_dir())
    assert env == {'FASTDDS_DEFAULT_PROFILES_FILE':
                   str(Path(module.package_config_dir()) / 'fastdds_large_images.xml')}


def test_package_config_file_is_found_in_the_source_tree():
    assert dds.package_config_file('fastdds_large_images.xml') == \
        CONFIG / 'fastdds_large_images.xml'
    assert dds.package_config_file('no_such_file.xml') is None


def test_node_benchmark_graph_applies_the_large_image_profile(tmp_path):
    """Without the profile most camera-sized images are lost between the benchmark's processes."""
    from depth_node.tools.bench_node import isolated_env
    env = isolated_env(str(tmp_path))
    variable = dds.fastdds_profile_variable(env)
    assert Path(env[variable]) == CONFIG / 'fastdds_large_images.xml'
