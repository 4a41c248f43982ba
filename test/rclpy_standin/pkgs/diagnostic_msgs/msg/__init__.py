"""STAND-IN of diagnostic_msgs.msg: rosbags classes with rclpy-style construction."""

import _standin_msgs

_standin_msgs.install(globals(), 'diagnostic_msgs', [
    'DiagnosticArray',
    'DiagnosticStatus',
    'KeyValue',
])
