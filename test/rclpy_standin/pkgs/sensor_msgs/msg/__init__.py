"""STAND-IN of sensor_msgs.msg: rosbags classes with rclpy-style construction."""

import _standin_msgs

_standin_msgs.install(globals(), 'sensor_msgs', [
    'Image',
    'CompressedImage',
    'CameraInfo',
    'RegionOfInterest',
    'PointCloud2',
    'PointField',
])
