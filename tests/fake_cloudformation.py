"""A scripted CloudFormation client for what moto cannot show: per-resource events, rollbacks, failed states,
stacks that stay in progress, change sets that fail, and paging. The real ``Stacks`` facade runs on top of it.

Once a change set is executed (or a delete starts), each ``describe_stacks`` call plays the next step of a
timeline: a status and the events that happened since.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

STACK_TYPE = "AWS::CloudFormation::Stack"
_ids = itertools.count(1)


def event(logical_id: str, resource_type: str, status: str, reason: str = "") -> dict[str, Any]:
    number = next(_ids)
    return {
        "EventId": f"event-{number}",
        "Timestamp": datetime(2026, 11, 25, 12, 0, tzinfo=UTC) + timedelta(seconds=number),
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
    }


Step = tuple[str, list[dict[str, Any]]]


@dataclass
class ScriptedCloudFormation:
    name: str
    status: str | None = None  # None: no stack yet
    tags: dict[str, str] = field(default_factory=lambda: {"cluster:name": "demo"})
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    after_execute: list[Step] = field(default_factory=list)
    after_delete: list[Step] = field(default_factory=lambda: [("DELETE_COMPLETE", [])])
    waiting: list[Step] = field(default_factory=list)  # played from the first describe_stacks on
    change_set_status: tuple[str, str] = ("CREATE_COMPLETE", "")
    changes: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "ResourceChange": {
                    "Action": "Add",
                    "LogicalResourceId": "HostGroup",
                    "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
                }
            }
        ]
    )
    page_size: int = 2
    calls: list[str] = field(default_factory=list)

    def _play(self) -> None:
        if self.waiting:
            self.status, new = self.waiting.pop(0)
            self.events += new

    def _missing(self, operation: str) -> ClientError:
        return ClientError(
            {"Error": {"Code": "ValidationError", "Message": f"Stack with id {self.name} does not exist"}}, operation
        )

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        self.calls.append("DescribeStacks")
        self._play()
        if self.status is None or self.status == "DELETE_COMPLETE":
            raise self._missing("DescribeStacks")
        return {
            "Stacks": [
                {
                    "StackName": self.name,
                    "StackId": f"arn:aws:cloudformation:eu-west-1:123456789012:stack/{self.name}/1",
                    "StackStatus": self.status,
                    "Parameters": [{"ParameterKey": "PatchGeneration", "ParameterValue": "2"}],
                    "Tags": [{"Key": key, "Value": value} for key, value in self.tags.items()],
                }
            ]
        }

    def describe_stack_events(self, StackName: str, NextToken: str = "") -> dict[str, Any]:
        self.calls.append("DescribeStackEvents")
        newest_first = self.events[::-1]
        start = int(NextToken or 0)
        page: dict[str, Any] = {"StackEvents": newest_first[start : start + self.page_size]}
        if start + self.page_size < len(newest_first):
            page["NextToken"] = str(start + self.page_size)
        return page

    def describe_stack_resources(self, StackName: str) -> dict[str, Any]:
        self.calls.append("DescribeStackResources")
        return {"StackResources": []}

    def create_change_set(self, **request: Any) -> dict[str, Any]:
        self.calls.append(f"CreateChangeSet:{request['ChangeSetType']}")
        if self.status is None:
            self.status = "REVIEW_IN_PROGRESS"
            self.events.append(event(self.name, STACK_TYPE, "REVIEW_IN_PROGRESS", "User Initiated"))
        return {"Id": "change-set-1"}

    def describe_change_set(self, StackName: str, ChangeSetName: str, NextToken: str = "") -> dict[str, Any]:
        self.calls.append("DescribeChangeSet")
        status, reason = self.change_set_status
        # Two pages, to show that every page's changes are read.
        half = len(self.changes) // 2
        if not NextToken and half:
            return {"Status": status, "StatusReason": reason, "Changes": self.changes[:half], "NextToken": "2"}
        return {"Status": status, "StatusReason": reason, "Changes": self.changes[half:] if NextToken else self.changes}

    def execute_change_set(self, StackName: str, ChangeSetName: str) -> None:
        self.calls.append("ExecuteChangeSet")
        self.waiting = list(self.after_execute)

    def delete_change_set(self, StackName: str, ChangeSetName: str) -> None:
        self.calls.append("DeleteChangeSet")

    def delete_stack(self, StackName: str) -> None:
        self.calls.append("DeleteStack")
        self.waiting = list(self.after_delete)

    def get_paginator(self, operation: str) -> Paginator:
        return Paginator(self, operation)


@dataclass
class Paginator:
    client: ScriptedCloudFormation
    operation: str

    def paginate(self, **request: Any) -> Iterator[dict[str, Any]]:
        methods: dict[str, Callable[..., dict[str, Any]]] = {
            "describe_stack_events": self.client.describe_stack_events,
            "describe_change_set": self.client.describe_change_set,
        }
        method = methods[self.operation]
        token = ""
        while True:
            page = method(**request, **({"NextToken": token} if token else {}))
            yield page
            token = page.get("NextToken", "")
            if not token:
                return
