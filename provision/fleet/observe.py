"""One observation of the host group, cheap by construction: the group's listing is the one AWS read per observation;
an instance is described once, the first time the group lists it (its zone, image, fingerprint, names and launch time
never change); the fingerprint of an up-to-date host is the stack's output, or the launch template's latest version read
once per run. With a Kubernetes facade, the nodes are listed once per observation and every host comes joined to its
node. Also the few changes verbs make to the group."""

from __future__ import annotations

from collections.abc import Mapping

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.groups import Groups
from provision.aws.instances import Instance, Instances, TemplateVersion
from provision.aws.stacks import Stack
from provision.errors import ClusterError
from provision.fleet.model import Host, Snapshot
from provision.kube.facade import Kube

BY_ID = 50  # new hosts described by their ids up to this many (one call); more, by their tag, paged


class Fleet:
    def __init__(
        self,
        groups: Groups,
        instances: Instances,
        group: str,
        launch_template: str,
        *,
        kube: Kube | None = None,
        cluster: str = "",
        fingerprint: str = "",
    ) -> None:
        self.groups = groups
        self.instances = instances
        self.group = group
        self.launch_template = launch_template
        self.kube = kube
        self.cluster = cluster  # when known, the first look describes by the cluster's tag (strays included)
        self._fingerprint = fingerprint  # when known, the stack's own word for it: no template read
        self._facts: dict[str, Instance] = {}
        self._template: TemplateVersion | None = None

    @classmethod
    def of_stack(
        cls,
        cloud: Cloud,
        stack_name: str,
        *,
        kube: Kube | None = None,
        described: Stack | None = None,
        group: str = names.DEFAULT_GROUP,
    ) -> Fleet:
        """The fleet of one host group of a stack (by its name in the configuration). The stack's outputs name the
        group and its launch template and give the fingerprint of an up-to-date host; pass the stack as the caller
        ``described`` it already to save that read. A stack without those outputs (moto's change sets leave them
        empty; the sandbox corrects that) costs a listing of its resources instead, and the fingerprint a read of the
        launch template."""
        ids = names.group_names(group)
        stack = described or cloud.stacks.find(stack_name)
        if stack is None:
            raise ClusterError(f"there is no stack {stack_name}; create it with `cluster up`")
        name = stack.outputs.get(ids.output_group, "")
        template = stack.outputs.get(ids.output_launch_template, "")
        fingerprint = stack.outputs.get(ids.output_fingerprint, "")
        if not name or not template:
            resources = cloud.stacks.resources(stack_name)
            name, template, fingerprint = resources.get(ids.group, ""), resources.get(ids.launch_template, ""), ""
        if not name:
            raise ClusterError(f"stack {stack_name} has no host group {group}; create it with `cluster up`")
        return cls(
            cloud.groups,
            cloud.instances,
            name,
            template,
            kube=kube,
            cluster=stack.tags.get(names.CLUSTER_TAG, ""),
            fingerprint=fingerprint,
        )

    def know(self, instances: Mapping[str, Instance]) -> None:
        """Take these instances as described already (another group's first look described the whole cluster)."""
        self._facts.update(instances)

    def template(self) -> TemplateVersion:
        """The launch template's latest version, read once per run (``template_changed`` after a stack update)."""
        if self._template is None:
            self._template = self.instances.launch_template(self.launch_template)
        return self._template

    def template_changed(self) -> None:
        self._template = None
        self._fingerprint = ""  # the stack's outputs as read before its update

    def fingerprint(self) -> str:
        """What an up-to-date host's fingerprint tag says."""
        if self._fingerprint or not self.launch_template:
            return self._fingerprint
        return self.template().tags.get(names.FINGERPRINT_TAG, "")

    def snapshot(self) -> Snapshot:
        group = self.groups.find(self.group)
        if group is None:
            raise ClusterError(f"the host group {self.group} is gone")
        unseen = [member.instance_id for member in group.members if member.instance_id not in self._facts]
        if unseen and (not self._facts or len(unseen) > BY_ID):  # the first look, or a large one: by tag, paged
            by_tag = self.instances.of_cluster if self.cluster else None
            self._facts.update(
                by_tag(names.CLUSTER_TAG, self.cluster) if by_tag else self.instances.of_group(self.group)
            )
            unseen = [instance for instance in unseen if instance not in self._facts]
        for start in range(0, len(unseen), BY_ID):  # new since the last look (or launched without the tag)
            self._facts.update(self.instances.describe(unseen[start : start + BY_ID]))
        listed = {member.instance_id for member in group.members}
        for gone in set(self._facts) - listed:
            del self._facts[gone]  # never listed again: ids are not reused
        every_node = tuple(self.kube.nodes()) if self.kube is not None else ()
        nodes = Kube.match_hosts(every_node, {i: _names(self._facts.get(i)) for i in listed})
        hosts = []
        for member in group.members:
            instance = self._facts.get(member.instance_id)
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
                    names=_names(instance),
                    node=nodes.get(member.instance_id),
                )
            )
        return Snapshot(
            group=group.name,
            desired=group.desired_capacity,
            min_size=group.min_size,
            max_size=group.max_size,
            fingerprint=self.fingerprint(),
            hosts=tuple(sorted(hosts, key=lambda host: host.order)),
            suspended=tuple(group.suspended_processes),
            zones=group.zones,
            at=group.seen_at,
            nodes=every_node,
        )

    def launch_current_configuration(self) -> str | None:
        """Make the group launch the launch template's latest version, which the stack says it should. On AWS the
        stack update has done it already; moto leaves the group on version 1. Returns the version set, if any."""
        group = self.groups.find(self.group)
        latest = self.template().version if self.launch_template else ""
        if group is None or not latest or group.launch_template_version in {latest, "$Latest"}:
            return None
        self.groups.use_launch_template_version(self.group, self.launch_template, latest)
        return latest

    def set_size(self, *, desired: int, max_size: int) -> None:
        self.groups.set_size(self.group, desired=desired, max_size=max_size)

    def terminate(self, instance_id: str) -> None:
        """Terminate one host and lower the desired capacity with it, so the group does not replace it."""
        self.groups.terminate(instance_id, decrement=True)

    def complete_termination(self, instance_id: str) -> bool:
        """Let a host waiting in Terminating:Wait go now that it is drained, instead of at the hook's timeout.
        False when no action was waiting any more."""
        return self.groups.complete_action(self.group, names.TERMINATE_HOOK, instance_id, "", "CONTINUE")


def _names(instance: Instance | None) -> tuple[str, ...]:
    return (instance.private_dns_name, instance.private_ip) if instance else ()
