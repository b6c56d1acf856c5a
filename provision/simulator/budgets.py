"""PodDisruptionBudget arithmetic and the eviction decision, as the API server's eviction subresource makes it
(pkg/registry/core/pod/storage/eviction.go and the disruption controller), for the cases the simulator models."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BudgetStatus:
    expected: int
    current_healthy: int
    desired_healthy: int
    disruptions_allowed: int

    def as_status(self, generation: int, *, since: str) -> dict[str, Any]:
        """The budget's status; ``since`` is when its DisruptionAllowed condition last turned to what it is now."""
        return {
            "observedGeneration": generation,
            "expectedPods": self.expected,
            "currentHealthy": self.current_healthy,
            "desiredHealthy": self.desired_healthy,
            "disruptionsAllowed": self.disruptions_allowed,
            "disruptedPods": {},
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if self.disruptions_allowed > 0 else "False",
                    "reason": "SufficientPods" if self.disruptions_allowed > 0 else "InsufficientPods",
                    "message": "",
                    "lastTransitionTime": since,
                    "observedGeneration": generation,
                }
            ],
        }


def _scaled(value: int | str, expected: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    percent = int(str(value).rstrip("%"))
    exact = expected * percent / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def budget_status(spec: dict[str, Any], *, expected: int, healthy: int) -> BudgetStatus:
    if "minAvailable" in spec:
        desired = _scaled(spec["minAvailable"], expected, round_up=True)
    elif "maxUnavailable" in spec:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected, round_up=True))
    else:
        desired = expected  # neither given: no voluntary disruption is allowed
    return BudgetStatus(expected, healthy, desired, max(0, healthy - desired))


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str
    message: str
    causes: list[dict[str, str]]


def eviction_refusal(
    pod: dict[str, Any], budgets: list[tuple[dict[str, Any], BudgetStatus]], *, pod_healthy: bool
) -> Refusal | None:
    """None when the pod may be evicted; otherwise the error the API server returns."""
    if pod["status"].get("phase") in {"Pending", "Succeeded", "Failed"} or not budgets:
        return None  # not running, or unprotected
    if len(budgets) > 1:
        return Refusal(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            [],
        )
    [(budget, status)] = budgets
    policy = budget.get("spec", {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
    # An unready pod may go under AlwaysAllow, or under IfHealthyBudget while the budget is met (and wants some).
    unready_may_go = not pod_healthy and (
        policy == "AlwaysAllow" or status.current_healthy >= status.desired_healthy > 0
    )
    if unready_may_go or status.disruptions_allowed > 0:
        return None
    name = budget["metadata"]["name"]
    return Refusal(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        [
            {
                "reason": "DisruptionBudget",
                "message": f"The disruption budget {name} needs {status.desired_healthy} healthy pods and has "
                f"{status.current_healthy} currently",
            }
        ],
    )
