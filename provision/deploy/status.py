"""`cluster status`: the stack and one row per host, from a fixed number of AWS calls whatever the number of hosts
(stack, its resources, the group with all its members, the group's instances page by page, the launch template)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from provision.aws.cloud import Cloud
from provision.config.schema import ClusterConfig
from provision.errors import ClusterError
from provision.kube.model import NodeState
from provision.render import names
from provision.ui import UI

if TYPE_CHECKING:
    from provision.kube.facade import Kube

UNKNOWN = "-"  # a host without a matching node, or no Kubernetes access


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def collect(config: ClusterConfig, cloud: Cloud, *, now: datetime, kube: Kube | None = None) -> StatusReport:
    stack = cloud.stacks.find(config.stack_name)
    if stack is None:
        raise ClusterError(f"no stack {config.stack_name} in {config.region}; create it with `cluster up`")
    resources = cloud.stacks.resources(config.stack_name)
    group_name = resources.get(names.HOST_GROUP, "")
    group = cloud.groups.find(group_name) if group_name else None
    if group is None:
        return StatusReport(config.stack_name, stack.status, group_name, 0, 0, 0, [], "", [])
    template_id = resources.get(names.LAUNCH_TEMPLATE, "")
    # The latest launch template version says what a host launched now carries; the stack output can lag behind.
    fingerprint = (cloud.instances.launch_template_tags(template_id) if template_id else {}).get(
        names.FINGERPRINT_TAG, stack.outputs.get(names.OUTPUT_FINGERPRINT, "")
    )
    instances = cloud.instances.of_group(group.name)
    nodes: dict[str, NodeState] = {}
    pods: dict[str, int] = {}
    if kube is not None:  # two more calls, whatever the number of hosts: all nodes, all pods
        hosts = {i.instance_id: [i.private_dns_name, i.private_ip] for i in instances.values()}
        nodes = kube.match_hosts(kube.nodes(), hosts)
        pods = Counter(pod.node for pod in kube.pods() if pod.node and not pod.terminating)
    rows = []
    for member in sorted(group.members, key=lambda m: (m.availability_zone, m.instance_id)):
        instance = instances.get(member.instance_id)
        tag = instance.tags.get(names.FINGERPRINT_TAG) if instance else None
        launched = instance.launch_time if instance else None
        node = nodes.get(member.instance_id)
        rows.append(
            HostRow(
                instance_id=member.instance_id,
                availability_zone=member.availability_zone,
                lifecycle_state=member.lifecycle_state,
                health=member.health_status,
                current=None if tag is None else tag == fingerprint,
                node=node.name if node else UNKNOWN,
                ready=UNKNOWN if node is None else "yes" if node.ready else "NO",
                schedulable=UNKNOWN if node is None else "no" if node.unschedulable else "yes",
                pods=str(pods.get(node.name, 0)) if node else UNKNOWN,
                launched=launched.isoformat() if launched else "",
                age=_age(now - launched) if launched else UNKNOWN,
            )
        )
    return StatusReport(
        stack=config.stack_name,
        stack_status=stack.status,
        group=group.name,
        desired_capacity=group.desired_capacity,
        min_size=group.min_size,
        max_size=group.max_size,
        suspended_processes=group.suspended_processes,
        fingerprint=fingerprint,
        hosts=rows,
    )


def show(report: StatusReport, ui: UI, *, kubernetes_note: str = "") -> None:
    suspended = ", ".join(report.suspended_processes) or "none"
    ui.console.print(
        f"stack {report.stack}: {report.stack_status}   group {report.group or UNKNOWN}: "
        f"desired {report.desired_capacity} (min {report.min_size}, max {report.max_size})   "
        f"suspended processes: {suspended}   configuration {report.fingerprint or UNKNOWN}",
        markup=False,
    )
    outdated = [row for row in report.hosts if row.current is False]
    columns = ["instance", "zone", "lifecycle", "health", "config", "node", "ready", "schedulable", "pods", "age"]
    rows = [
        [
            row.instance_id,
            row.availability_zone,
            row.lifecycle_state,
            row.health,
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
    ui.console.print(
        f"{len(report.hosts)} host(s), {len(outdated)} outdated"
        + ("; `cluster patch` replaces them" if outdated else ""),
        markup=False,
    )
    if kubernetes_note:
        ui.console.print(f"node columns unknown: {kubernetes_note}", markup=False)


def _age(delta: timedelta) -> str:
    days, rest = divmod(max(int(delta.total_seconds()), 0), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m"
