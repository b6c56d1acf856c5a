"""What one observation of the host group holds: its size and processes, and its hosts, each with the facts of its
instance (read once: they never change) and its node, already joined."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from provision.errors import UsageError
from provision.kube.model import NodeState

GONE_STATES = ("Terminating:Proceed", "Terminating", "Terminated", "Detaching", "Detached")


@dataclass(frozen=True)
class Host:
    instance_id: str
    zone: str
    lifecycle_state: str
    health: str
    protected: bool
    fingerprint: str  # "" when the host carries none
    image: str
    launched: datetime | None
    names: tuple[str, ...]  # private DNS name and IP, to find its node
    node: NodeState | None = None  # None: no node (yet), or the observation did not read the nodes

    @property
    def order(self) -> tuple[str, str]:
        """Oldest first, then by id: the order hosts are replaced in."""
        return (self.launched.isoformat() if self.launched else "", self.instance_id)

    @property
    def serving(self) -> bool:
        """Still a member that counts: not leaving, or held in its terminate hook (its drain not done)."""
        return self.lifecycle_state not in GONE_STATES

    @property
    def ready(self) -> bool:
        """InService with a Ready node that takes pods: ready capacity."""
        return (
            self.lifecycle_state == "InService"
            and self.node is not None
            and self.node.ready
            and not self.node.unschedulable
        )


@dataclass(frozen=True)
class Snapshot:
    group: str
    desired: int
    min_size: int
    max_size: int
    fingerprint: str  # what a host launched now carries
    hosts: tuple[Host, ...]
    suspended: tuple[str, ...]
    zones: tuple[str, ...] = ()  # the group's availability zones
    at: datetime | None = None  # AWS's clock when it listed the group
    nodes: tuple[NodeState, ...] = ()  # every node of the cluster, when the observation read them

    def host(self, instance_id: str) -> Host | None:
        return next((host for host in self.hosts if host.instance_id == instance_id), None)

    @property
    def ready_capacity(self) -> int:
        return sum(1 for host in self.hosts if host.ready)


def find_host(name: str, snapshot: Snapshot) -> tuple[str, NodeState | None]:
    """The instance id of HOST given as an instance id, node name, private DNS name or private IP, and its node."""
    for host in snapshot.hosts:
        node = host.node
        known = {host.instance_id, *host.names, *((node.name, *node.addresses) if node else ())}
        if name in known:
            return host.instance_id, node
    raise UsageError(f"no host {name!r} in {snapshot.group} (give an instance id, node name, private DNS name or IP)")
