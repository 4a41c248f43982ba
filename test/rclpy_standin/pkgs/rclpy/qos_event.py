"""STAND-IN of rclpy.qos_event (Humble; Jazzy renamed it rclpy.event_handler)."""


class SubscriptionEventCallbacks:
    """Container of the subscription event callbacks depth_node uses."""

    def __init__(self, *, deadline=None, incompatible_qos=None, liveliness=None,
                 message_lost=None, use_default_callbacks=True):
        self.deadline = deadline
        self.incompatible_qos = incompatible_qos
        self.liveliness = liveliness
        self.message_lost = message_lost
        self.use_default_callbacks = use_default_callbacks


class PublisherEventCallbacks:
    """Container of the publisher event callbacks depth_node uses."""

    def __init__(self, *, deadline=None, liveliness=None, incompatible_qos=None,
                 use_default_callbacks=True):
        self.deadline = deadline
        self.liveliness = liveliness
        self.incompatible_qos = incompatible_qos
        self.use_default_callbacks = use_default_callbacks
