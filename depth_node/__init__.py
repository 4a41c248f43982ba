"""depth_node: monocular metric depth images and point clouds from a camera and its camera_info.

The package splits into a ROS-free core (camera geometry, image and point-cloud encoding, model
backends, metric scaling and the per-frame pipeline) and a thin rclpy layer (``node.py``).
Nothing imported from this top-level module needs ROS, torch, TensorRT or ONNX Runtime.
"""

__version__ = '0.1.0'
