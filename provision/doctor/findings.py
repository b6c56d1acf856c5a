"""What `cluster doctor` reports: findings, each with a severity, the resource it is about, the cause when known and
one next step; and the report that holds them with the checks that could not run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    PROBLEM = "problem"  # something is broken or will break: act now
    WARNING = "warning"  # needs attention, not broken yet
    OK = "ok"  # checked, nothing to do

    @property
    def rank(self) -> int:
        return {"problem": 0, "warning": 1, "ok": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str  # the family of checks: "stack", "boot", "health", …
    what: str  # one line: what is wrong (or fine)
    resources: tuple[str, ...] = ()  # the hosts, nodes or AWS resources it is about
    cause: str = ""
    next_step: str = ""  # one concrete command, or what to do

    @property
    def needs_attention(self) -> bool:
        return self.severity is not Severity.OK


@dataclass(frozen=True)
class Skipped:
    check: str
    why: str


@dataclass(frozen=True)
class Report:
    cluster: str
    stack: str
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = field(default=())

    @property
    def needs_attention(self) -> bool:
        return any(finding.needs_attention for finding in self.findings)

    def ordered(self) -> list[Finding]:
        """Problems first, then warnings, then what is fine; each group in the order the checks ran."""
        return sorted(self.findings, key=lambda finding: finding.severity.rank)

    def count(self, severity: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity is severity)

    def summary(self) -> str:
        problems, warnings = self.count(Severity.PROBLEM), self.count(Severity.WARNING)
        if not problems and not warnings:
            return "nothing needs attention"
        return f"{problems} problem(s), {warnings} warning(s): needs attention"

    def to_json(self) -> str:
        return json.dumps(
            {
                "cluster": self.cluster,
                "stack": self.stack,
                "needs_attention": self.needs_attention,
                "problems": self.count(Severity.PROBLEM),
                "warnings": self.count(Severity.WARNING),
                "findings": [asdict(finding) | {"resources": list(finding.resources)} for finding in self.ordered()],
                "skipped": [asdict(skipped) for skipped in self.skipped],
            },
            indent=2,
        )
