"""The roll engine against in-memory models of AWS and Kubernetes (tests/rollfakes.py), in virtual time, kops-style:
surge and overlap, flapping nodes, a replacement that never joins, a budget that never allows eviction, a node that
dies mid-drain, a termination that fails, protected hosts, a group at its maximum, the scale-down mark on
replacements, a forced roll of every host, and an interrupt (Ctrl-C) or a kill (SIGKILL) at every step boundary
followed by the same command."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from provision.clock import WaitTimeout
from provision.config.schema import Rolling
from provision.deploy.host_records import forget_hosts
from provision.errors import ClusterError
from provision.fleet.model import Snapshot
from provision.kube.drain import DrainBlocked
from provision.roll.engine import LOCK_TTL, SURGE_ANNOTATION, Roll, RollResult
from provision.roll.journal import Journal
from provision.roll.lock import Locked, RunLock
from provision.roll.plan import Budget, Plan, Strategy, every_host, outdated
from provision.roll.state import SEQUENCE, Kind
from tests.deploykit import recording_ui
from tests.rollfakes import CURRENT, EPOCH, OLD, FakeGroups, FakeKube, FakeParameters, Killed, World, fake_fleet

HOSTS = 5
PHASES = [phase.value for phase in SEQUENCE[Kind.SURGE]]
BOUNDARIES = ("locked", *PHASES[:3], "mid-drain", *PHASES[3:], "restoring")


class Interrupted(KeyboardInterrupt):
    pass


def roll(
    world: World,
    parameters: FakeParameters,
    *,
    surge: int = 1,
    unavailable: int = 0,
    overlap: bool = True,
    checkpoint: Callable[[str], None] | None = None,
    said: list[str] | None = None,
    select: Callable[..., Plan] = outdated,
    include_protected: bool = False,
    break_lock: bool = False,
    **rolling: object,
) -> RollResult:
    """One run of the command: a plan from a fresh snapshot (``select``: `patch`'s outdated hosts by default), then
    the engine, with the lock on the virtual clock."""
    settings = Rolling.model_validate(
        {"drain_timeout_seconds": 600, "ready_timeout_seconds": 600, "overlap": overlap}
        | {"max_surge": surge, "max_unavailable": unavailable}
        | rolling
    )
    fleet = fake_fleet(world)
    snapshot = fleet.snapshot()
    plan = select(
        snapshot,
        operation="patch",
        include_protected=include_protected,
        budget=Budget.resolve(settings, snapshot.desired),
        strategy=Strategy.of(settings),
    )
    ui, out = recording_ui()
    try:
        return Roll(
            fleet,
            FakeKube(world),
            Journal(parameters, "/cluster/test"),
            RunLock(parameters, "/cluster/test", now=lambda: EPOCH + timedelta(seconds=world.clock.now())),
            ui,
            world.clock,
            settings,
            checkpoint=checkpoint,
            forget_hosts=lambda hosts: forget_hosts(parameters, "/cluster/test", hosts),
        ).run(plan, owner="test@rig", break_lock=break_lock)
    finally:
        if said is not None:
            said += out.getvalue().splitlines()


def every(snapshot: Snapshot, **options: Any) -> Plan:
    """`cluster roll`'s selection."""
    return every_host(snapshot, reason="roll of every host", **options)


def assert_done_and_clean(world: World, parameters: FakeParameters, *, hosts: int = HOSTS) -> None:
    world.clock.sleep(world.drain)  # the last evicted pods land
    assert [m.fingerprint for m in world.machines.values()] == [CURRENT] * hosts, "every host current, none extra"
    assert (world.desired, world.max_size) == (hosts, hosts * 2), "the group is back to its size"
    assert world.suspended == [], "no process left suspended"
    assert world.cordoned == set(), "no node left cordoned"
    assert parameters.stored == {}, "the lock released and the journal cleared"
    assert world.forced == [], "no pod evicted against its budget"
    assert len(world.pods) == hosts * 2 and not world.evicted, "every pod runs"


def assert_untouched(world: World, parameters: FakeParameters, before: set[str]) -> None:
    assert set(world.machines) == before, "the surge hosts are gone, the old ones stay"
    assert (world.desired, world.max_size) == (HOSTS, HOSTS * 2)
    assert world.suspended == [] and world.cordoned == set() and world.forced == []
    assert parameters.stored == {} or set(parameters.stored) == {"/cluster/test/roll-state"}, "the lock released"


@pytest.mark.parametrize(("surge", "overlap"), [(1, False), (1, True), (2, False), (2, True), (3, True)])
def test_a_roll_never_drops_below_the_desired_capacity_nor_runs_more_hosts_than_planned(
    surge: int, overlap: bool
) -> None:
    world, parameters = World.with_hosts(HOSTS, pods_per_host=2), FakeParameters()
    world.budget = 1

    result = roll(world, parameters, surge=surge, overlap=overlap)

    assert len(result.replaced) == HOSTS
    assert world.lowest_ready == HOSTS, "ready capacity never below the desired capacity"
    assert HOSTS + surge <= world.peak_hosts <= HOSTS + surge * (2 if overlap else 1), "the surge used, never more"
    assert_done_and_clean(world, parameters)


def test_overlap_and_a_larger_surge_make_the_roll_faster() -> None:
    took = {}
    for surge, overlap in [(1, False), (1, True), (3, True)]:
        world, parameters = World.with_hosts(6, boot=120, drain=60), FakeParameters()
        start = world.clock.now()
        roll(world, parameters, surge=surge, overlap=overlap)
        took[surge, overlap] = world.clock.now() - start

    assert took[1, False] >= 6 * (120 + 60), "one host at a time: a boot and a drain each"
    assert took[1, True] < took[1, False] * 0.8, "the next boot overlaps the current drain"
    assert took[3, True] < took[1, True] * 0.4, "three boots at once, and three drains"


@pytest.mark.parametrize(("surge", "overlap"), [(1, True), (2, False), (3, True)])
def test_a_surge_of_n_drains_n_hosts_at_once_each_with_its_replacement_ready(surge: int, overlap: bool) -> None:
    world, parameters = World.with_hosts(6, boot=120, drain=600, pods_per_host=2), FakeParameters()
    said: list[str] = []

    result = roll(world, parameters, surge=surge, overlap=overlap, said=said)

    assert len(result.replaced) == 6
    assert world.peak_draining == surge, "as many hosts drain at once as the surge, never more"
    assert world.lowest_ready == 6, "each draining host's replacement was Ready before it was cordoned"
    drained = [line for line in said if "drained i-" in line]
    assert len(drained) == 6
    assert_done_and_clean(world, parameters, hosts=6)


def test_hosts_drained_together_are_all_cordoned_first_so_no_pod_moves_twice() -> None:
    world, parameters = World.with_hosts(4, drain=60, pods_per_host=2), FakeParameters()
    moves: dict[str, int] = {}
    where = dict(world.pods)
    observe = world.clock.on_sleep
    assert observe is not None

    def count_moves(now: float) -> None:
        observe(now)
        for pod, node in world.pods.items():
            if where[pod] != node:
                moves[pod] = moves.get(pod, 0) + 1
                where[pod] = node

    world.clock.on_sleep = count_moves

    roll(world, parameters, surge=4, overlap=False)

    assert sorted(moves) == sorted(world.pods) and set(moves.values()) == {1}, "every pod moved, each once"


def test_a_node_that_flaps_delays_the_next_host_until_it_is_steady() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    flapper = next(iter(world.machines))
    world.flapping[flapper] = world.clock.now() + 60
    said: list[str] = []

    result = roll(world, parameters, said=said)

    assert len(result.replaced) == HOSTS
    assert any(f"waiting for the node of {flapper} to be Ready" in line for line in said)
    assert_done_and_clean(world, parameters)


def test_a_node_that_keeps_flapping_stops_the_roll_before_anything_changes() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    before = set(world.machines)
    flapper = next(iter(world.machines))
    world.flapping[flapper] = float("inf")

    with pytest.raises(ClusterError, match=f"not starting the next host: the node of {flapper} is not Ready"):
        roll(world, parameters)

    assert world.peak_hosts == HOSTS, "no replacement was launched"
    assert_untouched(world, parameters, before)


@pytest.mark.parametrize("surge", [1, 2])
def test_a_replacement_that_never_joins_is_removed_with_every_host_in_flight(surge: int) -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    before = set(world.machines)
    world.never_join_next = 1

    with pytest.raises(WaitTimeout, match="the replacement host to be InService with a Ready node"):
        roll(world, parameters, surge=surge)

    assert_untouched(world, parameters, before)


def test_a_budget_that_never_allows_eviction_stops_cleanly_naming_it() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    before = set(world.machines)
    world.budget = 0

    with pytest.raises(DrainBlocked, match="PodDisruptionBudget default/web needs 10 healthy pod") as blocked:
        roll(world, parameters, surge=2, drain_timeout_seconds=120)

    assert str(blocked.value).startswith("drain of nodes i-"), "both hosts of the wave drained together, both named"
    assert len(blocked.value.reports) == 2

    assert_untouched(world, parameters, before)


def test_skip_policy_leaves_blocked_hosts_as_they_were_and_goes_on() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    before = set(world.machines)
    world.budget = 0

    result = roll(world, parameters, drain_timeout_seconds=120, on_blocked_budget="skip")

    assert result.replaced == [] and [old for old, _ in result.skipped] == sorted(before)
    assert all("PodDisruptionBudget default/web" in why for _, why in result.skipped)
    assert_untouched(world, parameters, before)


def test_force_policy_deletes_past_the_budget_only_when_configured() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    world.budget = 0

    result = roll(world, parameters, drain_timeout_seconds=120, on_blocked_budget="force")

    assert len(result.replaced) == HOSTS
    assert len(world.forced) == HOSTS * 2, "every pod was deleted past its budget, as configured"


def test_a_node_that_dies_mid_drain_is_still_replaced_without_forcing() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    world.budget = 1
    victim = next(iter(world.machines))
    observe = world.clock.on_sleep
    assert observe is not None

    def dies_once_cordoned(now: float) -> None:
        if victim in world.cordoned:
            world.dead.add(victim)
        observe(now)

    world.clock.on_sleep = dies_once_cordoned

    result = roll(world, parameters)

    assert victim in world.dead and victim in {replaced.old for replaced in result.replaced}
    assert_done_and_clean(world, parameters)


def test_a_termination_that_fails_undoes_every_host_in_flight() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    before = set(world.machines)
    victim = next(iter(world.machines))
    world.refuse_termination.add(victim)

    with pytest.raises(ClusterError, match=f"refused {victim}"):
        roll(world, parameters)

    assert_untouched(world, parameters, before)


def test_a_surge_host_not_yet_listed_is_waited_for_and_removed_rather_than_an_old_host() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    before = set(world.machines)
    world.listing_delay, world.fail_next_resize = 20, True

    with pytest.raises(ClusterError, match="the answer timed out"):
        roll(world, parameters)

    assert_untouched(world, parameters, before)


def test_a_crash_between_recording_a_host_and_raising_the_size_is_continued(monkeypatch: pytest.MonkeyPatch) -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()

    def killed(self: FakeGroups, name: str, *, desired: int, max_size: int | None = None) -> None:
        raise Interrupted("killed before the size changed")

    with monkeypatch.context() as patched:
        patched.setattr(FakeGroups, "set_size", killed)
        with pytest.raises(Interrupted):
            roll(world, parameters)
    assert world.desired == HOSTS and "/cluster/test/roll-state" in parameters.stored, "a host the group never grew for"

    roll(world, parameters)

    assert_done_and_clean(world, parameters)


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (2, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_interrupted_at_any_boundary_the_same_command_finishes_the_job(
    boundary: str, surge: int, unavailable: int
) -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    world.budget = 1
    fired: list[str] = []

    def checkpoint(reached: str) -> None:
        if reached == boundary and not fired:
            fired.append(reached)
            raise Interrupted(reached)

    observe = world.clock.on_sleep
    assert observe is not None

    def mid_drain(now: float) -> None:
        observe(now)
        if boundary == "mid-drain" and world.evicted and not fired:
            fired.append(boundary)
            raise Interrupted(boundary)

    world.clock.on_sleep = mid_drain

    with pytest.raises(Interrupted):
        roll(world, parameters, surge=surge, unavailable=unavailable, checkpoint=checkpoint)
    assert world.suspended == [], "processes are restored even on an interrupt"
    assert "/cluster/test/roll-lock" not in parameters.stored, "the lock is released on an interrupt"

    result = roll(world, parameters, surge=surge, unavailable=unavailable)

    assert fired == [boundary]
    assert world.lowest_ready == HOSTS - unavailable, "ready capacity never below the budget, across both runs"
    assert world.peak_hosts <= HOSTS + 2 * surge, "never above it, hosts in their terminate hook counted"
    assert boundary == "restoring" or result.replaced, "the second run did the rest"
    assert_done_and_clean(world, parameters)


def test_hosts_protected_from_scale_in_are_left_alone_unless_asked() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    guarded = sorted(world.machines)[0]
    world.protected.add(guarded)
    plan = outdated(fake_fleet(world).snapshot(), operation="patch", include_protected=False)
    assert any(f"left alone: {guarded} (protected from scale-in" in line for line in plan.describe(600))

    result = roll(world, parameters)

    assert guarded not in {item.old for item in result.replaced} and len(result.replaced) == HOSTS - 1
    assert world.machines[guarded].fingerprint == OLD, "the protected host still runs, untouched"

    result = roll(world, parameters, include_protected=True)

    assert [item.old for item in result.replaced] == [guarded]
    assert_done_and_clean(world, parameters)


@pytest.mark.parametrize(("surge", "overlap"), [(1, False), (2, True)])
def test_a_group_at_its_maximum_is_raised_for_the_surge_and_put_back(surge: int, overlap: bool) -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    world.max_size = HOSTS  # the fake refuses a desired capacity above the maximum, as AWS does

    roll(world, parameters, surge=surge, overlap=overlap)

    assert world.peak_max_size == world.peak_hosts > HOSTS, "the maximum raised exactly as far as the surge needed"
    assert (world.desired, world.max_size) == (HOSTS, HOSTS), "the maximum is back where it was"
    assert [m.fingerprint for m in world.machines.values()] == [CURRENT] * HOSTS


def test_replacements_are_kept_from_scale_down_during_the_roll_and_released_after_it() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    marked_mid_roll: list[int] = []

    def checkpoint(phase: str) -> None:
        if phase == "cordoned":  # the old host drains now: its replacement must not be scaled down meanwhile
            marked_mid_roll.append(sum(1 for marks in world.annotations.values() if SURGE_ANNOTATION in marks))

    result = roll(world, parameters, checkpoint=checkpoint)

    assert world.annotated == {item.new for item in result.replaced}, "every replacement, and only they, marked"
    assert all(marked_mid_roll), "a replacement is marked while its old host drains"
    assert not any(SURGE_ANNOTATION in marks for marks in world.annotations.values()), "no mark left after the roll"


def test_a_failed_roll_leaves_no_replacement_marked() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    world.refuse_termination.add(sorted(world.machines)[2])  # two hosts replaced, then the third fails

    with pytest.raises(ClusterError, match="refused"):
        roll(world, parameters)

    assert len(world.annotated) >= 2
    assert not any(SURGE_ANNOTATION in marks for marks in world.annotations.values())


def test_a_forced_roll_replaces_current_hosts_too_and_continues_without_replacing_its_own() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    roll(world, parameters)  # every host current now
    current = set(world.machines)
    stops: list[str] = []

    def checkpoint(phase: str) -> None:
        if phase == "terminated" and not stops:  # one host replaced, its successor booting for the next
            stops.append(phase)
            raise Interrupted(phase)

    assert outdated(fake_fleet(world).snapshot(), operation="patch", include_protected=False).replacements == ()
    with pytest.raises(Interrupted):
        roll(world, parameters, select=every, checkpoint=checkpoint)
    launched = world.peak_hosts
    roll(world, parameters, select=every)

    assert not current & set(world.machines), "every host was replaced, current or not"
    assert next(world.ids) == 2 * HOSTS + HOSTS, "exactly one replacement per host: none replaced twice"
    assert launched > HOSTS
    assert_done_and_clean(world, parameters)


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (2, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_killed_at_any_boundary_the_same_command_with_break_lock_finishes_the_job(
    boundary: str, surge: int, unavailable: int
) -> None:
    """SIGKILL, not Ctrl-C: from the kill on, nothing the roll asks for happens, its ``finally`` blocks included, so
    the lock, the suspended processes, the surge and the cordon stay as they were. Once the lock has expired, the
    same command with --break-lock finishes the job and leaves nothing behind."""
    world = World.with_hosts(HOSTS)
    parameters = FakeParameters(world)
    world.budget = 1

    def kill(reached: str) -> None:
        if reached == boundary and not world.killed:
            world.killed = True
            raise Killed(reached)

    observe = world.clock.on_sleep
    assert observe is not None

    def mid_drain(now: float) -> None:
        observe(now)
        if boundary == "mid-drain" and world.evicted:
            kill(boundary)

    world.clock.on_sleep = mid_drain
    with pytest.raises(Killed):
        roll(world, parameters, surge=surge, unavailable=unavailable, checkpoint=kill)
    world.killed, world.clock.on_sleep = False, observe
    assert "/cluster/test/roll-lock" in parameters.stored, "a killed roll leaves its lock"
    if boundary != "locked":
        assert world.suspended, "and the processes it suspended"
    with pytest.raises(Locked, match="another roll holds the cluster"):
        roll(world, parameters, surge=surge, unavailable=unavailable, break_lock=True)  # a live lock is never broken

    world.clock.sleep(LOCK_TTL.total_seconds())  # the operator comes back once it has expired
    result = roll(world, parameters, surge=surge, unavailable=unavailable, break_lock=True)

    assert boundary == "restoring" or result.replaced, "the second run did the rest"
    assert world.lowest_ready == HOSTS - unavailable, "ready capacity never below the budget, across both runs"
    assert world.peak_hosts <= HOSTS + 2 * surge, "never above it, hosts in their terminate hook counted"
    assert_done_and_clean(world, parameters)


@pytest.mark.parametrize("surge", [1, 2])
def test_killed_between_terminating_a_host_and_journaling_it_no_extra_host_is_launched(
    surge: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old host is gone, its decrement made, but the journal still says `migrated`: the next run must not count
    it as in flight and raise the size again, which launches a host too many (and restoring the size would then let
    the group terminate a host of its choosing, undrained)."""
    world = World.with_hosts(HOSTS)
    parameters = FakeParameters(world)
    terminate = FakeGroups.terminate

    def killed_after(self: FakeGroups, instance_id: str, *, decrement: bool) -> None:
        terminate(self, instance_id, decrement=decrement)
        world.killed = True
        raise Killed("killed with the host terminated, before the journal said so")

    with monkeypatch.context() as patched:
        patched.setattr(FakeGroups, "terminate", killed_after)
        with pytest.raises(Killed):
            roll(world, parameters, surge=surge)
    world.killed = False
    world.clock.sleep(LOCK_TTL.total_seconds())

    roll(world, parameters, surge=surge, break_lock=True)

    assert world.peak_hosts <= HOSTS + surge * 2, "never more hosts than the plan's surge"
    assert_done_and_clean(world, parameters)


def test_a_size_changed_by_someone_else_mid_roll_is_left_as_it_is_and_said() -> None:
    world, parameters = World.with_hosts(HOSTS), FakeParameters()
    said: list[str] = []

    def autoscaler_scales_up(phase: str) -> None:
        if phase == "cordoned" and world.desired == HOSTS + 1:  # the first host drains: pending pods, one host more
            world.desired += 1
            world.fill()

    roll(world, parameters, checkpoint=autoscaler_scales_up, said=said)

    assert world.desired == HOSTS + 1, "the autoscaler's host is not taken away (which would terminate one undrained)"
    assert world.max_size == HOSTS * 2, "the maximum is put back"
    assert any(f"desired capacity is {HOSTS + 1}, not the {HOSTS} it had before the roll" in line for line in said)
    assert world.cordoned == set() and world.suspended == [] and parameters.stored == {}


@pytest.mark.parametrize(
    ("surge", "overlap", "pace"),
    [
        (1, True, "one at a time, the next booting while the current host drains;"),
        (1, False, "one at a time;"),
        (2, True, "2 at a time (their replacements booting together, then their nodes drained together), the next"),
        (5, True, "5 at a time (their replacements booting together, then their nodes drained together);"),
    ],
)
def test_the_plan_says_how_many_hosts_go_at_once(surge: int, overlap: bool, pace: str) -> None:
    plan = outdated(
        fake_fleet(World.with_hosts(HOSTS)).snapshot(),
        operation="patch",
        include_protected=False,
        budget=Budget(surge, 0, overlap),
    )

    assert f"patch: {HOSTS} host(s) of hosts, {pace}" in plan.describe(600)[0]
