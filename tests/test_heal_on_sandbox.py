"""`cluster heal` end to end on the sandbox, in virtual time: moto (in-process) as AWS with the sandbox's lifecycle
hooks (Pending:Wait, Terminating:Wait, events through the stack's rule to its queue), the API simulator as the
cluster, the host simulator booting hosts, and the sample workload under a budget of one pod at a time. Heal runs as
`--watch` does (real SQS calls on moto; an empty receive lets a virtual second pass instead of a long poll)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.model import OperationModel

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.queues import Message, Queue
from provision.aws.session import AwsFactory, AwsSettings
from provision.clock import SystemClock, wait_until
from provision.config.schema import ClusterConfig
from provision.deploy.up import Up
from provision.fleet.model import Snapshot
from provision.fleet.observe import Fleet
from provision.heal.actionlog import ActionLog, parse_line
from provision.heal.consumer import SWEEP_SECONDS, VISIBILITY_SECONDS, Consumer, Stop
from provision.heal.handler import Handler
from provision.heal.service import connect_queue, heal_service, queue_url
from provision.kube.facade import Kube, connect
from provision.render.template import render
from provision.sandbox.hosts import HostSimulator
from provision.sandbox.state import SandboxState
from tests.conftest import CLUSTER, EXAMPLE, run_installed
from tests.deploykit import REGION, TOKEN, config, recording_ui
from tests.fakeclock import FakeClock
from tests.simkit import Simulator, simulator, virtual_cloud
from tests.test_template import as_dict
from tests.test_template_lifecycle import handler_statements, parameter_granted

__all__ = ["simulator"]  # the fixture

CONFIG = config(hosts={"min_size": 1, "desired_capacity": 3})
# What only repair from the cluster side uses: reporting a host, its slot under the storm guard, its repair tag.
REPAIR_ACTIONS = {"autoscaling:SetInstanceHealth", "ssm:GetParametersByPath", "ssm:PutParameter",
                  "ssm:DeleteParameters", "ec2:CreateTags"}  # fmt: skip
HOOK_SCALE = 0.5  # the sandbox shortens the hooks' timeouts, and heal must follow the deployed hook: 1200 s -> 600 s
DEADLINE = 500.0  # virtual seconds: far more than any of these needs, less than the hook's timeout


class VirtualPoll:
    """The real queue, but an empty receive lets one virtual second pass instead of long polling in real time. (moto
    hides messages for real seconds: ``hidden`` keeps what heal hid for longer than a receive, to bring back.)"""

    def __init__(self, queue: Queue, clock: FakeClock) -> None:
        self.queue = queue
        self.clock = clock
        self.hidden: dict[str, Message] = {}

    def receive(self, *, wait_seconds: int, visibility_seconds: int, max_messages: int = 10) -> list[Message]:
        received = self.queue.receive(wait_seconds=0, visibility_seconds=visibility_seconds, max_messages=max_messages)
        if not received:
            self.clock.sleep(1.0)
        return received

    def delete(self, message: Message) -> None:
        self.queue.delete(message)

    def hide(self, message: Message, seconds: float) -> None:
        self.queue.hide(message, seconds)
        if seconds > VISIBILITY_SECONDS:
            self.hidden[message.message_id] = message

    def bring_back(self) -> None:
        """What SQS does when the hiding time is up (it counts real time; the test's hook counts virtual time)."""
        for message in self.hidden.values():
            self.queue.hide(message, 0)
        self.hidden.clear()


@dataclass
class AwsCalls:
    """What heal asks of AWS, as IAM actions, and the parameters it reads: a botocore before-parameter-build handler."""

    actions: set[str] = field(default_factory=set)
    parameters: set[str] = field(default_factory=set)

    def __call__(self, model: OperationModel, params: dict[str, Any], **_: Any) -> None:
        self.actions.add(f"{model.service_model.signing_name}:{model.name}")
        if model.name == "GetParameter":
            self.parameters.add(str(params["Name"]))


@dataclass
class Sandbox:
    cloud: Cloud
    sim: Simulator
    kube: Kube
    hosts: HostSimulator
    queue: Queue
    poll: VirtualPoll  # heal's queue
    heal_cloud: Cloud  # heal's own clients, whose calls are recorded in ``calls``
    calls: AwsCalls
    lines: list[str] = field(default_factory=list)
    # Non-DaemonSet pods still on each host's node when the host left the group: what "drained first" means.
    pods_when_gone: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> Snapshot:
        return Fleet.of_stack(self.cloud, CONFIG.stack_name).snapshot()

    def heal_until(
        self, done: Callable[[], bool], *, cfg: ClusterConfig = CONFIG, deadline: float = DEADLINE
    ) -> Consumer:
        """Run heal as --watch does until ``done`` holds (or ``deadline`` virtual seconds pass), then stop it."""
        stop = Stop()
        log = ActionLog(self.lines.append, now=self.sim.world.now)
        consumer = heal_service(cfg, self.heal_cloud, self.kube, self.poll,
                                self.sim.clock, log, stop, wall=self.sim.world.now)  # fmt: skip
        deadline += self.sim.clock.now()
        nodes = {node.instance_id: node.name for node in self.kube.nodes()}
        members = {host.instance_id for host in self.snapshot().hosts}

        def tick(now: float) -> None:
            self.hosts.tick()
            self.sim.world.tick()
            present = {host.instance_id for host in self.snapshot().hosts}
            for gone in members - present:
                node = nodes.get(gone)
                left = [pod for pod in self.kube.pods(node=node) if not pod.daemon] if node else []
                self.pods_when_gone.setdefault(gone, len(left))
            members.clear()
            members.update(present)
            nodes.update({node.instance_id: node.name for node in self.kube.nodes()})
            if (done() and self.queue.depth() == (0, 0)) or now >= deadline:
                stop.request(now)

        self.sim.clock.on_sleep = tick
        consumer.run(once=False)
        return consumer

    def log(self) -> list[dict[str, str]]:
        return [parse_line(line) for line in self.lines]

    def settled(self, size: int) -> bool:
        """``size`` hosts InService with Ready nodes, and every web pod Running and Ready."""
        snapshot = self.snapshot()
        ready = {node.instance_id for node in self.kube.nodes() if node.ready}
        in_service = [h for h in snapshot.hosts if h.lifecycle_state == "InService" and h.instance_id in ready]
        web = [pod for pod in self.kube.pods(namespace="default") if pod.labels.get("app") == "web"]
        return (
            len(snapshot.hosts) == len(in_service) == size
            and len(web) == 6
            and all(pod.ready and not pod.terminating for pod in web)
        )


@pytest.fixture
def sandbox(simulator: Simulator) -> Iterator[Sandbox]:
    with sandbox_of(simulator, CONFIG) as box:
        yield box


@contextmanager
def sandbox_of(simulator: Simulator, cfg: ClusterConfig) -> Iterator[Sandbox]:
    """The cluster of ``cfg`` deployed on the sandbox in virtual time, with the sample workload under its budget."""
    with virtual_cloud(simulator, REGION, hook_scale=HOOK_SCALE) as (cloud, hosts):
        Up(cfg, cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)
        simulator.settle(12)  # the hosts boot, join and confirm their launch
        simulator.deployment("web", 6)
        simulator.budget("web", "web", maxUnavailable=1)
        simulator.settle(5)
        queue = Queue.connect(AwsFactory(AwsSettings(region=REGION)), queue_url(cloud, cfg))
        kube = Kube(connect(kubeconfig=str(simulator.kubeconfig)))
        # Heal's clients, as the verb builds them, with every call it makes recorded.
        calls = AwsCalls()
        factory = AwsFactory(AwsSettings(region=REGION))
        factory.session().events.register("before-parameter-build", calls)
        heal_cloud = Cloud.connect(factory, simulator.clock)
        poll = VirtualPoll(connect_queue(factory, heal_cloud, cfg), simulator.clock)
        yield Sandbox(cloud, simulator, kube, hosts, queue, poll, heal_cloud, calls)


def assert_healed_by_heal(sandbox: Sandbox, victim: str) -> None:
    log = sandbox.log()
    mine = [entry["action"] for entry in log if entry.get("instance") == victim]
    assert mine[-2:] == ["drained", "completed"], mine
    assert sandbox.pods_when_gone.get(victim) == 0, "the host left the group only after its pods had moved out"
    assert sandbox.sim.world.counters.budget_violations == 0
    assert sandbox.sim.world.counters.evictions >= 1
    assert sandbox.queue.depth() == (0, 0), "the queue ends empty"
    assert not [entry for entry in log if entry["action"] in {"error", "drain-blocked", "unreadable"}], log


def test_a_scale_in_drains_the_removed_host_before_it_goes(sandbox: Sandbox) -> None:
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    group = sandbox.snapshot().group

    autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
    [victim] = [host.instance_id for host in sandbox.snapshot().hosts if host.lifecycle_state == "Terminating:Wait"]
    consumer = sandbox.heal_until(lambda: sandbox.settled(2))

    assert isinstance(consumer.handler, Handler), "one group: its handler itself"
    assert consumer.handler.timeouts.heartbeat == CONFIG.lifecycle.terminate_timeout_seconds * HOOK_SCALE, "the hook's"
    assert sandbox.settled(2), "two hosts left, every pod Running and Ready on them"
    assert victim not in {host.instance_id for host in sandbox.snapshot().hosts}
    assert_healed_by_heal(sandbox, victim)
    assert sandbox.sim.clock.now() < DEADLINE, "completed by heal, long before the hook's timeout"


def test_a_host_reported_unhealthy_is_replaced_and_drained_within_its_budget(sandbox: Sandbox) -> None:
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    victim = sandbox.snapshot().hosts[0].instance_id

    # What the health agent does after its checks keep failing (the disk, say: the kubelet still runs).
    autoscaling.set_instance_health(InstanceId=victim, HealthStatus="Unhealthy")
    sandbox.heal_until(lambda: sandbox.settled(3) and victim not in {h.instance_id for h in sandbox.snapshot().hosts})

    assert sandbox.settled(3), "the group is back to three hosts, every pod Running and Ready"
    assert victim not in {host.instance_id for host in sandbox.snapshot().hosts}
    assert_healed_by_heal(sandbox, victim)
    assert "joined" in [entry["action"] for entry in sandbox.log()], "the replacement's launch was reported"

    # What the stack's HealHandlerPolicy grants heal is what heal used; only hiding a message (past 40 s of work, or
    # at a stop) did not come up in so short a run.
    template = as_dict(render(CONFIG))
    granted = {action for actions in handler_statements(template) for action in actions}
    assert sandbox.calls.actions <= granted, f"not granted: {sandbox.calls.actions - granted}"
    assert granted - sandbox.calls.actions <= {"sqs:ChangeMessageVisibility", *REPAIR_ACTIONS}, "granted, never used"
    assert sandbox.calls.parameters and all(
        parameter_granted(template, name, REGION) for name in sandbox.calls.parameters
    ), sandbox.calls.parameters


def test_a_host_whose_node_stays_notready_is_reported_by_heal_and_replaced(sandbox: Sandbox) -> None:
    """A wedged host (a kernel hang, a partition): its node goes NotReady and its agent never reports. Heal reports it
    once the node has been NotReady for health_agent.node_not_ready_seconds, under the storm guard; the group replaces
    it and its drain takes the dead-node fast path."""
    patient = config(hosts={"min_size": 1, "desired_capacity": 3}, health_agent={"node_not_ready_seconds": 120})
    victim = sandbox.snapshot().hosts[0].instance_id
    sandbox.hosts.faults.not_ready.add(victim)
    sandbox.sim.settle(1)
    [node] = [node for node in sandbox.kube.nodes() if node.instance_id == victim]
    assert not node.ready and node.ready_since is not None
    turned = node.ready_since

    sandbox.heal_until(lambda: sandbox.settled(3) and victim not in {h.instance_id for h in sandbox.snapshot().hosts},
                       cfg=patient)  # fmt: skip

    assert sandbox.settled(3), "the group is back to three hosts, every pod Running and Ready"
    log = sandbox.log()
    [reported] = [entry for entry in log if entry["action"] == "reported-unhealthy"]
    assert (reported["instance"], reported["node"], reported["why"]) == (victim, node.name, "Ready:False")
    waited = (datetime.fromisoformat(reported["time"].replace("Z", "+00:00")) - turned).total_seconds()
    assert 120 <= waited <= 120 + SWEEP_SECONDS + 2, f"reported {waited:.0f}s after its node turned NotReady"
    mine = [entry["action"] for entry in log if entry.get("instance") == victim]
    assert mine[-3:] == ["reported-unhealthy", "dead-node-cleared", "completed"], mine
    assert sandbox.queue.depth() == (0, 0)
    assert not [entry for entry in log if entry["action"] in {"error", "repair-held"}], log
    # Heal's calls: the report, the slot it claimed, the tag; all of them granted by the stack's HealHandlerPolicy.
    template = as_dict(render(CONFIG))
    granted = {action for actions in handler_statements(template) for action in actions}
    assert {"autoscaling:SetInstanceHealth", "ssm:PutParameter", "ec2:CreateTags"} <= sandbox.calls.actions
    assert sandbox.calls.actions <= granted, f"not granted: {sandbox.calls.actions - granted}"
    [slot] = sandbox.cloud.parameters.values_under(names.repair_path(CONFIG.parameter_path)).values()
    assert slot.split()[0::2] == [victim, "heal"]


def test_with_the_health_agent_switched_off_heal_does_not_repair_from_the_cluster_side(sandbox: Sandbox) -> None:
    off = config(hosts={"min_size": 1, "desired_capacity": 3},
                 health_agent={"enabled": False, "node_not_ready_seconds": 60})  # fmt: skip
    victim = sandbox.snapshot().hosts[0].instance_id
    sandbox.hosts.faults.not_ready.add(victim)

    sandbox.heal_until(lambda: False, cfg=off, deadline=200)

    host = sandbox.snapshot().host(victim)
    assert host is not None and (host.lifecycle_state, host.health) == ("InService", "Healthy")
    assert not [entry for entry in sandbox.log() if entry["action"] in {"reported-unhealthy", "repair-held"}]
    assert "autoscaling:SetInstanceHealth" not in sandbox.calls.actions


def test_a_desired_capacity_two_lower_drains_both_removed_hosts_first(sandbox: Sandbox) -> None:
    group = sandbox.snapshot().group

    boto3.client("autoscaling", region_name=REGION).set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    victims = [host.instance_id for host in sandbox.snapshot().hosts if host.lifecycle_state == "Terminating:Wait"]
    nodes = {node.instance_id: node.name for node in sandbox.kube.nodes()}
    moving = sum(1 for victim in victims for pod in sandbox.kube.pods(node=nodes[victim]) if not pod.daemon)
    sandbox.heal_until(lambda: sandbox.settled(1))

    assert len(victims) == 2 and moving >= 2
    assert sandbox.settled(1), "one host left, every pod Running and Ready on it"
    for victim in victims:
        assert_healed_by_heal(sandbox, victim)
    log = sandbox.log()
    cordoned = [entry["instance"] for entry in log if entry["action"] == "cordon"]
    first_drained = next(index for index, entry in enumerate(log) if entry["action"] == "drained")
    assert sorted(cordoned) == sorted(victims), "each cordoned once"
    assert all(entry["action"] != "cordon" for entry in log[first_drained:]), "both before the first drain"
    assert sandbox.sim.world.counters.evictions == moving, "each pod moved once: none onto the other leaving host"


# --- as a user runs it: the sandbox daemon, `cluster up`, and `cluster heal --watch` in the background, real time ---


@pytest.fixture
def live_sandbox(tmp_path: Path) -> Iterator[tuple[Path, SandboxState]]:
    text = EXAMPLE.read_text()
    for old, new in [("min_size = 3", "min_size = 1"), ("drain_timeout_seconds = 900", "drain_timeout_seconds = 60")]:
        text = text.replace(old, new)
    (tmp_path / "cluster.toml").write_text(text)
    assert run_installed(tmp_path, "sandbox", "start", "--boot-seconds", "0.5").returncode == 0
    try:
        up = run_installed(tmp_path, "--sandbox", "up", "--yes")
        assert up.returncode == 0, up.stderr
        state = SandboxState.load(tmp_path / ".cluster")
        assert state is not None
        yield tmp_path, state
    finally:
        run_installed(tmp_path, "sandbox", "stop")


def test_heal_watch_drains_the_host_a_lower_desired_capacity_removes(live_sandbox: tuple[Path, SandboxState]) -> None:
    folder, state = live_sandbox
    settings = AwsSettings(region=REGION, endpoint_url=state.aws_endpoint, static_credentials=("sandbox", "sandbox"))
    cloud = Cloud.connect(AwsFactory(settings), SystemClock())
    queue = Queue.connect(AwsFactory(settings), queue_url(cloud, CONFIG))
    fleet = Fleet.of_stack(cloud, CONFIG.stack_name)
    kube = Kube(connect(state.kubeconfig))
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    heal = subprocess.Popen([CLUSTER, "--sandbox", "heal", "--watch"], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert len(fleet.snapshot().hosts) == 3
        cloud.groups.set_size(fleet.group, desired=2)  # what `aws autoscaling set-desired-capacity` does

        def settled() -> bool | None:
            hosts = fleet.snapshot().hosts
            web = [pod for pod in kube.pods(namespace="default") if pod.labels.get("app") == "web"]
            done = (
                len(hosts) == 2
                and all(host.lifecycle_state == "InService" for host in hosts)
                and len(web) == 6
                and all(pod.phase == "Running" and pod.ready and not pod.terminating for pod in web)
                and queue.depth() == (0, 0)
            )
            return True if done else None

        wait_until(settled, clock=SystemClock(), timeout=120, interval=0.5, what="the scale-in to settle",
                   next_step="see the heal log")  # fmt: skip
    finally:
        heal.send_signal(signal.SIGTERM)
        _, log = heal.communicate(timeout=60)
    assert heal.returncode == 0, log
    lines = [parse_line(line) for line in log.splitlines() if line.startswith("time=")]
    [victim] = {line["instance"] for line in lines if line["action"] == "drained"}
    mine = [line["action"] for line in lines if line.get("instance") == victim]
    assert mine[-3:] == ["cordon", "drained", "completed"], log
    assert [line["action"] for line in lines][-2:] == ["stopping", "stopped"]
    with urllib.request.urlopen(f"{state.kube_url}/simulator/counters", timeout=5) as answer:  # noqa: S310
        counters = json.load(answer)
    assert counters["budget_violations"] == 0 and counters["evictions"] >= 1

    again = run_installed(folder, "--sandbox", "heal", "--once")  # the default mode too: what is queued, then exit
    assert again.returncode == 0, again.stderr
    assert [parse_line(line)["action"] for line in again.stderr.splitlines()] == ["started", "stopped"]


def test_a_drain_no_budget_allows_is_left_to_the_hooks_timeout_and_the_host_still_goes(sandbox: Sandbox) -> None:
    impatient = config(hosts={"min_size": 1, "desired_capacity": 3}, rolling={"drain_timeout_seconds": 120})
    sandbox.sim.world.patch("PodDisruptionBudget", "default", "web", {"spec": {"maxUnavailable": 0}})
    group = sandbox.snapshot().group
    boto3.client("autoscaling", region_name=REGION).set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
    [victim] = [host.instance_id for host in sandbox.snapshot().hosts if host.lifecycle_state == "Terminating:Wait"]
    hook_timeout = impatient.lifecycle.terminate_timeout_seconds * HOOK_SCALE

    def members() -> set[str]:
        return {host.instance_id for host in sandbox.snapshot().hosts}

    sandbox.heal_until(lambda: victim not in members(), cfg=impatient, deadline=hook_timeout + 100)

    blocked = next(entry for entry in sandbox.log() if entry["action"] == "drain-blocked")
    assert blocked["instance"] == victim and "PodDisruptionBudget default/web needs" in blocked["blockers"]
    assert victim not in members(), "no heartbeat after the drain gave up: the hook's timeout let the host go"
    assert sandbox.queue.depth() == (0, 1), "its message is hidden until after the hook's timeout"

    sandbox.poll.bring_back()
    sandbox.heal_until(lambda: True, cfg=impatient)

    mine = [entry["action"] for entry in sandbox.log() if entry.get("instance") == victim]
    assert mine[-3:] == ["cordon", "drain-blocked", "gone"], (
        "never completed by heal; the message came back to a gone host"
    )
    assert sandbox.queue.depth() == (0, 0)
    assert sandbox.sim.world.counters.budget_violations == 0
