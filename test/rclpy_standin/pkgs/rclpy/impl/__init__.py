"""STAND-IN of rclpy.impl."""
