"""How a host's node is emptied, shared by whatever removes hosts (the roll and heal): the drain policy the
configuration's ``rolling`` section sets, and the fast path for a dead node."""

from __future__ import annotations

from provision.config.schema import Rolling
from provision.kube.drain import DrainPolicy
from provision.kube.facade import Kube


def drain_policy(rolling: Rolling) -> DrainPolicy:
    return DrainPolicy(
        timeout_seconds=rolling.drain_timeout_seconds,
        on_blocked_budget=rolling.on_blocked_budget,
        delete_emptydir_data=rolling.delete_emptydir_data,
        evict_unmanaged_pods=rolling.evict_unmanaged_pods,
    )


def clear_dead_node(kube: Kube, node: str) -> int:
    """A dead node's pods cannot be evicted (no kubelet confirms it): delete them and the Node object, so their
    controllers recreate them elsewhere now rather than after the node controller's eviction timeout. Returns the
    number of pods deleted."""
    pods = kube.pods(node=node)
    for pod in pods:
        kube.delete_pod(pod, grace_seconds=0)
    kube.delete_node(node)
    return len(pods)
