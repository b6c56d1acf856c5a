"""How stack events and the hosts' own failure records are told to the user: root causes only, newest host first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from provision.aws.parameters import Parameters
from provision.aws.stacks import StackEvent
from provision.deploy.host_records import boot_records
from provision.names import host_records_path
from provision.ui import UI

LOG_LINES_SHOWN = 15


def root_causes(events: Sequence[StackEvent]) -> list[StackEvent]:
    """The failures that started a cascade, oldest first; not the "Resource creation cancelled" echoes."""
    return [event for event in events if event.is_root_cause and event.resource_type != "AWS::CloudFormation::Stack"]


def event_printer(ui: UI, seen: list[StackEvent]) -> Callable[[Sequence[StackEvent]], None]:
    """A callback for ``Stacks.wait_settled`` that shows each new event as it arrives and keeps it in ``seen``.
    Failures that only echo another ("Resource creation cancelled") are kept but not shown."""

    def show(events: Sequence[StackEvent]) -> None:
        seen.extend(events)
        for event in events:
            failed = event.status.endswith("_FAILED")
            if failed and not event.is_root_cause:
                continue
            ui.say(describe_event(event, with_time=ui.fancy), style="red" if failed else "")

    return show


def describe_event(event: StackEvent, *, with_time: bool = False) -> str:
    text = f"{event.status} {event.logical_id} ({event.resource_type})"
    if event.reason:
        text += f": {event.reason}"
    return f"{event.timestamp:%H:%M:%S} {text}" if with_time else text


def failure_records(parameters: Parameters, parameter_path: str, *, since: datetime) -> list[str]:
    """What hosts whose boot failed since ``since`` recorded: `host i-… failed at step join (exit 1):` and the last
    log lines (a record whose time cannot be read counts as recent)."""
    lines: list[str] = []
    for record in boot_records(parameters.values_under(host_records_path(parameter_path)), parameter_path):
        if record.at is not None and record.at < since:
            continue
        lines.append(f"host {record.instance_id} failed at step {record.step} (exit {record.exit_code}):")
        lines += [f"    {line}" for line in record.log[-LOG_LINES_SHOWN:]]
    return lines
