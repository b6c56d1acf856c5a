"""The host simulator: what the hosts' boot script and kubelet do, for instances that only exist in moto.

It runs in the process that serves moto, and reads and writes moto's auto-scaling state directly, because moto
itself has no launch delay: a new instance is held in ``Pending`` for ``boot_seconds``, then its node registers
Ready in the API simulator (providerID ``aws:///<zone>/<instance-id>``, named by its private DNS name) and only then
does the instance become ``InService``. An instance that leaves its group has its node turn NotReady, and
``gone_seconds`` later the node is deleted. Faults, for tests and demos: hosts that never join, nodes that turn
NotReady.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from provision.clock import Clock
from provision.simulator.world import ApiError, World


@dataclass
class Faults:
    never_join: set[str] = field(default_factory=set)  # instance ids whose node never registers
    never_join_next: int = 0  # the next N new instances never join
    not_ready: set[str] = field(default_factory=set)  # instance ids whose node turns (and stays) NotReady


@dataclass
class _Host:
    instance_id: str
    zone: str
    node: str
    address: str
    seen_at: float
    joined: bool = False
    left_at: float | None = None


class HostSimulator:
    def __init__(self, world: World, clock: Clock, *, boot_seconds: float = 5.0, gone_seconds: float = 10.0) -> None:
        self.world = world
        self.clock = clock
        self.boot_seconds = boot_seconds
        self.gone_seconds = gone_seconds
        self.faults = Faults()
        self._hosts: dict[str, _Host] = {}
        _count_booting_hosts_as_capacity()

    def tick(self) -> None:
        with self.world.batch():
            self._tick(self.clock.now())

    def _tick(self, now: float) -> None:
        members = dict(_group_members())
        for instance_id, state in members.items():
            host = self._hosts.get(instance_id)
            if host is None:
                host = self._arrive(instance_id, state, now)
            if not host.joined:
                state.lifecycle_state = "Pending"
                if now - host.seen_at >= self.boot_seconds and instance_id not in self.faults.never_join:
                    self.world.add_node(
                        host.node, provider_id=f"aws:///{host.zone}/{instance_id}", internal_ip=host.address
                    )
                    host.joined = True
                    state.lifecycle_state = "InService"
            if host.joined and instance_id in self.faults.not_ready:
                self._set_ready(host.node, ready=False)
        for instance_id, host in list(self._hosts.items()):
            if instance_id in members:
                continue
            if host.left_at is None:
                host.left_at = now
                self._set_ready(host.node, ready=False)
            elif now - host.left_at >= self.gone_seconds:
                self._delete_node(host.node)
                del self._hosts[instance_id]

    def _arrive(self, instance_id: str, state: Any, now: float) -> _Host:
        instance = state.instance
        host = _Host(
            instance_id=instance_id,
            zone=state.availability_zone,
            node=instance.private_dns_name or instance_id,
            address=instance.private_ip or "",
            seen_at=now,
        )
        if self.faults.never_join_next > 0:
            self.faults.never_join_next -= 1
            self.faults.never_join.add(instance_id)
        self._hosts[instance_id] = host
        return host

    def _set_ready(self, node: str, *, ready: bool) -> None:
        with contextlib.suppress(ApiError):  # a host that never joined has no node
            self.world.set_node_ready(node, ready)

    def _delete_node(self, node: str) -> None:
        with contextlib.suppress(ApiError):
            self.world.delete("Node", "", node)


def _group_members() -> list[tuple[str, Any]]:
    """(instance id, moto's InstanceState) of every group member in every account and region moto holds."""
    from moto.autoscaling.models import autoscaling_backends

    members = []
    for regions in list(autoscaling_backends.values()):
        for backend in list(regions.values()):
            for group in list(backend.autoscaling_groups.values()):
                members += [(state.instance.id, state) for state in group.instance_states]
    return members


def _count_booting_hosts_as_capacity() -> None:
    """moto sizes a group by its InService members only, so raising the desired capacity while hosts are held Pending
    here would launch extra hosts. AWS counts every member that is not leaving the group; so does the sandbox."""
    from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState

    def active_instances(self: FakeAutoScalingGroup) -> list[InstanceState]:
        return [state for state in self.instance_states if not state.lifecycle_state.startswith("Terminat")]

    FakeAutoScalingGroup.active_instances = active_instances  # type: ignore[method-assign]
