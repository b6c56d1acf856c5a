"""Auto Scaling, typed: a group with its members in one call, whatever the number of hosts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from provision.aws.session import error_code

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient

ACTIVITY_INSTANCE = re.compile(r"\b(i-[0-9a-f]+)\b")  # the instance an activity's description names


@dataclass(frozen=True)
class Member:
    instance_id: str
    availability_zone: str
    lifecycle_state: str
    health_status: str
    protected_from_scale_in: bool


@dataclass(frozen=True)
class Group:
    name: str
    min_size: int
    max_size: int
    desired_capacity: int
    members: list[Member]
    suspended_processes: list[str]
    launch_template_version: str = ""
    zones: tuple[str, ...] = ()
    seen_at: datetime | None = None  # AWS's clock when it answered (its Date header)

    @property
    def in_service(self) -> list[Member]:
        return [member for member in self.members if member.lifecycle_state == "InService"]


class Groups:
    def __init__(self, client: AutoScalingClient) -> None:
        self.client = client

    def find(self, name: str) -> Group | None:
        # The group's description lists every member, so one call serves any number of hosts.
        answer = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        groups = answer["AutoScalingGroups"]
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date", "")
        if not groups:
            return None
        [raw] = groups
        return Group(
            name=raw["AutoScalingGroupName"],
            min_size=raw["MinSize"],
            max_size=raw["MaxSize"],
            desired_capacity=raw["DesiredCapacity"],
            members=[
                Member(
                    instance_id=member["InstanceId"],
                    availability_zone=member["AvailabilityZone"],
                    lifecycle_state=member["LifecycleState"],
                    health_status=member["HealthStatus"],
                    protected_from_scale_in=member.get("ProtectedFromScaleIn", False),
                )
                for member in raw.get("Instances", [])
            ],
            suspended_processes=sorted(p["ProcessName"] for p in raw.get("SuspendedProcesses", [])),
            launch_template_version=raw.get("LaunchTemplate", {}).get("Version", ""),
            zones=tuple(sorted(raw.get("AvailabilityZones", []))),
            seen_at=parsedate_to_datetime(date) if date else None,
        )

    # --- what a roll changes ---

    def set_size(self, name: str, *, desired: int, max_size: int | None = None) -> None:
        if max_size is None:
            self.client.update_auto_scaling_group(AutoScalingGroupName=name, DesiredCapacity=desired)
        else:
            self.client.update_auto_scaling_group(AutoScalingGroupName=name, DesiredCapacity=desired, MaxSize=max_size)

    def use_launch_template_version(self, name: str, template_id: str, version: str) -> None:
        self.client.update_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateId": template_id, "Version": version}
        )

    def terminate(self, instance_id: str, *, decrement: bool) -> None:
        """Terminate a member; one already gone from its group (ValidationError) is not an error."""
        try:
            self.client.terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=decrement
            )
        except ClientError as error:
            if error_code(error) != "ValidationError":
                raise

    def report_unhealthy(self, instance_id: str) -> None:
        """What a host's health agent does about itself (the demo plays it): the group replaces the host."""
        self.client.set_instance_health(InstanceId=instance_id, HealthStatus="Unhealthy")

    def suspend(self, name: str, processes: list[str]) -> None:
        if processes:
            self.client.suspend_processes(AutoScalingGroupName=name, ScalingProcesses=processes)

    def resume(self, name: str, processes: list[str]) -> None:
        if processes:
            self.client.resume_processes(AutoScalingGroupName=name, ScalingProcesses=processes)

    # --- lifecycle actions (what `cluster heal` does for a host waiting in Pending:Wait or Terminating:Wait) ---

    def complete_action(
        self, name: str, hook: str, instance_id: str, token: str, result: Literal["CONTINUE", "ABANDON"]
    ) -> bool:
        """Complete the host's lifecycle action. False when no action waits any more (completed already, timed
        out, the host gone): AWS answers ValidationError "No active Lifecycle Action found"."""
        try:
            self.client.complete_lifecycle_action(
                **_action(name, hook, instance_id, token), LifecycleActionResult=result
            )
        except ClientError as error:
            if error_code(error) != "ValidationError":
                raise
            return False
        return True

    def hook_timeouts(self, name: str) -> dict[str, int]:
        """Each lifecycle hook of the group and its heartbeat timeout in seconds, as deployed."""
        hooks = self.client.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
        return {hook["LifecycleHookName"]: hook["HeartbeatTimeout"] for hook in hooks if "HeartbeatTimeout" in hook}

    def activities_in_progress(self, name: str) -> dict[str, datetime]:
        """Instance id -> when its scaling activity still in progress began (the launch or termination a lifecycle
        action holds up). One call: the latest 100 activities."""
        activities = self.client.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=100)["Activities"]
        since: dict[str, datetime] = {}
        for activity in activities:
            if activity.get("StatusCode") in {"Successful", "Failed", "Cancelled"}:
                continue
            match = ACTIVITY_INSTANCE.search(activity.get("Description", ""))
            if match and "StartTime" in activity:
                since.setdefault(match[1], activity["StartTime"])
        return since

    def heartbeat(self, name: str, hook: str, instance_id: str, token: str) -> bool:
        """Push the action's timeout out by the hook's heartbeat timeout. False when no action waits any more."""
        try:
            self.client.record_lifecycle_action_heartbeat(**_action(name, hook, instance_id, token))
        except ClientError as error:
            if error_code(error) != "ValidationError":
                raise
            return False
        return True


def _action(name: str, hook: str, instance_id: str, token: str) -> dict[str, str]:
    """The action by its token when the event gave one (it can only ever name that action), else by the host."""
    ids = {"AutoScalingGroupName": name, "LifecycleHookName": hook, "InstanceId": instance_id}
    return ids | ({"LifecycleActionToken": token} if token else {})
