"""STAND-IN of rcl_interfaces.msg: rosbags classes with rclpy-style construction."""

import _standin_msgs

_standin_msgs.install(globals(), 'rcl_interfaces', [
    'ParameterDescriptor',
    'FloatingPointRange',
    'IntegerRange',
    'SetParametersResult',
    'ParameterType',
    'ParameterEvent',
    'Parameter',
    'ParameterValue',
])
