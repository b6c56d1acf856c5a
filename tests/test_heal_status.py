"""`cluster status` and `cluster doctor` show every host's health verdict, which the agent (userdata/health-agent.sh)
sets as the cluster:health tag of its own instance, and read it at a cost that grows neither with the number of hosts
nor with what the fleet went through; on moto in-process, every AWS call counted on the real clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest

from provision import names
from provision.aws.cloud import Cloud
from provision.config.schema import ClusterConfig
from provision.deploy.status import collect, show
from provision.deploy.up import Up
from provision.doctor.observe import gather
from tests.deploykit import REGION, TOKEN, config, recording_ui

EXAMPLE = config()
HEALTHY = "2026-11-25T05:00:00Z healthy failures=0"
SICK = "2026-11-25T06:00:00Z failing:kubelet disk failures=3"


def up(cfg: ClusterConfig, cloud: Cloud, hosts: int = 3) -> list[str]:
    """A deployed cluster of ``hosts`` hosts (grown after `up`, as the group would grow); their ids."""
    Up(cfg, cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)
    group = cloud.stacks.resources(cfg.stack_name)[names.HOST_GROUP]
    if hosts != cfg.hosts.desired_capacity:
        cloud.groups.client.update_auto_scaling_group(
            AutoScalingGroupName=group, MinSize=hosts, MaxSize=hosts, DesiredCapacity=hosts
        )
    return sorted(cloud.instances.of_group(group))


def tag(instances: list[str], verdict: str) -> None:
    """What each host's agent does with `aws ec2 create-tags` on its own instance (here for many at once)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    for start in range(0, len(instances), 500):
        ec2.create_tags(Resources=instances[start : start + 500], Tags=[{"Key": names.HEALTH_TAG, "Value": verdict}])


@pytest.fixture
def calls(cloud: Cloud) -> Iterator[list[str]]:
    """Every AWS call the facades' real clients make from now on, by operation name."""
    made: list[str] = []
    clients = (cloud.stacks.client, cloud.groups.client, cloud.instances.client, cloud.parameters.client)
    for client in (*clients, cloud.eks.client):
        client.meta.events.register("before-call", lambda model, **_: made.append(model.name))
    yield made


def test_status_shows_each_hosts_last_health_verdict_where_the_agent_tagged_one(cloud: Cloud) -> None:
    sick, well, silent = up(EXAMPLE, cloud)
    tag([sick], SICK)
    tag([well], HEALTHY)

    report = collect(EXAMPLE, cloud, now=datetime.now(UTC))

    assert {row.instance_id: row.agent for row in report.hosts} == {
        sick: "failing:kubelet disk",
        well: "healthy",
        silent: "-",
    }
    assert {host["instance_id"]: host["agent"] for host in json.loads(report.to_json())["hosts"]}[sick] == (
        "failing:kubelet disk"
    )
    ui, out = recording_ui()
    show(report, ui)
    lines = out.getvalue().splitlines()
    assert lines[1].split()[:5] == ["instance", "zone", "lifecycle", "health", "agent"]
    # Every row: rows sort by zone and instance id, both random here (the old slice saw two rows of three: flaky).
    assert any(line.startswith(sick) and "failing:kubelet disk" in line for line in lines[2:])


STATUS_CALLS = [
    "DescribeStacks",  # its outputs name the group and say what an up-to-date host carries
    "DescribeAutoScalingGroups",
    "DescribeInstances",  # every host's verdict comes with its instance
]


@pytest.mark.parametrize("hosts", [20, 500])
def test_status_shows_every_verdict_of_a_large_fleet_in_three_calls(cloud: Cloud, calls: list[str], hosts: int) -> None:
    ids = up(EXAMPLE, cloud, hosts)
    sick = ids[::7]
    tag([host for host in ids if host not in sick], HEALTHY)
    tag(sick, SICK)
    calls.clear()

    report = collect(EXAMPLE, cloud, now=datetime.now(UTC))

    assert sorted(calls) == sorted(STATUS_CALLS), "the same three calls at 20 hosts and at 500"
    assert len(report.hosts) == hosts
    assert {row.instance_id: row.agent for row in report.hosts} == {
        host: "failing:kubelet disk" if host in sick else "healthy" for host in ids
    }


DOCTOR_CALLS = [
    "DescribeStacks",
    "GetParametersByPath",  # failed boots' records: none here, one empty page
    "GetParameters",  # the roll's journal and its lock
    *STATUS_CALLS[1:],
]


@pytest.mark.parametrize("hosts", [20, 500])
def test_doctor_reads_every_verdict_of_a_large_fleet_in_a_fixed_number_of_calls(
    cloud: Cloud, calls: list[str], hosts: int
) -> None:
    ids = up(EXAMPLE, cloud, hosts)
    tag(ids[1:], HEALTHY)
    tag(ids[:1], SICK)
    calls.clear()

    observed = gather(EXAMPLE, cloud, now=datetime.now(UTC), kube=None)

    assert sorted(calls) == sorted(DOCTOR_CALLS), "the same calls at 20 hosts and at 500"
    assert observed.snapshot is not None and len(observed.snapshot.hosts) == hosts
    assert {instance: record.verdict for instance, record in observed.health.items()} == {
        host: "failing:kubelet disk" if host == ids[0] else "healthy" for host in ids
    }
    assert observed.health[ids[0]].failures == 3
    assert observed.boot_records == ()
