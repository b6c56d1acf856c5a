"""Scaling processes that would fight a roll are suspended for its duration and resumed on every way out: success,
failure, Ctrl-C. Processes someone else had suspended before the roll stay as they were. What the roll suspended is
in its journal before it is suspended, so a roll that died is still undone by the next run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from provision.aws.groups import Groups
from provision.roll.journal import Journal
from provision.roll.state import RollRecord

# AZRebalance would terminate hosts to even out zones mid-roll; ReplaceUnhealthy would replace a draining host before
# it is drained; scheduled actions and alarms would change the size the roll is managing. Launch and Terminate stay:
# the roll needs them.
FIGHTING_PROCESSES = ("AZRebalance", "ReplaceUnhealthy", "ScheduledActions", "AlarmNotification")


@contextmanager
def processes_suspended(groups: Groups, journal: Journal, record: RollRecord) -> Iterator[list[str]]:
    group = groups.find(record.group)
    already = set(group.suspended_processes) if group else set()
    # A process the journal says we suspended is ours even though it is suspended now: we died before resuming it.
    ours = sorted(set(record.suspended) | {process for process in FIGHTING_PROCESSES if process not in already})
    record.suspended = ours
    journal.save(record)
    groups.suspend(record.group, ours)
    try:
        yield ours
    finally:
        groups.resume(record.group, ours)
        record.suspended = []
        journal.save(record)
