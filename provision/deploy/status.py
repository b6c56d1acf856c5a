"""`cluster status`: the stack and one row per host, from five AWS calls whatever the number of hosts and whatever
they did before (stack, its resources, the group with all its members, the group's instances page by page, the launch
template). Each host's health verdict is a tag of its instance, so the instances' page brings it along."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from provision.aws.cloud import Cloud
from provision.config.schema import ClusterConfig
from provision.deploy.host_records import RepairHeld, repair_held, snapshot_with_health
from provision.errors import ClusterError
from provision.ui import UI

if TYPE_CHECKING:
    from provision.kube.facade import Kube

UNKNOWN = "-"  # a host without a matching node, or no Kubernetes access
REPAIR_HELD_NEXT = (
    "they are reported as those under repair leave; when they share one fault (a bad patch, a full disk after a log "
    "flood), fix it first: `cluster doctor`; to go faster, raise health_agent.max_unhealthy or `cluster replace HOST`"
)


@dataclass(frozen=True)
class GroupRow:
    """One host group: its name in the configuration, its auto-scaling group, sizes, processes, configuration."""

    name: str
    group: str
    desired_capacity: int
    min_size: int
    max_size: int
    suspended_processes: list[str]
    fingerprint: str


@dataclass(frozen=True)
class HostRow:
    instance_id: str
    availability_zone: str
    lifecycle_state: str
    health: str
    current: bool | None  # None: the host carries no fingerprint
    node: str
    ready: str
    schedulable: str
    pods: str
    launched: str  # ISO 8601
    age: str
    agent: str = UNKNOWN  # the health agent's last verdict ("healthy", "failing:kubelet disk"); "-": none recorded
    repair: str = UNKNOWN  # where it stands with the storm guard: "held", "reported", "clear"; "-": never sick
    group: str = ""  # its host group's name in the configuration


@dataclass(frozen=True)
class StatusReport:
    stack: str
    stack_status: str
    group: str
    desired_capacity: int
    min_size: int
    max_size: int
    suspended_processes: list[str]
    fingerprint: str
    hosts: list[HostRow]
    repair_held: RepairHeld | None = None  # sick hosts waiting for a turn under health_agent.max_unhealthy
    groups: list[GroupRow] = field(default_factory=list)  # every host group; the fields above are the first's

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def collect(config: ClusterConfig, cloud: Cloud, *, now: datetime, kube: Kube | None = None) -> StatusReport:
    stack = cloud.stacks.find(config.stack_name)
    if stack is None:
        raise ClusterError(f"no stack {config.stack_name} in {config.region}; create it with `cluster up`")
    pods: dict[str, int] | None = None
    groups: list[GroupRow] = []
    rows: list[HostRow] = []
    held: list[RepairHeld] = []
    kept = cloud.instances.keeping()  # shared: the first group's look describes the whole cluster, once
    for name, settings in config.groups.items():
        try:
            seen = snapshot_with_health(cloud, config.stack_name, kube, described=stack, group=name, kept=kept)
        except ClusterError:  # no group (yet, or any more): the stack's status is still worth showing
            continue
        snapshot, health, repair, fingerprint = seen.snapshot, seen.health, seen.repair, seen.snapshot.fingerprint
        if kube is not None and pods is None:  # one more call, whatever the number of hosts and groups: all pods
            pods = Counter(pod.node for pod in kube.pods() if pod.node and not pod.terminating)
        groups.append(
            GroupRow(
                name,
                snapshot.group,
                snapshot.desired,
                snapshot.min_size,
                snapshot.max_size,
                list(snapshot.suspended),
                fingerprint,
            )
        )
        for host in sorted(snapshot.hosts, key=lambda host: (host.zone, host.instance_id)):
            node = host.node
            rows.append(
                HostRow(
                    instance_id=host.instance_id,
                    availability_zone=host.zone,
                    lifecycle_state=host.lifecycle_state,
                    health=host.health,
                    current=host.fingerprint == fingerprint if host.fingerprint else None,
                    node=node.name if node else UNKNOWN,
                    ready=UNKNOWN if node is None else "yes" if node.ready else "NO",
                    schedulable=UNKNOWN if node is None else "no" if node.unschedulable else "yes",
                    pods=str((pods or {}).get(node.name, 0)) if node else UNKNOWN,
                    launched=host.launched.isoformat() if host.launched else "",
                    age=_age(now - host.launched) if host.launched else UNKNOWN,
                    agent=health[host.instance_id].verdict if host.instance_id in health else UNKNOWN,
                    repair=repair[host.instance_id].state if host.instance_id in repair else UNKNOWN,
                    group=name,
                )
            )
        limit = settings.health_agent.repair_limit(snapshot.desired)
        held += [found] if (found := repair_held(snapshot, repair, limit)) is not None else []
    if not groups:
        return StatusReport(config.stack_name, stack.status, "", 0, 0, 0, [], "", [])
    first = groups[0]
    return StatusReport(
        stack=config.stack_name,
        stack_status=stack.status,
        group=first.group,
        desired_capacity=first.desired_capacity,
        min_size=first.min_size,
        max_size=first.max_size,
        suspended_processes=first.suspended_processes,
        fingerprint=first.fingerprint,
        hosts=rows,
        repair_held=held[0] if held else None,
        groups=groups,
    )


def show(report: StatusReport, ui: UI, *, kubernetes_note: str = "") -> None:
    suspended = ", ".join(report.suspended_processes) or "none"
    ui.line(
        f"stack {report.stack}: {report.stack_status}   group {report.group or UNKNOWN}: "
        f"desired {report.desired_capacity} (min {report.min_size}, max {report.max_size})   "
        f"suspended processes: {suspended}   configuration {report.fingerprint or UNKNOWN}"
    )
    several = len(report.groups) > 1
    for group in report.groups[1:]:  # the first is the line above
        ui.line(
            f"group {group.name} ({group.group}): desired {group.desired_capacity} (min {group.min_size}, max "
            f"{group.max_size})   suspended processes: {', '.join(group.suspended_processes) or 'none'}   "
            f"configuration {group.fingerprint or UNKNOWN}"
        )
    outdated = [row for row in report.hosts if row.current is False]
    repairs = any(row.repair != UNKNOWN for row in report.hosts)  # a column only once some host was ever sick
    columns = [*(["group"] if several else []), "instance", "zone", "lifecycle", "health", "agent"]
    columns += [*(["repair"] if repairs else []), "config"]
    columns += ["node", "ready", "schedulable", "pods", "age"]
    rows = [
        [
            *([row.group] if several else []),
            row.instance_id,
            row.availability_zone,
            row.lifecycle_state,
            row.health,
            row.agent,
            *([row.repair] if repairs else []),
            {True: "current", False: "OUTDATED", None: "unknown"}[row.current],
            row.node,
            row.ready,
            row.schedulable,
            row.pods,
            row.age,
        ]
        for row in report.hosts
    ]
    ui.table(columns, rows)
    replaced = "; `cluster patch` replaces them" if outdated else ""
    ui.line(f"{len(report.hosts)} host(s), {len(outdated)} outdated{replaced}")
    held = report.repair_held
    if held is not None:
        under = f"; under repair: {', '.join(held.in_repair)}" if held.in_repair else ""
        ui.line(f"{held}: waiting for a turn: {', '.join(held.held)}{under}")
        ui.line(f"next: {REPAIR_HELD_NEXT}")
    if kubernetes_note:
        ui.line(f"node columns unknown: {kubernetes_note}")


def _age(delta: timedelta) -> str:
    days, rest = divmod(max(int(delta.total_seconds()), 0), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m"
