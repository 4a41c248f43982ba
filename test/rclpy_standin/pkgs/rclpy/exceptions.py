"""STAND-IN of rclpy.exceptions (parameter exceptions)."""


class ParameterException(Exception):
    """Base of the parameter exceptions."""


class ParameterNotDeclaredException(ParameterException):
    """Raised when a parameter is used without being declared."""


class ParameterAlreadyDeclaredException(ParameterException):
    """Raised when a parameter is declared twice."""


class InvalidParameterTypeException(ParameterException):
    """Raised when a parameter gets a value of another type than it was declared with."""


class InvalidParameterValueException(ParameterException):
    """Raised when a declared value is rejected (range, callbacks)."""
