"""Repair from the cluster side: a host too wedged to run its health agent (a kernel hang, a network partition) still
has a node, and the node says it. `cluster heal` looks at the group's nodes as it goes (``Consumer`` calls ``sweep``
between receives) and reports Unhealthy the InService host whose node has been NotReady or Unknown, or has carried one
of ``health_agent.node_conditions`` with status True (node-problem-detector's ``KernelDeadlock``), for
``health_agent.node_not_ready_seconds``. The time is the condition's lastTransitionTime against the wall clock, as the
node lifecycle controller judges it, and as Karpenter's node repair and Cluster API's MachineHealthCheck do.

Reports go through the same storm guard as the agents' (``slots``): beyond ``max_unhealthy`` hosts under repair, a
sick host is held, and asked for again at the next sweep. Where each host stands is the ``cluster:repair`` tag of its
instance (held, reported, clear), which `cluster status` and `cluster doctor` show. The group then replaces the host;
its drain takes the dead-node fast path (``Handler``), since its kubelet cannot confirm an eviction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from provision import names
from provision.config.schema import HealthAgent
from provision.fleet.model import Host, Snapshot
from provision.heal.actionlog import ActionLog
from provision.heal.slots import HANDOVER_KEPT_SECONDS, Slots
from provision.kube.model import NodeState

Wall = Callable[[], datetime]  # the wall clock (UTC), against which node conditions' times are judged
RollHosts = Callable[[], set[str]]
TIDY_EVERY_SECONDS = HANDOVER_KEPT_SECONDS / 6  # how often the guard's spent handovers are looked for


class Fleet(Protocol):
    def snapshot(self) -> Snapshot: ...


class Reports(Protocol):
    """``provision.aws.groups.Groups``."""

    def report_unhealthy(self, instance_id: str) -> None: ...


class Tags(Protocol):
    """``provision.aws.instances.Instances``."""

    def set_tag(self, instance_id: str, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class Trouble:
    """What makes a node sick: its Ready condition False or Unknown, or a watched condition True, since when."""

    condition: str
    status: str
    since: datetime

    def __str__(self) -> str:
        return f"{self.condition}:{self.status}"


def node_trouble(node: NodeState, watched: Sequence[str]) -> Trouble | None:
    """The node's trouble that has lasted longest, however long; None for a healthy node. A condition without a
    transition time cannot be timed, and is left alone (the API server always sets one)."""
    found = [
        Trouble(condition.type, condition.status, condition.since)
        for condition in node.conditions
        if condition.since is not None
        and (
            (condition.type == "Ready" and condition.status != "True")
            or (condition.type in watched and condition.status == "True")
        )
    ]
    return min(found, key=lambda trouble: trouble.since) if found else None


@dataclass
class NodeRepair:
    fleet: Fleet
    guard: Slots
    reports: Reports
    tags: Tags
    roll_hosts: RollHosts
    settings: HealthAgent
    wall: Wall
    log: ActionLog
    tagged: dict[str, str] = field(default_factory=dict)  # instance -> the repair state this process tagged it with
    tidied: datetime | None = None

    def sweep(self) -> None:
        """One look at the group's nodes: report the hosts sick long enough, within the guard's limit."""
        snapshot = self.fleet.snapshot()
        now = self.wall()
        sick = [(host, trouble) for host in snapshot.hosts if (trouble := self._sick(host, now)) is not None]
        members = {host.instance_id for host in snapshot.hosts}
        for instance, state in list(self.tagged.items()):
            if instance not in members:
                del self.tagged[instance]  # gone: nothing more to say about it
            elif state == "held" and instance not in {host.instance_id for host, _ in sick}:
                self._tag(instance, "clear", now)
                self.log("repair-clear", instance=instance, result="its node recovered while its repair was held")
                del self.tagged[instance]
        if sick:
            owned = self.roll_hosts()
            self._repair([(host, trouble) for host, trouble in sick if host.instance_id not in owned], snapshot, now)
        if self.tidied is None or (now - self.tidied).total_seconds() >= TIDY_EVERY_SECONDS:
            self.tidied = now
            self.guard.tidy(self.guard.read(), int(now.timestamp()))

    def _sick(self, host: Host, now: datetime) -> Trouble | None:
        """Sick long enough, and still serving as far as the group knows: InService and Healthy (a host reported
        Unhealthy already is being replaced)."""
        if host.node is None or host.lifecycle_state != "InService" or host.health != "Healthy":
            return None
        trouble = node_trouble(host.node, self.settings.node_conditions)
        if trouble is None or (now - trouble.since).total_seconds() < self.settings.node_not_ready_seconds:
            return None
        return trouble

    def _repair(self, sick: list[tuple[Host, Trouble]], snapshot: Snapshot, now: datetime) -> None:
        limit = self.settings.repair_limit(snapshot.desired)
        members = {host.instance_id: host for host in snapshot.hosts}
        for host, trouble in sick:
            node = host.node.name if host.node else None
            lasting = f"{(now - trouble.since).total_seconds():.0f}s"
            admission = self.guard.admit(
                host.instance_id, by="heal", limit=limit, members=members, now=int(now.timestamp())
            )
            if admission.slot is None:
                if self._tag(host.instance_id, "held", now, trouble):  # one line when held, not one a sweep
                    self.log("repair-held", instance=host.instance_id, node=node, why=str(trouble), lasting=lasting,
                             sick=len(sick), in_repair=",".join(admission.in_repair) or None, limit=limit,
                             result="asked again at each sweep")  # fmt: skip
                continue
            self.reports.report_unhealthy(host.instance_id)
            self._tag(host.instance_id, "reported", now, trouble)
            self.log("reported-unhealthy", instance=host.instance_id, node=node, why=str(trouble), lasting=lasting,
                     slot=admission.slot, in_repair=len(admission.in_repair), limit=limit)  # fmt: skip

    def _tag(self, instance_id: str, state: str, now: datetime, trouble: Trouble | None = None) -> bool:
        """Set the host's repair tag, when its state changed; whether it did."""
        if self.tagged.get(instance_id) == state:
            return False
        why = f" why={trouble} since={trouble.since:%Y-%m-%dT%H:%M:%SZ}" if trouble else ""
        self.tags.set_tag(instance_id, names.REPAIR_TAG, f"{state} {now:%Y-%m-%dT%H:%M:%SZ} by=heal{why}")
        self.tagged[instance_id] = state
        return True
