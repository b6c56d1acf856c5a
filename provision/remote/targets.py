"""Which hosts a command is for: HOST names as `replace` accepts them (instance id, node name, private DNS name or
IP), or every host of the group, each with the address to connect to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provision.errors import UsageError
from provision.fleet.model import Host, Snapshot, find_host
from provision.kube.facade import Kube
from provision.kube.model import NodeState


@dataclass(frozen=True)
class Target:
    instance_id: str
    address: str  # the private IP: what ~/.ssh/config is looked up by and what is connected to
    node: str  # "" when the host has no node (or the Kubernetes API was not reachable)

    @property
    def label(self) -> str:
        return f"{self.instance_id} ({self.node})" if self.node else self.instance_id


def every_host(snapshot: Snapshot, kube: Kube | None) -> list[Target]:
    """Every host, with its node when the snapshot was taken with the Kubernetes API (``kube`` given)."""
    return [_target(host, host.node if kube is not None else None) for host in snapshot.hosts]


def named_hosts(names: Sequence[str], snapshot: Snapshot, kube: Kube | None) -> list[Target]:
    """The hosts named, in the order given, each once. Without the Kubernetes API, node names cannot be matched
    (a node's name is usually its private DNS name, which still works)."""
    targets: dict[str, Target] = {}
    for name in names:
        if kube is not None:
            instance_id, node = find_host(name, snapshot)
        else:
            instance_id, node = _find_without_kube(name, snapshot), None
        host = snapshot.host(instance_id)
        assert host is not None  # find_host only answers with the snapshot's hosts
        targets.setdefault(instance_id, _target(host, node))
    return list(targets.values())


def _find_without_kube(name: str, snapshot: Snapshot) -> str:
    for host in snapshot.hosts:
        if name in {host.instance_id, *host.names}:
            return host.instance_id
    raise UsageError(
        f"no host {name!r} in {snapshot.group} (give an instance id, private DNS name or IP; node names need the "
        "Kubernetes API, which is not reachable)"
    )


def _target(host: Host, node: NodeState | None) -> Target:
    # names are (private DNS name, private IP); a host without an instance record yet has none
    address = host.names[1] if len(host.names) > 1 and host.names[1] else ""
    return Target(host.instance_id, address, node.name if node else "")
