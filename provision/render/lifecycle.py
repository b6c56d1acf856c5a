"""How the groups' lifecycle actions reach `cluster heal`: an EventBridge rule sends the launch and terminate
lifecycle-action events of every host group of this stack, and of no other group, to an encrypted queue of the
cluster's own (with a dead-letter queue for messages that keep failing), and a least-privilege managed policy lets the
handler consume that queue and complete those actions.

The terminate hook itself (its heartbeat timeout and default result, ``lifecycle.*``) is declared on each group in
``hosts.py``; this module only carries its events.
"""

from __future__ import annotations

from awacs import autoscaling, cloudformation, ec2, sqs, ssm
from awacs.aws import (
    Allow,
    ArnEquals,
    Condition,
    ForAllValuesStringEquals,
    Null,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from troposphere import AWSObject, GetAtt, Output, Ref, Sub, Tags, Template, events, iam
from troposphere import sqs as sqs_resources

from provision import names
from provision.config.schema import ClusterConfig
from provision.render.accepted import SQS_MANAGED_ENCRYPTION, accept

LAUNCH_EVENT = "EC2 Instance-launch Lifecycle Action"
TERMINATE_EVENT = "EC2 Instance-terminate Lifecycle Action"

# A message the handler could not finish five times is poison; it waits in the dead-letter queue for a person.
MAX_RECEIVE_COUNT = 5
# The handler extends a message's visibility while it drains; this only bounds how soon a crashed handler's
# message is offered again.
VISIBILITY_TIMEOUT_SECONDS = 120
# A lifecycle action cannot outlive its hook's timeout (at most two hours here): older events are history.
RETENTION_SECONDS = 86_400
DEAD_LETTER_RETENTION_SECONDS = 1_209_600  # the maximum, 14 days, to find out what went wrong


def add_lifecycle_events(template: Template, config: ClusterConfig, groups: list[AWSObject], tags: Tags) -> None:
    dead_letters = template.add_resource(
        accept(
            sqs_resources.Queue(
                names.LIFECYCLE_DEAD_LETTER_QUEUE,
                SqsManagedSseEnabled=True,
                MessageRetentionPeriod=DEAD_LETTER_RETENTION_SECONDS,
                Tags=tags,
            ),
            SQS_MANAGED_ENCRYPTION,
        )
    )
    queue = template.add_resource(
        sqs_resources.Queue(
            names.LIFECYCLE_QUEUE,
            SqsManagedSseEnabled=True,
            MessageRetentionPeriod=RETENTION_SECONDS,
            VisibilityTimeout=VISIBILITY_TIMEOUT_SECONDS,
            ReceiveMessageWaitTimeSeconds=20,  # long polling by default
            RedrivePolicy=sqs_resources.RedrivePolicy(
                deadLetterTargetArn=GetAtt(dead_letters, "Arn"), maxReceiveCount=MAX_RECEIVE_COUNT
            ),
            Tags=tags,
        )
    )
    accept(queue, SQS_MANAGED_ENCRYPTION)
    rule = template.add_resource(
        events.Rule(
            names.LIFECYCLE_EVENT_RULE,
            Description=f"Lifecycle actions of cluster {config.name}'s hosts, for `cluster heal`",
            State="ENABLED",
            EventPattern={
                "source": ["aws.autoscaling"],
                "detail-type": [LAUNCH_EVENT, TERMINATE_EVENT],
                "detail": {"AutoScalingGroupName": [Ref(group) for group in groups]},
            },
            Targets=[events.Target(Id="lifecycle-queue", Arn=GetAtt(queue, "Arn"))],
        )
    )
    template.add_resource(
        sqs_resources.QueuePolicy(
            names.LIFECYCLE_QUEUE_POLICY,
            Queues=[Ref(queue)],
            PolicyDocument=PolicyDocument(
                Version="2012-10-17",
                Statement=[
                    # EventBridge delivers as its service principal; only this rule's deliveries are admitted.
                    Statement(
                        Sid="OnlyTheLifecycleRule",
                        Effect=Allow,
                        Principal=Principal("Service", ["events.amazonaws.com"]),
                        Action=[sqs.SendMessage],
                        Resource=[GetAtt(queue, "Arn")],
                        Condition=Condition(ArnEquals({"aws:SourceArn": GetAtt(rule, "Arn")})),
                    )
                ],
            ),
        )
    )
    policy = template.add_resource(
        iam.ManagedPolicy(
            names.HEAL_HANDLER_POLICY,
            Description=f"`cluster heal` for cluster {config.name}: drain terminating hosts, then let them go",
            PolicyDocument=_handler_policy(config, groups, queue),
        )
    )
    template.add_output(
        [
            Output(names.OUTPUT_LIFECYCLE_QUEUE_URL, Description="The hosts' lifecycle actions", Value=Ref(queue)),
            Output(
                names.OUTPUT_HEAL_HANDLER_POLICY,
                Description="Attach to the role that `cluster heal` runs as",
                Value=Ref(policy),
            ),
        ]
    )


def _handler_policy(config: ClusterConfig, groups: list[AWSObject], queue: sqs_resources.Queue) -> PolicyDocument:
    arn = "arn:${AWS::Partition}"
    where = "${AWS::Region}:${AWS::AccountId}"
    repair = f"{arn}:ssm:{where}:parameter{names.repair_path(config.parameter_path)}"
    own_groups = [
        Sub(f"{arn}:autoscaling:{where}:autoScalingGroup:*:autoScalingGroupName/${{{group.title}}}") for group in groups
    ]
    return PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Sid="CompleteLifecycleActionsOfOwnGroup",
                Effect=Allow,
                Action=[autoscaling.CompleteLifecycleAction, autoscaling.RecordLifecycleActionHeartbeat],
                Resource=own_groups,
                Condition=Condition(StringEquals({f"autoscaling:ResourceTag/{names.CLUSTER_TAG}": config.name})),
            ),
            # Repair from the cluster side: a host whose node stays NotReady is reported Unhealthy, as its own agent
            # would, under the same storm guard: the slots below the repair path (read and claimed), and the host's
            # repair state as the one tag heal may set on this cluster's hosts.
            Statement(
                Sid="ReportHostsOfOwnGroupUnhealthy",
                Effect=Allow,
                Action=[autoscaling.SetInstanceHealth],
                Resource=own_groups,
                Condition=Condition(StringEquals({f"autoscaling:ResourceTag/{names.CLUSTER_TAG}": config.name})),
            ),
            Statement(
                Sid="ClaimRepairSlots",
                Effect=Allow,
                Action=[ssm.GetParametersByPath, ssm.PutParameter],
                Resource=[Sub(repair), Sub(f"{repair}/*")],
            ),
            Statement(
                Sid="TagHostsWithRepairState",
                Effect=Allow,
                Action=[ec2.CreateTags],
                Resource=[Sub(f"{arn}:ec2:{where}:instance/*")],
                Condition=Condition(
                    [
                        StringEquals({f"ec2:ResourceTag/{names.CLUSTER_TAG}": config.name}),
                        ForAllValuesStringEquals({"aws:TagKeys": [names.REPAIR_TAG]}),
                        Null({"aws:TagKeys": "false"}),
                    ]
                ),
            ),
            # What heal does with a message: receive it, keep it hidden while it works, delete it when done.
            Statement(
                Sid="ConsumeLifecycleQueue",
                Effect=Allow,
                Action=[sqs.ReceiveMessage, sqs.DeleteMessage, sqs.ChangeMessageVisibility],
                Resource=[GetAtt(queue, "Arn")],
            ),
            # The queue's URL, the groups' names and launch templates: the stack's outputs, as every verb reads them.
            Statement(
                Sid="FindOwnResources",
                Effect=Allow,
                Action=[cloudformation.DescribeStacks],
                Resource=[Sub(f"{arn}:cloudformation:{where}:stack/${{AWS::StackName}}/*")],
            ),
            # Only what heal reads, one parameter at a time: the roll's lock and journal (heal leaves a roll's hosts to
            # the roll) and the hosts' boot and health records. Not the path's other parameters: the join token
            # SecureString lives there too, and a drain has no use for it.
            Statement(
                Sid="ReadRollStateAndHostRecords",
                Effect=Allow,
                Action=[ssm.GetParameter],
                Resource=[
                    Sub(f"{arn}:ssm:{where}:parameter{name}")
                    for name in (
                        names.roll_lock_parameter(config.parameter_path),
                        names.roll_state_parameter(config.parameter_path),
                        f"{names.host_records_path(config.parameter_path)}/*",
                    )
                ],
            ),
            # A host heal has seen leave takes its records with it (boot failure, an old agent's health verdict), so
            # that the hosts' path does not grow with every host the group ever replaced; so do the storm guard's
            # handovers once spent (never a slot).
            Statement(
                Sid="ForgetTerminatedHosts",
                Effect=Allow,
                Action=[ssm.DeleteParameters],
                Resource=[
                    Sub(f"{arn}:ssm:{where}:parameter{names.host_records_path(config.parameter_path)}/*"),
                    Sub(f"{repair}/handovers/*"),
                ],
            ),
            # Describe calls have no resource-level permissions.
            Statement(
                Sid="DescribeHosts",
                Effect=Allow,
                Action=[
                    autoscaling.DescribeAutoScalingGroups,
                    autoscaling.DescribeLifecycleHooks,
                    ec2.DescribeInstances,
                ],
                Resource=["*"],
            ),
        ],
    )
