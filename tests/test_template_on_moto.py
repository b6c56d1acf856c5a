"""The kubeadm template deployed with boto3 on moto (in-process): the resources exist and every host carries the
fingerprint that the stack's output names. moto ignores hooks, policies, EKS and metadata options; the template tests
check those."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from provision.config.loader import load_config
from provision.render import names
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
