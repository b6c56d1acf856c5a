"""What hosts say about themselves, read in one place for `up`, `status`, `doctor` and `heal`:

- the health agent's last verdict (userdata/health-agent.sh), a tag of the host's own instance (``names.HEALTH_TAG``):
  `<time> healthy failures=0` or `<time> failing:kubelet disk failures=3`. The one paged DescribeInstances that reads
  the group returns it for every host, so reading it costs no call of its own;
- where the host stands with the storm guard (provision/heal/slots.py), a tag too (``names.REPAIR_TAG``), set by its
  agent or by `cluster heal`: `held <time> by=agent why=kubelet+disk` while its repair waits for a turn, `reported
  <time> by=heal why=Ready:Unknown since=<time>` once reported Unhealthy, `clear <time> by=agent` when it recovered;
- `boot` (userdata/bootstrap.sh.j2), in SSM under `/cluster/<name>/hosts/<instance-id>/boot`, written only when a boot
  step fails: `failed step=<step> exit=<code> at=<time>` and then the step's log tail. It is too long for a tag, and a
  host whose boot failed may never get far enough to tag itself.

Whoever terminates a host removes its SSM records with ``forget_hosts`` (roll, heal, `cluster down`), so that the
hosts' path holds the records of failed boots still worth explaining, not the fleet's history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.instances import KeptInstances
from provision.aws.stacks import Stack
from provision.fleet.model import Snapshot
from provision.fleet.observe import Fleet
from provision.kube.facade import Kube
from provision.names import host_records_path

# What a host may have kept under its path: the boot record, and the SSM health record that agents before the
# verdict moved to a tag wrote (removed with the host like the rest).
RECORD_LEAVES = ("boot", "health")


@dataclass(frozen=True)
class BootRecord:
    """What a host's boot script recorded when a step failed."""

    instance_id: str
    parameter: str
    step: str
    exit_code: str
    at: datetime | None
    log: tuple[str, ...]


@dataclass(frozen=True)
class HealthRecord:
    """The health agent's last published verdict."""

    instance_id: str
    verdict: str
    failures: int
    at: datetime | None

    @property
    def failing(self) -> bool:
        return self.verdict.startswith("failing")

    @property
    def failed_checks(self) -> str:
        return self.verdict.partition(":")[2].replace(" ", ", ")


@dataclass(frozen=True)
class RepairRecord:
    """Where a host stands with the storm guard: ``held`` (sick, waiting for a turn), ``reported`` (reported Unhealthy
    within the limit), ``clear`` (recovered while held)."""

    instance_id: str
    state: str
    at: datetime | None
    by: str  # "agent" or "heal"
    why: str  # the failing checks ("kubelet+disk") or the node's trouble ("Ready:Unknown")

    @property
    def held(self) -> bool:
        return self.state == "held"


def repair_record(instance_id: str, value: str) -> RepairRecord | None:
    parts = value.split()
    if len(parts) < 2:
        return None
    fields = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    return RepairRecord(instance_id, parts[0], _when(parts[1]), fields.get("by", ""), fields.get("why", ""))


def boot_record(parameter: str, instance_id: str, value: str) -> BootRecord | None:
    """The failure in a `boot` record, or None when the record says nothing failed."""
    if not value.startswith("failed "):
        return None
    head, _, log = value.partition("\n")
    fields = dict(part.split("=", 1) for part in head.split()[1:] if "=" in part)
    return BootRecord(
        instance_id=instance_id,
        parameter=parameter,
        step=fields.get("step", "?"),
        exit_code=fields.get("exit", "?"),
        at=_when(fields.get("at", "")),
        log=tuple(line for line in log.splitlines() if line.strip()),
    )


def boot_records(records: Mapping[str, str], parameter_path: str) -> list[BootRecord]:
    """Every failed boot among ``records`` (parameter name -> value, as read under the hosts' path), by name."""
    found = []
    for name, value in sorted(records.items()):
        instance = _host_of(name, parameter_path, "boot")
        record = boot_record(name, instance, value) if instance else None
        if record is not None:
            found.append(record)
    return found


def health_record(instance_id: str, value: str) -> HealthRecord | None:
    """The verdict in the agent's `<time> <verdict> failures=<n>`, or None when the value says none."""
    parts = value.split()
    if len(parts) < 2:
        return None
    failures = next((part.removeprefix("failures=") for part in parts if part.startswith("failures=")), "0")
    return HealthRecord(
        instance_id=instance_id,
        verdict=" ".join(part for part in parts[1:] if not part.startswith("failures=")),
        failures=int(failures) if failures.isdigit() else 0,
        at=_when(parts[0]),
    )


def health_tags(tags_by_instance: Mapping[str, Mapping[str, str]]) -> dict[str, HealthRecord]:
    """Instance id -> the health agent's last verdict, from the instances' tags."""
    found = {}
    for instance, tags in tags_by_instance.items():
        record = health_record(instance, tags.get(names.HEALTH_TAG, ""))
        if record is not None:
            found[instance] = record
    return found


def repair_tags(tags_by_instance: Mapping[str, Mapping[str, str]]) -> dict[str, RepairRecord]:
    """Instance id -> where it stands with the storm guard, from the instances' tags."""
    found = {}
    for instance, tags in tags_by_instance.items():
        record = repair_record(instance, tags.get(names.REPAIR_TAG, ""))
        if record is not None:
            found[instance] = record
    return found


@dataclass(frozen=True)
class RepairHeld:
    """The storm guard holding repairs back: ``sick`` hosts, ``limit`` at most under repair at once."""

    sick: int
    limit: int
    held: tuple[str, ...]  # sick hosts waiting for a turn
    in_repair: tuple[str, ...]  # hosts reported Unhealthy within the limit, still in the group

    def __str__(self) -> str:
        return f"repair held: {self.sick} sick, limit {self.limit}"


def repair_held(snapshot: Snapshot, repair: Mapping[str, RepairRecord], limit: int) -> RepairHeld | None:
    """The hosts whose repair the guard holds (their tag says held, and they are still serving), and those under
    repair meanwhile; None when none is held."""
    held, in_repair = [], []
    for host in snapshot.hosts:
        record = repair.get(host.instance_id)
        if record is not None and record.held and host.lifecycle_state == "InService" and host.health == "Healthy":
            held.append(host.instance_id)
        elif (record is not None and record.state == "reported") or host.health != "Healthy":
            in_repair.append(host.instance_id)
    if not held:
        return None
    return RepairHeld(len(held) + len(in_repair), limit, tuple(held), tuple(in_repair))


@dataclass(frozen=True)
class FleetWithHealth:
    snapshot: Snapshot
    health: dict[str, HealthRecord]  # instance -> its agent's last verdict
    cluster_instances: frozenset[str]  # live instances tagged with this cluster, members of the group or not
    repair: dict[str, RepairRecord] = field(default_factory=dict)  # instance -> where it stands with the guard


def snapshot_with_health(
    cloud: Cloud,
    stack_name: str,
    kube: Kube | None = None,
    *,
    described: Stack | None = None,
    group: str = names.DEFAULT_GROUP,
    kept: KeptInstances | None = None,
) -> FleetWithHealth:
    """The snapshot of one host group (by its configured name) and every host's health verdict, from the snapshot's
    own calls: its first look describes every instance of the cluster in one paged DescribeInstances, which returns
    each one's tags, so they are kept rather than described again. ``described``: the stack as the caller read it
    (see ``Fleet.of_stack``); ``kept``: what an earlier group's snapshot kept, so the cluster is described once for
    all its groups."""
    kept = kept or cloud.instances.keeping()
    fleet = Fleet.of_stack(replace(cloud, instances=kept), stack_name, kube=kube, described=described, group=group)
    fleet.know(kept.described)
    snapshot = fleet.snapshot()
    tags = {instance: kept.described[instance].tags for instance in kept.described}
    return FleetWithHealth(
        snapshot=snapshot,
        health=health_tags(tags),
        cluster_instances=frozenset(kept.described),
        repair=repair_tags(tags),
    )


class Records(Protocol):
    """``provision.aws.parameters.Parameters``: deletes names, ten to a call; names that do not exist are ignored."""

    def delete(self, names: list[str]) -> None: ...


def forget_hosts(records: Records, parameter_path: str, instance_ids: Iterable[str]) -> None:
    """Remove what terminated hosts kept in SSM (their boot record, an old agent's health record). Called by whoever
    terminates them, once they are gone or going: without it, every failed boot would stay under the hosts' path for
    good and each read of it would grow with the fleet's history. Safe to repeat: no read, and missing names are not
    an error. Costs one call per five hosts."""
    prefix = host_records_path(parameter_path)
    doomed = [f"{prefix}/{instance}/{leaf}" for instance in sorted(set(instance_ids)) for leaf in RECORD_LEAVES]
    if doomed:
        records.delete(doomed)


def recorded_hosts(names: Iterable[str], parameter_path: str) -> set[str]:
    """The instances that kept a record among the parameter ``names``."""
    return {instance for name in names for leaf in RECORD_LEAVES if (instance := _host_of(name, parameter_path, leaf))}


def _host_of(name: str, parameter_path: str, leaf: str) -> str | None:
    """The instance id in `<hosts path>/<instance-id>/<leaf>`, or None for another parameter."""
    prefix = host_records_path(parameter_path) + "/"
    instance, _, rest = name.removeprefix(prefix).partition("/")
    return instance if name.startswith(prefix) and rest == leaf else None


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
