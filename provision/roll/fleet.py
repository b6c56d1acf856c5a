"""The host group as a roll sees it: a snapshot of its members with their configuration fingerprints, and the few
changes a roll makes (size, processes, terminating a host and completing its termination hook)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

from provision.aws.cloud import Cloud
from provision.aws.groups import Groups
from provision.aws.session import error_code
from provision.errors import ClusterError
from provision.render import names


@dataclass(frozen=True)
class Host:
    instance_id: str
    zone: str
    lifecycle_state: str
    health: str
    protected: bool
    fingerprint: str  # "" when the host carries none
    image: str
    launched: datetime | None
    names: tuple[str, ...]  # private DNS name and IP, to find its node

    @property
    def order(self) -> tuple[str, str]:
        """Oldest first, then by id: the order hosts are replaced in."""
        return (self.launched.isoformat() if self.launched else "", self.instance_id)


@dataclass(frozen=True)
class Snapshot:
    group: str
    desired: int
    min_size: int
    max_size: int
    fingerprint: str  # what a host launched now carries
    hosts: tuple[Host, ...]
    suspended: tuple[str, ...]

    def host(self, instance_id: str) -> Host | None:
        return next((host for host in self.hosts if host.instance_id == instance_id), None)


class Fleet:
    def __init__(self, cloud: Cloud, stack_name: str) -> None:
        self.cloud = cloud
        self.autoscaling = cloud.groups.client
        resources = cloud.stacks.resources(stack_name)
        self.group = resources.get(names.HOST_GROUP, "")
        self.launch_template = resources.get(names.LAUNCH_TEMPLATE, "")
        if not self.group:
            raise ClusterError(f"stack {stack_name} has no host group; create it with `cluster up`")

    @property
    def groups(self) -> Groups:
        return self.cloud.groups

    def snapshot(self) -> Snapshot:
        group = self.cloud.groups.find(self.group)
        if group is None:
            raise ClusterError(f"the host group {self.group} is gone")
        instances = self.cloud.instances.of_group(self.group)
        fingerprint = self.cloud.instances.launch_template_tags(self.launch_template).get(names.FINGERPRINT_TAG, "")
        hosts = []
        for member in group.members:
            instance = instances.get(member.instance_id)
            hosts.append(
                Host(
                    instance_id=member.instance_id,
                    zone=member.availability_zone,
                    lifecycle_state=member.lifecycle_state,
                    health=member.health_status,
                    protected=member.protected_from_scale_in,
                    fingerprint=instance.tags.get(names.FINGERPRINT_TAG, "") if instance else "",
                    image=instance.image_id if instance else "",
                    launched=instance.launch_time if instance else None,
                    names=(instance.private_dns_name, instance.private_ip) if instance else (),
                )
            )
        return Snapshot(
            group=group.name,
            desired=group.desired_capacity,
            min_size=group.min_size,
            max_size=group.max_size,
            fingerprint=fingerprint,
            hosts=tuple(sorted(hosts, key=lambda host: host.order)),
            suspended=tuple(group.suspended_processes),
        )

    def launch_current_configuration(self) -> str | None:
        """Make the group launch the launch template's latest version, which the stack says it should. On AWS the
        stack update has done it already; moto leaves the group on version 1. Returns the version set, if any."""
        group = self.cloud.groups.find(self.group)
        latest = self.cloud.instances.latest_launch_template_version(self.launch_template)
        if group is None or not latest or group.launch_template_version in {latest, "$Latest"}:
            return None
        self.cloud.groups.use_launch_template_version(self.group, self.launch_template, latest)
        return latest

    def set_size(self, *, desired: int, max_size: int) -> None:
        self.cloud.groups.set_size(self.group, desired=desired, max_size=max_size)

    def terminate(self, instance_id: str) -> None:
        """Terminate one host and lower the desired capacity with it, so the group does not replace it."""
        try:
            self.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
            )
        except ClientError as error:
            if error_code(error) != "ValidationError":  # already gone from the group
                raise

    def complete_termination(self, instance_id: str) -> bool:
        """Let a host waiting in Terminating:Wait go now that it is drained, instead of at the hook's timeout.
        False when no action was waiting any more."""
        try:
            self.autoscaling.complete_lifecycle_action(
                AutoScalingGroupName=self.group,
                LifecycleHookName=names.TERMINATE_HOOK,
                InstanceId=instance_id,
                LifecycleActionResult="CONTINUE",
            )
        except ClientError as error:
            if error_code(error) != "ValidationError":  # "No active Lifecycle Action found": it went already
                raise
            return False
        return True
