"""STAND-IN of std_msgs.msg: rosbags classes with rclpy-style construction."""

import _standin_msgs

_standin_msgs.install(globals(), 'std_msgs', [
    'Header',
])
