"""The doctor's report on one screen: problems first, each with its cause and next step; then what is fine in one line
each; then the checks that could not run and why; then the verdict."""

from __future__ import annotations

from provision.doctor.findings import Finding, Report, Severity
from provision.ui import UI

RESOURCES_SHOWN = 5
LABELS = {Severity.PROBLEM: "PROBLEM", Severity.WARNING: "WARNING", Severity.OK: "ok"}
STYLES = {Severity.PROBLEM: "bold red", Severity.WARNING: "yellow", Severity.OK: "green"}


def show(report: Report, ui: UI, *, header: str) -> None:
    print_line(ui, header)
    for finding in report.ordered():
        print_line(ui, f"{LABELS[finding.severity]:<8} {_subject(finding)}", style=STYLES[finding.severity])
        if finding.cause:
            print_line(ui, f"{'':<8}   cause: {finding.cause}")
        if finding.next_step:
            print_line(ui, f"{'':<8}   next:  {finding.next_step}")
    for skipped in report.skipped:
        print_line(ui, f"{'skipped':<8} {skipped.check}: {skipped.why}", style="dim")
    print_line(ui, report.summary(), style="bold red" if report.needs_attention else "bold green")


def print_line(ui: UI, text: str, *, style: str = "") -> None:
    # Whole lines, never rich markup: causes quote logs and stack events verbatim.
    ui.line(text, style=style)


def _subject(finding: Finding) -> str:
    if not finding.resources:
        return finding.what
    shown = ", ".join(finding.resources[:RESOURCES_SHOWN])
    more = len(finding.resources) - RESOURCES_SHOWN
    return f"{shown}{f' (+{more} more)' if more > 0 else ''}: {finding.what}"
