"""The roll's heart: from the journal's record and one observation, the actions to take now. Pure: no I/O, no clock;
the engine observes, calls ``decide``, carries out what it returns, and observes again. Level-triggered: whatever the
last run did or did not finish, the same record and the same world give the same actions, so a rerun after a crash
needs no special path. Dry-run prints what ``decide`` returns for the current observation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from provision.clock import WaitTimeout
from provision.errors import ClusterError
from provision.fleet.model import Host, Snapshot
from provision.roll.plan import Budget, Replacement, Strategy
from provision.roll.state import SEQUENCE, TOGETHER, Canary, Flight, Kind, Phase, RollRecord

POLL_SECONDS = 3.0  # the shortest wait between observations
LONGEST_POLL = 20.0  # the longest, while nothing says when the next change is due


@dataclass(frozen=True)
class Observation:
    """One tick's view: the group with its hosts joined to their nodes, and what the roll asked the observer to
    look at (pods of drained nodes, the canary's pods, alarms)."""

    now: float
    fleet: Snapshot
    migrated: frozenset[str] = frozenset()  # old hosts whose moved pods run Ready elsewhere
    waiting_for: dict[str, str] = field(default_factory=dict)  # old host -> what its migration still waits for
    crashing: dict[str, str] = field(default_factory=dict)  # old host -> its moved pods that crash where they went
    bake_problems: tuple[str, ...] = ()  # "host pod: reason" on the canary's hosts: stop now
    bake_unready: tuple[str, ...] = ()  # the canary's pods not Ready: a problem if still so when the bake ends
    firing: tuple[str, ...] = ()  # alarms in ALARM, each "name: reason"
    sick: tuple[str, ...] = ()  # the group's InService hosts outside the roll whose node is not Ready
    steady: bool = True  # no such host in the last observations (a flapping node is not steady)
    unsteady_for: float = 0.0  # how long, with nothing in flight, the group has not been steady
    boot_estimate: float | None = None  # seconds from launch to Ready seen so far in this run


@dataclass(frozen=True)
class Policy:
    """What the roll replaces (the plan's hosts, in order) and how."""

    queue: tuple[Replacement, ...]
    strategy: Strategy = field(default_factory=Strategy)
    gated: bool = True
    ready_timeout: float = 900


# --- actions: what the executor carries out, in order ---


@dataclass(frozen=True)
class Admit:
    flights: tuple[Flight, ...]  # a new wave, journaled before the size changes

    def explain(self) -> str:
        return "; ".join(
            f"take {f.old} ({f.zone}): "
            + ("its replacement launches first" if f.kind is Kind.SURGE else "cordoned and drained first")
            for f in self.flights
        )


@dataclass(frozen=True)
class Claim:
    old: str
    new: str  # "" to give up a replacement that is gone

    def explain(self) -> str:
        return f"take {self.new} as the replacement of {self.old}"


@dataclass(frozen=True)
class Advance:
    olds: tuple[str, ...]
    phase: Phase

    def explain(self) -> str:
        return f"record {', '.join(self.olds)} as {self.phase.value}"


@dataclass(frozen=True)
class Resize:
    desired: int
    max_size: int

    def explain(self) -> str:
        return f"set the group's desired capacity to {self.desired} (maximum {self.max_size})"


@dataclass(frozen=True)
class Mark:
    node: str  # a replacement's node, kept from the autoscaler's scale-down while the roll runs

    def explain(self) -> str:
        return f"keep the node {self.node} from cluster-autoscaler's scale-down until the roll ends"


@dataclass(frozen=True)
class Cordon:
    olds: tuple[str, ...]

    def explain(self) -> str:
        return f"cordon {', '.join(self.olds)}"


@dataclass(frozen=True)
class Drain:
    olds: tuple[str, ...]

    def explain(self) -> str:
        return f"drain {', '.join(self.olds)} under the budgets"


@dataclass(frozen=True)
class Terminate:
    olds: tuple[str, ...]

    def explain(self) -> str:
        return f"terminate {', '.join(self.olds)} with a decrement"


@dataclass(frozen=True)
class CompleteHook:
    instance_id: str

    def explain(self) -> str:
        return f"complete the terminate hook of {self.instance_id}"


@dataclass(frozen=True)
class Finish:
    old: str

    def explain(self) -> str:
        return f"{self.old} replaced"


@dataclass(frozen=True)
class Bake:
    canary: Canary

    def explain(self) -> str:
        return f"the canary: {self.canary.value}"


@dataclass(frozen=True)
class Say:
    text: str

    def explain(self) -> str:
        return self.text


@dataclass(frozen=True)
class Fail:
    error: ClusterError  # undo what is in flight, then raise

    def explain(self) -> str:
        return f"stop: {self.error}"


@dataclass(frozen=True)
class Halt:
    why: str  # stop with the new hosts serving and the rest untouched; the journal keeps the place

    def explain(self) -> str:
        return f"halt: {self.why}"


@dataclass(frozen=True)
class Wait:
    seconds: float
    why: str

    def explain(self) -> str:
        return f"wait {self.seconds:.0f}s for {self.why}"


@dataclass(frozen=True)
class Done:
    def explain(self) -> str:
        return "nothing left to do"


Action = (
    Admit | Claim | Advance | Resize | Mark | Cordon | Drain | Terminate | CompleteHook | Finish | Bake | Say | Fail
    | Halt | Wait | Done
)  # fmt: skip


def hosts_of(action: Action) -> tuple[str, ...]:
    """The hosts an action is about (none for the group-wide ones), for the roll's timeline."""
    match action:
        case Admit(flights=flights):
            return tuple(flight.old for flight in flights)
        case Advance(olds=olds) | Cordon(olds=olds) | Drain(olds=olds) | Terminate(olds=olds):
            return olds
        case Claim(old=old) | Finish(old=old):
            return (old,)
        case CompleteHook(instance_id=instance_id):
            return (instance_id,)
    return ()


def decide(record: RollRecord, seen: Observation, budget: Budget, policy: Policy) -> list[Action]:
    """Every flight taken as far as this observation lets it go, then a new wave if the budget, the canary, the
    alarms and the group's health allow one, then the group's size, then how long to wait."""
    step = _Step(record, seen)
    for flight in record.flights:
        step.advance(flight, policy)
        if step.stopped:
            return step.actions
    step.admit(budget, policy)
    if step.stopped:
        return step.actions + step.slow
    step.size()
    if any(not isinstance(action, Say) for action in step.actions + step.slow):
        return step.actions + step.slow
    if not step.flights and not step.queue(policy):
        return [*step.actions, Done()]
    return [*step.actions, step.wait(policy)]


class _Step:
    """One call of ``decide``: the actions so far and the phases they reach (the record itself is not touched)."""

    def __init__(self, record: RollRecord, seen: Observation) -> None:
        self.record, self.seen = record, seen
        self.actions: list[Action] = []
        self.slow: list[Action] = []  # drains: last, so the next wave's replacements boot while they run
        self.phase = {flight.old: flight.phase for flight in record.flights}
        self.flights = list(record.flights)  # those not finished by this step
        self.claimed = {flight.old: flight.new for flight in record.flights}
        self.stopped = False

    # --- flights ---

    def advance(self, flight: Flight, policy: Policy) -> None:
        while not self.stopped:
            order = SEQUENCE[flight.kind]
            done = self.phase[flight.old]
            at = -1 if done is None else order.index(done)
            if at + 1 == len(order):
                self._finish(flight)
                return
            if not self._enter(flight, order[at + 1], policy):
                return

    def _enter(self, flight: Flight, phase: Phase, policy: Policy) -> bool:
        """Actions that take ``flight`` into ``phase``; True when it is in it now (so the next may follow)."""
        if phase in TOGETHER:
            return self._together(flight, phase)
        entry = {
            Phase.LAUNCHED: self._launched,
            Phase.READY: self._ready,
            Phase.MIGRATED: self._migrated,
            Phase.TERMINATED: self._terminated,
        }[phase]
        return entry(flight, policy)

    def _together(self, flight: Flight, phase: Phase) -> bool:
        """Cordon or drain: once every flight of the wave (of its kind) is ready for it, all of them at once."""
        wave = [f for f in self.flights if f.wave == flight.wave and f.kind == flight.kind]
        if any(self._next(f) != phase for f in wave):
            return False
        olds = tuple(f.old for f in wave)
        if phase is Phase.CORDONED:
            self.actions += [Cordon(olds), Advance(olds, phase)]
            self.phase.update(dict.fromkeys(olds, phase))
            return True
        self.slow.append(Drain(olds))  # the executor records what moved, then the phase
        return False

    def _launched(self, flight: Flight, policy: Policy) -> bool:
        """A replacement asked for once its old host went, past its terminate hook (the size rule raises the size)."""
        old = self.seen.fleet.host(flight.old)
        if old is not None and old.lifecycle_state == "Terminating:Wait":
            self.actions.append(CompleteHook(old.instance_id))
        elif old is not None and old.serving:
            return False
        return self._advance(flight, Phase.LAUNCHED)

    def _migrated(self, flight: Flight, policy: Policy) -> bool:
        if flight.old in self.seen.migrated:
            return self._advance(flight, Phase.MIGRATED)
        if flight.old in self.seen.crashing:  # the new configuration's fault, most likely: stop before it spreads
            self._halt(f"the pods moved off {flight.old} crash where they went: {self.seen.crashing[flight.old]}")
            return False
        if self.seen.now - flight.entered > policy.ready_timeout:
            still = self.seen.waiting_for.get(flight.old, "")
            self._fail(
                WaitTimeout(
                    f"timed out after {policy.ready_timeout:.0f}s waiting for the pods of "
                    f"{flight.node or flight.old} to run elsewhere ({still}); `kubectl get pods -A --field-selector "
                    "status.phase=Pending` shows what cannot be placed"
                )
            )
        return False

    def _terminated(self, flight: Flight, policy: Policy) -> bool:
        """Terminate with a decrement; a run killed right after terminating left the journal a phase behind, and
        the group knows better."""
        old = self.seen.fleet.host(flight.old)
        if old is None or not old.serving:
            return self._advance(flight, Phase.TERMINATED)
        self.actions.append(Terminate((flight.old,)))
        return False

    def _ready(self, flight: Flight, policy: Policy) -> bool:
        """Its replacement: a host launched after the roll began that no other flight has taken (replacements are
        interchangeable), claimed as soon as it is seen, so an undo can remove it; ready once InService with a Ready
        node, and launched with the current configuration."""
        fleet = self.seen.fleet
        new = fleet.host(self.claimed[flight.old]) if self.claimed[flight.old] else None
        if new is None:
            if self.claimed[flight.old]:
                self._claim(flight.old, "")  # its launch was abandoned and it is gone: the group launches another
            new = self._unclaimed(fleet.hosts)
            if new is not None:
                self._claim(flight.old, new.instance_id)
        if new is not None and new.fingerprint != fleet.fingerprint:
            self._fail(
                ClusterError(
                    f"the replacement {new.instance_id} launched with configuration {new.fingerprint}, not the "
                    f"current {fleet.fingerprint}: the group does not launch the current launch template"
                )
            )
            return False
        if new is not None and new.lifecycle_state == "InService" and new.node is not None and new.node.ready:
            self.actions.append(Mark(new.node.name))
            return self._advance(flight, Phase.READY)
        if self.seen.now - flight.entered > policy.ready_timeout:
            self._fail(
                WaitTimeout(
                    f"timed out after {policy.ready_timeout:.0f}s waiting for the replacement host to be InService "
                    "with a Ready node; `cluster status` shows the new host; its boot record (cluster doctor) says "
                    "why it did not join"
                )
            )
        return False

    def _unclaimed(self, hosts: Iterable[Host]) -> Host | None:
        taken = set(self.record.replacements) | set(self.claimed.values()) | set(self.claimed)
        for host in hosts:
            if host.instance_id not in taken and host.serving and self.record.ours(host.instance_id, host.launched):
                return host
        return None

    def _finish(self, flight: Flight) -> None:
        """Every phase done: the flight ends once its old host is past its terminate hook."""
        old = self.seen.fleet.host(flight.old)
        if old is not None and old.lifecycle_state == "Terminating:Wait":
            self.actions.append(CompleteHook(flight.old))
        elif old is not None and old.serving:
            return
        self.actions.append(Finish(flight.old))
        self.flights.remove(flight)

    # --- a new wave ---

    def queue(self, policy: Policy) -> list[Replacement]:
        """The plan's hosts not taken yet and still InService in the group."""
        skip = self.record.not_to_plan()
        fleet = self.seen.fleet
        return [
            step
            for step in policy.queue
            if step.old not in skip
            and (host := fleet.host(step.old)) is not None
            and host.lifecycle_state == "InService"
        ]

    def admit(self, budget: Budget, policy: Policy) -> None:
        queue = self.queue(policy)
        if not queue or not self._may_start(policy):
            return
        # A surge flight counts until its old host is past its terminate hook: the group never holds more hosts than
        # the budget allows, hosts held in their hook included.
        surging = [f for f in self.flights if f.kind is Kind.SURGE]
        booting = [f for f in surging if self._next(f) is Phase.READY]
        # Waves: the next boots only once every replacement of this one is Ready (with overlap, while it drains).
        surge = 0 if booting else min(budget.surge, budget.peak_surge - len(surging))
        unavailable = budget.unavailable - sum(1 for f in self.flights if f.kind is Kind.UNAVAILABLE)
        strategy = policy.strategy
        if strategy.bake_seconds and self.record.canary is Canary.PENDING:
            left = strategy.canary - len(self.record.replacements) - len(self.record.flights)
            unavailable = min(unavailable, left)
            surge = min(surge, left - max(unavailable, 0))
        if strategy.order == "zone":
            zone = next((f.zone for f in self.flights), queue[0].zone)
            queue = [step for step in queue if step.zone == zone]
        kinds = [Kind.UNAVAILABLE] * max(unavailable, 0) + [Kind.SURGE] * max(surge, 0)
        wave = self.record.waves + 1
        flights = tuple(
            Flight(
                step.old,
                kind,
                wave,
                zone=step.zone,
                reason=step.reason,
                dead=step.dead,
                phase=Phase.LAUNCHED if kind is Kind.SURGE else None,
                entered=self.seen.now,
            )
            for step, kind in zip(queue, kinds, strict=False)
        )
        if flights:
            self.actions.append(Admit(flights))
            self.flights += flights
            self.phase.update({flight.old: flight.phase for flight in flights})
            self.claimed.update(dict.fromkeys((flight.old for flight in flights), ""))

    def _may_start(self, policy: Policy) -> bool:
        """The checks before a wave: the canary's bake, the alarms, the group's own nodes Ready."""
        seen, idle = self.seen, not self.flights
        if policy.strategy.bake_seconds and self.record.canary is not Canary.PASSED and not self._baked(policy):
            return False
        if seen.firing:
            if idle:
                self._halt("alarm in ALARM: " + "; ".join(seen.firing))
            return False
        if policy.gated and (seen.sick or not seen.steady):
            if idle and seen.unsteady_for >= policy.ready_timeout:
                self._fail(
                    ClusterError(
                        f"not starting the next host: the node of {', '.join(seen.sick) or '?'} is not Ready (waited "
                        f"{policy.ready_timeout:.0f}s); `cluster replace` it first, or find why with `cluster doctor`"
                    )
                )
            elif seen.sick:
                self.actions.append(
                    Say(f"waiting for the node of {', '.join(seen.sick)} to be Ready before the next host")
                )
            return False
        return True

    def _baked(self, policy: Policy) -> bool:
        """The canary: its hosts go first (True while they do), then are watched for ``bake_seconds``; a problem
        on them halts the roll, a clean bake lets the rest go."""
        seen, strategy, started = self.seen, policy.strategy, self.record.bake_started
        if self.record.canary is Canary.PENDING:
            if self.flights or len(self.record.replacements) < strategy.canary:
                return True  # the canary itself goes (``admit`` counts how many)
            self.actions += [Bake(Canary.BAKING), Say(f"baking the canary for {strategy.bake_seconds:.0f}s")]
        elif started is None:
            self.actions.append(Bake(Canary.BAKING))  # a rerun watches it again from the start
        elif seen.bake_problems:
            self._halt("the canary failed its bake: " + "; ".join(seen.bake_problems))
        elif seen.now - started >= strategy.bake_seconds:
            if seen.bake_unready:
                self._halt("the canary failed its bake: not Ready at its end: " + "; ".join(seen.bake_unready))
            else:
                self.actions += [Bake(Canary.PASSED), Say("the canary baked clean: the other hosts go now")]
                return True
        return False

    # --- the group's size ---

    def size(self) -> None:
        """Desired: the original, one more for each surge flight whose old host still serves, one less for each
        flight whose old host went before its replacement was asked for. Raised here, never lowered: only a
        decrement with a terminated host or an undo lowers it, so the group never picks a host to take away."""
        target = self.record.original_desired
        terminating = {old for action in self.actions if isinstance(action, Terminate) for old in action.olds}
        for flight in self.flights:
            old = self.seen.fleet.host(flight.old)
            gone = old is None or not old.serving or flight.old in terminating  # (its decrement is on its way)
            if flight.kind is Kind.SURGE and not gone and not self._done(flight, Phase.TERMINATED):
                target += 1
            if flight.kind is Kind.UNAVAILABLE and gone and not self._done(flight, Phase.LAUNCHED):
                target -= 1
        if self.seen.fleet.desired < target:
            self.actions.append(Resize(target, max(self.record.original_max, target)))

    # --- waiting ---

    def wait(self, policy: Policy) -> Wait:
        """Until the earliest change this roll expects: a replacement's boot by the boot time seen so far (then
        short polls), the bake's end; else a poll that backs off with the time already waited."""
        seen, now = self.seen, self.seen.now
        due: list[float] = []
        for flight in self.flights:
            if self._next(flight) is Phase.READY:
                waited, estimate = now - flight.entered, seen.boot_estimate
                if estimate is None:
                    due.append(min(waited / 4, LONGEST_POLL))
                else:
                    due.append(estimate - waited)  # then short polls: the estimate is measured, not guessed
        started = self.record.bake_started
        if self.record.canary is Canary.BAKING and started is not None and not self.flights:
            due.append(max(started + policy.strategy.bake_seconds - now, POLL_SECONDS))
        return Wait(max(POLL_SECONDS, min(due, default=POLL_SECONDS)), "the next change")

    # --- helpers ---

    def _next(self, flight: Flight) -> Phase | None:
        order = SEQUENCE[flight.kind]
        done = self.phase[flight.old]
        at = -1 if done is None else order.index(done)
        return order[at + 1] if at + 1 < len(order) else None

    def _done(self, flight: Flight, phase: Phase) -> bool:
        order = SEQUENCE[flight.kind]
        done = self.phase[flight.old]
        return done is not None and order.index(done) >= order.index(phase)

    def _advance(self, flight: Flight, phase: Phase) -> bool:
        self.actions.append(Advance((flight.old,), phase))
        self.phase[flight.old] = phase
        return True

    def _claim(self, old: str, new: str) -> None:
        self.actions.append(Claim(old, new))
        self.claimed[old] = new

    def _fail(self, error: ClusterError) -> None:
        self.actions.append(Fail(error))
        self.stopped = True

    def _halt(self, why: str) -> None:
        self.actions.append(Halt(why))
        self.stopped = True
