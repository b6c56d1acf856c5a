"""CloudWatch alarms, typed: which of the alarms a roll watches (`rolling.halt_on_alarms`) are firing, and which do not
exist, so that a misspelt name is refused instead of silently watching nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

NAMES_PER_CALL = 100  # DescribeAlarms takes at most 100 AlarmNames, and returns at most 100 alarms a page


@dataclass(frozen=True)
class FiringAlarm:
    name: str
    reason: str  # CloudWatch's StateReason, e.g. "Threshold Crossed: 1 datapoint [5.0] was greater than …"
    since: datetime  # when it entered ALARM


@dataclass(frozen=True)
class AlarmStates:
    firing: tuple[FiringAlarm, ...]  # in the order the names were given
    missing: tuple[str, ...]  # names no alarm has, in the order given


class Alarms:
    def __init__(self, client: CloudWatchClient) -> None:
        self.client = client

    def states(self, names: Sequence[str]) -> AlarmStates:
        """One DescribeAlarms call per 100 names (more only if CloudWatch pages an answer), metric and composite
        alarms alike."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, FiringAlarm | None] = {}  # every alarm that exists; None when it is not in ALARM
        paginator = self.client.get_paginator("describe_alarms")
        for start in range(0, len(wanted), NAMES_PER_CALL):
            pages = paginator.paginate(
                AlarmNames=wanted[start : start + NAMES_PER_CALL],
                AlarmTypes=["MetricAlarm", "CompositeAlarm"],
                PaginationConfig={"PageSize": NAMES_PER_CALL},  # the default page is 50 alarms
            )
            for page in pages:
                for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                    name = alarm["AlarmName"]
                    # StateUpdatedTimestamp also moves when the evaluation state changes; StateTransitioned is when
                    # the alarm entered ALARM, but older answers (and moto's) lack it.
                    since = alarm.get("StateTransitionedTimestamp") or alarm["StateUpdatedTimestamp"]
                    found[name] = (
                        FiringAlarm(name, alarm.get("StateReason", ""), since)
                        if alarm["StateValue"] == "ALARM"
                        else None
                    )
        return AlarmStates(
            firing=tuple(firing for name in wanted if (firing := found.get(name)) is not None),
            missing=tuple(name for name in wanted if name not in found),
        )
