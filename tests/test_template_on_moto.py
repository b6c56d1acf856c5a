"""The kubeadm template deployed with boto3 on moto (in-process): the resources exist and every host carries the
fingerprint that the stack's output names, and lifecycle events reach the queue through the rule. moto ignores hooks,
policies (the queue's too), EKS and metadata options; the template tests check those."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from provision import names
from provision.config.loader import load_config
from provision.render.template import render
from tests.conftest import EXAMPLE


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def test_stack_creates_the_group_and_tags_hosts_with_the_current_fingerprint(aws: None) -> None:
    config = load_config(EXAMPLE)
    cloudformation = boto3.client("cloudformation", region_name=config.region)

    cloudformation.create_stack(
        StackName=config.stack_name, TemplateBody=render(config).text("yaml"), Capabilities=["CAPABILITY_IAM"]
    )

    [stack] = cloudformation.describe_stacks(StackName=config.stack_name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    [group] = boto3.client("autoscaling", region_name=config.region).describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs[names.OUTPUT_GROUP]]
    )["AutoScalingGroups"]
    assert len(group["Instances"]) == config.hosts.desired_capacity
    assert {"Key": names.CLUSTER_TAG, "Value": "demo"} in [
        {"Key": tag["Key"], "Value": tag["Value"]} for tag in group["Tags"]
    ]
    image = boto3.client("ssm", region_name=config.region).get_parameter(Name=config.image.removeprefix("ssm:"))[
        "Parameter"
    ]["Value"]
    assert outputs[names.OUTPUT_FINGERPRINT] == f"{image}/0/{render(config).digest}"

    reservations = boto3.client("ec2", region_name=config.region).describe_instances(
        InstanceIds=[instance["InstanceId"] for instance in group["Instances"]]
    )["Reservations"]
    instances = [instance for reservation in reservations for instance in reservation["Instances"]]
    for instance in instances:
        tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
        assert tags[names.FINGERPRINT_TAG] == outputs[names.OUTPUT_FINGERPRINT]
        assert instance["ImageId"] == image


def test_the_groups_lifecycle_events_reach_the_encrypted_queue_and_others_do_not(aws: None) -> None:
    config = load_config(EXAMPLE)
    cloudformation = boto3.client("cloudformation", region_name=config.region)
    cloudformation.create_stack(
        StackName=config.stack_name, TemplateBody=render(config).text("yaml"), Capabilities=["CAPABILITY_IAM"]
    )
    listed = cloudformation.describe_stack_resources(StackName=config.stack_name)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in listed if "LogicalResourceId" in r}
    queue_url, group = physical[names.LIFECYCLE_QUEUE], physical[names.HOST_GROUP]
    sqs = boto3.client("sqs", region_name=config.region)
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["SqsManagedSseEnabled"] == "true"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 5
    assert redrive["deadLetterTargetArn"].endswith(physical[names.LIFECYCLE_DEAD_LETTER_QUEUE].rsplit("/", 1)[1])

    def lifecycle_event(group_name: str) -> dict[str, str]:
        return {
            "Source": "aws.autoscaling",
            "DetailType": "EC2 Instance-terminate Lifecycle Action",
            "Detail": json.dumps({"AutoScalingGroupName": group_name, "EC2InstanceId": "i-0123456789abcdef0"}),
        }

    # moto routes an aws.* source put on the default bus through the rule's pattern, as AWS routes its own events.
    boto3.client("events", region_name=config.region).put_events(
        Entries=[lifecycle_event(group), lifecycle_event("someone-elses-group")]
    )

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(message["Body"])["detail"]["AutoScalingGroupName"] for message in messages] == [group]
