"""The AWS facades a verb works with, built from one factory and one clock."""

from __future__ import annotations

from dataclasses import dataclass

from provision.aws.alarms import Alarms
from provision.aws.eks import EksClusters
from provision.aws.groups import Groups
from provision.aws.instances import Instances
from provision.aws.parameters import Parameters
from provision.aws.session import AwsFactory
from provision.aws.stacks import Stacks
from provision.clock import Clock


@dataclass(frozen=True)
class Cloud:
    stacks: Stacks
    groups: Groups
    instances: Instances
    parameters: Parameters
    eks: EksClusters
    alarms: Alarms
    clock: Clock

    @classmethod
    def connect(cls, factory: AwsFactory, clock: Clock) -> Cloud:
        return cls(
            stacks=Stacks(factory.client("cloudformation"), clock),
            groups=Groups(factory.client("autoscaling")),
            instances=Instances(factory.client("ec2")),
            parameters=Parameters(factory.client("ssm")),
            eks=EksClusters(factory.client("eks")),
            alarms=Alarms(factory.client("cloudwatch")),
            clock=clock,
        )
