"""The template's path from the group's lifecycle actions to `cluster heal`: the rule, the queue and its policy, the
dead-letter queue, the handler's policy, and the terminate hook's configurable timeout and default result."""

from __future__ import annotations

from fnmatch import fnmatchcase
from string import Template
from typing import Any

import boto3
import pytest

from provision import names
from provision.aws.parameters import Parameters
from provision.config.loader import load_config
from provision.render.template import render
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from tests.test_template import CASES, as_dict, cfn_lint, rendered, with_changes


def resource(template: dict[str, Any], logical_id: str, kind: str) -> dict[str, Any]:
    body: dict[str, Any] = template["Resources"][logical_id]
    assert body["Type"] == kind
    properties: dict[str, Any] = body["Properties"]
    return properties


@pytest.fixture(params=list(CASES))
def template(request: pytest.FixtureRequest) -> dict[str, Any]:
    return as_dict(rendered(request.param))


def test_the_rule_sends_only_this_groups_lifecycle_actions_to_the_queue(template: dict[str, Any]) -> None:
    rule = resource(template, names.LIFECYCLE_EVENT_RULE, "AWS::Events::Rule")

    assert rule["EventPattern"] == {
        "source": ["aws.autoscaling"],
        "detail-type": ["EC2 Instance-launch Lifecycle Action", "EC2 Instance-terminate Lifecycle Action"],
        "detail": {"AutoScalingGroupName": [{"Ref": names.HOST_GROUP}]},
    }
    assert rule["State"] == "ENABLED"
    assert [target["Arn"] for target in rule["Targets"]] == [{"Fn::GetAtt": [names.LIFECYCLE_QUEUE, "Arn"]}]


def test_the_queue_admits_only_the_rule(template: dict[str, Any]) -> None:
    policy = resource(template, names.LIFECYCLE_QUEUE_POLICY, "AWS::SQS::QueuePolicy")

    assert policy["Queues"] == [{"Ref": names.LIFECYCLE_QUEUE}]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": ["events.amazonaws.com"]}
    assert statement["Action"] == ["sqs:SendMessage"]
    assert statement["Resource"] == [{"Fn::GetAtt": [names.LIFECYCLE_QUEUE, "Arn"]}]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [names.LIFECYCLE_EVENT_RULE, "Arn"]}}
    }


def test_both_queues_are_encrypted_and_failing_messages_go_to_the_dead_letter_queue(template: dict[str, Any]) -> None:
    queue = resource(template, names.LIFECYCLE_QUEUE, "AWS::SQS::Queue")
    dead_letters = resource(template, names.LIFECYCLE_DEAD_LETTER_QUEUE, "AWS::SQS::Queue")

    assert queue["SqsManagedSseEnabled"] is True and dead_letters["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [names.LIFECYCLE_DEAD_LETTER_QUEUE, "Arn"]},
        "maxReceiveCount": 5,
    }
    assert queue["ReceiveMessageWaitTimeSeconds"] == 20, "long polling"
    assert dead_letters["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


def test_the_handler_policy_is_scoped_to_this_group_queue_stack_and_path(template: dict[str, Any]) -> None:
    policy = resource(template, names.HEAL_HANDLER_POLICY, "AWS::IAM::ManagedPolicy")
    statements = {statement["Sid"]: statement for statement in policy["PolicyDocument"]["Statement"]}
    actions = {action: sid for sid, statement in statements.items() for action in statement["Action"]}

    lifecycle = statements[actions["autoscaling:CompleteLifecycleAction"]]
    assert lifecycle["Action"] == ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
    assert lifecycle["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
            f"autoScalingGroupName/${{{names.HOST_GROUP}}}"
        }
    ]
    assert list(lifecycle["Condition"]["StringEquals"]) == ["autoscaling:ResourceTag/cluster:name"]
    queue = statements[actions["sqs:ReceiveMessage"]]
    assert sorted(queue["Action"]) == ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]
    assert queue["Resource"] == [{"Fn::GetAtt": [names.LIFECYCLE_QUEUE, "Arn"]}]
    # Only describes, which AWS cannot scope to a resource, get "*"; nothing may write anywhere else.
    unscoped = [
        action for statement in statements.values() if statement["Resource"] == ["*"] for action in statement["Action"]
    ]
    assert unscoped and all(":Describe" in action for action in unscoped)
    assert not [action for action in actions if action.startswith(("sqs:Send", "iam:"))]
    # SSM writes: the records of hosts that left, below the hosts' path, and the storm guard's spent handovers (not
    # the join token, not the roll's); the guard's slots, created below the repair path only.
    forget = statements[actions["ssm:DeleteParameters"]]
    assert [action for action in actions if action.startswith("ssm:Delete")] == ["ssm:DeleteParameters"]
    prefix = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/cluster/"
    [hosts, handovers] = [resource["Fn::Sub"] for resource in forget["Resource"]]
    assert hosts.startswith(prefix) and hosts.endswith("/hosts/*")
    assert handovers.startswith(prefix) and handovers.endswith("/repair/handovers/*")
    [put] = [action for action in actions if action.startswith("ssm:Put")]
    slots = statements[actions[put]]
    assert [resource["Fn::Sub"].removeprefix(prefix).split("/", 1)[1] for resource in slots["Resource"]] == [
        "repair",
        "repair/*",
    ]
    # Reporting a host and tagging it: this group only, this cluster's instances only, the repair tag only.
    report = statements[actions["autoscaling:SetInstanceHealth"]]
    assert report["Resource"] == lifecycle["Resource"] and report["Condition"] == lifecycle["Condition"]
    tag = statements[actions["ec2:CreateTags"]]
    cluster = lifecycle["Condition"]["StringEquals"]["autoscaling:ResourceTag/cluster:name"]
    assert tag["Condition"]["StringEquals"] == {"ec2:ResourceTag/cluster:name": cluster}
    assert tag["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": [names.REPAIR_TAG]}
    assert tag["Condition"]["Null"] == {"aws:TagKeys": "false"}


def test_the_handler_policy_grants_the_calls_heal_makes_and_no_others(template: dict[str, Any]) -> None:
    """The calls are those of provision/verbs/heal.py and provision/heal/service.py down to the AWS facades;
    tests/test_heal_on_sandbox.py records them on a real run and checks them against this policy too."""
    assert set(handler_statements(template)) == {
        ("autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"),  # the hook
        ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"),  # the queue
        ("cloudformation:DescribeStacks",),  # its outputs: the queue's URL, the group, the up-to-date fingerprint
        ("ssm:GetParameter",),  # the roll's lock and journal, the hosts' records: one by one, never a whole path
        ("ssm:DeleteParameters",),  # the records of hosts that left, the storm guard's spent handovers
        ("autoscaling:SetInstanceHealth",),  # repair from the cluster side: a host whose node stays NotReady
        ("ssm:GetParametersByPath", "ssm:PutParameter"),  # the storm guard's slots, read and claimed
        ("ec2:CreateTags",),  # a host's repair state (held, reported, clear)
        (
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeLifecycleHooks",  # the heartbeat cadence
            "ec2:DescribeInstances",
        ),
    }


@pytest.mark.parametrize("mode", list(CASES))
def test_the_handler_reads_the_roll_state_and_the_host_records_but_never_the_join_token(mode: str) -> None:
    cfg = load_config(CASES[mode])
    path = cfg.parameter_path
    parameters = Parameters(boto3.client("ssm", region_name=cfg.region))

    def readable(name: str) -> bool:
        return parameter_granted(as_dict(render(cfg)), name, cfg.region)

    assert readable(RunLock(parameters, path).name) and readable(Journal(parameters, path).name)
    assert readable(f"{names.host_records_path(path)}/i-0123456789abcdef0/boot")
    assert readable(f"{names.host_records_path(path)}/i-0123456789abcdef0/health")
    assert not readable(names.join_token_parameter(path)), "the kubeadm join token is not heal's to read"
    assert not readable(f"{path}/anything-else") and not readable(path)
    assert not readable(f"/cluster/other{path}/roll-lock"), "nor another cluster's"


def handler_statements(template: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The handler policy's statements by their actions."""
    policy = resource(template, names.HEAL_HANDLER_POLICY, "AWS::IAM::ManagedPolicy")
    return {tuple(statement["Action"]): statement for statement in policy["PolicyDocument"]["Statement"]}


def parameter_granted(template: dict[str, Any], name: str, region: str) -> bool:
    """Whether the handler policy lets `ssm:GetParameter` read the parameter ``name`` (IAM's ``*``: any text)."""
    arn = f"arn:aws:ssm:{region}:123456789012:parameter{name}"
    return any(
        fnmatchcase(arn, Template(resource["Fn::Sub"].replace("AWS::", "")).substitute(
            Partition="aws", Region=region, AccountId="123456789012"
        ))
        for statement in handler_statements(template).values()
        if "ssm:GetParameter" in statement["Action"] and statement["Effect"] == "Allow"
        for resource in statement["Resource"]
    )  # fmt: skip


def test_outputs_name_the_queue_and_the_handler_policy(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs[names.OUTPUT_LIFECYCLE_QUEUE_URL]["Value"] == {"Ref": names.LIFECYCLE_QUEUE}
    assert outputs[names.OUTPUT_HEAL_HANDLER_POLICY]["Value"] == {"Ref": names.HEAL_HANDLER_POLICY}


def test_the_terminate_hook_takes_its_timeout_and_default_result_from_the_config() -> None:
    config = with_changes(
        lifecycle={"terminate_timeout_seconds": 3000, "terminate_default_result": "ABANDON"},
    )
    template = as_dict(render(config))
    hooks = {
        hook["LifecycleHookName"]: hook
        for hook in template["Resources"][names.HOST_GROUP]["Properties"]["LifecycleHookSpecificationList"]
    }

    assert hooks[names.TERMINATE_HOOK] == {
        "LifecycleHookName": names.TERMINATE_HOOK,
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "DefaultResult": "ABANDON",
        "HeartbeatTimeout": 3000,
    }
    assert cfn_lint(template, config.region) == []
