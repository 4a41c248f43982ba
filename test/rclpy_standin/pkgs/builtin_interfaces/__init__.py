"""STAND-IN for the ROS 2 builtin_interfaces package (tests only)."""
