"""What the roll looks at each tick: one observation of the group (its hosts joined to their nodes), and only what
the journal says matters now: the pods of drained nodes while their owners come back, the canary's pods while it
bakes, the alarms before a wave. It remembers what a tick alone cannot tell: how long boots take, whether the group
has been steady for more than one look, the canary's restart counts when its bake began."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Protocol

from provision.clock import Clock
from provision.fleet.model import Snapshot
from provision.fleet.observe import Fleet
from provision.kube.facade import Kube
from provision.kube.migration import migration
from provision.kube.model import CRASHING
from provision.roll.decide import Observation
from provision.roll.state import Canary, Phase, RollRecord

GATE_CONFIRMATIONS = 2  # as kops validates twice: one Ready answer from a flapping node is not enough
ALARM_SECONDS = 30.0  # alarms are read at most this often (each read is an AWS call)


class AlarmReader(Protocol):
    """``provision.aws.alarms.Alarms``: the named alarms now in ALARM, each "name: reason"."""

    def firing(self, names: Sequence[str]) -> tuple[str, ...]: ...


class Observer:
    def __init__(
        self,
        fleet: Fleet,
        kube: Kube,
        clock: Clock,
        *,
        alarms: AlarmReader | None = None,
        alarm_names: Sequence[str] = (),
    ) -> None:
        self.fleet, self.kube, self.clock = fleet, kube, clock
        self.alarms, self.alarm_names = alarms, tuple(alarm_names)
        self._streak = 0
        self._named: tuple[str, ...] = ()
        self._unsteady_since: float | None = None
        self._boots: list[float] = []
        self._restarts: dict[str, int] = {}
        self._firing: tuple[str, ...] = ()
        self._alarms_read: float | None = None

    def booted(self, seconds: float) -> None:
        """A replacement of this run went from its launch to a Ready node in ``seconds``."""
        self._boots.append(seconds)

    def observe(self, record: RollRecord) -> Observation:
        now = self.clock.now()
        fleet = self.fleet.snapshot()
        sick = self._sick(record, fleet)
        self._streak = 0 if sick else self._streak + 1
        steady = self._streak >= GATE_CONFIRMATIONS
        self._named = sick or (self._named if not steady else ())  # a flapping node is named even when Ready now
        if steady or record.flights:
            self._unsteady_since = None  # only waiting with nothing in flight counts against the gate's timeout
        elif self._unsteady_since is None:
            self._unsteady_since = now
        migrated, waiting, crashing = self._migrations(record, fleet)
        problems, unready = self._bake(record, fleet)
        return Observation(
            now=now,
            fleet=fleet,
            migrated=frozenset(migrated),
            waiting_for=waiting,
            crashing=crashing,
            bake_problems=problems,
            bake_unready=unready,
            firing=self._alarms(now),
            sick=self._named,
            steady=steady,
            unsteady_for=now - self._unsteady_since if self._unsteady_since is not None else 0.0,
            boot_estimate=statistics.median(self._boots) if self._boots else None,
        )

    def _sick(self, record: RollRecord, fleet: Snapshot) -> tuple[str, ...]:
        """The group's own InService hosts whose node is not Ready (hosts the roll is replacing or bringing in
        excepted: their replacement is under way). Unrelated nodes elsewhere do not matter."""
        ours = record.hosts_in_flight()
        return tuple(
            host.instance_id
            for host in fleet.hosts
            if host.lifecycle_state == "InService"
            and host.instance_id not in ours
            and not (host.node is not None and host.node.ready)
        )

    def _migrations(self, record: RollRecord, fleet: Snapshot) -> tuple[set[str], dict[str, str], dict[str, str]]:
        """For the flights about to enter MIGRATED: are their drained pods' owners back, elsewhere? And which of
        their pods crash where they went (waiting will not bring those back)?"""
        migrated: set[str] = set()
        waiting: dict[str, str] = {}
        crashing: dict[str, str] = {}
        for flight in record.flights:
            if flight.next is not Phase.MIGRATED:
                continue
            if not flight.owners or not flight.node:
                migrated.add(flight.old)
                continue
            status = migration(self.kube, dict(flight.owners), away_from=flight.node)
            if status.done:
                migrated.add(flight.old)
            else:
                waiting[flight.old] = "; ".join((*status.waiting, *status.pending))
            if status.crashing:
                crashing[flight.old] = "; ".join(status.crashing)
        return migrated, waiting, crashing

    def _bake(self, record: RollRecord, fleet: Snapshot) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """While the canary bakes: its hosts' nodes Ready, and the pods on them Ready, not crash-looping, not
        restarting more than when the bake began."""
        if record.canary is not Canary.BAKING or record.flights:
            self._restarts = {}
            return (), ()
        problems: list[str] = []
        unready: list[str] = []
        for instance_id in record.replacements:
            host = fleet.host(instance_id)
            if host is None or host.node is None or not host.node.ready:
                problems.append(f"{instance_id}: its node is not Ready")
                continue
            for pod in self.kube.pods(node=host.node.name):
                if pod.daemon and pod.ready:
                    continue
                before = self._restarts.setdefault(pod.ref, pod.restarts)
                if pod.waiting_reason in CRASHING:
                    problems.append(f"{instance_id} pod {pod.ref}: {pod.waiting_reason}")
                elif pod.restarts > before:
                    problems.append(f"{instance_id} pod {pod.ref}: restarted {pod.restarts - before} time(s)")
                elif not pod.ready and pod.phase not in {"Succeeded"}:
                    unready.append(f"{instance_id} pod {pod.ref}: {pod.phase}, not Ready")
        return tuple(problems), tuple(unready)

    def _alarms(self, now: float) -> tuple[str, ...]:
        if self.alarms is None or not self.alarm_names:
            return ()
        if self._alarms_read is None or now - self._alarms_read >= ALARM_SECONDS:
            self._firing = self.alarms.firing(self.alarm_names)
            self._alarms_read = now
        return self._firing
