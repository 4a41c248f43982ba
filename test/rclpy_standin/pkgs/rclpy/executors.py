"""STAND-IN of rclpy.executors: fires due timers until the context is shut down."""

import time


class ExternalShutdownException(Exception):
    """Raised by spin() when the context was shut down from outside (Jazzy behaviour)."""


class Executor:
    """Single- and multi-threaded executors behave alike here (timers only)."""

    def __init__(self, *, context=None):
        self._nodes = []
        self._shutdown = False

    def add_node(self, node):
        """Add a node whose timers this executor fires."""
        if node not in self._nodes:
            self._nodes.append(node)
        return True

    def get_nodes(self):
        """Return the nodes."""
        return list(self._nodes)

    def spin_once(self, timeout_sec=None):
        """Fire every ready timer once."""
        import rclpy
        if not rclpy.ok() or self._shutdown:
            raise ExternalShutdownException()
        fired = False
        for node in self._nodes:
            for timer in list(node.timers):
                if timer.is_ready():
                    timer.fire()
                    fired = True
        if not fired:
            time.sleep(min(timeout_sec if timeout_sec is not None else 0.01, 0.01))

    def spin(self):
        """Spin until shutdown (then raise ExternalShutdownException)."""
        while True:
            self.spin_once(timeout_sec=0.01)

    def shutdown(self, timeout_sec=None):
        """Stop spinning."""
        self._shutdown = True
        return True


class SingleThreadedExecutor(Executor):
    """Stand-in."""


class MultiThreadedExecutor(Executor):
    """Stand-in (the signature of rclpy's)."""

    def __init__(self, num_threads=None, *, context=None):
        super().__init__(context=context)
        self.num_threads = num_threads
