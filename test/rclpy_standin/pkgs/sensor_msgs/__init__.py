"""STAND-IN for the ROS 2 sensor_msgs package (tests only)."""
