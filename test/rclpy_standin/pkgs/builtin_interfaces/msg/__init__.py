"""STAND-IN of builtin_interfaces.msg: rosbags classes with rclpy-style construction."""

import _standin_msgs

_standin_msgs.install(globals(), 'builtin_interfaces', [
    'Time',
    'Duration',
])
