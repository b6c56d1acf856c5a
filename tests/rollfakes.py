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

from provision import names
from provision.aws.groups import Group, Groups, Member
from provision.aws.instances import Instance, Instances, TemplateVersion
from provision.aws.parameters import Parameters
from provision.errors import ClusterError
from provision.fleet.observe import Fleet
from provision.kube.facade import Kube
from provision.kube.model import NodeState, Owner, PodState
from tests.fakeclock import FakeClock

CURRENT, OLD = "ami-new/1/digest", "ami-old/0/digest"
ZONES = ("zone-a", "zone-b", "zone-c")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
WEB = Owner("ReplicaSet", "default", "web")


@dataclass
class Machine:
    instance_id: str
    launched: float
    fingerprint: str
    zone: str = "zone-a"
    joins: bool = True
    leaving: bool = False  # terminated, held in Terminating:Wait until its lifecycle action is completed


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
    calls: Counter[str] = field(default_factory=Counter)  # AWS operations, one per call
    kube_calls: Counter[str] = field(default_factory=Counter)  # Kubernetes requests, "verb resource"
    described: Counter[str] = field(default_factory=Counter)  # instances described, how often each
    restarts: dict[str, int] = field(default_factory=dict)  # pod -> restart count (a crash-looping pod rises)
    crashing: set[str] = field(default_factory=set)  # nodes whose pods crash-loop (a new configuration's fault)
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
        machine = Machine(f"i-{next(self.ids):017x}", self.clock.now(), fingerprint, zone=self._emptiest_zone())
        if self.never_join_next > 0:
            self.never_join_next -= 1
            machine.joins = False
        self.machines[machine.instance_id] = machine

    def _emptiest_zone(self) -> str:
        """As AWS balances a group: the zone with the fewest hosts, the first such by name."""
        counts = Counter(m.zone for m in self.machines.values() if not m.leaving)
        return min(ZONES, key=lambda zone: (counts[zone], zone))

    def zone_of(self, instance_id: str) -> str:
        return self.machines[instance_id].zone

    def remove(self, instance_id: str) -> None:
        """The host is gone: its node with it, and any pod left on it is lost (recreated elsewhere)."""
        self.machines.pop(instance_id, None)
        self.cordoned.discard(instance_id)
        self.annotations.pop(instance_id, None)
        for pod in [pod for pod, node in self.pods.items() if node == instance_id]:
            self.evicted.setdefault(pod, self.clock.now() - self.drain)
        self.observe()

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
        targets = [
            i for i, m in self.machines.items() if self.node_ready(i) and i not in self.cordoned and not m.leaving
        ] or list(self.machines)
        for pod, when in list(self.evicted.items()):
            if self.clock.now() - when >= self.drain:
                del self.evicted[pod]
                self.pods[pod] = min(targets, key=lambda node: sum(1 for n in self.pods.values() if n == node))

    def observe(self) -> None:
        self.settle()
        ready = sum(
            1 for i, m in self.machines.items() if self.node_ready(i) and i not in self.cordoned and not m.leaving
        )
        self.lowest_ready = ready if self.lowest_ready is None else min(self.lowest_ready, ready)
        self.peak_hosts = max(self.peak_hosts, len(self.machines))
        self.peak_draining = max(self.peak_draining, len({self.pods[pod] for pod in self.evicted}))

    def alive(self) -> None:
        if self.killed:
            raise Killed("the roll's process is gone")

    def fill(self) -> None:
        """Launch while the group has fewer hosts than desired (hosts held in their terminate hook do not count)."""
        while sum(1 for m in self.machines.values() if not m.leaving) < self.desired:
            self.launch(CURRENT)

    def unavailable(self) -> int:
        return len(self.evicted) + sum(1 for node in self.pods.values() if not self.node_ready(node))


class FakeGroups(Groups):
    """Auto Scaling as the typed facade sees it: one method call is one AWS call, counted by its operation name."""

    def __init__(self, world: World) -> None:
        self.world = world

    def find(self, name: str) -> Group | None:
        self.world.alive()
        self.world.calls["DescribeAutoScalingGroups"] += 1
        self.world.observe()
        members = [
            Member(i, self.world.zone_of(i), _state(self.world, i), "Healthy", i in self.world.protected)
            for i in self.world.listed()
        ]
        return Group(
            name,
            0,
            self.world.max_size,
            self.world.desired,
            members,
            list(self.world.suspended),
            launch_template_version="2",
            zones=ZONES,
            seen_at=EPOCH + timedelta(seconds=self.world.clock.now()),
        )

    def set_size(self, name: str, *, desired: int, max_size: int | None = None) -> None:
        self.world.alive()
        self.world.calls["UpdateAutoScalingGroup"] += 1
        max_size = self.world.max_size if max_size is None else max_size
        if desired > max_size:  # as AWS answers: a ValidationError, nothing changed
            raise ClusterError(f"UpdateAutoScalingGroup: desired capacity {desired} above the maximum {max_size}")
        self.world.desired, self.world.max_size = desired, max_size
        self.world.peak_max_size = max(self.world.peak_max_size, max_size)
        self.world.fill()
        self.world.observe()
        if self.world.fail_next_resize:
            self.world.fail_next_resize = False
            raise ClusterError("UpdateAutoScalingGroup: the answer timed out")

    def terminate(self, instance_id: str, *, decrement: bool) -> None:
        self.world.alive()
        self.world.calls["TerminateInstanceInAutoScalingGroup"] += 1
        if instance_id in self.world.refuse_termination:
            raise ClusterError(f"TerminateInstanceInAutoScalingGroup refused {instance_id}")
        machine = self.world.machines.get(instance_id)
        if machine is not None and not machine.leaving:
            machine.leaving = True  # held in Terminating:Wait by the group's terminate hook
            if decrement:
                self.world.desired -= 1
            self.world.fill()
        self.world.observe()

    def complete_action(
        self, name: str, hook: str, instance_id: str, token: str, result: Literal["CONTINUE", "ABANDON"]
    ) -> bool:
        self.world.alive()
        self.world.calls["CompleteLifecycleAction"] += 1
        machine = self.world.machines.get(instance_id)
        if machine is None or not machine.leaving:
            return False  # as AWS answers: no active lifecycle action
        self.world.remove(instance_id)
        return True

    def use_launch_template_version(self, name: str, template_id: str, version: str) -> None:
        raise AssertionError("the fake group launches the current version already")

    def suspend(self, name: str, processes: list[str]) -> None:
        self.world.alive()
        self.world.calls["SuspendProcesses"] += 1
        self.world.suspended = sorted(set(self.world.suspended) | set(processes))

    def resume(self, name: str, processes: list[str]) -> None:
        self.world.alive()
        self.world.calls["ResumeProcesses"] += 1
        self.world.suspended = [process for process in self.world.suspended if process not in processes]


class FakeInstances(Instances):
    def __init__(self, world: World) -> None:
        self.world = world

    def of_group(self, group_name: str) -> dict[str, Instance]:
        return self.describe(list(self.world.machines))

    def describe(self, instance_ids: list[str]) -> dict[str, Instance]:
        self.world.alive()
        self.world.calls["DescribeInstances"] += 1
        self.world.described.update(instance_ids)
        return {
            i: Instance(
                i,
                "running",
                EPOCH + timedelta(seconds=m.launched),
                m.fingerprint.split("/")[0],
                i,
                i,
                {names.FINGERPRINT_TAG: m.fingerprint},
            )
            for i in instance_ids
            if (m := self.world.machines.get(i)) is not None
        }

    def launch_template(self, launch_template_id: str) -> TemplateVersion:
        self.world.alive()
        self.world.calls["DescribeLaunchTemplateVersions"] += 1
        return TemplateVersion("2", {names.FINGERPRINT_TAG: CURRENT})


def fake_fleet(world: World, *, kube: bool = True) -> Fleet:
    """The real fleet over the fake facades; with the nodes joined (``kube``), as the roll uses it."""
    return Fleet(FakeGroups(world), FakeInstances(world), "hosts", "lt-hosts", kube=FakeKube(world) if kube else None)


class FakeKube(Kube):
    """The Kubernetes facade: one method call is one request, counted as "verb resource"."""

    def __init__(self, world: World) -> None:
        self.world = world

    def _call(self, request: str) -> None:
        self.world.alive()
        self.world.kube_calls[request] += 1

    def nodes(self) -> list[NodeState]:
        self._call("list nodes")
        self.world.observe()
        return [
            NodeState(
                i,
                f"aws:///{m.zone}/{i}",
                (i,),
                self.world.node_ready(i),
                i in self.world.cordoned,
                annotations=dict(self.world.annotations.get(i, {})),
                ready_since=EPOCH + timedelta(seconds=m.launched + self.world.boot),
            )
            for i, m in self.world.machines.items()
            if self.world.booted(i)
        ]

    def cordon(self, name: str) -> None:
        self._call("patch node")
        self.world.cordoned.add(name)
        self.world.observe()

    def uncordon(self, name: str) -> None:
        self._call("patch node")
        self.world.cordoned.discard(name)

    def annotate(self, name: str, annotations: dict[str, str | None]) -> None:
        self._call("patch node")
        current = self.world.annotations.setdefault(name, {})
        for key, value in annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
                self.world.annotated.add(name)

    def delete_node(self, name: str) -> None:
        self._call("delete node")
        self.world.cordoned.discard(name)

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[PodState]:
        self._call("list pods")
        self.world.observe()
        crashing = self.world.crashing
        return [
            PodState(
                "default",
                pod,
                where,
                "Running",
                self.world.node_ready(where) and pod not in self.world.evicted and where not in crashing,
                pod in self.world.evicted,
                WEB,
                {"app": "web"},
                False,
                False,
                "",
                restarts=self.world.restarts.get(pod, 0),
                waiting_reason="CrashLoopBackOff" if where in crashing else "",
            )
            for pod, where in self.world.pods.items()
            if node is None or where == node
        ]

    def evict(self, pod: PodState) -> None:
        self._call("create eviction")
        if pod.name in self.world.evicted:
            return
        budget = self.world.budget
        # A pod that is not Ready (its node died) may always go, as with unhealthyPodEvictionPolicy AlwaysAllow.
        ready = self.world.node_ready(self.world.pods[pod.name])
        if budget is not None and ready and self.world.unavailable() >= budget:
            raise _api_error(429, "Cannot evict pod as it would violate the pod's disruption budget.")
        self.world.evicted[pod.name] = self.world.clock.now()

    def delete_pod(self, pod: PodState, *, grace_seconds: int | None = None) -> None:
        self._call("delete pod")
        if pod.name not in self.world.evicted and self.world.budget is not None:
            self.world.forced.append(pod.name)
        self.world.evicted[pod.name] = self.world.clock.now() - self.world.drain  # gone at once

    def wanted_replicas(self, owner: Owner) -> int | None:
        self._call("get replicaset")
        return len(self.world.pods)

    def budgets(self, namespace: str) -> list[PodDisruptionBudget]:
        self._call("list poddisruptionbudgets")
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
        self.stored: dict[str, str] = {}
        self.world = world  # given: the parameters answer only while the roll's process is alive

    def _call(self, operation: str) -> None:
        if self.world is not None:
            self.world.alive()
            self.world.calls[operation] += 1

    def create(self, name: str, value: str) -> bool:
        self._call("PutParameter")
        return self.stored.setdefault(name, value) == value

    def put(self, name: str, value: str, *, tier: Literal["Standard", "Intelligent-Tiering"] = "Standard") -> None:
        self._call("PutParameter")
        self.stored[name] = value

    def value(self, name: str) -> str | None:
        self._call("GetParameter")
        return self.stored.get(name)

    def delete(self, names: list[str]) -> None:
        self._call("DeleteParameters")
        for name in names:
            self.stored.pop(name, None)

    def remove(self, name: str) -> None:
        self._call("DeleteParameter")
        self.stored.pop(name, None)


class Killed(BaseException):
    """What every call of a killed roll meets: like SIGKILL, nothing more it asks for happens (its ``finally``
    blocks included), so the next run finds the lock, the suspensions, the surge and the cordons as they were."""


def _state(world: World, instance_id: str) -> str:
    if world.machines[instance_id].leaving:
        return "Terminating:Wait"
    return "InService" if world.booted(instance_id) else "Pending"


def _api_error(code: int, message: str) -> ApiError:
    return ApiError(status=Status(code=code, message=message, status="Failure"))
