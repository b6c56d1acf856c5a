"""In-memory models of the AWS and Kubernetes facades the roll engine uses, in virtual time, with the faults the
engine must survive. Used by the engine tests and by bench/roll.py.

A host launched at t is InService, with its node Ready, ``boot`` seconds later. An evicted pod is gone ``drain``
seconds after its eviction and runs again at once on the least loaded Ready, schedulable node. An optional budget
(``budget``: how many of the workload's pods may be unavailable) refuses evictions with a 429, as the API does.
Every mutation and every tick of the clock records the invariants a user cares about: the lowest ready capacity and
the most hosts running at once. ``World.killed`` stands for a roll killed with SIGKILL: every call it makes from then
on fails, so nothing more of it reaches AWS or Kubernetes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from lightkube import ApiError
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta, Status
from lightkube.models.policy_v1 import PodDisruptionBudgetSpec, PodDisruptionBudgetStatus
from lightkube.resources.policy_v1 import PodDisruptionBudget

from provision.aws.groups import Group, Groups, Member
from provision.aws.parameters import Parameters
from provision.errors import ClusterError
from provision.kube.facade import Kube
from provision.kube.model import NodeState, Owner, PodState
from provision.roll.fleet import Fleet, Host, Snapshot
from tests.fakeclock import FakeClock

CURRENT, OLD = "ami-new/1/digest", "ami-old/0/digest"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
WEB = Owner("ReplicaSet", "default", "web")


@dataclass
class Machine:
    instance_id: str
    launched: float
    fingerprint: str
    joins: bool = True


@dataclass
class World:
    clock: FakeClock
    boot: float
    drain: float
    desired: int = 0
    max_size: int = 0
    budget: int | None = None  # pods of the workload that may be unavailable at once; None: no budget
    machines: dict[str, Machine] = field(default_factory=dict)
    cordoned: set[str] = field(default_factory=set)
    evicted: dict[str, float] = field(default_factory=dict)  # pod -> when
    pods: dict[str, str] = field(default_factory=dict)  # pod -> node (= instance id)
    calls: Counter[str] = field(default_factory=Counter)
    suspended: list[str] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    # faults
    never_join_next: int = 0  # the next N hosts launched never get a Ready node
    dead: set[str] = field(default_factory=set)  # nodes that turned NotReady for good
    flapping: dict[str, float] = field(default_factory=dict)  # node -> until when it flips Ready/NotReady each poll
    refuse_termination: set[str] = field(default_factory=set)
    listing_delay: float = 0.0  # a launched host is listed by its group only this long after launch, as on AWS
    protected: set[str] = field(default_factory=set)  # hosts protected from scale-in
    killed: bool = False  # the roll's process was killed (SIGKILL): none of its calls reaches AWS or Kubernetes
    fail_next_resize: bool = False  # the next size change is applied, then its answer is lost (a timeout)
    # invariants seen
    lowest_ready: int | None = None
    peak_hosts: int = 0
    peak_draining: int = 0  # the most nodes with pods evicted and not yet gone at one moment
    forced: list[str] = field(default_factory=list)  # pods deleted past their budget
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> its annotations now
    annotated: set[str] = field(default_factory=set)  # nodes that were ever given an annotation
    peak_max_size: int = 0

    def __post_init__(self) -> None:
        self.clock.on_sleep = lambda _now: self.observe()

    @classmethod
    def with_hosts(cls, hosts: int, *, boot: float = 120, drain: float = 60, pods_per_host: int = 2) -> World:
        world = cls(FakeClock(), boot, drain, desired=hosts, max_size=hosts * 2)
        for _ in range(hosts):
            world.launch(OLD)
        world.clock.current = boot  # the old hosts have long been up
        for index, instance in enumerate(list(world.machines) * pods_per_host):
            world.pods[f"web-{index}"] = instance
        world.lowest_ready = None
        return world

    def launch(self, fingerprint: str) -> None:
        machine = Machine(f"i-{next(self.ids):017x}", self.clock.now(), fingerprint)
        if self.never_join_next > 0:
            self.never_join_next -= 1
            machine.joins = False
        self.machines[machine.instance_id] = machine

    def listed(self) -> list[str]:
        return [i for i, m in self.machines.items() if self.clock.now() - m.launched >= self.listing_delay]

    def booted(self, instance_id: str) -> bool:
        machine = self.machines[instance_id]
        return machine.joins and self.clock.now() - machine.launched >= self.boot

    def node_ready(self, instance_id: str) -> bool:
        if instance_id not in self.machines or not self.booted(instance_id) or instance_id in self.dead:
            return False
        until = self.flapping.get(instance_id, 0.0)
        return self.clock.now() >= until or int(self.clock.now()) % 2 == 0

    def settle(self) -> None:
        """Evicted pods are gone after the drain time and run again at once on a Ready, schedulable node."""
        targets = [i for i in self.machines if self.node_ready(i) and i not in self.cordoned] or list(self.machines)
        for pod, when in list(self.evicted.items()):
            if self.clock.now() - when >= self.drain:
                del self.evicted[pod]
                self.pods[pod] = min(targets, key=lambda node: sum(1 for n in self.pods.values() if n == node))

    def observe(self) -> None:
        self.settle()
        ready = sum(1 for i in self.machines if self.node_ready(i) and i not in self.cordoned)
        self.lowest_ready = ready if self.lowest_ready is None else min(self.lowest_ready, ready)
        self.peak_hosts = max(self.peak_hosts, len(self.machines))
        self.peak_draining = max(self.peak_draining, len({self.pods[pod] for pod in self.evicted}))

    def alive(self) -> None:
        if self.killed:
            raise Killed("the roll's process is gone")

    def fill(self) -> None:
        while len(self.machines) < self.desired:
            self.launch(CURRENT)

    def unavailable(self) -> int:
        return len(self.evicted) + sum(1 for node in self.pods.values() if not self.node_ready(node))


class FakeGroups(Groups):
    def __init__(self, world: World) -> None:
        self.world = world

    def find(self, name: str) -> Group | None:
        self.world.alive()
        self.world.calls["DescribeAutoScalingGroups"] += 1
        members = [
            Member(i, "zone-a", _state(self.world, i), "Healthy", i in self.world.protected)
            for i in self.world.listed()
        ]
        return Group(name, 0, self.world.max_size, self.world.desired, members, list(self.world.suspended))

    def suspend(self, name: str, processes: list[str]) -> None:
        self.world.alive()
        self.world.calls["SuspendProcesses"] += 1
        self.world.suspended = sorted(set(self.world.suspended) | set(processes))

    def resume(self, name: str, processes: list[str]) -> None:
        self.world.alive()
        self.world.calls["ResumeProcesses"] += 1
        self.world.suspended = [process for process in self.world.suspended if process not in processes]


class FakeFleet(Fleet):
    def __init__(self, world: World) -> None:
        self.world = world
        self.group = "hosts"
        self._groups = FakeGroups(world)

    @property
    def groups(self) -> Groups:
        return self._groups

    def snapshot(self) -> Snapshot:
        self.world.alive()
        self.world.calls.update(["DescribeAutoScalingGroups", "DescribeInstances", "DescribeLaunchTemplateVersions"])
        self.world.observe()
        hosts = tuple(
            Host(
                m.instance_id,
                "zone-a",
                _state(self.world, m.instance_id),
                "Healthy",
                m.instance_id in self.world.protected,
                m.fingerprint,
                m.fingerprint.split("/")[0],
                EPOCH + timedelta(seconds=m.launched),
                (m.instance_id,),
            )
            for m in map(self.world.machines.__getitem__, self.world.listed())
        )
        return Snapshot(
            "hosts", self.world.desired, 0, self.world.max_size, CURRENT, hosts, tuple(self.world.suspended)
        )

    def launch_current_configuration(self) -> str | None:
        self.world.alive()
        return None

    def set_size(self, *, desired: int, max_size: int) -> None:
        self.world.alive()
        self.world.calls["UpdateAutoScalingGroup"] += 1
        if desired > max_size:  # as AWS answers: a ValidationError, nothing changed
            raise ClusterError(f"UpdateAutoScalingGroup: desired capacity {desired} above the maximum {max_size}")
        self.world.desired, self.world.max_size = desired, max_size
        self.world.peak_max_size = max(self.world.peak_max_size, max_size)
        self.world.fill()
        self.world.observe()
        if self.world.fail_next_resize:
            self.world.fail_next_resize = False
            raise ClusterError("UpdateAutoScalingGroup: the answer timed out")

    def terminate(self, instance_id: str) -> None:
        self.world.alive()
        self.world.calls["TerminateInstanceInAutoScalingGroup"] += 1
        if instance_id in self.world.refuse_termination:
            raise ClusterError(f"TerminateInstanceInAutoScalingGroup refused {instance_id}")
        if self.world.machines.pop(instance_id, None) is not None:
            self.world.desired -= 1
            self.world.cordoned.discard(instance_id)  # its node goes with it, and any pod left on it is lost
            self.world.annotations.pop(instance_id, None)
            for pod in [pod for pod, node in self.world.pods.items() if node == instance_id]:
                self.world.evicted.setdefault(pod, self.world.clock.now() - self.world.drain)
        self.world.observe()

    def complete_termination(self, instance_id: str) -> bool:
        self.world.alive()
        return False


class FakeKube(Kube):
    def __init__(self, world: World) -> None:
        self.world = world

    def nodes(self) -> list[NodeState]:
        self.world.alive()
        self.world.observe()
        return [
            NodeState(i, f"aws:///zone-a/{i}", (i,), self.world.node_ready(i), i in self.world.cordoned)
            for i in self.world.machines
            if self.world.booted(i)
        ]

    def cordon(self, name: str) -> None:
        self.world.alive()
        self.world.cordoned.add(name)
        self.world.observe()

    def uncordon(self, name: str) -> None:
        self.world.alive()
        self.world.cordoned.discard(name)

    def annotate(self, name: str, annotations: dict[str, str | None]) -> None:
        self.world.alive()
        current = self.world.annotations.setdefault(name, {})
        for key, value in annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
                self.world.annotated.add(name)

    def delete_node(self, name: str) -> None:
        self.world.alive()
        self.world.cordoned.discard(name)

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[PodState]:
        self.world.alive()
        self.world.observe()
        return [
            PodState(
                "default",
                pod,
                where,
                "Running",
                self.world.node_ready(where) and pod not in self.world.evicted,
                pod in self.world.evicted,
                WEB,
                {"app": "web"},
                False,
                False,
                "",
            )
            for pod, where in self.world.pods.items()
            if node is None or where == node
        ]

    def evict(self, pod: PodState) -> None:
        self.world.alive()
        if pod.name in self.world.evicted:
            return
        budget = self.world.budget
        # A pod that is not Ready (its node died) may always go, as with unhealthyPodEvictionPolicy AlwaysAllow.
        ready = self.world.node_ready(self.world.pods[pod.name])
        if budget is not None and ready and self.world.unavailable() >= budget:
            raise _api_error(429, "Cannot evict pod as it would violate the pod's disruption budget.")
        self.world.evicted[pod.name] = self.world.clock.now()

    def delete_pod(self, pod: PodState, *, grace_seconds: int | None = None) -> None:
        self.world.alive()
        if pod.name not in self.world.evicted and self.world.budget is not None:
            self.world.forced.append(pod.name)
        self.world.evicted[pod.name] = self.world.clock.now() - self.world.drain  # gone at once

    def wanted_replicas(self, owner: Owner) -> int | None:
        self.world.alive()
        return len(self.world.pods)

    def budgets(self, namespace: str) -> list[PodDisruptionBudget]:
        self.world.alive()
        if self.world.budget is None:
            return []
        healthy = len(self.world.pods) - self.world.unavailable()
        return [
            PodDisruptionBudget(
                metadata=ObjectMeta(name="web", namespace="default"),
                spec=PodDisruptionBudgetSpec(
                    selector=LabelSelector(matchLabels={"app": "web"}), maxUnavailable=self.world.budget
                ),
                status=PodDisruptionBudgetStatus(
                    currentHealthy=healthy,
                    desiredHealthy=len(self.world.pods) - self.world.budget,
                    disruptionsAllowed=max(0, self.world.budget - self.world.unavailable()),
                    expectedPods=len(self.world.pods),
                ),
            )
        ]


class FakeParameters(Parameters):
    def __init__(self, world: World | None = None) -> None:
        self.values: dict[str, str] = {}
        self.world = world  # given: the parameters answer only while the roll's process is alive

    def create(self, name: str, value: str) -> bool:
        if self.world is not None:
            self.world.alive()
        return self.values.setdefault(name, value) == value

    def put(self, name: str, value: str, *, tier: Literal["Standard", "Intelligent-Tiering"] = "Standard") -> None:
        if self.world is not None:
            self.world.alive()
        self.values[name] = value

    def value(self, name: str) -> str | None:
        if self.world is not None:
            self.world.alive()
        return self.values.get(name)

    def remove(self, name: str) -> None:
        if self.world is not None:
            self.world.alive()
        self.values.pop(name, None)


class Killed(BaseException):
    """What every call of a killed roll meets: like SIGKILL, nothing more it asks for happens (its ``finally``
    blocks included), so the next run finds the lock, the suspensions, the surge and the cordons as they were."""


def _state(world: World, instance_id: str) -> str:
    return "InService" if world.booted(instance_id) else "Pending"


def _api_error(code: int, message: str) -> ApiError:
    return ApiError(status=Status(code=code, message=message, status="Failure"))
