"""`cluster up`, `status` and `down` with real boto3 against moto in-process (virtual clock, recorded UI)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from provision import names
from provision.aws.cloud import Cloud
from provision.config.schema import ClusterConfig
from provision.deploy.down import LeftBehind, down
from provision.deploy.status import collect, show
from provision.deploy.up import Up
from provision.errors import UsageError
from provision.fleet.observe import Fleet
from provision.render.template import render
from provision.ui import Declined
from tests.deploykit import REGION, TOKEN, Answers, config, existing_network, recording_ui

EXAMPLE = config()


def up(cfg: ClusterConfig, cloud: Cloud, *, dry_run: bool = False, token: str | None = TOKEN, **ui: Any) -> str:
    user, out = recording_ui(**ui)
    Up(cfg, cloud, user, timeout=600).run(dry_run=dry_run, join_token=token)
    return out.getvalue()


def stacks() -> list[str]:
    listed = boto3.client("cloudformation", region_name=REGION).list_stacks()["StackSummaries"]
    return [stack["StackName"] for stack in listed if stack["StackStatus"] != "DELETE_COMPLETE"]


def pending_change_sets(cfg: ClusterConfig) -> list[str]:
    client = boto3.client("cloudformation", region_name=REGION)
    summaries = client.list_change_sets(StackName=cfg.stack_name)["Summaries"]
    return [summary["ChangeSetName"] for summary in summaries if summary["ExecutionStatus"] == "AVAILABLE"]


def instance_type_of_new_hosts(cloud: Cloud, cfg: ClusterConfig) -> str:
    template_id = cloud.stacks.resources(cfg.stack_name)[names.LAUNCH_TEMPLATE]
    [version] = boto3.client("ec2", region_name=REGION).describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=["$Latest"]
    )["LaunchTemplateVersions"]
    return str(version["LaunchTemplateData"]["InstanceType"])


def test_up_creates_the_stack_stores_the_token_and_waits_for_the_hosts(cloud: Cloud) -> None:
    output = up(EXAMPLE, cloud)

    stack = cloud.stacks.find(EXAMPLE.stack_name)
    assert stack is not None and stack.status == "CREATE_COMPLETE"
    assert stack.tags[names.CLUSTER_TAG] == "demo"
    assert "+  HostGroup" in output and "+  Vpc" in output
    assert "CREATE_COMPLETE cluster-demo" in output
    assert "3 host(s) InService" in output
    parameter = boto3.client("ssm", region_name=REGION).get_parameter(
        Name="/cluster/demo/join-token", WithDecryption=True
    )["Parameter"]
    assert (parameter["Type"], parameter["Value"]) == ("SecureString", TOKEN)
    assert TOKEN not in output


def test_up_again_with_nothing_changed_says_so_and_changes_nothing(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    before = cloud.stacks.find(EXAMPLE.stack_name)

    output = up(EXAMPLE, cloud, token=None)

    assert "no changes: stack cluster-demo is up to date" in output
    assert cloud.stacks.find(EXAMPLE.stack_name) == before
    assert pending_change_sets(EXAMPLE) == []


def test_up_with_a_changed_config_shows_the_diff_and_applies_it(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    bigger = config(hosts={"instance_type": "m5.large"})

    output = up(bigger, cloud, token=None)

    assert "~  HostLaunchTemplate  AWS::EC2::LaunchTemplate" in output
    assert "`cluster patch` replaces the running ones" in output
    assert instance_type_of_new_hosts(cloud, bigger) == "m5.large"
    assert pending_change_sets(bigger) == []


def test_dry_run_of_a_create_leaves_no_stack_and_no_token(cloud: Cloud) -> None:
    output = up(EXAMPLE, cloud, dry_run=True)

    assert "+  HostGroup" in output and "dry run: nothing was changed" in output
    assert "would store the join token" in output
    assert stacks() == []
    assert not cloud.parameters.exists("/cluster/demo/join-token")


def test_dry_run_of_an_update_changes_nothing(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    bigger = config(hosts={"instance_type": "m5.large"})

    output = up(bigger, cloud, dry_run=True, token=None)

    assert "~  HostLaunchTemplate" in output
    assert instance_type_of_new_hosts(cloud, bigger) == "m4.large"
    assert pending_change_sets(bigger) == []


def test_a_template_over_the_inline_limit_is_refused_before_anything_changes(cloud: Cloud) -> None:
    # Each group brings its boot script: three groups of the example no longer fit CloudFormation's 51,200 bytes.
    three = config(groups={"system": {}, "workers": {}, "batch": {}})

    with pytest.raises(UsageError, match=r"the template is \d+ bytes, over CloudFormation's inline limit of 51200"):
        up(three, cloud)

    assert stacks() == []
    assert not cloud.parameters.exists("/cluster/demo/join-token")


def test_up_waits_for_every_groups_hosts(cloud: Cloud) -> None:
    two = config(groups={"system": {"desired_capacity": 2, "min_size": 2, "zones": [1, 2]}, "workers": {}})

    output = up(two, cloud)

    resources = cloud.stacks.resources(two.stack_name)
    assert f"2 host(s) InService in {resources['HostGroupSystem']}" in output
    assert f"3 host(s) InService in {resources[names.HOST_GROUP]}" in output


def test_declining_leaves_nothing_behind(cloud: Cloud) -> None:
    answers = Answers(replies=[False])

    with pytest.raises(Declined):
        up(EXAMPLE, cloud, assume_yes=False, answers=answers)

    assert answers.asked == ["Create stack cluster-demo in eu-west-1?"]
    assert stacks() == []
    assert not cloud.parameters.exists("/cluster/demo/join-token")


def test_without_a_terminal_or_yes_nothing_is_changed(cloud: Cloud) -> None:
    with pytest.raises(UsageError, match="did not create stack cluster-demo in eu-west-1: rerun with --yes"):
        up(EXAMPLE, cloud, assume_yes=False, answers=None)

    assert stacks() == []


def test_kubeadm_without_a_token_stops_before_any_change(cloud: Cloud) -> None:
    with pytest.raises(UsageError, match="needs the bootstrap token in SSM /cluster/demo/join-token"):
        up(EXAMPLE, cloud, token=None)
    assert stacks() == []


def test_a_malformed_token_is_refused_without_echoing_it(cloud: Cloud) -> None:
    with pytest.raises(UsageError) as caught:
        up(EXAMPLE, cloud, token="not-a-token-$(id)")
    assert "not-a-token" not in str(caught.value)
    assert stacks() == []


def test_a_stack_of_the_same_name_that_is_not_ours_is_left_alone(cloud: Cloud) -> None:
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="cluster-demo",
        TemplateBody='{"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}',
    )

    with pytest.raises(UsageError, match="exists but does not belong to cluster 'demo'"):
        up(EXAMPLE, cloud)


def test_status_lists_every_host_as_current(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)

    report = collect(EXAMPLE, cloud, now=datetime.now(UTC))

    assert report.stack_status == "CREATE_COMPLETE"
    assert (report.desired_capacity, report.min_size, report.max_size) == (3, 3, 6)
    assert report.suspended_processes == []
    assert len(report.hosts) == 3
    assert all(row.current is True and row.lifecycle_state == "InService" for row in report.hosts)
    assert report.fingerprint.endswith(f"/0/{render(EXAMPLE).digest}")


def test_status_marks_hosts_outdated_after_a_config_change(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    up(config(hosts={"instance_type": "m5.large"}), cloud, token=None)

    report = collect(EXAMPLE, cloud, now=datetime.now(UTC))

    assert [row.current for row in report.hosts] == [False, False, False]


def test_status_shows_suspended_processes(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    group = cloud.stacks.resources(EXAMPLE.stack_name)[names.HOST_GROUP]
    boto3.client("autoscaling", region_name=REGION).suspend_processes(
        AutoScalingGroupName=group, ScalingProcesses=["AZRebalance"]
    )

    assert collect(EXAMPLE, cloud, now=datetime.now(UTC)).suspended_processes == ["AZRebalance"]


def test_status_json_round_trips(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    data = json.loads(collect(EXAMPLE, cloud, now=datetime.now(UTC)).to_json())
    assert {host["instance_id"] for host in data["hosts"]} == {
        member.instance_id
        for member in cloud.groups.find(data["group"]).members  # type: ignore[union-attr]
    }


@pytest.mark.parametrize("hosts", [3, 40])
def test_status_makes_the_same_number_of_aws_calls_for_3_or_40_hosts(cloud: Cloud, hosts: int) -> None:
    cfg = config(hosts={"min_size": hosts, "max_size": hosts, "desired_capacity": hosts})
    up(cfg, cloud)
    calls: list[str] = []
    for client in (cloud.stacks.client, cloud.groups.client, cloud.instances.client, cloud.parameters.client):
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))

    report = collect(cfg, cloud, now=datetime.now(UTC))

    assert len(report.hosts) == hosts
    assert sorted(calls) == sorted(
        [
            "DescribeStacks",  # with the outputs: the group, its launch template, the up-to-date fingerprint
            "DescribeAutoScalingGroups",
            "DescribeInstances",  # with each host's health verdict, a tag of its instance
        ]
    )


def test_the_stacks_outputs_follow_every_update_and_name_what_the_verbs_read(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    first = cloud.stacks.find(EXAMPLE.stack_name)
    up(config(hosts={"instance_type": "m5.large"}), cloud, token=None)

    stack = cloud.stacks.find(EXAMPLE.stack_name)
    assert first is not None and stack is not None
    resources = cloud.stacks.resources(EXAMPLE.stack_name)
    assert stack.outputs[names.OUTPUT_GROUP] == resources[names.HOST_GROUP]
    assert stack.outputs[names.OUTPUT_LAUNCH_TEMPLATE] == resources[names.LAUNCH_TEMPLATE]
    latest = cloud.instances.launch_template(resources[names.LAUNCH_TEMPLATE])
    assert stack.outputs[names.OUTPUT_FINGERPRINT] == latest.tags[names.FINGERPRINT_TAG], "what a new host carries"
    assert stack.outputs[names.OUTPUT_FINGERPRINT] != first.outputs[names.OUTPUT_FINGERPRINT], "not the first's"


def test_a_stack_without_outputs_is_read_through_its_resources_and_launch_template(cloud: Cloud) -> None:
    cfg = config(hosts={"min_size": 2, "max_size": 2, "desired_capacity": 2})
    up(cfg, cloud)
    stack = cloud.stacks.find(cfg.stack_name)
    assert stack is not None
    calls: list[str] = []
    for client in (cloud.stacks.client, cloud.groups.client, cloud.instances.client):
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))

    # A stack whose outputs are missing (made by an older version, or by moto's change sets as moto leaves them).
    bare = Fleet.of_stack(cloud, cfg.stack_name, described=replace(stack, outputs={})).snapshot()
    by_outputs = Fleet.of_stack(cloud, cfg.stack_name, described=stack).snapshot()

    assert bare.group == by_outputs.group and bare.fingerprint == by_outputs.fingerprint != ""
    assert [host.fingerprint for host in bare.hosts] == [bare.fingerprint] * 2, "both hosts current either way"
    assert sorted(calls) == sorted(
        ["DescribeStackResources", "DescribeLaunchTemplateVersions"]  # the two reads the outputs save
        + ["DescribeAutoScalingGroups", "DescribeInstances"] * 2
    )


def test_status_groups_its_rows_by_host_group(cloud: Cloud) -> None:
    two = config(groups={"system": {"desired_capacity": 2, "min_size": 2, "zones": [1, 2]}, "workers": {}})
    up(two, cloud)
    calls: list[str] = []
    for client in (cloud.stacks.client, cloud.groups.client, cloud.instances.client):
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))

    report = collect(two, cloud, now=datetime.now(UTC))

    # The stack once, each group's listing, and the cluster's instances described once for both groups.
    assert sorted(calls) == ["DescribeAutoScalingGroups"] * 2 + ["DescribeInstances", "DescribeStacks"]

    assert [(group.name, group.desired_capacity) for group in report.groups] == [("system", 2), ("workers", 3)]
    resources = cloud.stacks.resources(two.stack_name)
    assert [group.group for group in report.groups] == [resources["HostGroupSystem"], resources[names.HOST_GROUP]]
    by_group = {name: {row.instance_id for row in report.hosts if row.group == name} for name in ("system", "workers")}
    for group in report.groups:
        listed = cloud.groups.find(group.group)
        assert listed is not None and by_group[group.name] == {member.instance_id for member in listed.members}
    data = json.loads(report.to_json())
    assert [group["name"] for group in data["groups"]] == ["system", "workers"]
    assert sorted(host["group"] for host in data["hosts"]) == ["system"] * 2 + ["workers"] * 3
    user, out = recording_ui()
    show(report, user)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("group workers (") and "desired 3" in line for line in lines), "a line per group"
    assert lines[2].split()[:2] == ["group", "instance"], "the table names each row's group"


def test_down_deletes_after_naming_the_stack_and_its_hosts(cloud: Cloud) -> None:
    cfg = config(network=existing_network())
    up(cfg, cloud)
    answers = Answers(replies=[True])
    user, out = recording_ui(assume_yes=False, answers=answers)

    down(cfg, cloud, user, purge=False, timeout=600)

    assert answers.asked == ["Delete stack cluster-demo in eu-west-1 and its 3 host(s)?"]
    assert cloud.stacks.find(cfg.stack_name) is None
    assert "left behind: SSM parameter /cluster/demo/join-token" in out.getvalue()
    assert "cluster down --purge" in out.getvalue()


def test_down_purge_removes_the_clusters_parameters(cloud: Cloud) -> None:
    cfg = config(network=existing_network())
    up(cfg, cloud)
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/cluster/demo/hosts/i-0123456789abcdef0/boot", Value="failed step=join", Type="String"
    )
    user, out = recording_ui()

    down(cfg, cloud, user, purge=True, timeout=600)

    assert cloud.parameters.names_under("/cluster/demo") == []
    assert "removed the records of 1 terminated host(s)" in out.getvalue()
    assert "removed 1 SSM parameter(s)" in out.getvalue()


def test_down_removes_the_records_of_the_hosts_it_terminated_even_without_purge(cloud: Cloud) -> None:
    cfg = config(network=existing_network())
    up(cfg, cloud)
    records = f"{cfg.parameter_path}/hosts"
    for host in sorted(cloud.instances.of_cluster("cluster:name", cfg.name))[:2]:
        cloud.parameters.put(f"{records}/{host}/boot", "failed step=join exit=1")
    cloud.parameters.put(f"{records}/i-0123456789abcdef0/health", "2026-11-25T05:00:00Z healthy failures=0")
    user, out = recording_ui()

    down(cfg, cloud, user, purge=False, timeout=600)

    assert cloud.parameters.names_under(records) == [], "nothing of the gone hosts stays behind"
    assert "removed the records of 3 terminated host(s)" in out.getvalue()
    assert "left behind: SSM parameter /cluster/demo/join-token" in out.getvalue(), "the rest waits for --purge"


def test_down_declined_keeps_the_stack(cloud: Cloud) -> None:
    up(EXAMPLE, cloud)
    user, _ = recording_ui(assume_yes=False, answers=Answers(replies=[False]))

    with pytest.raises(Declined):
        down(EXAMPLE, cloud, user, purge=False, timeout=600)
    assert cloud.stacks.find(EXAMPLE.stack_name) is not None


def test_down_reports_aws_resources_left_behind(cloud: Cloud) -> None:
    # moto's delete_stack fails on the route tables of the new VPC and drops the stack anyway: exactly the kind of
    # debris down must name rather than hide.
    up(EXAMPLE, cloud)
    user, out = recording_ui()

    with pytest.raises(LeftBehind, match=r"the stack is gone but VPC vpc-[0-9a-f]+ \(tagged cluster:name=demo\)"):
        down(EXAMPLE, cloud, user, purge=True, timeout=600)
    assert "removed 1 SSM parameter(s)" in out.getvalue()


def test_down_without_a_stack_still_reports_leftovers(cloud: Cloud) -> None:
    cloud.parameters.put_secret("/cluster/demo/join-token", TOKEN, kms_key=None)
    user, out = recording_ui()

    down(EXAMPLE, cloud, user, purge=False, timeout=600)

    assert "no stack cluster-demo in eu-west-1: nothing to delete" in out.getvalue()
    assert "left behind: SSM parameter /cluster/demo/join-token" in out.getvalue()
