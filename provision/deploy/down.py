"""`cluster down`: delete the stack after a confirmation that names it and its hosts, then say what is left."""

from __future__ import annotations

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.stacks import StackEvent
from provision.config.schema import ClusterConfig
from provision.deploy.host_records import forget_hosts, recorded_hosts
from provision.deploy.report import describe_event, event_printer, root_causes
from provision.errors import ClusterError, UsageError
from provision.ui import UI


class LeftBehind(ClusterError):
    """The stack is gone but AWS resources of the cluster remain."""


def down(config: ClusterConfig, cloud: Cloud, ui: UI, *, purge: bool, timeout: float) -> None:
    name = config.stack_name
    stack = cloud.stacks.find(name)
    if stack is None:
        ui.say(f"no stack {name} in {config.region}: nothing to delete")
    else:
        owner = stack.tags.get(names.CLUSTER_TAG)
        if owner != config.name:
            raise UsageError(
                f"stack {name} does not belong to cluster {config.name!r} (tag {owner!r}); not deleting it"
            )
        resources = cloud.stacks.resources(name)
        hosts = 0
        for each in config.groups.values():
            group_name = resources.get(each.names.group, "")
            group = cloud.groups.find(group_name) if group_name else None
            hosts += len(group.members) if group else 0
        ui.confirm(
            f"Delete stack {name} in {config.region} and its {hosts} host(s)?",
            unasked=f"did not delete stack {name} ({hosts} host(s)): rerun with --yes to delete it",
        )
        after = cloud.stacks.latest_event_id(stack.stack_id)
        refused = cloud.stacks.delete(name)
        if refused:  # the call failed yet the stack went (moto does that): what is left is reported either way
            ui.warn(f"DeleteStack reported {refused}; the stack is gone, checking what it left behind")
            _report_leftovers(config, cloud, ui, purge=purge)
            return
        seen: list[StackEvent] = []

        with ui.waiting(f"deleting stack {name}"):
            final = cloud.stacks.wait_settled(
                stack.stack_id,
                after_event=after,
                on_events=event_printer(ui, seen),
                timeout=timeout,
                next_step="the deletion goes on in AWS; run `cluster down` again to keep waiting",
            )
        if final is not None and final.status != "DELETE_COMPLETE":
            causes = root_causes(seen)
            cause = describe_event(causes[0]) if causes else final.status_reason
            raise ClusterError(f"stack {name} ended {final.status}: {cause}; fix it and run `cluster down` again")
        ui.say(f"deleted stack {name}")
    _report_leftovers(config, cloud, ui, purge=purge)


def _report_leftovers(config: ClusterConfig, cloud: Cloud, ui: UI, *, purge: bool) -> None:
    instances = sorted(cloud.instances.of_cluster(names.CLUSTER_TAG, config.name))
    parameters = cloud.parameters.names_under(config.parameter_path)
    # The hosts are gone with the stack (any still running are named below): what they recorded goes with them,
    # purge or not, as it does when a roll or heal sees a host go.
    gone = recorded_hosts(parameters, config.parameter_path) - set(instances)
    if gone:
        forget_hosts(cloud.parameters, config.parameter_path, gone)
        ui.say(f"removed the records of {len(gone)} terminated host(s)")
        parameters = cloud.parameters.names_under(config.parameter_path)
    # The storm guard's slots name hosts of the group, which went with the stack.
    repair = [name for name in parameters if name.startswith(names.repair_path(config.parameter_path) + "/")]
    if repair:
        cloud.parameters.delete(repair)
        ui.say(f"removed the storm guard's {len(repair)} repair record(s)")
        parameters = [name for name in parameters if name not in repair]
    if parameters and purge:
        cloud.parameters.delete(parameters)
        ui.say(f"removed {len(parameters)} SSM parameter(s) under {config.parameter_path}/ (join token, roll state)")
    elif parameters:
        for parameter in parameters:
            ui.say(f"left behind: SSM parameter {parameter}")
        ui.say("remove them with `cluster down --purge`")
    vpcs = cloud.instances.tagged_vpcs(names.CLUSTER_TAG, config.name)
    remaining = [f"instance {instance}" for instance in instances] + [f"VPC {vpc}" for vpc in vpcs]
    if remaining:
        raise LeftBehind(
            f"the stack is gone but {', '.join(remaining)} (tagged {names.CLUSTER_TAG}={config.name}) remain; "
            "delete them in the console or with the AWS CLI"
        )
