"""A roll's plan and result as data: what `--output json` prints for patch, roll and replace (one document on stdout,
at the end, whatever the outcome), so that scripts read what operators read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provision.roll.engine import RollResult
from provision.roll.plan import Plan
from provision.roll.state import Flight

FORMAT = 1  # raised when a field changes meaning or goes; new fields may appear at any time


def plan_document(plan: Plan, *, continuing: tuple[Flight, ...] = ()) -> dict[str, Any]:
    """Every host the plan replaces, in order, with its zone, why, and the wave it goes in; what it leaves alone and
    why; the budget and strategy; and the hosts an interrupted roll left in flight, continued first."""
    wave_of = {step.old: number for number, wave in enumerate(plan.waves(), start=1) for step in wave}
    return {
        "operation": plan.operation,
        "group": plan.group,
        "desired": plan.desired,
        "max_size": plan.max_size,
        "lowest_ready": plan.lowest_ready,
        "peak_size": plan.peak_size,
        "budget": {
            "max_surge": plan.budget.surge,
            "max_unavailable": plan.budget.unavailable,
            "overlap": plan.budget.overlap,
        },
        "strategy": {
            "canary": plan.strategy.canary,
            "bake_seconds": plan.strategy.bake_seconds,
            "order": plan.strategy.order,
            "halt_on_alarms": list(plan.strategy.halt_on_alarms),
        },
        "continuing": [
            {
                "instance_id": flight.old,
                "replacement": flight.new or None,
                "phase": flight.phase.value if flight.phase else None,
            }
            for flight in continuing
        ],
        "hosts": [
            {
                "order": order,
                "instance_id": step.old,
                "group": plan.group,
                "zone": step.zone,
                "reason": step.reason,
                "dead": step.dead,
                "wave": wave_of[step.old],
            }
            for order, step in enumerate(plan.replacements, start=1)
        ],
        "waves": len(plan.waves()),
        "left_alone": [{"instance_id": instance, "why": why} for instance, why in plan.left_alone],
    }


def result_document(result: RollResult) -> dict[str, Any]:
    return {
        "replaced": [
            {
                "instance_id": item.old,
                "replacement": item.new,
                "old_image": item.old_image,
                "new_image": item.new_image,
                "seconds": round(item.seconds, 1),
            }
            for item in result.replaced
        ],
        "skipped": [{"instance_id": old, "why": why} for old, why in result.skipped],
        "lowest_ready": result.lowest_ready,
    }


@dataclass
class Document:
    """The one JSON document of a run: its plan, whether it was a dry run, its result, or the error it ended with."""

    plan: dict[str, Any] | None = None
    dry_run: bool = False
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # {"message": the line on stderr, "exit_code": the command's}
    run: RollResult | None = None  # the engine's, filled in as it goes: what the report draws, however it ends
    report: str | None = None  # the report page's path, once written

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "plan": self.plan,
            "dry_run": self.dry_run,
            "result": self.result,
            "error": self.error,
            "report": self.report,
        }
