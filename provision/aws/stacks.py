"""CloudFormation, typed: stacks, change sets, events and the waits around them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from provision.aws.session import error_code
from provision.clock import Clock, wait_until
from provision.errors import ClusterError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# Events that only echo a failure elsewhere; the root cause is the other event.
ECHOES = ("Resource creation cancelled", "Resource update cancelled", "The following resource(s) failed to")
POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Stack:
    name: str
    stack_id: str
    status: str
    status_reason: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    tags: dict[str, str]

    @property
    def in_progress(self) -> bool:
        return self.status.endswith("_IN_PROGRESS")

    @property
    def settled_ok(self) -> bool:
        return self.status in {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}


@dataclass(frozen=True)
class ResourceChange:
    action: str  # Add, Modify, Remove, Import, Dynamic
    logical_id: str
    resource_type: str
    replacement: str  # True, False, Conditional, or "" when not applicable

    @property
    def replaces(self) -> bool:
        return self.replacement in {"True", "Conditional"}


@dataclass(frozen=True)
class ChangeSet:
    name: str
    kind: Literal["CREATE", "UPDATE"]
    changes: list[ResourceChange]


@dataclass(frozen=True)
class StackEvent:
    event_id: str
    timestamp: datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str

    @property
    def is_root_cause(self) -> bool:
        return self.status.endswith("_FAILED") and not any(echo in self.reason for echo in ECHOES)


class Stacks:
    def __init__(self, client: CloudFormationClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock

    def find(self, name: str) -> Stack | None:
        try:
            [raw] = self.client.describe_stacks(StackName=name)["Stacks"]
        except ClientError as error:
            if error_code(error) == "ValidationError" and "does not exist" in str(error):
                return None
            raise
        return Stack(
            name=raw["StackName"],
            stack_id=raw["StackId"],
            status=raw["StackStatus"],
            status_reason=raw.get("StackStatusReason", ""),
            parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in raw.get("Parameters", [])},
            outputs={o["OutputKey"]: o.get("OutputValue", "") for o in raw.get("Outputs", [])},
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
        )

    def resources(self, name: str) -> dict[str, str]:
        """Logical id to physical id. (Read after every change: moto's outputs lag behind an executed change set.)"""
        listed = self.client.describe_stack_resources(StackName=name)["StackResources"]
        # moto lists a resource type it does not model (AWS::SQS::QueuePolicy) as an entry without ids.
        return {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in listed if "LogicalResourceId" in r}

    def create_change_set(
        self,
        name: str,
        change_set: str,
        *,
        kind: Literal["CREATE", "UPDATE"],
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        timeout: float,
    ) -> ChangeSet:
        """Create a change set and wait until CloudFormation has computed it. An empty one is returned, not raised."""
        self.client.create_change_set(
            StackName=name,
            ChangeSetName=change_set,
            ChangeSetType=kind,
            TemplateBody=template,
            Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
            Capabilities=["CAPABILITY_IAM"],
        )

        def computed() -> list[ResourceChange] | None:
            pages = self._change_set_pages(name, change_set)
            status, reason = pages[0]["Status"], pages[0].get("StatusReason", "")
            if status == "FAILED":
                if any(marker in reason for marker in NO_CHANGES):
                    return []
                raise ChangeSetFailed(f"CloudFormation could not plan the change: {reason}")
            if status != "CREATE_COMPLETE":
                return None
            return [self._change(change) for page in pages for change in page.get("Changes", [])]

        changes = wait_until(
            computed,
            clock=self.clock,
            timeout=timeout,
            interval=2.0,
            what=f"change set {change_set} of stack {name}",
            next_step=f"look at it with `aws cloudformation describe-change-set --stack-name {name} "
            f"--change-set-name {change_set}`",
        )
        return ChangeSet(name=change_set, kind=kind, changes=changes)

    def _change_set_pages(self, name: str, change_set: str) -> list[Any]:
        paginator = self.client.get_paginator("describe_change_set")
        return list(paginator.paginate(StackName=name, ChangeSetName=change_set))

    @staticmethod
    def _change(raw: Any) -> ResourceChange:
        change = raw.get("ResourceChange", {})
        return ResourceChange(
            action=change.get("Action", ""),
            logical_id=change.get("LogicalResourceId", ""),
            resource_type=change.get("ResourceType", ""),
            replacement=change.get("Replacement", "") or "",
        )

    def execute_change_set(self, name: str, change_set: str) -> None:
        self.client.execute_change_set(StackName=name, ChangeSetName=change_set)

    def delete_change_set(self, name: str, change_set: str) -> None:
        self.client.delete_change_set(StackName=name, ChangeSetName=change_set)

    def delete(self, name: str) -> str | None:
        """Delete the stack. Returns the error code of a call that failed yet removed the stack (some endpoints, moto
        among them, do); a failure that leaves the stack is raised."""
        try:
            self.client.delete_stack(StackName=name)
        except ClientError as error:
            if self.find(name) is not None:
                raise
            return error_code(error)
        return None

    def events(self, name: str, *, after: str | None) -> list[StackEvent]:
        """Events newer than the event ``after`` (all when None), oldest first. Pages only as far back as needed."""
        newest_first: list[StackEvent] = []
        paginator = self.client.get_paginator("describe_stack_events")
        for page in paginator.paginate(StackName=name):
            for raw in page["StackEvents"]:
                if raw["EventId"] == after:
                    return newest_first[::-1]
                newest_first.append(
                    StackEvent(
                        event_id=raw["EventId"],
                        timestamp=raw["Timestamp"],
                        logical_id=raw.get("LogicalResourceId", ""),
                        resource_type=raw.get("ResourceType", ""),
                        status=raw.get("ResourceStatus", ""),
                        reason=raw.get("ResourceStatusReason", ""),
                    )
                )
        return newest_first[::-1]

    def latest_event_id(self, name: str) -> str | None:
        events = self.client.describe_stack_events(StackName=name)["StackEvents"]
        return events[0]["EventId"] if events else None

    def wait_settled(
        self,
        name: str,
        *,
        after_event: str | None,
        on_events: Callable[[Sequence[StackEvent]], None],
        timeout: float,
        next_step: str,
    ) -> Stack | None:
        """Wait until the stack is no longer *_IN_PROGRESS, handing each batch of new events to ``on_events``.
        Returns the settled stack, or None when it is gone (a finished delete)."""
        seen = after_event

        # wait_until stops on anything but None, and "the stack is gone" is a result: hence the one-element tuple.
        def settled() -> tuple[Stack | None] | None:
            nonlocal seen
            stack = self.find(name)
            if stack is None:
                return (None,)
            new = self.events(stack.stack_id, after=seen)
            if new:
                seen = new[-1].event_id
                on_events(new)
            return None if stack.in_progress else (stack,)

        [stack] = wait_until(
            settled, clock=self.clock, timeout=timeout, interval=POLL_SECONDS, what=f"stack {name}", next_step=next_step
        )
        return stack


class ChangeSetFailed(ClusterError):
    """CloudFormation refused to plan the change (template or parameter problem); the message says why."""
