"""Lifecycle hooks for the sandbox, which moto declares but does not run.

moto stores hooks (and, through CloudFormation, ignores ``LifecycleHookSpecificationList``), never holds an instance
in a wait state, removes instances on scale-in at once, only flags an Unhealthy instance, and raises
NotImplementedError for CompleteLifecycleAction and RecordLifecycleActionHeartbeat. This module patches moto's
auto-scaling backend, narrowly, so that a group with hooks behaves as on AWS:

- the group's ``LifecycleHookSpecificationList`` from CloudFormation becomes real hooks (describe_lifecycle_hooks);
- a new instance of a group with a launch hook waits in ``Pending:Wait`` until CompleteLifecycleAction: CONTINUE
  makes it ``InService`` once its node is Ready (``Pending:Proceed`` until then), ABANDON terminates it and the group
  launches another; the host simulator completes it the way the boot script does;
- any removal from a group with a terminate hook (TerminateInstanceInAutoScalingGroup, a lower desired capacity or
  maximum, an Unhealthy instance being replaced) puts the instance in ``Terminating:Wait``, still running with its
  node, until CompleteLifecycleAction (either result terminates it). A replacement, when the group is to keep its
  size, launches at once;
- RecordLifecycleActionHeartbeat pushes the action's deadline out by the hook's HeartbeatTimeout (never past its
  GlobalTimeout, 100 heartbeat timeouts or 48 hours, whichever is shorter, as describe_lifecycle_hooks reports it);
  at the deadline the hook's DefaultResult applies;
- every entry into a wait state puts exactly one event on the default event bus, in the shape AWS sends (source
  ``aws.autoscaling``, detail-type ``EC2 Instance-launch Lifecycle Action`` or ``EC2 Instance-terminate Lifecycle
  Action``), so moto routes it through the stack's rule to the cluster's queue (moto's envelope lacks the
  ``account`` key AWS's has; the patch puts it back);
- an instance whose health is set Unhealthy is replaced, unless ReplaceUnhealthy is suspended;
- the stack's AWS::SQS::QueuePolicy, which moto's CloudFormation skips, becomes the queue's Policy attribute;
- new instances are spread over the group's zones, and Fn::GetAZs names the region's own zones (see ``zones``);
- an executed change set leaves the stack with its outputs (see ``stack_outputs``);
- creating an SSM parameter that exists fails for all but one of racing callers, as on AWS (see ``parameters``).

Time is the sandbox's injected clock; ``scale`` shortens every hook's heartbeat timeout (and what
describe_lifecycle_hooks reports, HeartbeatTimeout and the GlobalTimeout that follows from it, so a handler's
heartbeat cadence follows) so a demo need not wait twenty minutes. Wait states, timeouts and
replacements apply only on moto backends the model is attached to (the host simulator attaches it at every tick;
moto's reset drops it), so moto used without a host simulator removes instances at once as before. The declared
hooks, the queue policy, the event envelope and the zones are patched for every moto in the process once installed.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from provision.clock import Clock
from provision.sandbox import parameters, stack_outputs, zones

ATTRIBUTE = "_cluster_lifecycle"  # where an attached model lives on a moto auto-scaling backend

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
DETAIL_TYPES = {
    LAUNCHING: "EC2 Instance-launch Lifecycle Action",
    TERMINATING: "EC2 Instance-terminate Lifecycle Action",
}
# States that count towards the group's capacity: AWS counts every member that is not leaving the group; moto counts
# only InService ones, and so would launch extra hosts while others boot.
CAPACITY_STATES = ("InService", "Pending", "Pending:Wait", "Pending:Proceed")
TERMINATING_STATES = ("Terminating", "Terminating:Wait", "Terminating:Proceed")
GLOBAL_TIMEOUT_SECONDS = 172_800


@dataclass
class Action:
    """A lifecycle action waiting for CompleteLifecycleAction, a heartbeat, or its deadline."""

    instance_id: str
    group: str
    hook: str
    transition: str
    token: str
    timeout: float  # the hook's heartbeat timeout, scaled
    deadline: float
    final_deadline: float
    default_result: str


class LifecycleModel:
    def __init__(self, clock: Clock, *, scale: float = 1.0) -> None:
        self.clock = clock
        self.scale = scale
        self.actions: dict[str, Action] = {}  # by instance id
        self._launched: set[str] = set()  # instances whose launch hook has run
        self.events: list[dict[str, Any]] = []  # every event sent, for tests and the log
        self._lock = threading.RLock()  # moto's server threads and the ticking thread both get here
        install()
        self.attach()

    # --- driven by the host simulator ---

    def attach(self) -> None:
        """Act on every backend moto holds now (moto creates them on first use, and forgets this at a reset)."""
        for backend in _backends():
            setattr(backend, ATTRIBUTE, self)
            for group in list(backend.autoscaling_groups.values()):
                for hook in backend.describe_lifecycle_hooks(group.name):
                    self._scale_hook(hook)

    def tick(self) -> None:
        """Apply the default result of every action past its deadline, and replace Unhealthy instances."""
        self.attach()
        now = self.clock.now()
        with self._lock:
            expired = [action for action in self.actions.values() if now >= action.deadline]
            for action in expired:
                self._complete(action, action.default_result)
        for backend in _backends():
            for group in list(backend.autoscaling_groups.values()):
                if "ReplaceUnhealthy" in _suspended(group):
                    continue
                for state in list(group.instance_states):
                    if state.health_status == "Unhealthy" and state.lifecycle_state in CAPACITY_STATES:
                        self.remove(group, state, decrement=False)

    def hold_launch(self, group: Any, state: Any) -> bool:
        """Put a new instance in Pending:Wait when its group has a launch hook, once: at its launch when the model is
        attached already, else when the host simulator first sees it. False when the group has no launch hook."""
        hook = _hook(group, LAUNCHING)
        if hook is None:
            return False
        with self._lock:
            if state.instance.id not in self._launched:
                self._launched.add(state.instance.id)
                state.lifecycle_state = "Pending:Wait"
                self._start(group, state, hook)
        return True

    def complete_launch(self, instance_id: str, result: str) -> bool:
        """What the boot script does at its end: complete the launch action, if one waits. False when none did."""
        with self._lock:
            action = self.actions.get(instance_id)
            if action is None or action.transition != LAUNCHING:
                return False
            self._complete(action, result)
            return True

    # --- called from moto's patched methods ---

    def remove(self, group: Any, state: Any, *, decrement: bool) -> None:
        """Take an instance out of service: Terminating:Wait when the group has a terminate hook, else at once.
        Without ``decrement`` the group launches a replacement now."""
        if state.lifecycle_state in TERMINATING_STATES:
            return
        if not self.hold_termination(group, state):
            with self._lock:
                self.actions.pop(state.instance.id, None)  # a launch still waiting is superseded
            _terminate(group, state)
        if decrement:
            group.desired_capacity = max(0, (group.desired_capacity or 0) - 1)
        _ORIGINAL["set_desired_capacity"](group, group.desired_capacity)

    def hold_termination(self, group: Any, state: Any) -> bool:
        """Put an instance leaving its group in Terminating:Wait when the group has a terminate hook. False when it
        has none."""
        hook = _hook(group, TERMINATING)
        if hook is None:
            return False
        with self._lock:
            self.actions.pop(state.instance.id, None)  # a launch still waiting is superseded
            state.lifecycle_state = "Terminating:Wait"
            self._start(group, state, hook)
        return True

    def complete(self, group_name: str, hook_name: str, instance_id: str, token: str, result: str) -> None:
        from moto.autoscaling.exceptions import ValidationError

        if result not in {"CONTINUE", "ABANDON"}:
            raise ValidationError(f"Valid lifecycle action results are CONTINUE and ABANDON, not {result}")
        with self._lock:
            self._complete(self._find(group_name, hook_name, instance_id, token), result)

    def heartbeat(self, group_name: str, hook_name: str, instance_id: str, token: str) -> None:
        with self._lock:
            action = self._find(group_name, hook_name, instance_id, token)
            action.deadline = min(self.clock.now() + action.timeout, action.final_deadline)

    # --- the rest ---

    def _start(self, group: Any, state: Any, hook: Any) -> None:
        now = self.clock.now()
        timeout, global_timeout = self._scale_hook(hook)
        action = Action(
            instance_id=state.instance.id,
            group=group.name,
            hook=hook.name,
            transition=hook.lifecycle_transition,
            token=str(uuid.uuid4()),
            timeout=timeout,
            deadline=now + timeout,
            final_deadline=now + global_timeout,
            default_result=hook.default_result,
        )
        self.actions[action.instance_id] = action
        self._send_event(group, action)

    def _complete(self, action: Action, result: str) -> None:
        del self.actions[action.instance_id]
        group, state = _member(action.group, action.instance_id)
        if group is None or state is None:
            return
        if action.transition == TERMINATING:
            _terminate(group, state)  # either result: the instance goes, its replacement is already there
        elif result == "CONTINUE":
            state.lifecycle_state = "Pending:Proceed"  # InService once its node is Ready
        else:
            _terminate(group, state)
            _ORIGINAL["set_desired_capacity"](group, group.desired_capacity)  # and launch another

    def _find(self, group_name: str, hook_name: str, instance_id: str, token: str) -> Action:
        from moto.autoscaling.exceptions import ValidationError

        for action in self.actions.values():
            if (
                action.group == group_name
                and action.hook == hook_name
                and (action.instance_id == instance_id or (token and action.token == token))
            ):
                return action
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id or token}")

    def _scale_hook(self, hook: Any) -> tuple[float, float]:
        """Shorten a hook's timeout once, where describe_lifecycle_hooks shows it too, with the global timeout AWS
        derives from it (100 heartbeat timeouts or 48 hours, whichever is shorter; moto always says 48 hours): a
        client reading the hook sees the timings the sandbox keeps. The heartbeat and global timeouts."""
        if not getattr(hook, "_cluster_scaled", False):
            hook.heartbeat_timeout = max(1, round(hook.heartbeat_timeout * self.scale))
            hook.global_timeout = min(GLOBAL_TIMEOUT_SECONDS, 100 * hook.heartbeat_timeout)
            hook._cluster_scaled = True
        return float(hook.heartbeat_timeout), float(hook.global_timeout)

    def _send_event(self, group: Any, action: Action) -> None:
        from moto.events.models import events_backends

        detail = {
            "LifecycleActionToken": action.token,
            "AutoScalingGroupName": action.group,
            "LifecycleHookName": action.hook,
            "EC2InstanceId": action.instance_id,
            "LifecycleTransition": action.transition,
        }
        if action.transition == LAUNCHING:
            detail |= {"Origin": "EC2", "Destination": "AutoScalingGroup"}
        else:
            detail |= {"Origin": "AutoScalingGroup", "Destination": "EC2"}
        event = {
            "Source": "aws.autoscaling",
            "DetailType": DETAIL_TYPES[action.transition],
            "Detail": json.dumps(detail),
            "Resources": [group.arn],
        }
        self.events.append(event)
        backend = group.autoscaling_backend
        events_backends[backend.account_id][backend.region_name].put_events([event])


# --- the patches ---

_ORIGINAL: dict[str, Any] = {}
_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Patch moto's auto-scaling classes once per process. A backend without an attached model behaves as before."""
    from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.events.utils import EventTemplateParser

    with _INSTALL_LOCK:
        if _ORIGINAL:
            return
        _ORIGINAL["create_from_cloudformation_json"] = FakeAutoScalingGroup.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
        _ORIGINAL["set_desired_capacity"] = FakeAutoScalingGroup.set_desired_capacity
        _ORIGINAL["active_instances"] = FakeAutoScalingGroup.active_instances
        _ORIGINAL["terminate_instance"] = AutoScalingBackend.terminate_instance
        _ORIGINAL["delete_auto_scaling_group"] = AutoScalingBackend.delete_auto_scaling_group

        FakeAutoScalingGroup.create_from_cloudformation_json = classmethod(_create_from_cloudformation_json)  # type: ignore[method-assign,assignment]
        FakeAutoScalingGroup.set_desired_capacity = _set_desired_capacity  # type: ignore[method-assign,assignment]
        FakeAutoScalingGroup.active_instances = _active_instances  # type: ignore[method-assign,assignment]
        AutoScalingBackend.terminate_instance = _terminate_instance  # type: ignore[method-assign,assignment]
        AutoScalingBackend.delete_auto_scaling_group = _delete_auto_scaling_group  # type: ignore[method-assign,assignment]
        FakeAutoScalingGroup.replace_autoscaling_group_instances = _launch  # type: ignore[method-assign,assignment]
        AutoScalingResponse.complete_lifecycle_action = _complete_lifecycle_action_response  # type: ignore[attr-defined]
        AutoScalingResponse.record_lifecycle_action_heartbeat = _heartbeat_response  # type: ignore[attr-defined]
        _install_queue_policy()
        zones.install()
        stack_outputs.install()
        parameters.install()
        # What EventBridge delivers to a target without an input transformer: moto's default leaves out "account".
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = (
            '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
            '"account": "<account>", "time": <time>, "region": "<region>", "resources": <resources>, '
            '"detail": <detail>}'
        )


def _install_queue_policy() -> None:
    """moto's CloudFormation skips AWS::SQS::QueuePolicy (and lists it without ids); this sets the queue's Policy
    attribute, as AWS does, so the sandbox's queue carries the policy that admits only the stack's rule."""
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel
    from moto.sqs.models import sqs_backends

    class QueuePolicy(CloudFormationModel):
        def __init__(self, queues: list[str], document: dict[str, Any]) -> None:
            self.queues = queues
            self.document = document

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SQS::QueuePolicy"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False

        @property
        def physical_resource_id(self) -> str:
            return ",".join(self.queues)

        def is_created(self) -> bool:
            return True

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **_: Any
        ) -> QueuePolicy:
            properties = cloudformation_json["Properties"]
            policy = cls(list(properties["Queues"]), properties["PolicyDocument"])
            for url in policy.queues:
                sqs_backends[account_id][region_name].set_queue_attributes(
                    url.rsplit("/", 1)[-1], {"Policy": json.dumps(policy.document)}
                )
            return policy

        @classmethod
        def update_from_cloudformation_json(
            cls, original_resource: Any, new_resource_name: str, cloudformation_json: dict[str, Any], *args: Any
        ) -> QueuePolicy:
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, *args)

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
        ) -> None:
            return None  # the queue goes with the stack too

    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    assert QueuePolicy.cloudformation_type() in parsing.get_model_map()


def _model(backend: Any) -> LifecycleModel | None:
    model: LifecycleModel | None = getattr(backend, ATTRIBUTE, None)
    return model


def _create_from_cloudformation_json(
    cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any
) -> Any:
    group = _ORIGINAL["create_from_cloudformation_json"](cls, resource_name, cloudformation_json, *args, **kwargs)
    for spec in cloudformation_json.get("Properties", {}).get("LifecycleHookSpecificationList", []):
        timeout = spec.get("HeartbeatTimeout")
        group.autoscaling_backend.create_lifecycle_hook(
            name=spec["LifecycleHookName"],
            as_name=group.name,
            transition=spec["LifecycleTransition"],
            timeout=int(timeout) if timeout is not None else None,
            result=spec.get("DefaultResult"),
        )
    return group


def _active_instances(group: Any) -> list[Any]:
    if _model(group.autoscaling_backend) is None:
        return list(_ORIGINAL["active_instances"](group))
    return [state for state in group.instance_states if state.lifecycle_state in CAPACITY_STATES]


def _launch(group: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
    """New instances go to the least populated zone (moto puts all in the first subnet), and are born waiting on
    the launch hook (moto makes them InService at once)."""
    before = {id(state) for state in group.instance_states}
    zones.launch(group, count_needed, propagated_tags, counted=CAPACITY_STATES)
    model = _model(group.autoscaling_backend)
    if model is not None:
        for state in group.instance_states:
            if id(state) not in before and not model.hold_launch(group, state):
                state.lifecycle_state = "Pending"


def _set_desired_capacity(group: Any, new_capacity: int | None) -> None:
    """Scale-in through Terminating:Wait: the instances to remove are taken out of service first (oldest first, as
    the group's OldestInstance termination policy says, never one protected from scale-in), so moto's own
    set_desired_capacity then finds nothing to remove."""
    model = _model(group.autoscaling_backend)
    if model is not None:
        desired = (group.min_size if new_capacity is None else new_capacity) or 0
        active = group.active_instances()
        candidates = [state for state in active if not state.protected_from_scale_in]
        for state in candidates[: max(0, len(active) - desired)]:
            if not model.hold_termination(group, state):
                break  # no terminate hook: moto removes them itself
    _ORIGINAL["set_desired_capacity"](group, new_capacity)


def _terminate_instance(backend: Any, instance_id: str, should_decrement: bool) -> Any:
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.models import TerminateInstanceActivity

    model = _model(backend)
    if model is None:
        return _ORIGINAL["terminate_instance"](backend, instance_id, should_decrement)
    group, state = _member_of(backend, instance_id)
    if group is None or state is None:
        raise ValidationError(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
    original_size = group.desired_capacity
    model.remove(group, state, decrement=should_decrement)
    return TerminateInstanceActivity(state.instance, original_size)


def _delete_auto_scaling_group(backend: Any, group_name: str) -> None:
    """Deleting a group removes its instances without hooks (what `cluster down` wants of a sandbox)."""
    model = _model(backend)
    group = backend.autoscaling_groups.get(group_name)
    if model is not None and group is not None:
        with model._lock:
            for state in group.instance_states:
                model.actions.pop(state.instance.id, None)
        setattr(backend, ATTRIBUTE, None)
        try:
            _ORIGINAL["delete_auto_scaling_group"](backend, group_name)
        finally:
            setattr(backend, ATTRIBUTE, model)
        for state in list(group.instance_states):  # those that waited in Terminating:Wait go too
            _terminate(group, state)
        return
    _ORIGINAL["delete_auto_scaling_group"](backend, group_name)


def _complete_lifecycle_action_response(response: Any) -> Any:
    from moto.core.responses import EmptyResult

    model = _require_model(response.autoscaling_backend)
    model.complete(
        response._get_param("AutoScalingGroupName"),
        response._get_param("LifecycleHookName"),
        response._get_param("InstanceId") or "",
        response._get_param("LifecycleActionToken") or "",
        response._get_param("LifecycleActionResult"),
    )
    return EmptyResult()


def _heartbeat_response(response: Any) -> Any:
    from moto.core.responses import EmptyResult

    model = _require_model(response.autoscaling_backend)
    model.heartbeat(
        response._get_param("AutoScalingGroupName"),
        response._get_param("LifecycleHookName"),
        response._get_param("InstanceId") or "",
        response._get_param("LifecycleActionToken") or "",
    )
    return EmptyResult()


def _require_model(backend: Any) -> LifecycleModel:
    from moto.autoscaling.exceptions import ValidationError

    model = _model(backend)
    if model is None:
        raise ValidationError("No active Lifecycle Action found: lifecycle hooks run only in the sandbox")
    return model


# --- reading and changing moto's state ---


def _backends() -> list[Any]:
    from moto.autoscaling.models import autoscaling_backends

    return [backend for regions in list(autoscaling_backends.values()) for backend in list(regions.values())]


def _hook(group: Any, transition: str) -> Any:
    hooks = group.autoscaling_backend.describe_lifecycle_hooks(group.name)
    return next((hook for hook in hooks if hook.lifecycle_transition == transition), None)


def _suspended(group: Any) -> set[str]:
    return {process["ProcessName"] for process in group.suspended_processes}


def _member_of(backend: Any, instance_id: str) -> tuple[Any, Any]:
    for group in list(backend.autoscaling_groups.values()):
        for state in group.instance_states:
            if state.instance.id == instance_id:
                return group, state
    return None, None


def _member(group_name: str, instance_id: str) -> tuple[Any, Any]:
    for backend in _backends():
        group = backend.autoscaling_groups.get(group_name)
        if group is not None:
            return _member_of(backend, instance_id)
    return None, None


def _terminate(group: Any, state: Any) -> None:
    """The instance leaves the group and stops; nothing is launched in its place here."""
    group.instance_states = [other for other in group.instance_states if other is not state]
    group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])
