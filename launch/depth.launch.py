"""Launch depth_node on a camera.

    ros2 launch depth_node depth.launch.py image:=/camera/color/image_raw model_file_path:=/m.onnx

camera_info defaults to the sibling of the image topic (``/camera/color/camera_info``).
Parameters come from ``params_file`` (default: the package's ``config/depth_node.yaml``);
launch arguments left empty keep the value of the params file, and parameters missing there
keep the node's defaults (``depth_node/parameters.py``, the single place of every default).

Several cameras through one node and one batched model (``config/cameras_2.yaml``,
``config/cameras_4.yaml``)::

    ros2 launch depth_node depth.launch.py params_file:=config/cameras_4.yaml \
        model_file_path:=/models/m.onnx
    ros2 launch depth_node depth.launch.py cameras:=front,back model_file_path:=/models/m.onnx
"""

import os

from depth_node.dds import dds_environment
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'depth_node'


def default_params_file():
    """config/depth_node.yaml of the installed package, or of the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory(PACKAGE), 'config', 'depth_node.yaml')
    except Exception:  # not installed with colcon: use the source tree
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'config', 'depth_node.yaml')


def package_config_dir():
    """config/ of the installed package, or of the source tree."""
    return os.path.dirname(default_params_file())


def sibling_camera_info(image_topic):
    """Return the camera_info topic beside an image topic (image_transport naming)."""
    image_topic = image_topic.rstrip('/')
    if '/' not in image_topic:
        return 'camera_info'
    return image_topic.rsplit('/', 1)[0] + '/camera_info'


def camera_names(text):
    """Return the camera names of the cameras argument: 'front,back' or '[front, back]'."""
    return [name.strip() for name in text.strip().strip('[]').split(',') if name.strip()]


def _as_bool(text, name):
    value = text.strip().lower()
    if value in ('true', '1', 'yes', 'on'):
        return True
    if value in ('false', '0', 'no', 'off'):
        return False
    raise ValueError(f'launch argument {name} must be true or false, got {text!r}')


def _launch_node(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    image = arg('image')
    camera_info = arg('camera_info') or sibling_camera_info(image)
    overrides = {'use_sim_time': _as_bool(arg('use_sim_time'), 'use_sim_time')}
    for name in ('model_file_path', 'engine_file_path', 'backend'):
        if arg(name):
            overrides[name] = arg(name)
    if arg('autostart'):
        overrides['autostart'] = _as_bool(arg('autostart'), 'autostart')
    if arg('cameras'):
        overrides['cameras'] = camera_names(arg('cameras'))
    params_file = arg('params_file') or default_params_file()
    return [Node(
        package=PACKAGE,
        executable='depth_node',
        name='depth_node',
        namespace=arg('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[params_file, overrides],
        remappings=[('image', image), ('camera_info', camera_info)],
        additional_env=dds_environment(arg('dds_profile'), package_config_dir()),
    )]


def generate_launch_description():
    """Arguments and the depth_node process."""
    return LaunchDescription([
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node; its output topics (depth/image, points, ...) '
                        'are created inside it.'),
        DeclareLaunchArgument(
            'image', default_value='/camera/color/image_raw',
            description='Input image topic (sensor_msgs/Image). With input_transport '
                        'compressed the node subscribes <image>/compressed.'),
        DeclareLaunchArgument(
            'camera_info', default_value='',
            description='camera_info topic; empty = the sibling of the image topic '
                        '(/camera/color/image_raw -> /camera/color/camera_info).'),
        DeclareLaunchArgument(
            'params_file', default_value='',
            description='Parameter YAML file; empty = config/depth_node.yaml of this '
                        'package (config/jetson_orin.yaml is the Jetson profile).'),
        DeclareLaunchArgument(
            'model_file_path', default_value='',
            description='ONNX model (card beside it) or TensorRT engine; empty = the value '
                        'in params_file.'),
        DeclareLaunchArgument(
            'engine_file_path', default_value='',
            description='Where TensorRT engines built from the ONNX model are cached; empty '
                        '= the value in params_file (default: beside the model).'),
        DeclareLaunchArgument(
            'backend', default_value='',
            description='auto | tensorrt | onnxruntime | torch; empty = the value in '
                        'params_file.'),
        DeclareLaunchArgument(
            'cameras', default_value='',
            description='Several cameras through one node and one batched model: names, '
                        'e.g. front,back (each on <name>/image and <name>/camera_info, outputs '
                        'in <name>/; other topics: params_file, see config/cameras_2.yaml); '
                        'empty = the value in params_file (default: one camera on image).'),
        DeclareLaunchArgument(
            'autostart', default_value='',
            description='true: the node configures and activates itself; false: drive it '
                        'with ros2 lifecycle / a lifecycle manager; empty = params_file.'),
        DeclareLaunchArgument(
            'dds_profile', default_value='',
            description='DDS configuration for large images applied to the node: fastdds '
                        '(config/fastdds_large_images.xml), cyclonedds '
                        '(config/cyclonedds_large_images.xml), a path to your own XML, or '
                        'empty for the environment as it is. Use the same in the camera '
                        'driver and rviz (doc/ros_interface.md, Large images and DDS).'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='Use /clock (bag playback with --clock).'),
        OpaqueFunction(function=_launch_node),
    ])
