"""STAND-IN for the ROS 2 rcl_interfaces package (tests only)."""
