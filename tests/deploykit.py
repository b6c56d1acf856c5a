"""What the deploy tests share: a UI that records what it shows, configs, and AWS facades on moto in-process."""

from __future__ import annotations

import io
import tomllib
from dataclasses import dataclass, field
from typing import Any

import boto3
from rich.console import Console

from provision.config.loader import parse_config
from provision.config.schema import ClusterConfig
from provision.ui import UI
from tests.conftest import EXAMPLE

REGION = "eu-west-1"
TOKEN = "abcdef.0123456789abcdef"


@dataclass
class Answers:
    """Scripted answers to confirmations, and the questions asked."""

    replies: list[bool] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def __call__(self, question: str) -> bool:
        self.asked.append(question)
        return self.replies.pop(0)


def recording_ui(*, assume_yes: bool = True, answers: Answers | None = None) -> tuple[UI, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, highlight=False)
    return UI(console, ask=answers, assume_yes=assume_yes), out


def config(**sections: dict[str, Any] | str) -> ClusterConfig:
    """The example configuration with some sections changed (merged into a table, or replacing a value)."""
    data = tomllib.loads(EXAMPLE.read_text())
    for section, values in sections.items():
        if isinstance(data.get(section), dict):
            data[section] = data[section] | values
        else:
            data[section] = values
    return parse_config(data, source="test.toml")


def existing_network() -> dict[str, Any]:
    """A VPC with three subnets made directly in moto, for configs that bring their own network (and so can be
    deleted cleanly on moto, whose delete_stack trips over route tables it created itself)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{index}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for index, zone in enumerate("abc")
    ]
    return {"vpc_id": vpc, "subnet_ids": subnets}
