"""The host simulator joins moto's instances to the API simulator as nodes, with a boot delay moto does not have."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from provision.sandbox.hosts import HostSimulator
from provision.simulator.world import World
from tests.fakeclock import FakeClock

REGION = "eu-west-1"


@dataclass
class Rig:
    clock: FakeClock
    world: World
    hosts: HostSimulator
    autoscaling: object

    def states(self) -> dict[str, str]:
        groups = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups()["AutoScalingGroups"]
        return {i["InstanceId"]: i["LifecycleState"] for g in groups for i in g["Instances"]}

    def nodes(self) -> dict[str, bool]:
        return {
            node["spec"]["providerID"].rsplit("/", 1)[1]: any(
                c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]
            )
            for node in self.world.select("Node", None)
        }

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.sleep(1)


@pytest.fixture
def rig() -> Iterator[Rig]:
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2.create_launch_template(LaunchTemplateName="hosts", LaunchTemplateData={"ImageId": image})
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName="hosts",
            LaunchTemplate={"LaunchTemplateName": "hosts"},
            MinSize=0,
            MaxSize=5,
            DesiredCapacity=2,
            AvailabilityZones=[f"{REGION}a"],
        )
        clock = FakeClock()
        world = World(clock)
        hosts = HostSimulator(world, clock, boot_seconds=5, gone_seconds=10)

        def tick(_now: float) -> None:
            hosts.tick()
            world.tick()

        clock.on_sleep = tick
        yield Rig(clock, world, hosts, autoscaling)


def test_new_instances_are_pending_until_their_node_is_ready(rig: Rig) -> None:
    rig.run(1)
    assert set(rig.states().values()) == {"Pending"}
    assert rig.nodes() == {}

    rig.run(5)

    assert set(rig.states().values()) == {"InService"}
    assert rig.nodes() == {instance: True for instance in rig.states()}


def test_a_terminated_instance_leaves_a_not_ready_node_that_then_disappears(rig: Rig) -> None:
    rig.run(6)
    [gone, kept] = sorted(rig.states())
    boto3.client("autoscaling", region_name=REGION).terminate_instance_in_auto_scaling_group(
        InstanceId=gone, ShouldDecrementDesiredCapacity=True
    )

    rig.run(1)
    assert rig.nodes()[gone] is False

    rig.run(10)
    assert gone not in rig.nodes() and rig.nodes()[kept] is True


def test_faults_a_host_that_never_joins_and_a_node_that_turns_not_ready(rig: Rig) -> None:
    rig.run(6)
    [sick] = sorted(rig.states())[:1]
    rig.hosts.faults.not_ready.add(sick)
    rig.hosts.faults.never_join_next = 1
    boto3.client("autoscaling", region_name=REGION).set_desired_capacity(
        AutoScalingGroupName="hosts", DesiredCapacity=3
    )

    rig.run(20)

    states = rig.states()
    [stuck] = [instance for instance, state in states.items() if state == "Pending"]
    assert stuck not in rig.nodes()
    assert rig.nodes()[sick] is False
