"""The host simulator: what the hosts' boot script and kubelet do, for instances that only exist in moto.

It runs in the process that serves moto, and reads and writes moto's auto-scaling state directly, because moto
itself has no launch delay: a new instance is held for ``boot_seconds`` (in ``Pending:Wait`` when its group has a
launch hook, else ``Pending``), then its node registers Ready in the API simulator (providerID
``aws:///<zone>/<instance-id>``, named by its private DNS name) and, as the boot script does, it completes its launch
action with CONTINUE; only then does the instance become ``InService``. An instance that leaves its group has its
node turn NotReady, and ``gone_seconds`` later the node is deleted; one in ``Terminating:Wait`` keeps running, node
and all, until its termination completes. Lifecycle hooks themselves are ``lifecycle.LifecycleModel``'s.

A node registers with the labels its user-data gives the kubelet (``NODE_LABELS``, from ``hosts.labels``), so a
configuration change reaches the nodes of the hosts launched with it, as on AWS.

Faults, for tests and demos: hosts that never join (their launch action times out), hosts whose boot fails at the
join step (they record why under ``/cluster/<name>/hosts/<instance-id>/boot`` and abandon their launch, as the boot
script does), nodes that turn NotReady, and through a node label (``world.FAULT_LABEL``) pods that crash-loop on the
hosts of one configuration only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provision import names
from provision.clock import Clock
from provision.sandbox.lifecycle import TERMINATING_STATES, LifecycleModel
from provision.simulator.world import ApiError, World


@dataclass
class Faults:
    never_join: set[str] = field(default_factory=set)  # instance ids whose node never registers
    never_join_next: int = 0  # the next N new instances never join
    boot_fails: set[str] = field(default_factory=set)  # instance ids whose boot fails at the join step
    boot_fails_next: int = 0  # the next N new instances fail to boot
    not_ready: set[str] = field(default_factory=set)  # instance ids whose node turns (and stays) NotReady


NODE_LABELS = re.compile(r"^readonly NODE_LABELS=(.*)$", re.MULTILINE)  # as userdata/bootstrap.sh.j2 sets it


@dataclass
class _Host:
    instance_id: str
    zone: str
    node: str
    address: str
    seen_at: float
    labels: dict[str, str] = field(default_factory=dict)
    joined: bool = False
    not_ready: bool = False  # its node was turned NotReady (faults.not_ready)
    left_at: float | None = None


class HostSimulator:
    def __init__(
        self,
        world: World,
        clock: Clock,
        *,
        boot_seconds: float = 5.0,
        gone_seconds: float = 10.0,
        hook_scale: float = 1.0,
    ) -> None:
        """``hook_scale`` shortens every lifecycle hook's timeout (see ``LifecycleModel``)."""
        self.world = world
        self.clock = clock
        self.boot_seconds = boot_seconds
        self.gone_seconds = gone_seconds
        self.faults = Faults()
        self.lifecycle = LifecycleModel(clock, scale=hook_scale)
        self._hosts: dict[str, _Host] = {}

    def tick(self) -> None:
        with self.world.batch():
            self.lifecycle.tick()
            self._tick(self.clock.now())

    def _tick(self, now: float) -> None:
        members = dict(_group_members())
        for instance_id, state in members.items():
            host = self._hosts.get(instance_id)
            if host is None:
                host = self._arrive(instance_id, state, now)
            if state.lifecycle_state in TERMINATING_STATES:
                continue  # still running as it was, until its termination completes
            if not host.joined and now - host.seen_at >= self.boot_seconds:
                self._boot(host, state)
            if host.joined and state.lifecycle_state in {"Pending", "Pending:Proceed"}:
                state.lifecycle_state = "InService"
            if host.joined and instance_id in self.faults.not_ready and not host.not_ready:
                # Once: the node's Ready condition keeps the time it turned NotReady, as a kubelet that stopped
                # posting leaves it (and as repair from the cluster side times it).
                self._set_ready(host.node, ready=False)
                host.not_ready = True
        for instance_id, host in list(self._hosts.items()):
            if instance_id in members:
                continue
            if host.left_at is None:
                host.left_at = now
                self._set_ready(host.node, ready=False)
            elif now - host.left_at >= self.gone_seconds:
                self._delete_node(host.node)
                del self._hosts[instance_id]

    def _boot(self, host: _Host, state: Any) -> None:
        """The end of the boot script: join and confirm the launch, or record why not and abandon it."""
        if host.instance_id in self.faults.boot_fails:
            self._record_boot_failure(host.instance_id, state)
            self.lifecycle.complete_launch(host.instance_id, "ABANDON")
            self.faults.boot_fails.discard(host.instance_id)
            self.faults.never_join.add(host.instance_id)  # without a launch hook it just stays Pending
            return
        if host.instance_id in self.faults.never_join:
            return
        self.world.add_node(
            host.node,
            provider_id=f"aws:///{host.zone}/{host.instance_id}",
            internal_ip=host.address,
            labels=host.labels,
        )
        host.joined = True
        self.lifecycle.complete_launch(host.instance_id, "CONTINUE")

    def _record_boot_failure(self, instance_id: str, state: Any) -> None:
        """What the boot script's ERR trap writes (see userdata/bootstrap.sh.j2): the step, its exit code, the log."""
        from moto.ssm.models import ssm_backends

        group = state.auto_scaling_group
        cluster = next((tag["Value"] for tag in group.tags if tag.get("Key") == names.CLUSTER_TAG), None)
        if cluster is None:
            return
        backend = group.autoscaling_backend
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = f"failed step=join exit=1 at={at}\nkubeadm join: couldn't validate the identity of the API Server"
        ssm_backends[backend.account_id][backend.region_name].put_parameter(
            name=f"{names.host_records_path(f'/cluster/{cluster}')}/{instance_id}/boot",  # the config's parameter_path
            description="",
            value=record,
            parameter_type="String",
            allowed_pattern="",
            keyid="",
            overwrite=True,
            tags=[],
            data_type="text",
            tier=None,
            policies=None,
        )

    def _arrive(self, instance_id: str, state: Any, now: float) -> _Host:
        instance = state.instance
        host = _Host(
            instance_id=instance_id,
            zone=state.availability_zone,
            node=instance.private_dns_name or instance_id,
            address=instance.private_ip or "",
            seen_at=now,
            labels=_node_labels(instance.user_data),
        )
        if self.faults.never_join_next > 0:
            self.faults.never_join_next -= 1
            self.faults.never_join.add(instance_id)
        if self.faults.boot_fails_next > 0:
            self.faults.boot_fails_next -= 1
            self.faults.boot_fails.add(instance_id)
        if state.lifecycle_state not in TERMINATING_STATES and not self.lifecycle.hold_launch(
            state.auto_scaling_group, state
        ):
            state.lifecycle_state = "Pending"
        self._hosts[instance_id] = host
        return host

    def _set_ready(self, node: str, *, ready: bool) -> None:
        with contextlib.suppress(ApiError):  # a host that never joined has no node
            self.world.set_node_ready(node, ready)

    def _delete_node(self, node: str) -> None:
        with contextlib.suppress(ApiError):
            self.world.delete("Node", "", node)


def _node_labels(user_data: Any) -> dict[str, str]:
    """The labels the boot script passes to the kubelet (``--node-labels``), from the launch's user-data."""
    encoded = user_data.as_bytes() if hasattr(user_data, "as_bytes") else user_data  # moto's Base64EncodedString
    try:
        script = base64.b64decode(encoded or b"").decode()
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        return {}
    found = NODE_LABELS.search(script)
    words = shlex.split(found[1]) if found else []
    pairs = (label.partition("=") for label in (words[0].split(",") if words and words[0] else []))
    return {key: value for key, _, value in pairs if key}


def _group_members() -> list[tuple[str, Any]]:
    """(instance id, moto's InstanceState) of every group member in every account and region moto holds."""
    from moto.autoscaling.models import autoscaling_backends

    members = []
    for regions in list(autoscaling_backends.values()):
        for backend in list(regions.values()):
            for group in list(backend.autoscaling_groups.values()):
                members += [(state.instance.id, state) for state in group.instance_states]
    return members
