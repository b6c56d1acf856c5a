"""Which hosts a roll replaces, in which order: a pure function of a snapshot, so `--dry-run` shows exactly what the
executor would do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from provision.errors import UsageError
from provision.roll.fleet import Host, Snapshot


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
    gated: bool = True  # wait for the group's own nodes to be Ready before each host (not for `replace`)
    surge: int = 1  # replacements booting at once
    overlap: bool = False  # the next replacements boot while the current old host drains

    @property
    def peak_size(self) -> int:
        """The most hosts the group runs during the roll: the surge booting, plus as many again while they drain."""
        in_flight = min(len(self.replacements), self.surge * (2 if self.overlap else 1))
        return self.desired + in_flight

    def excluding(self, instances: set[str]) -> Plan:
        """The plan without these hosts: those an interrupted roll already launched are never replaced again by the
        roll that continues it (a forced `roll` would otherwise start over on its own replacements)."""
        return replace(self, replacements=tuple(step for step in self.replacements if step.old not in instances))

    def describe(self, drain_timeout: float) -> list[str]:
        if not self.replacements:
            return [f"{self.operation}: nothing to replace in {self.group}"]
        if self.surge == 1:
            pace = "one at a time"
            if self.overlap and len(self.replacements) > 1:
                pace += ", the next booting while the current host drains"
        else:
            pace = f"{self.surge} at a time (their replacements booting together, then their nodes drained together)"
            if self.overlap and len(self.replacements) > self.surge:
                pace += ", the next ones booting while these drain"
        lines = [
            f"{self.operation}: {len(self.replacements)} host(s) of {self.group}, {pace}; ready capacity never below "
            f"{self.desired}, at most {self.peak_size} hosts at once:"
        ]
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
            )
        lines += [f"  left alone: {instance} ({why})" for instance, why in self.left_alone]
        return lines


def outdated(
    snapshot: Snapshot, *, operation: str, include_protected: bool, surge: int = 1, overlap: bool = True
) -> Plan:
    """Every host whose configuration fingerprint is not the current one, oldest first, ``surge`` at a time."""

    def why(host: Host) -> str | None:
        return None if host.fingerprint == snapshot.fingerprint else f"outdated: {host.fingerprint or 'no fingerprint'}"

    return _select(
        snapshot, why, operation=operation, include_protected=include_protected, surge=surge, overlap=overlap
    )


def every_host(
    snapshot: Snapshot, *, operation: str, reason: str, include_protected: bool, surge: int = 1, overlap: bool = True
) -> Plan:
    """Every host, current or not (`cluster roll`; and what `patch --dry-run` shows, since the stack update it has
    not made yet would make every host outdated)."""
    return _select(
        snapshot,
        lambda _host: reason,
        operation=operation,
        include_protected=include_protected,
        surge=surge,
        overlap=overlap,
    )


def _select(
    snapshot: Snapshot,
    why: Callable[[Host], str | None],
    *,
    operation: str,
    include_protected: bool,
    surge: int,
    overlap: bool,
) -> Plan:
    """The hosts ``why`` gives a reason to replace, oldest first. Hosts not InService (booting, leaving) and hosts
    protected from scale-in (unless asked) are left alone and named."""
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
    return Plan(
        operation,
        snapshot.group,
        snapshot.desired,
        snapshot.max_size,
        tuple(replacements),
        tuple(left_alone),
        surge=surge,
        overlap=overlap,
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
