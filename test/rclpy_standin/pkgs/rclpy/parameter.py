"""STAND-IN of rclpy.parameter.Parameter."""

import array
from enum import Enum


class Parameter:
    """A named, typed parameter value (rclpy.parameter.Parameter on Humble)."""

    class Type(Enum):
        """rcl_interfaces/ParameterType values."""

        NOT_SET = 0
        BOOL = 1
        INTEGER = 2
        DOUBLE = 3
        STRING = 4
        BYTE_ARRAY = 5
        BOOL_ARRAY = 6
        INTEGER_ARRAY = 7
        DOUBLE_ARRAY = 8
        STRING_ARRAY = 9

        @classmethod
        def from_parameter_value(cls, value):
            """Return the type of a Python value (TypeError when it has none)."""
            if value is None:
                return cls.NOT_SET
            if isinstance(value, bool):
                return cls.BOOL
            if isinstance(value, int):
                return cls.INTEGER
            if isinstance(value, float):
                return cls.DOUBLE
            if isinstance(value, str):
                return cls.STRING
            if isinstance(value, (list, tuple, array.array)):
                if all(isinstance(v, bytes) for v in value):
                    return cls.BYTE_ARRAY
                if all(isinstance(v, bool) for v in value):
                    return cls.BOOL_ARRAY
                if all(isinstance(v, int) for v in value):
                    return cls.INTEGER_ARRAY
                if all(isinstance(v, float) for v in value):
                    return cls.DOUBLE_ARRAY
                if all(isinstance(v, str) for v in value):
                    return cls.STRING_ARRAY
                raise TypeError('The given value is not a list of one of the allowed types'
                                f" '{value}'.")
            raise TypeError(f"The given value is not one of the allowed types '{value}'.")

        def check(self, value):
            """Whether ``value`` fits this type."""
            try:
                return Parameter.Type.from_parameter_value(value) == self or (
                    isinstance(value, (list, tuple, array.array)) and len(value) == 0
                    and self.name.endswith('_ARRAY'))
            except TypeError:
                return False

    def __init__(self, name, type_=None, value=None):
        if type_ is None:
            type_ = Parameter.Type.from_parameter_value(value)
        if not isinstance(type_, Parameter.Type):
            raise TypeError("type must be an instance of 'Parameter.Type'")
        if not type_.check(value):
            raise ValueError(f'Type {type_} and value {value} do not agree')
        self._name = name
        self._type_ = type_
        self._value = value

    @property
    def name(self):
        """Return the parameter's name."""
        return self._name

    @property
    def type_(self):
        """Return the parameter's type."""
        return self._type_

    @property
    def value(self):
        """Return the parameter's value."""
        return self._value

    def __repr__(self):
        return f'Parameter({self._name!r}, {self._type_.name}, {self._value!r})'
