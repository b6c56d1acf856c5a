"""`cluster status` shows the health agent's last verdict per host, from the record the agent publishes under
/cluster/<name>/hosts/<instance-id>/health (userdata/health-agent.sh), on moto in-process."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3

from provision.aws.cloud import Cloud
from provision.deploy.status import collect, show
from provision.deploy.up import Up
from tests.deploykit import REGION, TOKEN, config, recording_ui

EXAMPLE = config()


def test_status_shows_each_hosts_last_health_verdict_where_the_agent_recorded_one(cloud: Cloud) -> None:
    Up(EXAMPLE, cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)
    sick, well, silent = sorted(row.instance_id for row in collect(EXAMPLE, cloud, now=datetime.now(UTC)).hosts)
    ssm = boto3.client("ssm", region_name=REGION)
    records = f"{EXAMPLE.parameter_path}/hosts"
    # What the agent writes: `<time> <verdict> failures=<n>`, on change only.
    ssm.put_parameter(Name=f"{records}/{sick}/health", Type="String",
                      Value="2026-11-25T06:00:00Z failing:kubelet disk failures=3")  # fmt: skip
    ssm.put_parameter(Name=f"{records}/{well}/health", Type="String", Value="2026-11-25T05:00:00Z healthy failures=0")
    ssm.put_parameter(Name=f"{records}/{silent}/boot", Type="String", Value="ok")

    report = collect(EXAMPLE, cloud, now=datetime.now(UTC))

    assert {row.instance_id: row.agent for row in report.hosts} == {
        sick: "failing:kubelet disk",
        well: "healthy",
        silent: "-",
    }
    assert {host["instance_id"]: host["agent"] for host in json.loads(report.to_json())["hosts"]}[sick] == (
        "failing:kubelet disk"
    )
    ui, out = recording_ui()
    show(report, ui)
    header, *rows = out.getvalue().splitlines()[1:4]
    assert header.split()[:5] == ["instance", "zone", "lifecycle", "health", "agent"]
    assert any(row.startswith(sick) and "failing:kubelet disk" in row for row in rows)
