"""The lifecycle messages on the cluster's queue, parsed into one typed event.

Two shapes arrive: the EventBridge envelope the rule delivers (``detail-type`` "EC2 Instance-launch Lifecycle Action"
or "EC2 Instance-terminate Lifecycle Action", the action in ``detail``), and the direct notification Auto Scaling
sends to a hook's own target (the same fields at the top level; ``"Event": "autoscaling:TEST_NOTIFICATION"`` for the
test message it sends when a hook is created). Anything else is ``Unreadable``: logged and dropped by the consumer,
never retried into a crash loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TEST_NOTIFICATION = "autoscaling:TEST_NOTIFICATION"
DETAIL_TYPES = {
    "EC2 Instance-launch Lifecycle Action": LAUNCHING,
    "EC2 Instance-terminate Lifecycle Action": TERMINATING,
}

Kind = Literal["launch", "terminate", "test"]


class Unreadable(ValueError):
    """The body is not a lifecycle message this handler knows; the text says why."""


@dataclass(frozen=True)
class LifecycleEvent:
    kind: Kind
    group: str
    instance_id: str = ""
    hook: str = ""
    token: str = ""  # the lifecycle action's token; completing with it cannot touch a later action
    time: str = ""  # when AWS sent it, ISO 8601 as given

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two messages the same action (a duplicate delivery)."""
        return (self.kind, self.instance_id, self.token)


def parse(body: str) -> LifecycleEvent:
    try:
        message = json.loads(body)
    except ValueError:
        raise Unreadable("not JSON") from None
    if not isinstance(message, dict):
        raise Unreadable("not a JSON object")
    if "detail-type" in message:
        detail_type = str(message["detail-type"])
        if detail_type not in DETAIL_TYPES:
            raise Unreadable(f"unexpected detail-type {detail_type!r}")
        detail = message.get("detail")
        if not isinstance(detail, dict):
            raise Unreadable("no detail object in the event")
        return _action(detail, expected=DETAIL_TYPES[detail_type], time=str(message.get("time", "")))
    if message.get("Event") == TEST_NOTIFICATION:
        return LifecycleEvent("test", str(message.get("AutoScalingGroupName", "")), time=str(message.get("Time", "")))
    if "LifecycleTransition" in message:
        return _action(message, expected=None, time=str(message.get("Time", "")))
    raise Unreadable("neither an EventBridge lifecycle event nor an Auto Scaling notification")


def _action(fields: dict[str, Any], *, expected: str | None, time: str) -> LifecycleEvent:
    transition = str(fields.get("LifecycleTransition", ""))
    if transition not in {LAUNCHING, TERMINATING} or (expected is not None and transition != expected):
        raise Unreadable(f"unexpected lifecycle transition {transition!r}")
    missing = [key for key in ("AutoScalingGroupName", "EC2InstanceId") if not fields.get(key)]
    if missing:
        raise Unreadable(f"missing {', '.join(missing)}")
    return LifecycleEvent(
        kind="launch" if transition == LAUNCHING else "terminate",
        group=str(fields["AutoScalingGroupName"]),
        instance_id=str(fields["EC2InstanceId"]),
        hook=str(fields.get("LifecycleHookName", "")),
        token=str(fields.get("LifecycleActionToken", "")),
        time=time,
    )
