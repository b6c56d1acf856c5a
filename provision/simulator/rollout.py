"""The Deployment controller's arithmetic (pkg/controller/deployment/rolling.go and recreate.go): how many replicas
each of a Deployment's ReplicaSets should have at this sync, given its strategy and what is available now.

RollingUpdate scales the new ReplicaSet up while the total stays within replicas + maxSurge, and the old ones down
while the available pods stay at or above replicas - maxUnavailable (unhealthy old pods first); Recreate removes
every old pod before the new ReplicaSet gets any. One call is one sync: the world calls it at each reconcile, so a
rollout advances as pods turn Ready, deterministically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class ReplicaSetState:
    name: str
    replicas: int  # spec.replicas
    available: int  # status.availableReplicas
    pods: int  # pods that still exist, terminating ones included (Recreate waits for them to go)


def _scaled(value: int | str | None, total: int, *, round_up: bool, default: str) -> int:
    """An IntOrString against ``total``: "25%" of 10 is 3 rounded up (maxSurge), 2 rounded down (maxUnavailable)."""
    value = default if value is None else value
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    share = int(text[:-1]) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def surge_and_unavailable(spec: Obj, replicas: int) -> tuple[int, int]:
    """maxSurge and maxUnavailable as counts; both 0 would deadlock, so maxUnavailable is then 1."""
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge"), replicas, round_up=True, default="25%")
    unavailable = _scaled(rolling.get("maxUnavailable"), replicas, round_up=False, default="25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def sync(spec: Obj, new: ReplicaSetState, old: list[ReplicaSetState]) -> dict[str, int]:
    """The replicas of every ReplicaSet after one sync (``old`` oldest first)."""
    replicas = int(spec.get("replicas", 1))
    wanted = {rs.name: rs.replicas for rs in [new, *old]}
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        for rs in old:
            wanted[rs.name] = 0
        if all(rs.pods == 0 for rs in old):
            wanted[new.name] = replicas
        return wanted
    surge, unavailable = surge_and_unavailable(spec, replicas)
    # Scale the new ReplicaSet up within the surge; a sync that changed it ends there, as the controller's does.
    if new.replicas > replicas:
        wanted[new.name] = replicas
    elif new.replicas < replicas:
        room = replicas + surge - sum(wanted.values())
        wanted[new.name] = new.replicas + max(0, min(room, replicas - new.replicas))
    if wanted[new.name] != new.replicas:
        return wanted
    # Scale the old ones down within the availability budget.
    old_total = sum(rs.replicas for rs in old)
    if old_total == 0:
        return wanted
    minimum = replicas - unavailable
    new_unavailable = wanted[new.name] - new.available
    can_remove = sum(wanted.values()) - minimum - new_unavailable
    if can_remove <= 0:
        return wanted
    for rs in old:  # unhealthy old pods cost no availability: they go first
        unhealthy = max(0, rs.replicas - rs.available)
        cut = min(unhealthy, can_remove)
        wanted[rs.name] -= cut
        can_remove -= cut
    available = new.available + sum(rs.available for rs in old)
    to_remove = available - minimum
    for rs in old:
        if to_remove <= 0:
            break
        cut = min(wanted[rs.name], to_remove)
        wanted[rs.name] -= cut
        to_remove -= cut
    return wanted
