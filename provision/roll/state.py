"""The roll's state, typed: each host being replaced is a ``Flight`` that goes through the phases of its kind, in
the order the kind's row of ``SEQUENCE`` gives. The journal (``provision.roll.journal``) is the only code that turns
this into JSON and back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from provision.kube.model import Owner

TIME_GRAIN = timedelta(seconds=1)  # EC2's launch times and HTTP dates carry whole seconds


class Kind(Enum):
    SURGE = "surge"  # the replacement launches first (desired +1); the old host goes once it is Ready
    UNAVAILABLE = "unavailable"  # the old host goes first (cordon, drain, terminate), then its replacement launches


class Phase(Enum):
    """What is done for a flight; each phase is entered once its condition holds in an observation."""

    LAUNCHED = "launched"  # its replacement is asked for: the group's desired capacity counts it
    READY = "ready"  # its replacement is InService with a Ready node
    CORDONED = "cordoned"  # the old node takes no new pods
    DRAINED = "drained"  # the old node's pods were evicted under their budgets and are gone from it
    MIGRATED = "migrated"  # those pods' owners are back to their Ready counts, elsewhere
    TERMINATED = "terminated"  # the old host was terminated with a decrement


# The phase table: a new strategy is a new row. Each kind keeps ready capacity in its own way: SURGE never lets it
# drop (the old node is cordoned only once its replacement is Ready); UNAVAILABLE lowers it by one per flight, which
# the budget's max_unavailable bounds, and never grows the group.
SEQUENCE: dict[Kind, tuple[Phase, ...]] = {
    Kind.SURGE: (Phase.LAUNCHED, Phase.READY, Phase.CORDONED, Phase.DRAINED, Phase.MIGRATED, Phase.TERMINATED),
    Kind.UNAVAILABLE: (Phase.CORDONED, Phase.DRAINED, Phase.TERMINATED, Phase.LAUNCHED, Phase.READY, Phase.MIGRATED),
}
# Phases the hosts of one wave enter together: every old node of the wave cordoned before any drains, so no evicted pod
# lands on a node about to be drained, and one drain for them all.
TOGETHER = (Phase.CORDONED, Phase.DRAINED)


class Canary(Enum):
    PENDING = "pending"  # the first hosts are being replaced
    BAKING = "baking"  # they are replaced; the roll watches them before going on
    PASSED = "passed"  # (or no bake asked for) the rest may go


@dataclass
class Flight:
    old: str
    kind: Kind
    wave: int
    zone: str = ""
    reason: str = ""
    dead: bool = False  # its node is gone or NotReady: nothing to drain; its pods and node are deleted after it
    phase: Phase | None = None  # the last phase done; None: nothing yet
    new: str = ""  # its replacement, once seen
    node: str = ""  # the old host's node, once cordoned
    owners: dict[Owner, int] = field(default_factory=dict)  # the drained pods' owners and their Ready counts before
    entered: float = 0.0  # when it entered its phase (this run's clock; not journaled): for timeouts and pacing

    def done(self, phase: Phase) -> bool:
        """Has it gone through ``phase``?"""
        order = SEQUENCE[self.kind]
        return self.phase is not None and order.index(self.phase) >= order.index(phase)

    @property
    def next(self) -> Phase | None:
        """The phase it goes through next; None when it has gone through all of them."""
        order = SEQUENCE[self.kind]
        at = -1 if self.phase is None else order.index(self.phase)
        return order[at + 1] if at + 1 < len(order) else None


@dataclass
class RollRecord:
    operation: str
    group: str
    original_desired: int
    original_max: int
    started: datetime  # AWS's time when the roll began: a host launched later is one of its replacements
    suspended: list[str] = field(default_factory=list)  # processes this roll suspended and must resume
    flights: list[Flight] = field(default_factory=list)  # the hosts being replaced, in the order they were taken
    replacements: list[str] = field(default_factory=list)  # hosts this roll launched and put in service
    recent: list[str] = field(default_factory=list)  # hosts launched within a second of ``started``: not ours
    waves: int = 0  # waves started so far
    canary: Canary = Canary.PENDING
    bake_started: float | None = None  # this run's clock (not journaled: a rerun bakes again)

    def ours(self, instance_id: str, launched: datetime | None) -> bool:
        """Launched by this roll (or since it began): times carry whole seconds, so a host of that very second
        counts only if it was not there at the start."""
        return launched is not None and launched >= self.started - TIME_GRAIN and instance_id not in self.recent

    def olds(self) -> set[str]:
        """The old hosts in flight: being replaced."""
        return {flight.old for flight in self.flights}

    def launched(self) -> set[str]:
        """The hosts this roll launched, in service or still coming: never hosts for it to replace."""
        return set(self.replacements) | {flight.new for flight in self.flights if flight.new}

    def not_to_plan(self) -> set[str]:
        """What a plan continuing this roll leaves out: the hosts in flight (finished first, from the journal) and
        the hosts it launched (the hosts it replaced are gone)."""
        return self.olds() | self.launched()

    def hosts_in_flight(self) -> set[str]:
        """The instances this roll is working on (old hosts and their replacements): other tools leave them be."""
        return {host for flight in self.flights for host in (flight.old, flight.new) if host}
