"""The sandbox spreads a group's hosts over its zones as AWS does, in the stack's own region: the real sandbox daemon
(`cluster sandbox start`), the rendered stack created and its group changed with boto3 over the sandbox's endpoint."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from provision import names
from provision.clock import SystemClock, wait_until
from provision.render.template import render
from provision.sandbox.state import SandboxState
from tests.conftest import run_installed
from tests.deploykit import config

LEAVING = ("Terminating", "Terminating:Wait", "Terminating:Proceed")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxState]:
    """A sandbox of its own for each test, as a user starts one: after moto's reset, the daemon's host simulator
    and Kubernetes API would still hold the previous test's hosts and nodes."""
    started = run_installed(tmp_path, "sandbox", "start", "--boot-seconds", "0.5")
    assert started.returncode == 0, started.stderr
    state = SandboxState.load(tmp_path / ".cluster")
    assert state is not None
    try:
        yield state
    finally:
        run_installed(tmp_path, "sandbox", "stop")


@dataclass
class Group:
    sandbox: SandboxState
    region: str
    name: str
    subnets: list[str]  # the stack's host subnets

    @property
    def autoscaling(self) -> Any:
        return boto3.client("autoscaling", region_name=self.region, endpoint_url=self.sandbox.aws_endpoint)

    @property
    def ec2(self) -> Any:
        return boto3.client("ec2", region_name=self.region, endpoint_url=self.sandbox.aws_endpoint)

    def zones(self) -> dict[str, str]:
        """The zone of each member not leaving the group, checked to be the same as its instance's placement and its
        subnet's zone."""
        [group] = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])["AutoScalingGroups"]
        members = {m["InstanceId"]: m for m in group["Instances"] if m["LifecycleState"] not in LEAVING}
        ec2 = self.ec2
        instances = [
            instance
            for reservation in ec2.describe_instances(InstanceIds=list(members))["Reservations"]
            for instance in reservation["Instances"]
        ]
        subnets = ec2.describe_subnets(SubnetIds=sorted({instance["SubnetId"] for instance in instances}))["Subnets"]
        subnet_zone = {subnet["SubnetId"]: subnet["AvailabilityZone"] for subnet in subnets}
        for instance in instances:
            zone = members[instance["InstanceId"]]["AvailabilityZone"]
            assert instance["Placement"]["AvailabilityZone"] == zone == subnet_zone[instance["SubnetId"]], instance
        return {instance_id: member["AvailabilityZone"] for instance_id, member in members.items()}

    def in_service(self) -> None:
        """Wait, as `cluster up` does, until every host is InService with its node Ready, the node's providerID naming
        the host's zone. The daemon runs in real time, so this waits for real (its hosts boot in half a second); moto
        says InService before the host simulator first sees a host, hence the nodes."""

        def all_in_service() -> bool | None:
            [group] = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])[
                "AutoScalingGroups"
            ]
            with urllib.request.urlopen(f"{self.sandbox.kube_url}/api/v1/nodes", timeout=10) as response:  # noqa: S310
                nodes = json.load(response)["items"]
            ready = {
                node["spec"]["providerID"]
                for node in nodes
                if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
            }
            members = group["Instances"]
            booted = all(
                m["LifecycleState"] == "InService" and f"aws:///{m['AvailabilityZone']}/{m['InstanceId']}" in ready
                for m in members
            )
            return True if len(members) == group["DesiredCapacity"] and booted else None

        wait_until(all_in_service, clock=SystemClock(), timeout=30, interval=0.2, what="hosts InService", next_step="-")


def create_stack(sandbox: SandboxState, region: str) -> Group:
    """The stack `cluster up` creates for the example configuration (a new network over three zones), in ``region``."""
    cfg = config(region=region)
    cloudformation = boto3.client("cloudformation", region_name=region, endpoint_url=sandbox.aws_endpoint)
    cloudformation.create_stack(
        StackName=cfg.stack_name, TemplateBody=render(cfg).text("yaml"), Capabilities=["CAPABILITY_IAM"]
    )
    resources = cloudformation.describe_stack_resources(StackName=cfg.stack_name)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
    subnets = [physical[f"HostSubnet{letter}"] for letter in "ABC"]
    group = Group(sandbox, region, physical[names.HOST_GROUP], subnets)
    group.in_service()
    return group


@pytest.mark.parametrize("region", ["eu-west-1", "ap-southeast-2"])
def test_a_group_of_three_lands_one_host_per_zone_of_its_own_region(sandbox: SandboxState, region: str) -> None:
    group = create_stack(sandbox, region)

    expected = [f"{region}a", f"{region}b", f"{region}c"]
    described = group.ec2.describe_subnets(SubnetIds=group.subnets)["Subnets"]
    assert sorted(subnet["AvailabilityZone"] for subnet in described) == expected
    assert sorted(group.zones().values()) == expected


def test_raising_desired_capacity_puts_the_new_host_in_a_least_populated_zone(sandbox: SandboxState) -> None:
    group = create_stack(sandbox, "eu-west-1")
    autoscaling = group.autoscaling
    before = group.zones()

    autoscaling.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=4)
    fourth = group.zones()
    autoscaling.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=5)
    fifth = group.zones()

    [new] = set(fourth) - set(before)
    assert fourth[new] == "eu-west-1a", "all three zones had one host: the tie goes to the first zone by name"
    [newer] = set(fifth) - set(fourth)
    assert fifth[newer] == "eu-west-1b", "zone a has two now; b and c one each"
    assert Counter(fifth.values()) == {"eu-west-1a": 2, "eu-west-1b": 2, "eu-west-1c": 1}


def test_the_replacement_of_a_terminated_host_lands_in_its_zone(sandbox: SandboxState) -> None:
    group = create_stack(sandbox, "eu-west-1")
    before = group.zones()
    [in_b] = [instance_id for instance_id, zone in before.items() if zone == "eu-west-1b"]

    group.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=in_b, ShouldDecrementDesiredCapacity=False)
    after = group.zones()

    [replacement] = set(after) - set(before)
    [group_now] = group.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group.name])[
        "AutoScalingGroups"
    ]
    leaving = {m["InstanceId"]: m["LifecycleState"] for m in group_now["Instances"] if m["InstanceId"] not in after}
    assert leaving == {in_b: "Terminating:Wait"}, "held by the terminate hook, so it no longer counts in its zone"
    assert after[replacement] == "eu-west-1b"
    assert sorted(after.values()) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
