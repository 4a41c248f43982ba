"""The launch file, parameter YAML files, rviz config and interface doc, checked without ROS.

The launch description itself is checked where the `launch` package exists.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from depth_node import parameters
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch' / 'depth.launch.py'
CONFIGS = sorted((REPO / 'config').glob('*.yaml'))
REQUIRED_ARGS = {'namespace', 'image', 'camera_info', 'params_file', 'model_file_path',
                 'engine_file_path', 'backend', 'autostart', 'use_sim_time'}
NODE_KEYS = ('depth_node', '/**/depth_node', '/**')


def declared_arguments(tree):
    found = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', None) == \
                'DeclareLaunchArgument':
            name = call.args[0].value
            keywords = {k.arg: k.value for k in call.keywords}
            description = keywords.get('description')
            text = ''
            if description is not None:
                text = ast.literal_eval(description)
            found[name] = (text, keywords.get('default_value'))
    return found


def test_launch_file_parses_and_declares_described_arguments():
    tree = ast.parse(LAUNCH.read_text(), str(LAUNCH))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    args = declared_arguments(tree)
    assert REQUIRED_ARGS <= set(args)
    for name, (text, default) in args.items():
        assert len(text) > 20, f'launch argument {name} needs a description'
        assert default is not None, f'launch argument {name} needs a default'
    # no second default for node parameters: launch arguments that are parameters default
    # to '' (= keep the params file / parameters.py value)
    for name in REQUIRED_ARGS & set(parameters.BY_NAME):
        assert ast.literal_eval(args[name][1]) == '', name


def launch_function(name):
    """One function of the launch file, compiled alone (no `launch` package needed)."""
    tree = ast.parse(LAUNCH.read_text(), str(LAUNCH))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(LAUNCH), 'exec'), namespace)
    return namespace[name]


def test_camera_info_defaults_to_the_sibling_of_the_image_topic():
    sibling = launch_function('sibling_camera_info')
    assert sibling('/camera/color/image_raw') == '/camera/color/camera_info'
    assert sibling('/camera/color/image_raw/') == '/camera/color/camera_info'
    assert sibling('image_rect') == 'camera_info'
    assert sibling('ns/image') == 'ns/camera_info'
    as_bool = launch_function('_as_bool')
    assert as_bool('True', 'x') is True and as_bool('0', 'x') is False
    with pytest.raises(ValueError, match='autostart'):
        as_bool('maybe', 'autostart')
    names = launch_function('camera_names')
    assert names('front,back') == names('[front, back]') == ['front', 'back']
    assert names('') == []


def load_launch_module():
    spec = importlib.util.spec_from_file_location('depth_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_description_with_the_launch_package():
    pytest.importorskip('launch', reason='the ROS 2 launch package is not installed (source '
                                         'ROS 2 to run this)')
    pytest.importorskip('launch_ros', reason='launch_ros is not installed (source ROS 2)')
    module = load_launch_module()
    assert module.sibling_camera_info('/camera/color/image_raw') == '/camera/color/camera_info'
    assert module.sibling_camera_info('image') == 'camera_info'
    description = module.generate_launch_description()
    from launch.actions import DeclareLaunchArgument
    names = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert REQUIRED_ARGS <= names


@pytest.mark.parametrize('path', CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_keys_are_known_parameters_with_valid_values(path):
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and len(data) == 1
    key = next(iter(data))
    assert key in NODE_KEYS, f'{path.name}: top-level key {key!r}'
    values = data[key]['ros__parameters']
    assert values, f'{path.name} sets no parameters'
    cameras = values.get('cameras', [])
    for name, value in values.items():
        camera, _, key = name.rpartition('.')
        if camera:      # a camera's own parameter: <camera>.image_topic, ...
            assert camera in cameras and key in parameters.CAMERA_PARAMETERS, \
                f'{path.name}: unknown parameter {name!r}'
            assert isinstance(value, str) and value, f'{path.name}: {name} must be a topic'
            continue
        assert name in parameters.BY_NAME, f'{path.name}: unknown parameter {name!r}'
        spec = parameters.BY_NAME[name]
        # ROS is strictly typed: a YAML int for a double parameter is refused at start-up
        if isinstance(spec.default, float):
            assert isinstance(value, float), f'{path.name}: {name} needs a decimal point'
        reason = parameters.validate(name, value)
        assert reason is None, f'{path.name}: {reason}'
    merged = parameters.defaults()
    merged.update({k: v for k, v in values.items() if k in parameters.BY_NAME})
    assert parameters.validate_all(merged) == []


@pytest.mark.parametrize('path', CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_lists_only_values_that_differ_from_the_defaults(path):
    values = next(iter(yaml.safe_load(path.read_text()).values()))['ros__parameters']
    restated = []
    for name, value in values.items():
        camera, _, key = name.rpartition('.')
        if camera and key in parameters.CAMERA_PARAMETERS:
            default = parameters.camera_defaults(camera)[key]
        elif name in parameters.BY_NAME:
            default = parameters.BY_NAME[name].default
        else:
            continue
        if value == default:
            restated.append(name)
    assert restated == [], f'{path.name} restates defaults (they would go stale): {restated}'


def test_jetson_profile_is_lighter_than_desktop():
    desktop = yaml.safe_load((REPO / 'config' / 'depth_node.yaml').read_text())
    jetson = yaml.safe_load((REPO / 'config' / 'jetson_orin.yaml').read_text())
    d = next(iter(desktop.values()))['ros__parameters']
    j = next(iter(jetson.values()))['ros__parameters']
    assert j.get('precision', parameters.default('precision')) == 'fp16'
    assert 0 < j['network_image_width'] <= 518 and 0 < j['network_image_height'] <= 518
    assert j['point_decimation'] >= d.get('point_decimation', 1)


def test_rviz_config_shows_colorized_depth_and_cloud():
    data = yaml.safe_load((REPO / 'config' / 'depth.rviz').read_text())
    displays = data['Visualization Manager']['Displays']
    by_class = {d['Class']: d for d in displays}
    assert by_class['rviz_default_plugins/Image']['Topic']['Value'].endswith('depth/colorized')
    cloud = by_class['rviz_default_plugins/PointCloud2']
    assert cloud['Topic']['Value'].endswith('points')
    # rviz subscribes best effort: it receives from the node's reliable publishers too
    assert cloud['Topic']['Reliability Policy'] == 'Best Effort'


def test_interface_doc_carries_the_generated_parameter_table():
    doc = (REPO / 'doc' / 'ros_interface.md').read_text()
    assert parameters.markdown_table() in doc, \
        'regenerate the table: python -m depth_node.parameters'
    for topic in ('depth/image', 'depth/camera_info', 'points', 'depth/relative',
                  'depth/colorized', '/diagnostics', 'camera_info', 'sparse_depth'):
        assert f'`{topic}`' in doc
    assert 'data_type: PointCloud2' in doc
