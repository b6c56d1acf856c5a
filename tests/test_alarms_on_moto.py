"""The CloudWatch alarms a roll halts on (`rolling.halt_on_alarms`), read through the typed facade from moto
in-process: which fire, with CloudWatch's reason, which do not exist, and what it costs in calls."""

from __future__ import annotations

from typing import Any

import boto3

from provision.aws.cloud import Cloud

REGION = "eu-west-1"  # the region of conftest's `cloud`


def put_alarm(name: str) -> None:
    boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10,
        ComparisonOperator="GreaterThanThreshold",
    )


def test_only_the_alarm_in_alarm_state_fires_with_its_reason_and_an_unknown_name_is_missing(cloud: Cloud) -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for name in ("web-5xx", "web-latency", "web-errors"):
        put_alarm(name)
    cloudwatch.set_alarm_state(
        AlarmName="web-5xx", StateValue="ALARM", StateReason="Threshold Crossed: 1 datapoint [42.0] > 10.0"
    )
    # No data is not a firing alarm: a roll halts only on ALARM, as Instance Refresh does.
    cloudwatch.set_alarm_state(AlarmName="web-errors", StateValue="INSUFFICIENT_DATA", StateReason="no datapoints")

    states = cloud.alarms.states(["web-latency", "web-5xx", "web-errors", "web-5xxx"])

    assert [(alarm.name, alarm.reason) for alarm in states.firing] == [
        ("web-5xx", "Threshold Crossed: 1 datapoint [42.0] > 10.0")
    ]
    assert states.missing == ("web-5xxx",)
    [described] = cloudwatch.describe_alarms(AlarmNames=["web-5xx"])["MetricAlarms"]
    assert states.firing[0].since == described["StateUpdatedTimestamp"]


def test_no_names_cost_no_call_and_nothing_fires(cloud: Cloud) -> None:
    calls = count_describe_alarms(cloud)

    states = cloud.alarms.states([])

    assert (states.firing, states.missing, calls) == ((), (), [])


def test_150_names_cost_two_calls(cloud: Cloud) -> None:
    names = [f"alarm-{index:03}" for index in range(150)]
    for name in names[::10]:
        put_alarm(name)
    calls = count_describe_alarms(cloud)

    states = cloud.alarms.states(names)

    assert len(calls) == 2
    assert [len(call["AlarmNames"]) for call in calls] == [100, 50]
    assert states.firing == ()
    assert states.missing == tuple(name for index, name in enumerate(names) if index % 10)


def count_describe_alarms(cloud: Cloud) -> list[dict[str, Any]]:
    """The parameters of every DescribeAlarms request the facade's own client sends, seen by botocore's event hook."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    cloud.alarms.client.meta.events.register("provide-client-params.cloudwatch.DescribeAlarms", record)
    return calls
