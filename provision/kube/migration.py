"""Have the pods of a drained node come back? "Migrated" means: every owner of an evicted pod is back at the Ready
count it had before the drain (at most its wanted replicas), with Ready pods on other nodes. A pod that was not Ready
before (on another sick node, say) is not waited for: that is not the roll's doing. Pods still pending are named
with the scheduler's reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provision.kube.facade import Kube
from provision.kube.model import CRASHING, Owner, PodState


@dataclass(frozen=True)
class Migration:
    waiting: tuple[str, ...]  # "ReplicaSet default/web-7d9: 2 of 3 Ready elsewhere"
    pending: tuple[str, ...]  # "default/web-7d9-x2k (0/3 nodes are available: …)"
    crashing: tuple[
        str, ...
    ] = ()  # "default/web-7d9-x2k on node-4: CrashLoopBackOff": it will not come back by waiting

    @property
    def done(self) -> bool:
        return not self.waiting


def owners_of(pods: list[PodState]) -> set[Owner]:
    return {pod.owner for pod in pods if pod.owner is not None and pod.owner.kind != "DaemonSet"}


def ready_counts(kube: Kube, owners: set[Owner]) -> dict[Owner, int]:
    """How many Ready pods each owner has now, on any node: what a drain must give back."""
    counts: dict[Owner, int] = dict.fromkeys(owners, 0)
    for namespace in {owner.namespace for owner in owners}:
        for pod in kube.pods(namespace=namespace):
            if pod.owner in counts and pod.ready and not pod.terminating:
                counts[pod.owner] += 1
    return counts


def migration(kube: Kube, owners: Mapping[Owner, int | None], *, away_from: str) -> Migration:
    """``owners`` maps each owner to the Ready count to get back to (None: its wanted replicas)."""
    waiting: list[str] = []
    pending: list[str] = []
    crashing: list[str] = []
    by_namespace: dict[str, list[PodState]] = {}
    for owner in sorted(owners, key=str):
        if owner.namespace not in by_namespace:
            by_namespace[owner.namespace] = kube.pods(namespace=owner.namespace)
        wanted = kube.wanted_replicas(owner)
        if wanted is None:
            continue  # no scale to compare with (a Job, a custom controller): nothing to wait for
        before = owners[owner]
        wanted = wanted if before is None else min(wanted, before)
        pods = [pod for pod in by_namespace[owner.namespace] if pod.owner == owner and not pod.terminating]
        ready = sum(1 for pod in pods if pod.ready and pod.node != away_from)
        crashing += [f"{pod.ref} on {pod.node}: {pod.waiting_reason}" for pod in pods if pod.waiting_reason in CRASHING]
        if ready < wanted:
            waiting.append(f"{owner}: {ready} of {wanted} Ready elsewhere")
            pending += [
                f"{pod.ref} ({pod.unschedulable_reason or 'not scheduled yet'})"
                for pod in pods
                if pod.phase == "Pending"
            ]
    return Migration(tuple(waiting), tuple(pending), tuple(crashing))
