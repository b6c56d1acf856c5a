"""Which hosts a roll replaces, in which order, with which budget and strategy: a pure function of an observation, so
`--dry-run` shows exactly what the engine would do."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from provision.config.schema import Rolling
from provision.errors import UsageError
from provision.fleet.model import Host, Snapshot

Order = Literal["oldest", "zone"]


@dataclass(frozen=True)
class Budget:
    """How far a roll may take the group from its desired capacity, resolved once (as kops' resolveSettings does):
    ``surge`` hosts above it (replacements launched first), ``unavailable`` Ready hosts below it (old hosts taken
    out first)."""

    surge: int = 1
    unavailable: int = 0
    overlap: bool = True  # with surge: the next replacements boot while the current old hosts drain

    @classmethod
    def resolve(
        cls,
        rolling: Rolling,
        desired: int,
        *,
        max_surge: int | str | None = None,
        max_unavailable: int | str | None = None,
    ) -> Budget:
        """Counts, or percentages of ``desired``: surge rounds up, unavailable rounds down. When both come to 0 (a
        percentage of a small group), one host at a time may be unavailable, as kops does: the plan says so."""
        surge = _count(rolling.max_surge if max_surge is None else max_surge, desired, math.ceil)
        unavailable = _count(
            rolling.max_unavailable if max_unavailable is None else max_unavailable, desired, math.floor
        )
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return cls(surge, unavailable, rolling.overlap)

    @property
    def peak_surge(self) -> int:
        return self.surge * (2 if self.overlap else 1)


def _count(value: int | str, desired: int, rounding: Callable[[float], int]) -> int:
    if isinstance(value, str):
        return int(rounding(desired * int(value.rstrip("%")) / 100))
    return value


@dataclass(frozen=True)
class Strategy:
    canary: int = 1  # hosts replaced first, then watched for bake_seconds before the rest go
    bake_seconds: float = 0  # 0: no bake, and the canary is just the first wave
    order: Order = "oldest"  # "zone": one availability zone finished before the next starts
    halt_on_alarms: tuple[str, ...] = ()  # CloudWatch alarms that stop the roll before a wave while in ALARM

    @classmethod
    def of(cls, rolling: Rolling) -> Strategy:
        return cls(rolling.canary, rolling.bake_seconds, rolling.order, tuple(rolling.halt_on_alarms))


@dataclass(frozen=True)
class Replacement:
    old: str
    zone: str
    reason: str
    dead: bool = False  # its node is gone or NotReady: no eviction can finish, its pods are deleted after it


@dataclass(frozen=True)
class Plan:
    operation: str
    group: str
    desired: int
    max_size: int
    replacements: tuple[Replacement, ...]
    left_alone: tuple[tuple[str, str], ...] = ()  # (instance, why)
    gated: bool = True  # wait for the group's own nodes to be Ready before each wave (not for `replace`)
    budget: Budget = field(default_factory=Budget)
    strategy: Strategy = field(default_factory=Strategy)

    @property
    def peak_size(self) -> int:
        """The most hosts the group runs during the roll: the surge booting, plus as many again while they drain."""
        return self.desired + min(len(self.replacements), self.budget.peak_surge)

    @property
    def lowest_ready(self) -> int:
        return self.desired - min(len(self.replacements), self.budget.unavailable)

    def excluding(self, instances: set[str]) -> Plan:
        """The plan without these hosts: those an interrupted roll already launched are never replaced again by the
        roll that continues it (a forced `roll` would otherwise start over on its own replacements)."""
        return replace(self, replacements=tuple(step for step in self.replacements if step.old not in instances))

    def waves(self) -> tuple[tuple[Replacement, ...], ...]:
        """The waves as the engine admits them when every host boots and drains in the same time: with a bake, the
        canary's hosts first; then as many at a time as the budget allows; with the zone order, never two zones in
        one wave. A budget with both shares starts with both, then each share's hosts start as that share frees:
        the surge's (whose replacements are Ready first, with overlap), then the unavailable's, in turn. Slower
        hosts only delay their wave, but can change how a mixed budget's later waves fall."""
        both = self.budget.surge + self.budget.unavailable
        turns = (
            [both]
            if not (self.budget.surge and self.budget.unavailable)
            else [self.budget.surge, self.budget.unavailable]
        )
        first = min(self.strategy.canary, both) if self.strategy.bake_seconds else max(both, 1)
        runs = (
            [tuple(run) for _, run in itertools.groupby(self.replacements, key=lambda step: step.zone)]
            if self.strategy.order == "zone"
            else [self.replacements]
        )
        waves: list[tuple[Replacement, ...]] = []
        for run in runs:
            rest = run
            while rest:
                take = turns[(len(waves) - 1) % len(turns)] if waves else first
                waves.append(rest[:take])
                rest = rest[take:]
        return tuple(waves)

    def describe(self, drain_timeout: float) -> list[str]:
        if not self.replacements:
            return [f"{self.operation}: nothing to replace in {self.group}"]
        budget, strategy, many = self.budget, self.strategy, len(self.replacements)
        if budget.surge == 0:
            pace = f"{'one' if budget.unavailable == 1 else budget.unavailable} at a time, each taken out first"
        elif budget.surge == 1 and budget.unavailable == 0:
            pace = "one at a time"
            if budget.overlap and many > 1:
                pace += ", the next booting while the current host drains"
        else:
            pace = f"{budget.surge} at a time (their replacements booting together, then their nodes drained together)"
            if budget.unavailable:
                pace += f", and {budget.unavailable} more taken out first"
            if budget.overlap and many > budget.surge:
                pace += ", the next ones booting while these drain"
        lines = [
            f"{self.operation}: {many} host(s) of {self.group}, {pace}; ready capacity never below "
            f"{self.lowest_ready}, at most {self.peak_size} hosts at once:"
        ]
        if strategy.bake_seconds and many > strategy.canary:
            lines.append(
                f"  canary: the first {strategy.canary} host(s), then {strategy.bake_seconds:.0f}s watching their "
                "nodes and the pods that moved onto them (Ready, not restarting) before the rest"
            )
        if strategy.order == "zone":
            lines.append("  zone by zone: one availability zone finished before the next starts")
        if strategy.halt_on_alarms:
            lines.append(
                f"  halts before a wave while any of these alarms is in ALARM: {', '.join(strategy.halt_on_alarms)}"
            )
        for number, step in enumerate(self.replacements, start=1):
            middle = (
                "terminate it, then delete its pods and its node so they are rescheduled at once"
                if step.dead
                else f"cordon, drain through the Eviction API (budgets respected, {drain_timeout:.0f}s), wait until "
                "its pods run elsewhere, terminate"
            )
            lines.append(
                f"  {number}. {step.old} ({step.zone}, {step.reason}): a replacement launches (desired +1), wait "
                f"for it InService and its node Ready, {middle} with a decrement (desired -1)"
                if budget.surge
                else f"  {number}. {step.old} ({step.zone}, {step.reason}): {middle} with a decrement (desired -1), "
                "then a replacement launches (desired +1) and its node becomes Ready"
            )
        lines += [f"  left alone: {instance} ({why})" for instance, why in self.left_alone]
        return lines


def outdated(
    snapshot: Snapshot,
    *,
    operation: str,
    include_protected: bool,
    budget: Budget = Budget(),
    strategy: Strategy = Strategy(),
) -> Plan:
    """Every host whose configuration fingerprint is not the current one, oldest first."""

    def why(host: Host) -> str | None:
        return None if host.fingerprint == snapshot.fingerprint else f"outdated: {host.fingerprint or 'no fingerprint'}"

    return _select(
        snapshot, why, operation=operation, include_protected=include_protected, budget=budget, strategy=strategy
    )


def every_host(
    snapshot: Snapshot,
    *,
    operation: str,
    reason: str,
    include_protected: bool,
    budget: Budget = Budget(),
    strategy: Strategy = Strategy(),
) -> Plan:
    """Every host, current or not (`cluster roll`; and what `patch --dry-run` shows, since the stack update it has
    not made yet would make every host outdated)."""
    return _select(
        snapshot,
        lambda _host: reason,
        operation=operation,
        include_protected=include_protected,
        budget=budget,
        strategy=strategy,
    )


def _select(
    snapshot: Snapshot,
    why: Callable[[Host], str | None],
    *,
    operation: str,
    include_protected: bool,
    budget: Budget,
    strategy: Strategy,
) -> Plan:
    """The hosts ``why`` gives a reason to replace, oldest first (zone by zone with the zone order). Hosts not
    InService (booting, leaving) and hosts protected from scale-in (unless asked) are left alone and named."""
    replacements: list[Replacement] = []
    left_alone: list[tuple[str, str]] = []
    for host in snapshot.hosts:
        reason = why(host)
        if reason is None:
            continue
        if host.lifecycle_state != "InService":
            left_alone.append((host.instance_id, f"{host.lifecycle_state}, not InService"))
        elif host.protected and not include_protected:
            left_alone.append((host.instance_id, "protected from scale-in; --include-protected replaces it"))
        else:
            replacements.append(Replacement(host.instance_id, host.zone, reason))
    if strategy.order == "zone":
        replacements.sort(key=lambda step: step.zone)  # stable: oldest first within each zone
    return Plan(
        operation,
        snapshot.group,
        snapshot.desired,
        snapshot.max_size,
        tuple(replacements),
        tuple(left_alone),
        budget=budget,
        strategy=strategy,
    )


def one_host(snapshot: Snapshot, instance_id: str, *, operation: str, dead: bool) -> Plan:
    """Replace one host, whatever the state of the others: only its replacement is waited for."""
    host = snapshot.host(instance_id)
    if host is None:
        raise UsageError(f"{instance_id} is not a host of {snapshot.group}")
    reason = "asked, dead" if dead else "asked"
    return Plan(
        operation,
        snapshot.group,
        snapshot.desired,
        snapshot.max_size,
        (Replacement(host.instance_id, host.zone, reason, dead=dead),),
        gated=False,
    )
