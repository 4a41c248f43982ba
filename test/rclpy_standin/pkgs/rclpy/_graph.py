"""STAND-IN ROS graph: in-process topics with CDR round trips and QoS compatibility."""

from __future__ import annotations

import threading


class RequestedIncompatibleQoSInfo:
    """Mirrors rmw_requested_qos_incompatible_event_status_t."""

    def __init__(self, total_count, total_count_change, last_policy_kind):
        self.total_count = total_count
        self.total_count_change = total_count_change
        self.last_policy_kind = last_policy_kind


class Graph:
    """Publishers and subscriptions by fully qualified topic name."""

    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        """Forget every endpoint."""
        self.publishers = {}
        self.subscriptions = {}

    def add_publisher(self, pub):
        """Register a publisher and match it with the existing subscriptions."""
        with self.lock:
            self.publishers.setdefault(pub.topic_name, []).append(pub)
            for sub in self.subscriptions.get(pub.topic_name, []):
                _match(pub, sub)

    def add_subscription(self, sub):
        """Register a subscription and match it with the existing publishers."""
        with self.lock:
            self.subscriptions.setdefault(sub.topic_name, []).append(sub)
            for pub in self.publishers.get(sub.topic_name, []):
                _match(pub, sub)

    def remove(self, endpoint):
        """Unregister a publisher or a subscription."""
        with self.lock:
            for table in (self.publishers, self.subscriptions):
                items = table.get(endpoint.topic_name, [])
                if endpoint in items:
                    items.remove(endpoint)

    def subscriptions_of(self, topic):
        """Return the live subscriptions of a topic."""
        with self.lock:
            return list(self.subscriptions.get(topic, []))

    def publishers_of(self, topic):
        """Return the live publishers of a topic."""
        with self.lock:
            return list(self.publishers.get(topic, []))


def compatible(pub_qos, sub_qos):
    """Tell whether they match: a RELIABLE subscription ignores a BEST_EFFORT publisher."""
    from rclpy.qos import ReliabilityPolicy
    return not (sub_qos.reliability == ReliabilityPolicy.RELIABLE
                and pub_qos.reliability == ReliabilityPolicy.BEST_EFFORT)


def _match(pub, sub):
    if compatible(pub.qos_profile, sub.qos_profile):
        return
    from rclpy.qos import QoSPolicyKind
    for endpoint in (sub, pub):
        endpoint.incompatible_count += 1
        callbacks = endpoint.event_callbacks
        cb = getattr(callbacks, 'incompatible_qos', None) if callbacks is not None else None
        if cb is not None:
            # rmw reports the policy kind as a plain int
            cb(RequestedIncompatibleQoSInfo(endpoint.incompatible_count, 1,
                                            int(QoSPolicyKind.RELIABILITY)))


GRAPH = Graph()
