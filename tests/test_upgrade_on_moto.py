"""A stack made by the version before host groups, updated by this one (boto3 against moto in-process, virtual clock):
its one group and launch template keep their names, so the update modifies no group and replaces nothing; adding a
second group beside `workers` adds that group's resources and leaves the first group's hosts running.

moto's change sets list Add, Modify and Remove but never say whether a change replaces a resource, so "replaces
nothing" is checked as a user would see it: nothing is removed, and every resource the change set leaves alone (both of
the workers' among them) keeps its physical id. moto itself recreates whatever it modifies (and drops a modified
managed policy); the two resources an added group modifies are ones AWS updates without interruption (a rule's
EventPattern, a managed policy's PolicyDocument)."""

from __future__ import annotations

import boto3

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.stacks import ResourceChange
from provision.config.schema import ClusterConfig
from provision.deploy.up import Up
from provision.render.template import cluster_tags, render
from tests.conftest import GOLDEN
from tests.deploykit import REGION, TOKEN, config, recording_ui

BEFORE_GROUPS = GOLDEN / "upgrade/kubeadm-single-group.template.yaml"
EXAMPLE = config()
TWO_GROUPS = config(
    groups={
        "system": {
            "instance_type": "m5.large",
            "min_size": 2,
            "max_size": 2,
            "desired_capacity": 2,
            "zones": [1, 2],
            "labels": {"example.com/pool": "system"},
            "taints": ["dedicated=system:NoSchedule"],
        },
        "workers": {},
    }
)


def create_stack_as_before_groups(cloud: Cloud) -> dict[str, str]:
    """The stack as the version before groups left it; returns its resources' physical ids by logical id."""
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=EXAMPLE.stack_name,
        TemplateBody=BEFORE_GROUPS.read_text(),
        Parameters=[{"ParameterKey": names.IMAGE_PARAMETER, "ParameterValue": EXAMPLE.image.removeprefix("ssm:")}],
        Capabilities=["CAPABILITY_IAM"],
        Tags=[{"Key": key, "Value": value} for key, value in cluster_tags(EXAMPLE).items()],
    )
    cloud.parameters.put_secret(names.join_token_parameter(EXAMPLE.parameter_path), TOKEN, kms_key=None)
    return cloud.stacks.resources(EXAMPLE.stack_name)


def planned_changes(cloud: Cloud, cfg: ClusterConfig) -> list[ResourceChange]:
    """What CloudFormation would change to bring the stack to ``cfg``, as `cluster up` asks it (then discarded)."""
    rendered = render(cfg)
    change_set = cloud.stacks.create_change_set(
        cfg.stack_name,
        "upgrade-check",
        kind="UPDATE",
        template=rendered.body(),
        parameters=rendered.parameters,
        tags=cluster_tags(cfg),
        timeout=60,
    )
    cloud.stacks.delete_change_set(cfg.stack_name, "upgrade-check")
    return change_set.changes


def hosts_of(group_name: str) -> list[str]:
    [group] = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[group_name]
    )["AutoScalingGroups"]
    return sorted(instance["InstanceId"] for instance in group["Instances"])


def up(cfg: ClusterConfig, cloud: Cloud, *, dry_run: bool = False) -> str:
    ui, out = recording_ui()
    Up(cfg, cloud, ui, timeout=600).run(dry_run=dry_run, join_token=None)
    return out.getvalue()


def test_a_stack_made_before_groups_updates_in_place_for_the_same_config(cloud: Cloud) -> None:
    before = create_stack_as_before_groups(cloud)
    hosts = hosts_of(before[names.HOST_GROUP])

    changes = planned_changes(cloud, EXAMPLE)

    # Nothing is added or removed and the group is never touched. (Today nothing changes at all; a later version
    # may modify a resource in place, the launch template's boot script say, but never rename one.)
    assert [change.logical_id for change in changes if change.action != "Modify"] == []
    assert names.HOST_GROUP not in {change.logical_id for change in changes}
    assert not [change for change in changes if change.replaces]
    output = up(EXAMPLE, cloud)
    assert "REPLACE" not in output and "3 host(s) InService" in output
    after = cloud.stacks.resources(EXAMPLE.stack_name)
    modified = {change.logical_id for change in changes}
    untouched = set(before) - modified
    # moto deletes an AWS::IAM::ManagedPolicy that an update modifies (AWS updates it in place): tolerated for it only.
    assert set(before) - set(after) <= {names.HEAL_HANDLER_POLICY} & modified and set(after) <= set(before)
    assert {key: after[key] for key in untouched} == {key: before[key] for key in untouched}
    assert hosts_of(before[names.HOST_GROUP]) == hosts


def test_adding_a_group_beside_workers_adds_it_and_leaves_the_workers_running(cloud: Cloud) -> None:
    before = create_stack_as_before_groups(cloud)
    hosts = hosts_of(before[names.HOST_GROUP])

    changes = planned_changes(cloud, TWO_GROUPS)

    by_action: dict[str, set[str]] = {}
    for change in changes:
        by_action.setdefault(change.action, set()).add(change.logical_id)
    assert by_action.get("Remove", set()) == set()
    assert by_action["Add"] == {"HostGroupSystem", "HostLaunchTemplateSystem"}
    # What covers every group now names the new one too; the workers' group is never touched. (This version may also
    # change, in place, what it changed for every host: the boot script in the launch template, the hosts' role.)
    assert {names.LIFECYCLE_EVENT_RULE, names.HEAL_HANDLER_POLICY} <= by_action["Modify"]
    assert by_action["Modify"] <= {
        names.LIFECYCLE_EVENT_RULE,
        names.HEAL_HANDLER_POLICY,
        names.LAUNCH_TEMPLATE,
        "HostRole",
    }
    assert not [change for change in changes if change.replaces]

    shown = up(TWO_GROUPS, cloud, dry_run=True)
    assert "+  HostGroupSystem" in shown and "~  HostGroup " not in shown
    # Unchanged, or (this version's new boot script) new hosts get it and a patch replaces the running ones.
    assert "group workers: unchanged" in shown or "group workers: hosts launched from now on get" in shown
    assert "group system: new: 2 host(s) launch with configuration" in shown

    output = up(TWO_GROUPS, cloud)

    after = cloud.stacks.resources(TWO_GROUPS.stack_name)
    untouched = set(before) - by_action["Modify"]
    assert names.HOST_GROUP in untouched and after[names.LAUNCH_TEMPLATE] == before[names.LAUNCH_TEMPLATE]
    assert {key: after[key] for key in untouched} == {key: before[key] for key in untouched}
    assert hosts_of(after[names.HOST_GROUP]) == hosts, "the workers' hosts were replaced"
    assert len(hosts_of(after["HostGroupSystem"])) == 2
    assert "2 host(s) InService in " + after["HostGroupSystem"] in output
    stack = cloud.stacks.find(TWO_GROUPS.stack_name)
    assert stack is not None
    assert stack.outputs["HostGroupNameSystem"] == after["HostGroupSystem"]
    assert stack.outputs[names.OUTPUT_GROUP] == after[names.HOST_GROUP]
