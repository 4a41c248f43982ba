"""STAND-IN of the rclpy logger: records messages, honours once / throttle / skip_first."""

import sys
import threading
import time

#: every (logger name, severity, message) logged by any stand-in logger
RECORDS = []
_LOCK = threading.Lock()


class RcutilsLogger:
    """Logger with rclpy's methods and filter keywords."""

    def __init__(self, name=''):
        self.name = name
        self._contexts = {}
        self.records = []

    def get_child(self, name):
        """Return a child logger."""
        return RcutilsLogger(f'{self.name}.{name}' if self.name else name)

    def log(self, message, severity, **kwargs):
        """Log ``message`` unless a filter (once, throttle_duration_sec, skip_first) says no."""
        allowed = {'once', 'throttle_duration_sec', 'throttle_time_source_type', 'skip_first'}
        unknown = set(kwargs) - allowed
        if unknown:
            raise TypeError(f'unsupported logging keywords {sorted(unknown)}')
        frame = sys._getframe(2)
        key = (frame.f_code.co_filename, frame.f_lineno)
        with _LOCK:
            ctx = self._contexts.setdefault(key, {'count': 0, 'last': None})
            ctx['count'] += 1
            if kwargs.get('once') and ctx['count'] > 1:
                return False
            if kwargs.get('skip_first') and ctx['count'] == 1:
                return False
            throttle = kwargs.get('throttle_duration_sec')
            if throttle:
                now = time.monotonic()
                if ctx['last'] is not None and now - ctx['last'] < throttle:
                    return False
                ctx['last'] = now
            record = (self.name, severity, str(message))
            self.records.append(record)
            RECORDS.append(record)
        return True

    def debug(self, message, **kwargs):
        """DEBUG."""
        return self.log(message, 'DEBUG', **kwargs)

    def info(self, message, **kwargs):
        """INFO."""
        return self.log(message, 'INFO', **kwargs)

    def warning(self, message, **kwargs):
        """WARN."""
        return self.log(message, 'WARN', **kwargs)

    def warn(self, message, **kwargs):
        """WARN (deprecated alias)."""
        return self.log(message, 'WARN', **kwargs)

    def error(self, message, **kwargs):
        """ERROR."""
        return self.log(message, 'ERROR', **kwargs)

    def fatal(self, message, **kwargs):
        """FATAL."""
        return self.log(message, 'FATAL', **kwargs)


def get_logger(name):
    """Return a logger."""
    return RcutilsLogger(name)
