"""Repair from the cluster side and the storm guard in `cluster heal`, in virtual time: the real Kubernetes facade
against the API simulator (whose timestamps move with the virtual clock), the guard's slots in an in-memory store
whose create-if-absent is atomic as SSM's is, and the group as a dict of hosts."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from itertools import pairwise

import boto3
import pytest
from moto import mock_aws

from provision import names
from provision.aws.parameters import Parameters
from provision.config.schema import HealthAgent
from provision.fleet.model import Host, Snapshot
from provision.heal.actionlog import ActionLog, parse_line
from provision.heal.consumer import SWEEP_SECONDS, Consumer, Stop
from provision.heal.repair import NodeRepair
from provision.heal.slots import CLAIM_GRACE_SECONDS, HANDOVER_KEPT_SECONDS, Claim, Slots
from provision.kube.facade import Kube, connect
from provision.sandbox.parameters import install as install_moto_patches
from tests.simkit import Simulator, simulator
from tests.test_heal_handler import FakeGroup, FakeQueue, make_handler

__all__ = ["simulator"]  # the fixture

PATH = "/cluster/demo"
REPAIR = names.repair_path(PATH)


def instance(index: int) -> str:
    return f"i-{index:017x}"


def node_name(index: int) -> str:
    return f"ip-10-0-1-{index}.eu-west-1.compute.internal"


class MemoryStore:
    """SSM's parameters as the guard uses them: create only if absent (one winner however many race), overwrite,
    delete, and read a path."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()
        self.together: threading.Barrier | None = None  # racers read, then all wait here: every one saw the same

    def values_under(self, path: str) -> dict[str, str]:
        with self.lock:
            seen = {name: value for name, value in self.values.items() if name.startswith(path + "/")}
        if self.together is not None:
            self.together.wait()
        return seen

    def create(self, name: str, value: str) -> bool:
        with self.lock:
            if name in self.values:
                return False
            self.values[name] = value
            return True

    def put(self, name: str, value: str) -> None:
        with self.lock:
            self.values[name] = value

    def delete(self, names: list[str]) -> None:
        with self.lock:
            for name in names:
                self.values.pop(name, None)


@dataclass
class Group:
    """The group as heal sees it (hosts joined to their nodes), and what heal asks of it and of the instances' tags."""

    kube: Kube
    hosts: dict[str, Host] = field(default_factory=dict)
    desired: int = 5
    reported: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # instance -> its cluster:repair tag

    def snapshot(self) -> Snapshot:
        every_node = tuple(self.kube.nodes())
        nodes = Kube.match_hosts(every_node, {host.instance_id: host.names for host in self.hosts.values()})
        hosts = tuple(replace(host, node=nodes.get(host.instance_id)) for host in self.hosts.values())
        return Snapshot("group", self.desired, 0, 10, "", hosts, (), nodes=every_node)

    def report_unhealthy(self, instance_id: str) -> None:
        self.reported.append(instance_id)
        self.hosts[instance_id] = replace(self.hosts[instance_id], health="Unhealthy")

    def set_tag(self, instance_id: str, key: str, value: str) -> None:
        assert key == names.REPAIR_TAG
        self.tags[instance_id] = value

    def leaves(self, instance_id: str) -> None:
        """Replaced: drained and terminated, gone from the group."""
        del self.hosts[instance_id]


@dataclass
class Rig:
    sim: Simulator
    group: Group
    store: MemoryStore
    lines: list[str]
    roll: set[str]

    def repair(self, **settings: object) -> NodeRepair:
        agent = HealthAgent.model_validate({"max_unhealthy": 1} | settings)  # node_not_ready_seconds: 600
        return NodeRepair(
            fleet=self.group,
            guard=Slots(self.store, PATH),
            reports=self.group,
            tags=self.group,
            roll_hosts=lambda: set(self.roll),
            settings=agent,
            wall=self.sim.world.now,
            log=ActionLog(self.lines.append, now=self.sim.world.now),
        )

    def log(self, action: str) -> list[dict[str, str]]:
        return [entry for line in self.lines if (entry := parse_line(line))["action"] == action]

    def set_condition(self, index: int, kind: str, status: str) -> None:
        """What the kubelet (Ready) or node-problem-detector (the rest) sets on the node, timed now."""
        world = self.sim.world
        when = world.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [c for c in world.get("Node", "", node_name(index))["status"]["conditions"] if c["type"] != kind]
        conditions.append({"type": kind, "status": status, "reason": kind, "message": kind,
                           "lastHeartbeatTime": when, "lastTransitionTime": when})  # fmt: skip
        world.patch("Node", "", node_name(index), {"status": {"conditions": conditions}}, status=True)


@pytest.fixture
def rig(simulator: Simulator) -> Rig:
    kube = Kube(connect(kubeconfig=str(simulator.kubeconfig)))
    group = Group(kube)
    for index in range(1, 6):
        group.hosts[instance(index)] = Host(instance(index), "eu-west-1a", "InService", "Healthy", False, "",
                                            "ami-1", None, (node_name(index), f"10.0.1.{index}"))  # fmt: skip
        simulator.world.add_node(node_name(index), provider_id=f"aws:///eu-west-1a/{instance(index)}",
                                 internal_ip=f"10.0.1.{index}")  # fmt: skip
    simulator.settle(2)
    return Rig(simulator, group, MemoryStore(), [], set())


@pytest.mark.parametrize(
    ("kind", "status", "watched"),
    [
        pytest.param("Ready", "False", (), id="notready"),
        pytest.param("Ready", "Unknown", (), id="unknown"),
        pytest.param("KernelDeadlock", "True", ("KernelDeadlock",), id="watched-condition"),
    ],
)
def test_a_sick_node_is_reported_once_it_has_been_sick_for_node_not_ready_seconds(
    rig: Rig, kind: str, status: str, watched: tuple[str, ...]
) -> None:
    repair = rig.repair(node_conditions=list(watched))
    rig.set_condition(2, kind, status)
    turned = rig.sim.world.now()

    rig.sim.settle(599)
    repair.sweep()
    assert rig.group.reported == [], "599 s after the transition: not yet"

    rig.sim.settle(1)
    repair.sweep()
    assert rig.group.reported == [instance(2)]
    [line] = rig.log("reported-unhealthy")
    assert (line["instance"], line["node"], line["why"]) == (instance(2), node_name(2), f"{kind}:{status}")
    assert (line["lasting"], line["slot"], line["limit"]) == ("600s", "0", "1")
    state, _, by, why, since = rig.group.tags[instance(2)].split()
    assert (state, by, why) == ("reported", "by=heal", f"why={kind}:{status}")
    assert since == f"since={turned:%Y-%m-%dT%H:%M:%SZ}"
    assert Claim.parse(rig.store.values[f"{REPAIR}/slots/0"]) == Claim(
        instance(2), int(rig.sim.world.now().timestamp()), "heal"
    )

    rig.sim.settle(60)
    repair.sweep()
    assert rig.group.reported == [instance(2)], "reported once: the group is replacing it"


@pytest.mark.parametrize(
    ("kind", "status", "watched"),
    [
        pytest.param("KernelDeadlock", "True", (), id="unwatched-condition"),
        pytest.param("KernelDeadlock", "False", ("KernelDeadlock",), id="watched-condition-false"),
        pytest.param("Ready", "True", (), id="ready"),
    ],
)
def test_a_healthy_node_is_never_reported(rig: Rig, kind: str, status: str, watched: tuple[str, ...]) -> None:
    repair = rig.repair(node_conditions=list(watched))
    rig.set_condition(2, kind, status)

    for _ in range(3):
        rig.sim.settle(600)
        repair.sweep()

    assert rig.group.reported == [] and rig.group.tags == {} and rig.lines == []


def test_beyond_max_unhealthy_sick_hosts_are_held_and_taken_in_turn(rig: Rig) -> None:
    repair = rig.repair(max_unhealthy=1)
    for index in (1, 2, 3):
        rig.sim.world.set_node_ready(node_name(index), False)
    rig.sim.settle(600)

    repair.sweep()

    assert rig.group.reported == [instance(1)], "one at a time: the limit"
    held = rig.log("repair-held")
    assert [line["instance"] for line in held] == [instance(2), instance(3)]
    assert {(line["sick"], line["in_repair"], line["limit"]) for line in held} == {("3", instance(1), "1")}
    assert {rig.group.tags[instance(i)].split()[0] for i in (2, 3)} == {"held"}

    rig.sim.settle(SWEEP_SECONDS)
    repair.sweep()
    assert rig.group.reported == [instance(1)], "still under repair (Unhealthy, a member): the others still wait"
    assert len(rig.log("repair-held")) == 2, "said once, not at every sweep"

    rig.group.leaves(instance(1))  # replaced: drained, terminated, gone from the group
    rig.sim.settle(SWEEP_SECONDS)
    repair.sweep()
    assert rig.group.reported == [instance(1), instance(2)], "its slot was handed over"
    assert Claim.parse(rig.store.values[f"{REPAIR}/handovers/0/{instance(1)}"]).instance_id == instance(2)  # type: ignore[union-attr]

    # Host 3's node recovers while it waits: it is no longer sick, its tag says so, and it is not reported.
    rig.sim.world.set_node_ready(node_name(3), True)
    rig.group.leaves(instance(2))
    rig.sim.settle(SWEEP_SECONDS)
    repair.sweep()
    assert rig.group.reported == [instance(1), instance(2)]
    assert rig.group.tags[instance(3)].split()[0] == "clear"
    assert [line["instance"] for line in rig.log("repair-clear")] == [instance(3)]


def test_a_percentage_limit_follows_the_desired_capacity(rig: Rig) -> None:
    repair = rig.repair(max_unhealthy="40%")  # of 5 hosts: 2
    for index in (1, 2, 3, 4):
        rig.sim.world.set_node_ready(node_name(index), False)
    rig.sim.settle(600)

    repair.sweep()

    assert rig.group.reported == [instance(1), instance(2)]
    assert [line["limit"] for line in rig.log("repair-held")] == ["2", "2"]


@pytest.mark.parametrize(
    ("share", "desired", "limit"),
    [("20%", 10, 2), ("20%", 9, 1), ("20%", 3, 1), ("20%", 0, 1), ("100%", 4, 4), (3, 2, 3), (1, 50, 1)],
)
def test_max_unhealthy_as_hosts_rounds_a_percentage_down_and_never_goes_below_one(
    share: int | str, desired: int, limit: int
) -> None:
    assert HealthAgent.model_validate({"max_unhealthy": share}).repair_limit(desired) == limit


def test_hosts_an_agent_has_in_repair_count_against_heals_reports(rig: Rig) -> None:
    """One guard for both reporters: a slot the agent of host 5 claimed (and reported) holds heal's report back."""
    now = int(rig.sim.world.now().timestamp())
    rig.store.create(f"{REPAIR}/slots/0", str(Claim(instance(5), now, "agent")))
    rig.group.hosts[instance(5)] = replace(rig.group.hosts[instance(5)], health="Unhealthy")
    repair = rig.repair(max_unhealthy=1)
    rig.sim.world.set_node_ready(node_name(1), False)
    rig.sim.settle(600)

    repair.sweep()

    assert rig.group.reported == []
    [held] = rig.log("repair-held")
    assert (held["instance"], held["in_repair"]) == (instance(1), instance(5))


def test_the_hosts_of_a_roll_and_hosts_already_leaving_are_left_alone(rig: Rig) -> None:
    repair = rig.repair(max_unhealthy=5)
    rig.roll.add(instance(1))
    rig.group.hosts[instance(2)] = replace(rig.group.hosts[instance(2)], lifecycle_state="Terminating:Wait")
    rig.group.hosts[instance(3)] = replace(rig.group.hosts[instance(3)], health="Unhealthy")
    for index in (1, 2, 3, 4):
        rig.sim.world.set_node_ready(node_name(index), False)
    rig.sim.settle(600)

    repair.sweep()

    assert rig.group.reported == [instance(4)]


def test_a_claim_whose_report_never_took_lapses_after_the_grace(rig: Rig) -> None:
    """A holder still InService and Healthy: its report is on its way for a while (the claim is counted), but not
    forever (it never came, or someone set the host Healthy again): then its slot is free for the next."""
    slots = Slots(rig.store, PATH)
    members = {host.instance_id: host for host in rig.group.snapshot().hosts}
    start = int(rig.sim.world.now().timestamp())
    assert slots.admit(instance(1), by="heal", limit=1, members=members, now=start).slot == 0

    assert (
        slots.admit(instance(2), by="heal", limit=1, members=members, now=start + CLAIM_GRACE_SECONDS - 1).slot is None
    )
    lapsed = slots.admit(instance(2), by="heal", limit=1, members=members, now=start + CLAIM_GRACE_SECONDS)
    assert lapsed.slot == 0 and slots.read().slots[0].holder.instance_id == instance(2)
    # Host 1, asking again (it never reported), no longer holds a slot: it is held like any other.
    assert slots.admit(instance(1), by="heal", limit=1, members=members, now=start + CLAIM_GRACE_SECONDS).slot is None


def test_racing_claimers_on_moto_never_exceed_the_limit() -> None:
    """The same race against SSM's API as moto serves it (with the sandbox's patch): PutParameter without overwrite
    lets exactly one of the racers create a name."""
    install_moto_patches()
    with mock_aws():
        parameters = Parameters(boto3.client("ssm", region_name="eu-west-1"))
        slots = Slots(_Together(parameters), PATH)
        members = {
            instance(index): Host(instance(index), "eu-west-1a", "InService", "Healthy", False, "", "ami-1", None, ())
            for index in range(200, 212)
        }
        won: list[int] = []
        slots.store.together = threading.Barrier(len(members))  # type: ignore[attr-defined]

        def ask(host: str) -> None:
            slot = slots.admit(host, by="agent", limit=2, members=members, now=1_700_000_000).slot
            if slot is not None:
                won.append(slot)

        threads = [threading.Thread(target=ask, args=(host,)) for host in members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(won) == [0, 1], "two slots, two winners, one each"


class _Together:
    """A store whose readers all wait for each other after reading: every racer saw the same, then all claim."""

    def __init__(self, parameters: Parameters) -> None:
        self.parameters = parameters
        self.together: threading.Barrier | None = None

    def values_under(self, path: str) -> dict[str, str]:
        seen = self.parameters.values_under(path)
        if self.together is not None:
            self.together.wait()
        return seen

    def create(self, name: str, value: str) -> bool:
        return self.parameters.create(name, value)

    def put(self, name: str, value: str) -> None:
        self.parameters.put(name, value)

    def delete(self, names: list[str]) -> None:
        self.parameters.delete(names)


def test_spent_handovers_are_removed_an_hour_after_the_slot_moved_on(rig: Rig) -> None:
    slots = Slots(rig.store, PATH)
    hosts = {host.instance_id: host for host in rig.group.snapshot().hosts}
    start = int(rig.sim.world.now().timestamp())
    sick = replace(hosts[instance(1)], health="Unhealthy")
    assert slots.admit(instance(1), by="agent", limit=1, members=hosts | {instance(1): sick}, now=start).slot == 0
    # Host 1 is gone; host 2 takes its slot, then host 3 host 2's, each writing the slot as it wins.
    for previous, taker in ((1, 2), (2, 3)):
        del hosts[instance(previous)]
        members = hosts | {instance(taker): replace(hosts[instance(taker)], health="Unhealthy")}
        assert slots.admit(instance(taker), by="agent", limit=1, members=members, now=start + taker).slot == 0
    # A reader that follows the chain from an old value of the slot still finds the holder.
    rig.store.put(f"{REPAIR}/slots/0", str(Claim(instance(1), start, "agent")))
    assert slots.read().slots[0].holder.instance_id == instance(3)

    assert slots.tidy(slots.read(), start + HANDOVER_KEPT_SECONDS + 10) == 0, "the slot was behind: rewritten first"
    assert Claim.parse(rig.store.values[f"{REPAIR}/slots/0"]).instance_id == instance(3)  # type: ignore[union-attr]
    assert slots.tidy(slots.read(), start + 60) == 0, "an hour: a reader of the old value may still follow them"
    assert slots.tidy(slots.read(), start + HANDOVER_KEPT_SECONDS + 10) == 2
    assert sorted(rig.store.values) == [f"{REPAIR}/slots/0"]
    assert slots.read().slots[0].holder.instance_id == instance(3)


def test_racing_claimers_never_exceed_the_limit(rig: Rig) -> None:
    """Twenty hosts sick at the same moment, each asking on its own thread, several rounds as hosts leave."""
    slots = Slots(rig.store, PATH)
    now = int(rig.sim.world.now().timestamp())
    sick = {
        instance(index): Host(instance(index), "eu-west-1a", "InService", "Healthy", False, "", "ami-1", None, ())
        for index in range(100, 120)
    }
    replaced: list[str] = []
    for _ in range(10):
        members = dict(sick)
        won: list[str] = []
        rig.store.together = threading.Barrier(len(members))  # each has read the slots before any claims one

        def ask(host: str, members: dict[str, Host] = members, won: list[str] = won) -> None:
            if slots.admit(host, by="agent", limit=3, members=members, now=now).slot is not None:
                won.append(host)

        threads = [threading.Thread(target=ask, args=(host,)) for host in members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) <= 3, won
        for host in won:  # reported, replaced, gone
            del sick[host]
        replaced += won
        if not sick:
            break
    assert len(replaced) == 20 and len(set(replaced)) == 20


def test_heal_looks_at_the_nodes_once_with_once_and_every_sweep_seconds_with_watch(rig: Rig) -> None:
    clock = rig.sim.clock
    handler = make_handler(rig.sim, rig.group.kube, FakeGroup(clock.now, rig.group.kube), {}, rig.lines, set())
    swept: list[float] = []
    queue = FakeQueue(clock.now, clock.sleep)

    Consumer(queue, handler, clock, handler.log, Stop(), sweep=lambda: swept.append(clock.now())).run(once=True)
    assert len(swept) == 1

    swept.clear()
    stop = Stop()
    start = clock.now()

    def sweep() -> None:
        swept.append(clock.now())
        if len(swept) == 2:
            raise RuntimeError("the API is down")
        if clock.now() - start > 300:
            stop.request(clock.now())

    Consumer(queue, handler, clock, handler.log, stop, wait_seconds=5, sweep=sweep).run(once=False)

    gaps = [later - earlier for earlier, later in pairwise(swept)]
    assert len(swept) >= 10 and all(SWEEP_SECONDS <= gap < SWEEP_SECONDS + 5 for gap in gaps), gaps
    errors = [parse_line(line) for line in rig.lines if "action=error" in line]
    assert len(errors) == 1 and errors[0]["during"] == "sweep" and "the API is down" in errors[0]["error"]
