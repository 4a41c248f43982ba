"""STAND-IN of rclpy.timer.Timer (fired by the stand-in executors or by tests)."""

import time


class Timer:
    """A periodic callback; ``fire()`` runs it now."""

    def __init__(self, callback, callback_group, timer_period_ns, clock, *, context=None):
        self.callback = callback
        self.callback_group = callback_group
        self.timer_period_ns = timer_period_ns
        self._canceled = False
        self._next = time.monotonic_ns() + timer_period_ns
        self.destroyed = False

    def is_canceled(self):
        """Whether cancel() was called."""
        return self._canceled

    def cancel(self):
        """Stop firing."""
        self._canceled = True

    def reset(self):
        """Fire again from now."""
        self._canceled = False
        self._next = time.monotonic_ns() + self.timer_period_ns

    def is_ready(self):
        """Whether the period has elapsed."""
        return not self._canceled and not self.destroyed and time.monotonic_ns() >= self._next

    def fire(self):
        """Run the callback (what the executor does when the timer is ready)."""
        self._next = time.monotonic_ns() + self.timer_period_ns
        self.callback()

    def destroy(self):
        """Release the timer."""
        self.destroyed = True
