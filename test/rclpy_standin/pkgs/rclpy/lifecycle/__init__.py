"""STAND-IN of rclpy.lifecycle (Humble): LifecycleNode, lifecycle publishers, state machine.

The state machine follows the ROS 2 managed-node design: unconfigured -configure-> inactive
-activate-> active -deactivate-> inactive -cleanup-> unconfigured; shutdown from any primary
state -> finalized. A callback returning FAILURE goes back to the start state; ERROR (or an
exception in the callback, as in rclpy) runs on_error: SUCCESS -> unconfigured, else finalized.
"""

from enum import Enum
from typing import NamedTuple

from rclpy.node import Node as _Node
from rclpy.node import Publisher as _Publisher


class TransitionCallbackReturn(Enum):
    """rclpy's TransitionCallbackReturnType."""

    SUCCESS = 97
    FAILURE = 98
    ERROR = 99

    def to_label(self):
        """Return the transition label of the result."""
        return self.name.lower()


class LifecycleState(NamedTuple):
    """A state: label and id (lifecycle_msgs/State ids)."""

    label: str
    state_id: int


State = LifecycleState

_IDS = {'unconfigured': 1, 'inactive': 2, 'active': 3, 'finalized': 4}

# transition name -> (allowed start states, intermediate state id, callback, goal on success)
_TRANSITIONS = {
    'configure': (('unconfigured',), 10, 'on_configure', 'inactive'),
    'cleanup': (('inactive',), 11, 'on_cleanup', 'unconfigured'),
    'activate': (('inactive',), 13, 'on_activate', 'active'),
    'deactivate': (('active',), 14, 'on_deactivate', 'inactive'),
    'shutdown': (('unconfigured', 'inactive', 'active'), 12, 'on_shutdown', 'finalized'),
}


class RCLError(RuntimeError):
    """Raised for a transition that is not valid in the current state."""


class ManagedEntity:
    """Entities whose lifecycle follows the node's."""

    def on_activate(self, state):
        """Activate."""
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state):
        """Deactivate."""
        return TransitionCallbackReturn.SUCCESS


class LifecyclePublisher(ManagedEntity, _Publisher):
    """A publisher that only publishes while activated (silently drops otherwise)."""

    def __init__(self, *args, **kwargs):
        self._enabled = False
        _Publisher.__init__(self, *args, **kwargs)

    def on_activate(self, state):
        """Enable publishing."""
        self._enabled = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state):
        """Disable publishing."""
        self._enabled = False
        return TransitionCallbackReturn.SUCCESS

    @property
    def is_activated(self):
        """Whether publishing is enabled."""
        return self._enabled

    def publish(self, msg):
        """Publish if activated."""
        if self._enabled:
            _Publisher.publish(self, msg)


class LifecycleNode(_Node):
    """rclpy.lifecycle.LifecycleNode (Humble signature)."""

    def __init__(self, node_name, *, enable_communication_interface=True, **kwargs):
        _Node.__init__(self, node_name, **kwargs)
        self._managed_entities = set()
        self._lifecycle_state = 'unconfigured'
        self.transitions = []   # (transition, result label, new state) for tests

    # the state, as rclpy keeps it in _state_machine.current_state
    @property
    def current_state(self):
        """(id, label) of the current primary state."""
        return _IDS[self._lifecycle_state], self._lifecycle_state

    def _change_state(self, transition):
        starts, _, callback_name, goal = _TRANSITIONS[transition]
        start = self._lifecycle_state
        if start not in starts:
            raise RCLError(f'Transition {transition!r} is not registered in state {start!r}')
        try:
            ret = getattr(self, callback_name)(LifecycleState(start, _IDS[start]))
        except Exception:
            ret = TransitionCallbackReturn.ERROR
        if not isinstance(ret, TransitionCallbackReturn):
            ret = TransitionCallbackReturn.ERROR
        if ret == TransitionCallbackReturn.SUCCESS:
            self._lifecycle_state = goal
        elif ret == TransitionCallbackReturn.FAILURE:
            self._lifecycle_state = start if transition != 'shutdown' else 'finalized'
        else:
            try:
                err = self.on_error(LifecycleState(start, _IDS[start]))
            except Exception:
                err = TransitionCallbackReturn.ERROR
            self._lifecycle_state = ('unconfigured' if err == TransitionCallbackReturn.SUCCESS
                                     else 'finalized')
        self.transitions.append((transition, ret.to_label(), self._lifecycle_state))
        return ret

    def trigger_configure(self):
        """Configure."""
        return self._change_state('configure')

    def trigger_cleanup(self):
        """Clean up."""
        return self._change_state('cleanup')

    def trigger_activate(self):
        """Activate."""
        return self._change_state('activate')

    def trigger_deactivate(self):
        """Deactivate."""
        return self._change_state('deactivate')

    def trigger_shutdown(self):
        """Shut down from any primary state."""
        return self._change_state('shutdown')

    def _each_entity(self, name, state):
        for entity in self._managed_entities:
            ret = getattr(entity, name)(state)
            if ret != TransitionCallbackReturn.SUCCESS:
                return ret
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state):
        """Succeed (the default)."""
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state):
        """Succeed (the default)."""
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        """Succeed (the default)."""
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        """Activate the managed entities (lifecycle publishers), the default."""
        return self._each_entity('on_activate', state)

    def on_deactivate(self, state):
        """Deactivate the managed entities (the default)."""
        return self._each_entity('on_deactivate', state)

    def on_error(self, state):
        """Succeed (the default)."""
        return TransitionCallbackReturn.SUCCESS

    def create_lifecycle_publisher(self, *args, **kwargs):
        """Return a publisher managed by the lifecycle (publishes only while active)."""
        if 'publisher_class' in kwargs:
            raise TypeError(
                "create_publisher() got an unexpected keyword argument 'publisher_class'")
        pub = _Node.create_publisher(self, *args, **kwargs, publisher_class=LifecyclePublisher)
        self._managed_entities.add(pub)
        return pub

    def destroy_lifecycle_publisher(self, publisher):
        """Destroy a lifecycle publisher."""
        self._managed_entities.discard(publisher)
        return _Node.destroy_publisher(self, publisher)


Node = LifecycleNode
Publisher = LifecyclePublisher
