"""The roll: observe → decide → act, until ``decide`` says done.

Each tick observes the group once (``Observer``), asks the pure ``decide`` for the actions the journal's record and
that observation call for, and carries them out here, the only code that changes hosts during a roll, journaling
each change before the step that depends on it, so the same command continues after a crash or Ctrl-C. The lock is
held and the fighting processes suspended for the whole roll. When a step fails, what the roll started is undone
(surge hosts terminated, old nodes uncordoned) before the error goes up; a halt (a failed bake, an alarm) stops
with the new hosts serving and the journal keeping the place.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from provision.clock import Clock, WaitTimeout, wait_until
from provision.config.schema import Rolling
from provision.errors import ClusterError
from provision.fleet.observe import Fleet
from provision.kube.drain import Drainer
from provision.kube.facade import Kube
from provision.kube.migration import owners_of, ready_counts
from provision.kube.removal import clear_dead_node, drain_policy
from provision.roll import decide as act
from provision.roll.decide import Action, Observation, Policy, decide
from provision.roll.journal import Journal
from provision.roll.lock import Lock, RunLock
from provision.roll.observer import GATE_CONFIRMATIONS, AlarmReader, Observer
from provision.roll.plan import Plan
from provision.roll.progress import progress_line
from provision.roll.state import Canary, Flight, Kind, Phase, RollRecord
from provision.roll.suspension import processes_suspended
from provision.roll.timeline import Drained, Entered, Sample, Step, Timeline
from provision.ui import UI

SURGE_VISIBLE_SECONDS = 60.0  # a launched instance is listed by its group within seconds; past this it never was
LOCK_TTL = timedelta(hours=2)
FORGET_BATCH = 5  # hosts whose records one DeleteParameters call removes (two records each, ten names a call)
LOCK_REFRESH_SECONDS = 900.0  # well inside the TTL; each refresh is two SSM calls
SURGE_ANNOTATION = "cluster-autoscaler.kubernetes.io/scale-down-disabled"

Checkpoint = Callable[[str], None]


class RollHalted(ClusterError):
    """The roll stopped on purpose (a failed bake, an alarm): nothing to undo, the journal keeps its place."""


@dataclass(frozen=True)
class Replaced:
    old: str
    new: str
    old_image: str
    new_image: str
    seconds: float


@dataclass
class RollResult:
    replaced: list[Replaced] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (old, why)
    lowest_ready: int | None = None
    timeline: Timeline | None = None  # None until the roll starts


class Roll:
    def __init__(
        self,
        fleet: Fleet,
        kube: Kube,
        journal: Journal,
        lock: RunLock,
        ui: UI,
        clock: Clock,
        rolling: Rolling,
        *,
        checkpoint: Checkpoint | None = None,
        alarms: AlarmReader | None = None,
        forget_hosts: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.fleet = fleet
        self.kube = kube
        self.journal = journal
        self.lock = lock
        self.ui = ui
        self.clock = clock
        self.rolling = rolling
        self.checkpoint = checkpoint or (lambda _phase: None)
        self.observer = Observer(fleet, kube, clock, alarms=alarms, alarm_names=rolling.halt_on_alarms)
        self.result = RollResult()
        # What the hosts it terminated left behind (their records): removed once they are gone, so nothing piles up.
        self.forget_hosts = forget_hosts or (lambda _hosts: None)
        self._gone: list[str] = []  # replaced hosts whose records are not removed yet (in batches: one call for five)
        self._images: dict[str, str] = {}  # instance -> image, for the closing table once the old host is gone
        self._started = 0.0  # the clock when the loop began, for the timeline
        self._admitted: dict[str, float] = {}  # old host -> when this run took it, for the closing table
        self.drainer = Drainer(kube, clock, drain_policy(rolling))  # one for the run: it learns how long pods take
        self._said = ""

    def run(self, plan: Plan, *, owner: str, break_lock: bool = False, held: Lock | None = None) -> RollResult:
        """Carry out the plan. ``held``: the run lock, when the caller took it earlier (``patch`` holds it across its
        stack update); it is released here either way."""
        if held is None and not plan.replacements and self.journal.load() is None:
            return self.result  # nothing to replace and no interrupted roll to tidy up
        held = held or self.lock.acquire(plan.operation, owner, ttl=LOCK_TTL, break_expired=break_lock)
        try:
            self.checkpoint("locked")
            record = self._record(plan)
            version = self.fleet.launch_current_configuration()
            if version:
                self.ui.say(f"the group now launches launch template version {version}, the current configuration")
            with processes_suspended(self.fleet.groups, self.journal, record) as suspended:
                self.ui.say(f"suspended {', '.join(suspended) or 'nothing'} for the roll")
                try:
                    self._loop(plan, record, held)
                except (KeyboardInterrupt, SystemExit):
                    raise  # the roll is not over: its new hosts stay marked until the rerun finishes
                except RollHalted:
                    self._unmark(record)
                    self._restore_size(record)
                    raise
                except BaseException:
                    self._unmark(record)
                    raise
                self._unmark(record)
                self.checkpoint("restoring")  # every host done; the processes and the size are restored next
            self._restore_size(record)
            self.journal.clear()
            return self.result
        finally:
            self.lock.release(held)

    def preview(self, plan: Plan) -> list[str]:
        """What the roll would do first, now: ``decide`` on this observation (after the gate's two looks), through the
        same code as the roll itself, nothing journaled and nothing changed."""
        record = self.journal.load()
        if record is None or record.group != plan.group:
            first = self.fleet.snapshot()
            record = RollRecord(
                plan.operation, plan.group, plan.desired, plan.max_size, started=first.at or datetime.now(UTC)
            )
            record.canary = Canary.PENDING if plan.strategy.bake_seconds else Canary.PASSED
        policy = Policy(
            plan.excluding(record.not_to_plan()).replacements,
            plan.strategy,
            plan.gated,
            self.rolling.ready_timeout_seconds,
        )
        for _ in range(GATE_CONFIRMATIONS - 1):
            self.observer.observe(record)
        seen = self.observer.observe(record)
        return [action.explain() for action in decide(record, seen, plan.budget, policy)]

    def _record(self, plan: Plan) -> RollRecord:
        """The interrupted roll's record, when there is one for this group: hosts it left in flight are finished
        first, even when this plan would not list them (say, a `replace` of a current host interrupted, then a
        `patch`), so nothing is left half-done."""
        record = self.journal.load()
        if record is not None and record.group == plan.group:
            doing = ", ".join(f"{flight.old} at phase {_phase(flight)}" for flight in record.flights)
            self.ui.say(f"continuing the {record.operation} that stopped" + (f" with {doing}" if doing else ""))
            for flight in record.flights:
                flight.entered = self._admitted[flight.old] = self.clock.now()  # its timeouts run from now
            return record
        first = self.fleet.snapshot()
        started = first.at or datetime.now(UTC)
        record = RollRecord(plan.operation, plan.group, plan.desired, plan.max_size, started=started)
        record.recent = [host.instance_id for host in first.hosts if record.ours(host.instance_id, host.launched)]
        if not plan.strategy.bake_seconds:
            record.canary = Canary.PASSED
        self.journal.save(record)
        return record

    # --- the loop ---

    def _loop(self, plan: Plan, record: RollRecord, held: Lock) -> None:
        policy = Policy(
            plan.excluding(record.not_to_plan()).replacements,
            plan.strategy,
            plan.gated,
            self.rolling.ready_timeout_seconds,
        )
        refreshed = started = self._started = self.clock.now()
        self.result.timeline = Timeline(datetime.now(UTC))
        total = len(record.flights) + len(policy.queue)
        with self.ui.progress() as show:
            while True:
                seen = self.observer.observe(record)
                self._measure(seen)
                skipped = {old for old, _why in self.result.skipped}  # left as they were: not tried again in this run
                if skipped:
                    policy = dataclasses.replace(policy, queue=tuple(s for s in policy.queue if s.old not in skipped))
                actions = decide(record, seen, plan.budget, policy)
                try:
                    progressed = self._act(actions, record, seen)
                except (KeyboardInterrupt, SystemExit):
                    raise  # the journal knows the hosts in flight: the next run continues them
                except RollHalted:
                    raise
                except BaseException:
                    self._undo(list(record.flights), record)
                    raise
                if any(isinstance(action, act.Done) for action in actions):
                    return
                show(progress_line(len(self.result.replaced), total, record.flights, self.clock.now() - started))
                wait = next((action for action in actions if isinstance(action, act.Wait)), None)
                if wait is not None or not progressed:
                    self.clock.sleep(wait.seconds if wait else act.POLL_SECONDS)
                if self.clock.now() - refreshed >= LOCK_REFRESH_SECONDS:
                    held, refreshed = self.lock.refresh(held, ttl=LOCK_TTL), self.clock.now()

    def _act(self, actions: list[Action], record: RollRecord, seen: Observation) -> bool:
        """Carry out one tick's actions in order; the journal is written before a step that changes AWS or the nodes'
        pods, and at the end of the tick, then the phases entered are reported. True when the tick changed the
        record or the world."""
        entered: list[Phase] = []
        dirty = progressed = False
        for action in actions:
            # Only the size waits for the journal: an undo must know the flights before their hosts launch. Every
            # other step is seen again in the next observation, whatever the journal says.
            if isinstance(action, act.Resize) and dirty:
                self.journal.save(record)
                dirty = False
            if isinstance(action, act.Halt):
                self.journal.save(record)
            handler = self._handlers[type(action)]
            self._record_step(action)
            effect = handler(action, record, seen)
            if effect is not None:
                progressed = True
                dirty = dirty or effect.changed_record
                entered += [effect.entered] if effect.entered else []
        if dirty:
            self.journal.save(record)
        self._gone += [action.old for action in actions if isinstance(action, act.Finish)]
        if len(self._gone) >= FORGET_BATCH or (self._gone and any(isinstance(a, act.Done) for a in actions)):
            self.forget_hosts(self._gone)
            self._gone = []
        for phase in entered:
            self.checkpoint(phase.value)
        return progressed

    @property
    def _handlers(self) -> dict[type, Callable[[Any, RollRecord, Observation], _Effect | None]]:
        return {
            act.Admit: self._admit,
            act.Claim: self._claim,
            act.Advance: self._advance_all,
            act.Resize: self._resize,
            act.Mark: self._mark,
            act.Cordon: self._cordon,
            act.Drain: self._drain_action,
            act.Terminate: self._terminate,
            act.CompleteHook: self._complete_hook,
            act.Finish: self._finish_action,
            act.Bake: self._bake,
            act.Say: self._say,
            act.Fail: self._fail,
            act.Halt: self._halt,
            act.Wait: _nothing,
            act.Done: _nothing,
        }

    # --- one handler per action: None when it changed nothing ---

    def _admit(self, action: act.Admit, record: RollRecord, seen: Observation) -> _Effect:
        record.flights += [copy.copy(flight) for flight in action.flights]
        record.waves += 1
        for flight in action.flights:
            self._admitted[flight.old] = seen.now
            self.ui.say(f"replacing {flight.old} ({flight.zone or '?'}, {flight.reason or 'in flight'})")
        surging = any(flight.phase is Phase.LAUNCHED for flight in action.flights)
        return _Effect(Phase.LAUNCHED if surging else None)

    def _claim(self, action: act.Claim, record: RollRecord, seen: Observation) -> _Effect:
        _flight(record, action.old).new = action.new
        return _Effect(changed_record=False)  # journaled with the next change: a rerun finds its replacement again

    def _advance_all(self, action: act.Advance, record: RollRecord, seen: Observation) -> _Effect:
        for old in action.olds:
            self._advance(_flight(record, old), action.phase, seen)
        return _Effect(action.phase)

    def _resize(self, action: act.Resize, record: RollRecord, seen: Observation) -> _Effect:
        self.fleet.set_size(desired=action.desired, max_size=action.max_size)
        self.ui.say(f"desired capacity {seen.fleet.desired} → {action.desired}: replacement(s) launch")
        return _Effect(changed_record=False)

    def _mark(self, action: act.Mark, record: RollRecord, seen: Observation) -> _Effect:
        self.kube.annotate(action.node, {SURGE_ANNOTATION: "true"})  # no scale-down mid-roll
        return _Effect(changed_record=False)

    def _cordon(self, action: act.Cordon, record: RollRecord, seen: Observation) -> _Effect:
        for old in action.olds:
            flight, host = _flight(record, old), seen.fleet.host(old)
            if host is not None and host.node is not None:
                self.kube.cordon(host.node.name)
                flight.node = host.node.name
        return _Effect()

    def _drain_action(self, action: act.Drain, record: RollRecord, seen: Observation) -> _Effect:
        self._drain([_flight(record, old) for old in action.olds], record, seen)
        return _Effect(Phase.DRAINED)

    def _terminate(self, action: act.Terminate, record: RollRecord, seen: Observation) -> _Effect:
        for old in action.olds:
            flight = _flight(record, old)
            self.fleet.terminate(old)
            if flight.dead and flight.node:
                deleted = clear_dead_node(self.kube, flight.node)
                self.ui.say(f"deleted {deleted} pod(s) of the dead node {flight.node} and the node itself")
            self._advance(flight, Phase.TERMINATED, seen)
        return _Effect(Phase.TERMINATED)

    def _complete_hook(self, action: act.CompleteHook, record: RollRecord, seen: Observation) -> None:
        self.fleet.complete_termination(action.instance_id)
        # not progress by itself: a hook not reached yet is completed at a later tick

    def _finish_action(self, action: act.Finish, record: RollRecord, seen: Observation) -> _Effect:
        self._finish(_flight(record, action.old), record)
        return _Effect()

    def _bake(self, action: act.Bake, record: RollRecord, seen: Observation) -> _Effect:
        record.canary = action.canary
        record.bake_started = self.clock.now() if action.canary is Canary.BAKING else None
        return _Effect()

    def _say(self, action: act.Say, record: RollRecord, seen: Observation) -> None:
        if action.text != self._said:  # the same wait said once, not every tick
            self.ui.say(action.text)
        self._said = action.text

    def _fail(self, action: act.Fail, record: RollRecord, seen: Observation) -> None:
        raise action.error

    def _halt(self, action: act.Halt, record: RollRecord, seen: Observation) -> None:
        raise RollHalted(
            f"roll halted: {action.why}. The new hosts keep serving and the rest are untouched; run the same "
            "command again once the cause is fixed"
        )

    def _advance(self, flight: Flight, phase: Phase, seen: Observation) -> None:
        if phase is Phase.READY:
            self.observer.booted(_boot_seconds(seen, flight))
        flight.phase = phase
        flight.entered = seen.now
        if self.result.timeline is not None:
            self.result.timeline.entered.append(Entered(self._since_start(), flight.old, phase.value))

    def _since_start(self) -> float:
        return self.clock.now() - self._started

    def _record_step(self, action: Action) -> None:
        """Every action but the waits, in the timeline, with the hosts it names."""
        if self.result.timeline is None or isinstance(action, act.Wait | act.Done):
            return
        at, hosts = self._since_start(), act.hosts_of(action)
        if isinstance(action, act.Admit):
            self.result.timeline.entered += [Entered(at, old, "admitted") for old in hosts]
        self.result.timeline.steps.append(Step(at, type(action).__name__.lower(), hosts, action.explain()))

    def _drain(self, flights: list[Flight], record: RollRecord, seen: Observation) -> None:
        """Drain these hosts' nodes together (cordoned already). Each flight records its moved pods' owners and the
        Ready count each had before, to get back to. Hosts the skip policy gives up on are undone."""
        by_node: dict[str, Flight] = {}
        for flight in flights:
            if flight.dead:
                continue  # a dead node's pods cannot be evicted: they are deleted with it after its termination
            if not flight.node:
                self.ui.say(f"{flight.old} has no node: nothing to drain")
            else:
                by_node[flight.node] = flight
        skipped: dict[str, str] = {}
        if by_node:
            pods = {name: self.kube.pods(node=name) for name in by_node}
            before = ready_counts(self.kube, owners_of([pod for listed in pods.values() for pod in listed]))
            for report in self.drainer.drain_all(list(by_node), pods=pods):
                flight = by_node[report.node]
                if report.skipped:
                    skipped[flight.old] = "; ".join(blocker.explain() for blocker in report.blocked)
                    continue
                self.ui.say(f"drained {report.node}: {len(report.evicted)} pod(s) evicted, {len(report.forced)} forced")
                if self.result.timeline is not None:
                    self.result.timeline.drains.append(
                        Drained(
                            self._since_start(),
                            flight.old,
                            report.node,
                            len(report.evicted),
                            report.refused_evictions,
                            len(report.forced),
                        )
                    )
                moved = owners_of([pod for pod in pods[report.node] if pod.ref in {*report.evicted, *report.forced}])
                flight.owners = {owner: before[owner] for owner in moved}
        for flight in flights:
            if flight.old in skipped:
                self._undo([flight], record)
                self.result.skipped.append((flight.old, skipped[flight.old]))
                self.ui.warn(f"skipped {flight.old}: {skipped[flight.old]}")
            else:
                self._advance(flight, Phase.DRAINED, seen)

    def _finish(self, flight: Flight, record: RollRecord) -> None:
        record.flights.remove(flight)
        record.replacements.append(flight.new)  # taken: no later host in flight may claim it
        self.result.replaced.append(
            Replaced(
                flight.old,
                flight.new,
                self._images.get(flight.old, ""),
                self._images.get(flight.new, ""),
                self.clock.now() - self._admitted.pop(flight.old, self.clock.now()),
            )
        )
        self.ui.say(f"replaced {flight.old} by {flight.new or '?'}")

    # --- undo and restore ---

    def _undo(self, flights: list[Flight], record: RollRecord) -> None:
        """Undo what these hosts' steps started: their old nodes back in service, their surge hosts gone, the size
        back to what the remaining flights need."""
        for flight in reversed(flights):
            if not flight.done(Phase.TERMINATED):  # else its old host is gone and its replacement is wanted
                old = self.fleet.snapshot().host(flight.old)
                if old is not None and old.node is not None and old.node.unschedulable:
                    self.kube.uncordon(old.node.name)
                    self.ui.say(f"undo: {flight.old} back in service (node {old.node.name} uncordoned)")
                if flight.kind is Kind.SURGE:
                    surge_host = self._await_surge_host(flight, record)
                    if surge_host is not None:
                        self.ui.say(f"undo: removing {flight.old}'s replacement {surge_host} (drained first)")
                        self._remove_surge_host(surge_host)
            record.flights.remove(flight)
        fleet = self.fleet.snapshot()
        target = record.original_desired + sum(_size_share(flight) for flight in record.flights)
        if fleet.desired != target:
            self.fleet.set_size(desired=target, max_size=max(record.original_max, target))
        self.journal.save(record)

    def _await_surge_host(self, flight: Flight, record: RollRecord) -> str | None:
        """The flight's surge host, waiting a little for one AWS has not listed yet: lowering the size instead would
        let the group's termination policy pick an old, undrained host."""

        def claimed() -> str | None:
            fleet = self.fleet.snapshot()
            if flight.new and fleet.host(flight.new) is not None:
                return flight.new
            taken = record.launched() | record.olds()
            for host in fleet.hosts:
                if host.instance_id not in taken and record.ours(host.instance_id, host.launched):
                    flight.new = host.instance_id
                    return host.instance_id
            return None

        try:
            return wait_until(
                claimed,
                clock=self.clock,
                timeout=SURGE_VISIBLE_SECONDS,
                interval=act.POLL_SECONDS,
                what="the surge host to be listed",
                next_step="",
            )
        except WaitTimeout:
            return None

    def _remove_surge_host(self, instance_id: str) -> None:
        """Drain a surge host (pods may have moved onto it) and terminate it with a decrement, completing its hook.
        If its pods cannot move, it stays, uncordoned, and the user is told: capacity is kept, no budget broken."""
        host = self.fleet.snapshot().host(instance_id)
        node = host.node if host is not None else None
        try:
            if node is not None:
                self.drainer.drain(node.name)
            self.fleet.terminate(instance_id)
            self._await_gone(instance_id)
        except ClusterError as error:
            if node is not None:
                self.kube.uncordon(node.name)
            self.ui.warn(f"left the surge host {instance_id} running, the group one host larger: {error}")

    def _await_gone(self, instance_id: str) -> None:
        def gone() -> bool | None:
            host = self.fleet.snapshot().host(instance_id)
            if host is not None and host.lifecycle_state == "Terminating:Wait":
                self.fleet.complete_termination(instance_id)
                return True
            return True if host is None or not host.serving else None

        wait_until(
            gone,
            clock=self.clock,
            timeout=self.rolling.drain_timeout_seconds,
            interval=act.POLL_SECONDS,
            what=f"{instance_id} to leave the group",
            next_step="it may be in Terminating:Wait; `cluster status` shows its lifecycle state",
        )

    def _unmark(self, record: RollRecord) -> None:
        """The roll is over: its new hosts are ordinary members again, which cluster-autoscaler may scale down. A
        failure here only warns: it must not hide the error that ended the roll, nor leave the roll unfinished."""
        try:
            fleet = self.fleet.snapshot()
            for instance_id in record.replacements:
                host = fleet.host(instance_id)
                if host is not None and host.node is not None and SURGE_ANNOTATION in host.node.annotations:
                    self.kube.annotate(host.node.name, {SURGE_ANNOTATION: None})
        except Exception as error:
            self.ui.warn(f"could not remove {SURGE_ANNOTATION} from the new hosts' nodes: {error}")

    def _restore_size(self, record: RollRecord) -> None:
        """Every host's decrement has brought the desired capacity back; only the maximum is put back. A desired
        capacity that differs was changed by something else (an autoscaler, a person, a surge host that could not
        be drained): it is left as it is, since lowering it would let the group terminate a host of its own choosing,
        undrained."""
        fleet = self.fleet.snapshot()
        if fleet.desired != record.original_desired:
            self.ui.warn(
                f"the group's desired capacity is {fleet.desired}, not the {record.original_desired} it had before "
                "the roll; left as it is (`cluster status` shows its hosts)"
            )
        max_size = max(record.original_max, fleet.desired)
        if fleet.max_size != max_size:
            self.fleet.set_size(desired=fleet.desired, max_size=max_size)

    # --- observations ---

    def _measure(self, seen: Observation) -> None:
        """The lowest ready capacity seen (InService hosts whose node is Ready and schedulable), and each host's
        image for the closing table."""
        lowest = self.result.lowest_ready
        ready = seen.fleet.ready_capacity
        self.result.lowest_ready = ready if lowest is None else min(lowest, ready)
        if self.result.timeline is not None:
            in_service = sum(1 for host in seen.fleet.hosts if host.lifecycle_state == "InService")
            self.result.timeline.samples.append(Sample(self._since_start(), seen.fleet.desired, in_service, ready))
        for host in seen.fleet.hosts:
            self._images.setdefault(host.instance_id, host.image)


@dataclass(frozen=True)
class _Effect:
    """What a handled action did: the phase its flights entered, if any, and whether the record changed."""

    entered: Phase | None = None
    changed_record: bool = True


def _nothing(action: Action, record: RollRecord, seen: Observation) -> None:
    return None


def _size_share(flight: Flight) -> int:
    """What a flight left in flight adds to the desired capacity (as ``decide``'s size rule counts it): a surge host
    while its old host serves, one host less once an old host went before its replacement was asked for."""
    if flight.kind is Kind.SURGE:
        return 0 if flight.done(Phase.TERMINATED) else 1
    return -1 if flight.done(Phase.TERMINATED) and not flight.done(Phase.LAUNCHED) else 0


def _boot_seconds(seen: Observation, flight: Flight) -> float:
    """From its launch to its node Ready, by AWS's and the API server's clocks where both tell, else by this run's."""
    new = seen.fleet.host(flight.new)
    if new is not None and new.launched is not None and new.node is not None and new.node.ready_since is not None:
        return max((new.node.ready_since - new.launched).total_seconds(), 0.0)
    return seen.now - flight.entered


def _flight(record: RollRecord, old: str) -> Flight:
    return next(flight for flight in record.flights if flight.old == old)


def _phase(flight: Flight) -> str:
    return flight.phase.value if flight.phase else "start"
