"""STAND-IN for the ROS 2 diagnostic_msgs package (tests only)."""
