"""The sandbox's lifecycle hooks, which moto lacks: the rendered stack deployed on moto (in-process), the host
simulator and its lifecycle model in virtual time, and the events read from the stack's own queue with boto3."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from provision import names
from provision.config.loader import load_config
from provision.render.template import render
from provision.sandbox.hosts import HostSimulator
from provision.simulator.world import World
from tests.conftest import EXAMPLE
from tests.fakeclock import FakeClock

CONFIG = load_config(EXAMPLE)
REGION = CONFIG.region
LAUNCH_TIMEOUT = CONFIG.lifecycle.launch_timeout_seconds
TERMINATE_TIMEOUT = CONFIG.lifecycle.terminate_timeout_seconds
BOOT = 5
AWS_CLI = Path(sys.executable).parent / "aws"  # awscli, from the test extra


@dataclass
class Rig:
    clock: FakeClock
    world: World
    hosts: HostSimulator
    group: str
    queue: str

    @property
    def autoscaling(self) -> Any:
        return boto3.client("autoscaling", region_name=REGION)

    def states(self) -> dict[str, str]:
        [group] = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        return {instance["InstanceId"]: instance["LifecycleState"] for instance in group["Instances"]}

    def desired(self) -> int:
        [group] = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        return int(group["DesiredCapacity"])

    def nodes(self) -> dict[str, bool]:
        return {
            node["spec"]["providerID"].rsplit("/", 1)[1]: any(
                c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]
            )
            for node in self.world.select("Node", None)
        }

    def events(self) -> list[dict[str, Any]]:
        """Every message in the queue, deleted once read, as the handler would."""
        sqs = boto3.client("sqs", region_name=REGION)
        bodies = []
        while messages := sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        ):
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def complete(self, instance_id: str, result: str = "CONTINUE", hook: str = names.TERMINATE_HOOK) -> None:
        self.autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=self.group,
            LifecycleHookName=hook,
            InstanceId=instance_id,
            LifecycleActionResult=result,
        )

    def run(self, seconds: int) -> None:
        """Let time pass in one-second ticks."""
        for _ in range(seconds):
            self.clock.sleep(1)

    def skip(self, seconds: int) -> None:
        """Let a long time pass in one tick (nothing changes in between but the clock)."""
        self.clock.sleep(seconds)


def deploy(hook_scale: float = 1.0) -> Rig:
    clock = FakeClock()
    world = World(clock)
    hosts = HostSimulator(world, clock, boot_seconds=BOOT, gone_seconds=10, hook_scale=hook_scale)

    def tick(_now: float) -> None:
        hosts.tick()
        world.tick()

    clock.on_sleep = tick
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName=CONFIG.stack_name, TemplateBody=render(CONFIG).text("yaml"), Capabilities=["CAPABILITY_IAM"]
    )
    listed = cloudformation.describe_stack_resources(StackName=CONFIG.stack_name)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in listed if "LogicalResourceId" in r}
    return Rig(clock, world, hosts, physical[names.HOST_GROUP], physical[names.LIFECYCLE_QUEUE])


@pytest.fixture
def fresh() -> Iterator[Rig]:
    """The stack just created: its hosts not yet seen by the host simulator."""
    with mock_aws():
        yield deploy()


@pytest.fixture
def rig(fresh: Rig) -> Rig:
    """Three hosts InService with Ready nodes, the queue emptied."""
    fresh.run(BOOT + 1)
    assert set(fresh.states().values()) == {"InService"}
    fresh.events()
    return fresh


def test_new_hosts_wait_in_pending_wait_until_they_join_and_confirm(fresh: Rig) -> None:
    fresh.run(1)
    assert set(fresh.states().values()) == {"Pending:Wait"}
    events = fresh.events()
    assert sorted(event["detail"]["EC2InstanceId"] for event in events) == sorted(fresh.states()), "one event each"
    event = events[0]
    assert event["detail-type"] == "EC2 Instance-launch Lifecycle Action"
    assert event["detail"]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert event["detail"]["LifecycleHookName"] == names.LAUNCH_HOOK

    fresh.run(BOOT)

    assert set(fresh.states().values()) == {"InService"}
    assert fresh.nodes() == {instance: True for instance in fresh.states()}
    assert fresh.events() == [], "confirming sends nothing more"


def test_the_sandbox_queue_carries_the_policy_that_admits_only_the_rule(rig: Rig) -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    listed = cloudformation.describe_stack_resources(StackName=CONFIG.stack_name)["StackResources"]
    assert all("LogicalResourceId" in resource for resource in listed), "moto alone lists the policy without ids"
    rule_arn = boto3.client("events", region_name=REGION).list_rules()["Rules"][0]["Arn"]

    attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=rig.queue, AttributeNames=["Policy"]
    )["Attributes"]

    [statement] = json.loads(attributes["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": ["events.amazonaws.com"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}


def test_a_host_launched_later_waits_from_its_first_moment(rig: Rig) -> None:
    rig.autoscaling.set_desired_capacity(AutoScalingGroupName=rig.group, DesiredCapacity=4)

    [new] = [instance for instance, state in rig.states().items() if state != "InService"]
    assert rig.states()[new] == "Pending:Wait", "never InService before its node is Ready"
    assert [event["detail"]["EC2InstanceId"] for event in rig.events()] == [new]


def test_a_terminated_host_waits_in_terminating_wait_with_its_node_until_completed(rig: Rig) -> None:
    victim = sorted(rig.states())[0]

    rig.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    rig.run(3)

    assert rig.states()[victim] == "Terminating:Wait"
    assert rig.nodes()[victim] is True, "still running, node and all, until drained"
    assert rig.desired() == 2
    [event] = rig.events()
    assert set(event) >= {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert (event["source"], event["detail-type"]) == ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action")
    assert event["region"] == REGION and event["resources"][0].endswith(f"autoScalingGroupName/{rig.group}")
    detail = event["detail"]
    assert detail["LifecycleActionToken"] and detail["EC2InstanceId"] == victim
    assert (detail["AutoScalingGroupName"], detail["LifecycleHookName"]) == (rig.group, names.TERMINATE_HOOK)
    assert detail["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert (detail["Origin"], detail["Destination"]) == ("AutoScalingGroup", "EC2")

    rig.complete(victim, "CONTINUE")

    assert victim not in rig.states()
    rig.run(1)
    assert rig.nodes()[victim] is False, "the host is gone"
    with pytest.raises(ClientError, match="No active Lifecycle Action found"):
        rig.complete(victim, "CONTINUE")
    assert len(rig.states()) == 2 and rig.events() == []


def test_completing_by_token_works_too(rig: Rig) -> None:
    victim = sorted(rig.states())[0]
    rig.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    [terminating, launching] = rig.events()
    assert launching["detail"]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING", "its replacement's"
    event = terminating

    rig.autoscaling.complete_lifecycle_action(
        AutoScalingGroupName=rig.group,
        LifecycleHookName=names.TERMINATE_HOOK,
        LifecycleActionToken=event["detail"]["LifecycleActionToken"],
        LifecycleActionResult="ABANDON",
    )

    states = rig.states()
    assert victim not in states and len(states) == 3, "without a decrement its replacement launched at once"
    assert sorted(states.values()) == ["InService", "InService", "Pending:Wait"]


def test_a_heartbeat_pushes_the_timeout_out_and_the_default_result_applies_at_the_end(rig: Rig) -> None:
    victim = sorted(rig.states())[0]
    rig.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)
    rig.skip(TERMINATE_TIMEOUT - 10)
    assert rig.states()[victim] == "Terminating:Wait"

    rig.autoscaling.record_lifecycle_action_heartbeat(
        AutoScalingGroupName=rig.group, LifecycleHookName=names.TERMINATE_HOOK, InstanceId=victim
    )
    rig.skip(TERMINATE_TIMEOUT - 5)
    assert rig.states()[victim] == "Terminating:Wait", "the heartbeat bought a whole timeout more"

    rig.run(10)
    assert victim not in rig.states(), "the default result (CONTINUE) let it go"
    with pytest.raises(ClientError, match="No active Lifecycle Action found"):
        rig.autoscaling.record_lifecycle_action_heartbeat(
            AutoScalingGroupName=rig.group, LifecycleHookName=names.TERMINATE_HOOK, InstanceId=victim
        )


def test_lowering_the_desired_capacity_drains_through_terminating_wait(rig: Rig) -> None:
    rig.autoscaling.set_desired_capacity(AutoScalingGroupName=rig.group, DesiredCapacity=2)
    rig.run(1)

    states = rig.states()
    [leaving] = [instance for instance, state in states.items() if state == "Terminating:Wait"]
    assert sorted(states.values()) == ["InService", "InService", "Terminating:Wait"]
    assert [event["detail"]["EC2InstanceId"] for event in rig.events()] == [leaving]

    rig.complete(leaving)
    rig.run(BOOT + 1)
    assert sorted(rig.states().values()) == ["InService", "InService"], "nothing launched in its place"


def test_a_host_that_never_joins_is_abandoned_at_the_launch_timeout_and_replaced(rig: Rig) -> None:
    rig.hosts.faults.never_join_next = 1
    rig.autoscaling.set_desired_capacity(AutoScalingGroupName=rig.group, DesiredCapacity=4)
    rig.run(1)
    [stuck] = [instance for instance, state in rig.states().items() if state == "Pending:Wait"]

    rig.skip(LAUNCH_TIMEOUT - 2)
    assert rig.states()[stuck] == "Pending:Wait"
    rig.skip(2)  # the launch timeout: it is abandoned and another launches
    rig.run(BOOT + 1)

    states = rig.states()
    assert stuck not in states, "the launch hook's default result (ABANDON) removed it"
    assert len(states) == 4 and set(states.values()) == {"InService"}, "and the group launched another"
    assert stuck not in rig.nodes()


def test_a_host_whose_boot_fails_records_why_and_abandons_its_launch(rig: Rig) -> None:
    rig.hosts.faults.boot_fails_next = 1
    rig.autoscaling.set_desired_capacity(AutoScalingGroupName=rig.group, DesiredCapacity=4)
    rig.run(1)
    [failing] = [instance for instance, state in rig.states().items() if state == "Pending:Wait"]

    rig.run(BOOT)

    assert failing not in rig.states(), "abandoned as soon as the boot failed, not at the timeout"
    record = boto3.client("ssm", region_name=REGION).get_parameter(
        Name=f"{names.host_records_path(CONFIG.parameter_path)}/{failing}/boot"
    )["Parameter"]["Value"]
    assert record.startswith("failed step=join exit=1 at=")
    rig.run(BOOT + 1)
    assert len(rig.states()) == 4 and set(rig.states().values()) == {"InService"}


def test_an_unhealthy_host_is_replaced_through_terminating_wait(rig: Rig) -> None:
    sick = sorted(rig.states())[0]

    rig.autoscaling.set_instance_health(InstanceId=sick, HealthStatus="Unhealthy")
    rig.run(1)

    states = rig.states()
    assert states[sick] == "Terminating:Wait"
    assert sorted(state for instance, state in states.items() if instance != sick) == [
        "InService",
        "InService",
        "Pending:Wait",
    ], "its replacement launches at once"
    events = rig.events()
    assert [(event["detail-type"].split()[1], event["detail"]["EC2InstanceId"] == sick) for event in events] == [
        ("Instance-terminate", True),
        ("Instance-launch", False),
    ]
    rig.run(BOOT)
    assert rig.nodes()[sick] is True, "the sick host waits to be drained"

    rig.complete(sick)
    rig.run(1)
    assert sorted(rig.states().values()) == ["InService"] * 3 and rig.desired() == 3


def test_no_unhealthy_replacement_while_replace_unhealthy_is_suspended(rig: Rig) -> None:
    sick = sorted(rig.states())[0]
    rig.autoscaling.suspend_processes(AutoScalingGroupName=rig.group, ScalingProcesses=["ReplaceUnhealthy"])
    rig.autoscaling.set_instance_health(InstanceId=sick, HealthStatus="Unhealthy")
    rig.run(3)
    assert rig.states()[sick] == "InService" and rig.events() == []

    rig.autoscaling.resume_processes(AutoScalingGroupName=rig.group, ScalingProcesses=["ReplaceUnhealthy"])
    rig.run(1)
    assert rig.states()[sick] == "Terminating:Wait"


def aws(endpoint: str, *args: str) -> Any:
    """The real `aws` CLI (the test extra's) against moto's server in this process, which shares the rig's state;
    its JSON answer."""
    environment = {
        "PATH": os.environ["PATH"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    command = [str(AWS_CLI), "--endpoint-url", endpoint, "--region", REGION, "--output", "json", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    address, port = server.get_host_and_port()
    try:
        yield f"http://{address}:{port}"
    finally:
        server.stop()


def test_scaled_hooks_time_out_as_describe_lifecycle_hooks_says(endpoint: str) -> None:
    with mock_aws():
        rig = deploy(hook_scale=0.05)
        rig.run(BOOT + 1)
        described = aws(endpoint, "autoscaling", "describe-lifecycle-hooks", "--auto-scaling-group-name", rig.group)
        hooks = {hook["LifecycleHookName"]: hook for hook in described["LifecycleHooks"]}
        heartbeat = hooks[names.TERMINATE_HOOK]["HeartbeatTimeout"]
        victim = sorted(rig.states())[0]
        rig.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)

        # Without a heartbeat the action ends after HeartbeatTimeout, to the second.
        rig.skip(heartbeat - 1)
        waiting = rig.states()[victim]
        aws(endpoint, "autoscaling", "record-lifecycle-action-heartbeat", "--auto-scaling-group-name", rig.group,
            "--lifecycle-hook-name", names.TERMINATE_HOOK, "--instance-id", victim)  # fmt: skip
        rig.skip(heartbeat - 1)
        still_waiting = rig.states()[victim]
        # Heartbeats push it out by HeartbeatTimeout each, never past GlobalTimeout from its start.
        elapsed = 2 * (heartbeat - 1)
        while elapsed + heartbeat - 1 < hooks[names.TERMINATE_HOOK]["GlobalTimeout"]:
            rig.autoscaling.record_lifecycle_action_heartbeat(
                AutoScalingGroupName=rig.group, LifecycleHookName=names.TERMINATE_HOOK, InstanceId=victim
            )
            rig.skip(heartbeat - 1)
            elapsed += heartbeat - 1
            assert rig.states()[victim] == "Terminating:Wait", f"ended after {elapsed}s"
        rig.autoscaling.record_lifecycle_action_heartbeat(
            AutoScalingGroupName=rig.group, LifecycleHookName=names.TERMINATE_HOOK, InstanceId=victim
        )
        rig.skip(hooks[names.TERMINATE_HOOK]["GlobalTimeout"] - elapsed)

        assert {name: hook["HeartbeatTimeout"] for name, hook in hooks.items()} == {
            names.LAUNCH_HOOK: LAUNCH_TIMEOUT // 20,
            names.TERMINATE_HOOK: TERMINATE_TIMEOUT // 20,
        }
        assert {name: hook["GlobalTimeout"] for name, hook in hooks.items()} == {
            name: min(172_800, 100 * hook["HeartbeatTimeout"]) for name, hook in hooks.items()
        }, "AWS's rule for the global timeout, applied to the timeout described"
        assert (waiting, still_waiting) == ("Terminating:Wait", "Terminating:Wait")
        assert victim not in rig.states(), "gone at GlobalTimeout, heartbeats or not"


def test_deleting_the_group_removes_every_host_even_those_waiting(rig: Rig) -> None:
    rig.autoscaling.set_desired_capacity(AutoScalingGroupName=rig.group, DesiredCapacity=2)
    rig.run(1)

    rig.autoscaling.delete_auto_scaling_group(AutoScalingGroupName=rig.group, ForceDelete=True)
    rig.run(1)

    reservations = boto3.client("ec2", region_name=REGION).describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    assert reservations == []


def test_moto_without_a_host_simulator_keeps_its_own_behaviour() -> None:
    with mock_aws():
        deploy().run(1)  # a model attached to this moto's backends
    with mock_aws():  # a reset moto, no host simulator
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(
            StackName=CONFIG.stack_name, TemplateBody=render(CONFIG).text("yaml"), Capabilities=["CAPABILITY_IAM"]
        )
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        [group] = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        hooks = autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=group["AutoScalingGroupName"])
        assert len(hooks["LifecycleHooks"]) == 2, "the template's hooks are declared"
        victim = group["Instances"][0]["InstanceId"]

        autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=True)

        [group] = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        assert victim not in {instance["InstanceId"] for instance in group["Instances"]}, "gone at once"
        with pytest.raises(ClientError, match="No active Lifecycle Action"):
            autoscaling.complete_lifecycle_action(
                AutoScalingGroupName=group["AutoScalingGroupName"],
                LifecycleHookName=names.TERMINATE_HOOK,
                InstanceId=victim,
                LifecycleActionResult="CONTINUE",
            )
