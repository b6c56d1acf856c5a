"""The roll engine end to end in virtual time: moto (in-process) as AWS, the API simulator as the cluster, the host
simulator booting replacements, and a sample workload under a budget. Interrupted at every phase, it continues."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from provision.aws.cloud import Cloud
from provision.clock import WaitTimeout
from provision.config.schema import ClusterConfig
from provision.deploy.host_records import forget_hosts
from provision.deploy.up import Up
from provision.errors import ClusterError
from provision.fleet.observe import Fleet
from provision.kube.drain import DrainBlocked
from provision.kube.facade import Kube, connect
from provision.roll.engine import Roll, RollResult
from provision.roll.journal import Journal
from provision.roll.lock import Locked, RunLock
from provision.roll.plan import one_host, outdated
from provision.roll.state import SEQUENCE, Kind
from provision.sandbox.hosts import HostSimulator
from provision.ui import UI
from tests.deploykit import REGION, TOKEN, config, recording_ui
from tests.simkit import Simulator, simulator, virtual_cloud

__all__ = ["simulator"]  # the fixture

BEFORE = config()
AFTER = config(hosts={"instance_type": "m5.large"})


class Interrupted(KeyboardInterrupt):
    pass


@dataclass
class Rig:
    cloud: Cloud
    sim: Simulator
    kube: Kube
    hosts: HostSimulator
    ui: UI = field(default_factory=lambda: recording_ui()[0])

    def fleet(self) -> Fleet:
        return Fleet.of_stack(self.cloud, AFTER.stack_name, kube=self.kube)

    def roll(
        self, *, interrupt_at: str | None = None, replace: str | None = None, dead: bool = False, **rolling: object
    ) -> RollResult:
        cfg = AFTER if not rolling else config(hosts={"instance_type": "m5.large"}, rolling=rolling)
        fired: list[str] = []

        def checkpoint(phase: str) -> None:
            if phase == interrupt_at and not fired:
                fired.append(phase)
                raise Interrupted(phase)

        fleet = self.fleet()
        if replace:
            plan = one_host(fleet.snapshot(), replace, operation=f"replace {replace}", dead=dead)
        else:
            plan = outdated(fleet.snapshot(), operation="patch", include_protected=False)
        engine = Roll(
            fleet,
            self.kube,
            Journal(self.cloud.parameters, cfg.parameter_path),
            RunLock(self.cloud.parameters, cfg.parameter_path, now=lambda: datetime(2026, 11, 27, tzinfo=UTC)),
            self.ui,
            self.sim.clock,
            cfg.rolling,
            checkpoint=checkpoint,
            forget_hosts=lambda hosts: forget_hosts(self.cloud.parameters, cfg.parameter_path, hosts),
        )
        return engine.run(plan, owner="test@rig")


def deploy(cfg: ClusterConfig, rig: Rig) -> None:
    Up(cfg, rig.cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)


@pytest.fixture
def rig(simulator: Simulator) -> Iterator[Rig]:
    with virtual_cloud(simulator, REGION) as (cloud, hosts):
        rig = Rig(cloud, simulator, Kube(connect(kubeconfig=str(simulator.kubeconfig))), hosts)
        deploy(BEFORE, rig)
        simulator.settle(12)  # the first hosts boot and join
        simulator.deployment("web", 6)
        simulator.budget("web", "web", maxUnavailable=1)
        simulator.settle(5)
        deploy(AFTER, rig)  # new configuration: every host is now outdated
        yield rig


def assert_clean_and_current(rig: Rig) -> None:
    rig.sim.settle(6)  # the terminated hosts' nodes go, as the cloud controller removes them
    snapshot = rig.fleet().snapshot()
    assert [host.fingerprint == snapshot.fingerprint for host in snapshot.hosts] == [True] * 3, "every host current"
    assert (snapshot.desired, snapshot.max_size) == (3, 6), "the group is back to its size"
    assert snapshot.suspended == (), "no process left suspended"
    assert [node.name for node in rig.kube.nodes() if node.unschedulable] == [], "no node left cordoned"
    assert RunLock(rig.cloud.parameters, AFTER.parameter_path).holder() is None, "the lock is released"
    assert Journal(rig.cloud.parameters, AFTER.parameter_path).load() is None, "no roll left half-done"
    assert rig.sim.world.counters.budget_violations == 0, "no pod evicted against its budget"
    ready = [node for node in rig.kube.nodes() if node.ready]
    assert len(ready) == 3, "no extra host left running"


def test_a_patch_replaces_every_outdated_host_one_at_a_time(rig: Rig) -> None:
    old = {host.instance_id for host in rig.fleet().snapshot().hosts}

    result = rig.roll()

    assert {replaced.old for replaced in result.replaced} == old
    assert result.lowest_ready is not None and result.lowest_ready >= 3, "never below the desired capacity"
    assert rig.sim.world.counters.evictions >= 6
    assert_clean_and_current(rig)


def test_a_second_roll_is_refused_while_one_holds_the_lock(rig: Rig) -> None:
    RunLock(rig.cloud.parameters, AFTER.parameter_path, now=lambda: datetime(2026, 11, 27, tzinfo=UTC)).acquire(
        "replace i-0", "alice@ops", ttl=timedelta(hours=1)
    )
    with pytest.raises(Locked, match="replace i-0 by alice@ops"):
        rig.roll()
    assert rig.fleet().snapshot().suspended == ()


@pytest.mark.parametrize("phase", [phase.value for phase in SEQUENCE[Kind.SURGE]])
def test_interrupted_at_any_phase_the_same_roll_finishes_the_job(rig: Rig, phase: str) -> None:
    with pytest.raises(Interrupted):
        rig.roll(interrupt_at=phase)
    assert rig.fleet().snapshot().suspended == (), "processes are restored even on an interrupt"

    rig.roll()

    assert_clean_and_current(rig)


def test_a_budget_that_never_allows_eviction_stops_cleanly(rig: Rig) -> None:
    rig.sim.world.patch("PodDisruptionBudget", "default", "web", {"spec": {"maxUnavailable": 0}})
    before = {host.instance_id for host in rig.fleet().snapshot().hosts}

    with pytest.raises(DrainBlocked, match="PodDisruptionBudget default/web"):
        rig.roll(drain_timeout_seconds=60)

    snapshot = rig.fleet().snapshot()
    assert {host.instance_id for host in snapshot.hosts} == before, "the surge host is gone, the old ones stay"
    assert (snapshot.desired, snapshot.max_size) == (3, 6) and snapshot.suspended == ()
    rig.sim.settle(6)  # a removed surge host's node goes, as the cloud controller deletes it
    assert [node.name for node in rig.kube.nodes() if node.unschedulable] == []
    assert RunLock(rig.cloud.parameters, AFTER.parameter_path).holder() is None
    assert rig.sim.world.counters.budget_violations == 0


def node_of(rig: Rig, instance_id: str) -> str:
    host = rig.fleet().snapshot().host(instance_id)
    assert host is not None
    return rig.kube.match_hosts(rig.kube.nodes(), {instance_id: host.names})[instance_id].name


def test_a_patch_waits_for_the_groups_own_nodes_before_starting(rig: Rig) -> None:
    sick = rig.fleet().snapshot().hosts[0].instance_id
    rig.sim.world.set_node_ready(node_of(rig, sick), False)

    with pytest.raises(ClusterError, match=f"not starting the next host: the node of {sick} is not Ready"):
        rig.roll()

    snapshot = rig.fleet().snapshot()
    assert (snapshot.desired, snapshot.suspended) == (3, ())


def test_unrelated_sick_nodes_do_not_block_a_patch(rig: Rig) -> None:
    rig.sim.world.add_node("control-plane-1", ready=False)

    result = rig.roll()

    assert len(result.replaced) == 3


def test_replace_one_host_even_when_another_is_sick(rig: Rig) -> None:
    hosts = rig.fleet().snapshot().hosts
    rig.sim.world.set_node_ready(node_of(rig, hosts[0].instance_id), False)
    # The sick node's pods are unhealthy; a budget with room lets the healthy host's pods go (the real rule).
    rig.sim.world.patch("PodDisruptionBudget", "default", "web", {"spec": {"maxUnavailable": 3}})
    target = hosts[1].instance_id

    result = rig.roll(replace=target)

    assert [replaced.old for replaced in result.replaced] == [target]
    assert rig.fleet().snapshot().host(target) is None
    assert rig.sim.world.counters.budget_violations == 0


def test_replace_a_dead_host_deletes_its_pods_and_node_after_terminating_it(rig: Rig) -> None:
    dead = rig.fleet().snapshot().hosts[0].instance_id
    dead_node = node_of(rig, dead)
    rig.sim.world.set_node_ready(dead_node, False)
    refused_before = rig.sim.world.counters.evictions_refused

    result = rig.roll(replace=dead, dead=True)

    assert [replaced.old for replaced in result.replaced] == [dead]
    assert dead_node not in {node.name for node in rig.kube.nodes()}
    assert rig.kube.pods(node=dead_node) == []
    assert rig.sim.world.counters.evictions_refused == refused_before, "no eviction was attempted"
    rig.sim.settle(5)
    web = [pod for pod in rig.kube.pods(namespace="default") if pod.name.startswith("web") and not pod.terminating]
    assert len(web) == 6 and all(pod.ready for pod in web), "the workload runs again elsewhere"


def test_a_roll_with_nothing_outdated_changes_nothing(rig: Rig) -> None:
    rig.roll()
    calls: list[str] = []
    rig.cloud.groups.client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))

    again = rig.roll()

    assert again.replaced == [] and again.skipped == []
    assert not [call for call in calls if not call.startswith("Describe")], "no change, no suspension, no lock dance"


def test_a_replacement_that_never_becomes_ready_is_removed_and_the_roll_stops(rig: Rig) -> None:
    before = {host.instance_id for host in rig.fleet().snapshot().hosts}
    rig.hosts.faults.never_join_next = 1

    with pytest.raises(WaitTimeout, match="the replacement host to be InService with a Ready node"):
        rig.roll()

    snapshot = rig.fleet().snapshot()
    assert {host.instance_id for host in snapshot.hosts} == before, "the stuck surge host was terminated"
    assert (snapshot.desired, snapshot.max_size, snapshot.suspended) == (3, 6, ())
    rig.sim.settle(6)  # a removed surge host's node goes, as the cloud controller deletes it
    assert [node.name for node in rig.kube.nodes() if node.unschedulable] == []
    assert RunLock(rig.cloud.parameters, AFTER.parameter_path).holder() is None


def test_a_node_that_dies_mid_drain_still_gets_replaced(rig: Rig) -> None:
    victim = rig.fleet().snapshot().hosts[0].instance_id
    node = node_of(rig, victim)
    tick = rig.sim.clock.on_sleep
    assert tick is not None

    died: list[float] = []

    def dies_while_draining(now: float) -> None:
        tick(now)
        state = rig.kube.node(node)
        if state is not None and state.unschedulable and not died:
            rig.sim.world.set_node_ready(node, False)
            died.append(now)

    rig.sim.clock.on_sleep = dies_while_draining

    result = rig.roll()

    assert died, "the node died after it was cordoned"
    assert victim in {replaced.old for replaced in result.replaced}
    assert rig.sim.world.counters.budget_violations == 0


def test_a_termination_that_fails_undoes_the_step(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {host.instance_id for host in rig.fleet().snapshot().hosts}
    real_terminate = Fleet.terminate
    victim = sorted(rig.fleet().snapshot().hosts, key=lambda host: host.order)[0].instance_id

    def refuse_the_old_host(fleet: Fleet, instance_id: str) -> None:
        if instance_id == victim:
            raise ClusterError(f"TerminateInstanceInAutoScalingGroup refused {instance_id}")
        real_terminate(fleet, instance_id)

    monkeypatch.setattr(Fleet, "terminate", refuse_the_old_host)

    with pytest.raises(ClusterError, match=f"refused {victim}"):
        rig.roll()

    monkeypatch.setattr(Fleet, "terminate", real_terminate)
    snapshot = rig.fleet().snapshot()
    assert {host.instance_id for host in snapshot.hosts} == before, "the surge host went, the old host stays"
    assert (snapshot.desired, snapshot.suspended) == (3, ())
    rig.sim.settle(6)  # a removed surge host's node goes, as the cloud controller deletes it
    assert [node.name for node in rig.kube.nodes() if node.unschedulable] == [], "the old node is back in service"


def test_a_host_left_in_flight_by_an_interrupted_replace_is_finished_by_the_next_roll(rig: Rig) -> None:
    rig.roll()  # every host current
    target = rig.fleet().snapshot().hosts[0].instance_id
    with pytest.raises(Interrupted):
        rig.roll(replace=target, interrupt_at="cordoned")

    result = rig.roll()  # a patch: nothing is outdated, but the replace left target cordoned and a surge host up

    assert [replaced.old for replaced in result.replaced] == [target]
    assert_clean_and_current(rig)


def test_the_benchmarks_fakes_make_the_same_aws_calls_as_the_real_facades(rig: Rig) -> None:
    """bench/roll.py counts calls on in-memory facades (tests/rollfakes.py): they are honest only if the real
    facades, on moto with the host simulator, make the same operations for the same roll."""
    from tests.rollfakes import FakeParameters, World
    from tests.test_roll_pipeline import roll as fake_roll

    made: Counter[str] = Counter()
    clients = [rig.cloud.groups.client, rig.cloud.instances.client, rig.cloud.parameters.client]
    for client in clients:
        client.meta.events.register("before-call", lambda model, **_: made.update([model.name]))

    result = rig.roll()
    world = World.with_hosts(3)
    fake_roll(world, FakeParameters(world))

    assert len(result.replaced) == 3
    assert "CompleteLifecycleAction" in made and "PutParameter" in made, "every call counted, SSM and hooks too"
    assert set(made) == set(world.calls), "the fakes record exactly the operations the real roll makes"
    assert made["DescribeInstances"] <= 3 + 1, "an instance is described once, not on every observation"
    assert made["DescribeLaunchTemplateVersions"] == 1, "the launch template is read once per run"
