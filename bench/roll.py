"""Simulate rolls of 3, 30 and 300 hosts in virtual time and print how long they take against the lower bound, and
how many AWS calls they make per replaced host, next to a sequential cordon-drain-terminate-wait baseline.

    .venv/bin/python bench/roll.py [--boot 120] [--drain 60] [--pods 10]

The engine is the real one (provision.roll.engine.Roll, with the real Drainer and migration check); AWS and
Kubernetes are small in-memory models whose time is the injected clock: a new host is InService and its node Ready
`--boot` seconds after launch; an evicted pod is gone `--drain` seconds after its eviction and Ready elsewhere at once.
"""

from __future__ import annotations

import argparse
import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from rich.console import Console

from provision.aws.groups import Group, Groups, Member
from provision.aws.parameters import Parameters
from provision.config.schema import Rolling
from provision.kube.facade import Kube
from provision.kube.model import NodeState, Owner, PodState
from provision.roll.engine import Roll
from provision.roll.fleet import Fleet, Host, Snapshot
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from provision.roll.plan import outdated
from provision.ui import UI

CURRENT, OLD = "ami-new/1/digest", "ami-old/0/digest"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeClock:
    now_: float = 0.0

    def now(self) -> float:
        return self.now_

    def sleep(self, seconds: float) -> None:
        self.now_ += seconds


@dataclass
class Machine:
    instance_id: str
    launched: float
    fingerprint: str


@dataclass
class World:
    """The group's hosts and the pods on their nodes, as functions of virtual time."""

    clock: FakeClock
    boot: float
    drain: float
    pods_per_host: int
    desired: int = 0
    max_size: int = 0
    machines: dict[str, Machine] = field(default_factory=dict)
    cordoned: set[str] = field(default_factory=set)
    evicted: dict[str, float] = field(default_factory=dict)  # pod -> when
    pods: dict[str, str] = field(default_factory=dict)  # pod -> node (= instance id)
    calls: Counter[str] = field(default_factory=Counter)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def launch(self, fingerprint: str) -> None:
        number = next(self.ids)
        machine = Machine(f"i-{number:017x}", self.clock.now(), fingerprint)
        self.machines[machine.instance_id] = machine

    def fill(self) -> None:
        while len(self.machines) < self.desired:
            self.launch(CURRENT)

    def ready(self, instance_id: str) -> bool:
        return self.clock.now() - self.machines[instance_id].launched >= self.boot

    def settle_pods(self) -> None:
        """Evicted pods are gone after the drain time, and run again at once on a Ready, schedulable node."""
        targets = [i for i in self.machines if self.ready(i) and i not in self.cordoned] or list(self.machines)
        for pod, when in list(self.evicted.items()):
            if self.clock.now() - when >= self.drain:
                del self.evicted[pod]
                self.pods[pod] = min(targets, key=lambda node: sum(1 for n in self.pods.values() if n == node))


class FakeGroups(Groups):
    def __init__(self, world: World) -> None:
        self.world = world
        self.suspended: list[str] = []

    def find(self, name: str) -> Group | None:
        self.world.calls["DescribeAutoScalingGroups"] += 1
        members = [Member(i, "zone-a", "InService" if self.world.ready(i) else "Pending", "Healthy", False)
                   for i in self.world.machines]  # fmt: skip
        return Group(name, 0, self.world.max_size, self.world.desired, members, list(self.suspended))

    def suspend(self, name: str, processes: list[str]) -> None:
        self.world.calls["SuspendProcesses"] += 1
        self.suspended = sorted(set(self.suspended) | set(processes))

    def resume(self, name: str, processes: list[str]) -> None:
        self.world.calls["ResumeProcesses"] += 1
        self.suspended = [process for process in self.suspended if process not in processes]


class FakeFleet(Fleet):
    def __init__(self, world: World) -> None:
        self.world = world
        self.group = "hosts"
        self._groups = FakeGroups(world)

    @property
    def groups(self) -> Groups:
        return self._groups

    def snapshot(self) -> Snapshot:
        self.world.calls.update(["DescribeAutoScalingGroups", "DescribeInstances", "DescribeLaunchTemplateVersions"])
        self.world.settle_pods()
        hosts = tuple(
            Host(
                m.instance_id,
                "zone-a",
                "InService" if self.world.ready(m.instance_id) else "Pending",
                "Healthy",
                False,
                m.fingerprint,
                "ami",
                EPOCH + timedelta(seconds=m.launched),
                (m.instance_id,),
            )
            for m in self.world.machines.values()
        )
        return Snapshot(
            "hosts", self.world.desired, 0, self.world.max_size, CURRENT, hosts, tuple(self._groups.suspended)
        )

    def launch_current_configuration(self) -> str | None:
        return None

    def set_size(self, *, desired: int, max_size: int) -> None:
        self.world.calls["UpdateAutoScalingGroup"] += 1
        self.world.desired, self.world.max_size = desired, max_size
        self.world.fill()

    def terminate(self, instance_id: str) -> None:
        self.world.calls["TerminateInstanceInAutoScalingGroup"] += 1
        if self.world.machines.pop(instance_id, None) is not None:
            self.world.desired -= 1

    def complete_termination(self, instance_id: str) -> bool:
        return False


class FakeKube(Kube):
    def __init__(self, world: World) -> None:
        self.world = world

    def nodes(self) -> list[NodeState]:
        self.world.settle_pods()
        return [
            NodeState(i, f"aws:///zone-a/{i}", (i,), self.world.ready(i), i in self.world.cordoned)
            for i in self.world.machines
        ]

    def cordon(self, name: str) -> None:
        self.world.cordoned.add(name)

    def uncordon(self, name: str) -> None:
        self.world.cordoned.discard(name)

    def annotate(self, name: str, annotations: dict[str, str | None]) -> None:
        return

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[PodState]:
        self.world.settle_pods()
        return [
            PodState(
                "default",
                pod,
                where,
                "Running",
                True,
                pod in self.world.evicted,
                Owner("ReplicaSet", "default", "web"),
                {"app": "web"},
                False,
                False,
                "",
            )
            for pod, where in self.world.pods.items()
            if node is None or where == node
        ]

    def evict(self, pod: PodState) -> None:
        self.world.evicted.setdefault(pod.name, self.world.clock.now())

    def wanted_replicas(self, owner: Owner) -> int | None:
        return len(self.world.pods)

    def budgets(self, namespace: str) -> list[Any]:
        return []


class FakeParameters(Parameters):
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def create(self, name: str, value: str) -> bool:
        return self.values.setdefault(name, value) == value

    def put(self, name: str, value: str, *, tier: Literal["Standard", "Intelligent-Tiering"] = "Standard") -> None:
        self.values[name] = value

    def value(self, name: str) -> str | None:
        return self.values.get(name)

    def remove(self, name: str) -> None:
        self.values.pop(name, None)


def new_world(hosts: int, args: argparse.Namespace) -> World:
    world = World(FakeClock(), args.boot, args.drain, args.pods, desired=hosts, max_size=hosts * 2)
    for _ in range(hosts):
        world.launch(OLD)
    world.clock.now_ = args.boot  # the old hosts have long been up
    for index, instance in enumerate(list(world.machines) * args.pods):
        world.pods[f"web-{index}"] = instance
    return world


def engine_roll(hosts: int, args: argparse.Namespace) -> tuple[float, float]:
    world = new_world(hosts, args)
    start = world.clock.now()
    fleet, parameters = FakeFleet(world), FakeParameters()
    quiet = UI(Console(file=io.StringIO()), ask=None, assume_yes=True)
    rolling = Rolling(drain_timeout_seconds=3600, ready_timeout_seconds=3600)
    roll = Roll(
        fleet, FakeKube(world), Journal(parameters, "/b"), RunLock(parameters, "/b"), quiet, world.clock, rolling
    )
    result = roll.run(outdated(fleet.snapshot(), operation="patch", include_protected=False), owner="bench")
    assert len(result.replaced) == hosts
    return world.clock.now() - start, sum(world.calls.values()) / hosts


def sequential_roll(hosts: int, args: argparse.Namespace) -> tuple[float, float]:
    """The baseline: cordon, drain, terminate without a decrement, wait for the group's replacement, next."""
    world = new_world(hosts, args)
    start = world.clock.now()
    fleet, kube = FakeFleet(world), FakeKube(world)
    for old in [host.instance_id for host in fleet.snapshot().hosts]:
        kube.cordon(old)
        for pod in kube.pods(node=old):
            kube.evict(pod)
        while kube.pods(node=old):
            world.clock.sleep(5)
        world.calls["TerminateInstanceInAutoScalingGroup"] += 1
        world.machines.pop(old)
        world.fill()
        while not all(host.lifecycle_state == "InService" for host in fleet.snapshot().hosts):
            world.clock.sleep(5)
    return world.clock.now() - start, sum(world.calls.values()) / hosts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boot", type=float, default=120.0, help="seconds from launch to a Ready node")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds from eviction to the pod gone")
    parser.add_argument("--pods", type=int, default=10, help="pods per host")
    args = parser.parse_args()
    print(f"boot {args.boot:.0f}s, drain {args.drain:.0f}s, {args.pods} pods per host, max surge 1\n")
    print("| hosts | roll | lower bound | ratio | AWS calls/host | sequential baseline | its AWS calls/host |")
    print("|---|---|---|---|---|---|---|")
    for hosts in (3, 30, 300):
        took, calls = engine_roll(hosts, args)
        base, base_calls = sequential_roll(hosts, args)
        bound = hosts * (args.boot + args.drain)
        print(f"| {hosts} | {took:.0f} s | {bound:.0f} s | {took / bound:.3f} | {calls:.0f} "
              f"| {base:.0f} s, one host short while each drains | {base_calls:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
