"""What happened during a roll, in time: the group's capacity at each look, every action taken, each host's phases,
and each drain's evictions and refusals. The engine records it as it goes (no extra call: everything is what it
observed or did); the roll report (``report.py``) draws it. Times are seconds since the roll began, on its clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Sample:
    at: float
    desired: int
    in_service: int
    ready: int  # InService with a Ready, schedulable node


@dataclass(frozen=True)
class Step:
    at: float
    action: str  # the action's kind: admit, resize, cordon, drain, terminate, …
    hosts: tuple[str, ...]
    text: str  # what it did, as the dry run would say it


@dataclass(frozen=True)
class Entered:
    at: float
    host: str  # the old host of the flight
    phase: str  # "admitted", then the phase names of ``state.Phase``


@dataclass(frozen=True)
class Drained:
    at: float
    host: str
    node: str
    evicted: int
    refused: int  # evictions the budgets refused (429) before they were allowed, or not
    forced: int


@dataclass
class Timeline:
    started: datetime  # the wall clock at the roll's first second
    samples: list[Sample] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    entered: list[Entered] = field(default_factory=list)
    drains: list[Drained] = field(default_factory=list)
