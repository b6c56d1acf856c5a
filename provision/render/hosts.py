"""The hosts themselves: the launch template (with the configuration fingerprint) and the auto-scaling group with its
lifecycle hooks, creation policy and the update policy that leaves the group's size to rolls and autoscalers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from troposphere import AWSObject, Base64, GetAtt, Ref, Sub, Tags, Template, autoscaling, ec2
from troposphere.policies import AutoScalingScheduledAction, CreationPolicy, ResourceSignal, UpdatePolicy

from provision import names
from provision.config.schema import ClusterConfig, HostGroup

ROOT_DEVICE = "/dev/xvda"  # Amazon Linux 2023, plain and EKS-optimized


def fingerprint_digest(launch_data: ec2.LaunchTemplateData, instance_types: Sequence[str] = ()) -> str:
    """A digest of everything in the launch template except the image (a parameter, resolved by CloudFormation) and
    the tags (which carry the fingerprint itself), and of a mixed-instances policy's instance types (they stand for
    the launch template's one type). Any change to user-data, instance types, disk, network or role yields a new
    digest, so hosts launched before the change are outdated."""
    launch: object = launch_data.to_dict()
    if instance_types:
        launch = {"LaunchTemplateData": launch, "InstanceTypes": list(instance_types)}
    canonical = json.dumps(launch, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def fingerprint(image_parameter: str, digest: str, generation: int) -> Sub:
    """The fingerprint as CloudFormation resolves it: ``<ami-id>/<patch generation>/<digest>``. The generation is
    written into the template (not a parameter), so raising it changes the launch template itself: a new version
    that every deployer, moto included, applies."""
    return Sub(f"${{{image_parameter}}}/{generation}/{digest}")


@dataclass(frozen=True)
class GroupResources:
    """One host group's resources in the template, and the static part of its hosts' fingerprint."""

    launch_template: ec2.LaunchTemplate
    group: autoscaling.AutoScalingGroup
    digest: str


def add_hosts(
    template: Template,
    config: ClusterConfig,
    hosts: HostGroup,
    *,
    subnets: list[object],
    security_groups: list[object],
    profile: AWSObject,
    userdata: str,
    tags: dict[str, str],
    depends_on: list[AWSObject],
    generation: int,
) -> GroupResources:
    """The group's launch template and auto-scaling group. One instance type goes into the launch template; a mix of
    instance_types into the group's mixed-instances policy, which overrides the template's type."""
    ids = hosts.names
    launch_data = ec2.LaunchTemplateData(
        ImageId=Ref(ids.image_parameter),
        **({} if hosts.mixed else {"InstanceType": hosts.instance_type}),
        IamInstanceProfile=ec2.IamInstanceProfile(Arn=GetAtt(profile, "Arn")),
        # IMDSv2 only; a hop limit of 1 keeps pods (one hop further) away from the host role's credentials.
        MetadataOptions=ec2.MetadataOptions(
            HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1, InstanceMetadataTags="disabled"
        ),
        BlockDeviceMappings=[
            ec2.LaunchTemplateBlockDeviceMapping(
                DeviceName=ROOT_DEVICE,
                Ebs=ec2.EBSBlockDevice(
                    VolumeType="gp3",
                    VolumeSize=hosts.root_volume_gib,
                    Encrypted=True,
                    DeleteOnTermination=True,
                    **({"KmsKeyId": hosts.volume_kms_key} if hosts.volume_kms_key else {}),
                ),
            )
        ],
        # No public address, whatever the subnet says: hosts placed in an existing public subnet (whose
        # MapPublicIpOnLaunch is on) would otherwise get one. The security groups go with the interface then.
        NetworkInterfaces=[
            ec2.NetworkInterfaces(
                DeviceIndex=0, AssociatePublicIpAddress=False, DeleteOnTermination=True, Groups=security_groups
            )
        ],
        UserData=Base64(userdata),
        **({"KeyName": hosts.key_pair} if hosts.key_pair else {}),
    )
    digest = fingerprint_digest(launch_data, hosts.instance_types or ())
    host_tags = (
        Tags(**tags)
        + Tags({names.NAME_TAG: f"{config.name}-{ids.host_name}"})
        + Tags({names.FINGERPRINT_TAG: fingerprint(ids.image_parameter, digest, generation)})
    )
    launch_data.TagSpecifications = [
        ec2.TagSpecifications(ResourceType="instance", Tags=host_tags),
        ec2.TagSpecifications(ResourceType="volume", Tags=host_tags),
    ]
    launch_template = template.add_resource(
        ec2.LaunchTemplate(
            ids.launch_template,
            LaunchTemplateData=launch_data,
            TagSpecifications=[ec2.TagSpecifications(ResourceType="launch-template", Tags=Tags(**tags))],
        )
    )
    lifecycle = config.lifecycle
    extra: dict[str, object] = {}
    if depends_on:
        extra["DependsOn"] = [resource.title for resource in depends_on]
    if hosts.desired_capacity:
        # The stack is complete only when every first host has joined and said so.
        extra["CreationPolicy"] = CreationPolicy(
            ResourceSignal=ResourceSignal(
                Count=hosts.desired_capacity, Timeout=f"PT{lifecycle.launch_timeout_seconds}S"
            )
        )
    specification = autoscaling.LaunchTemplateSpecification(
        LaunchTemplateId=Ref(launch_template), Version=GetAtt(launch_template, "LatestVersionNumber")
    )
    if hosts.instance_types:
        extra["MixedInstancesPolicy"] = autoscaling.MixedInstancesPolicy(
            InstancesDistribution=autoscaling.InstancesDistribution(
                OnDemandBaseCapacity=hosts.on_demand_base,
                OnDemandPercentageAboveBaseCapacity=hosts.on_demand_percentage,
                SpotAllocationStrategy=hosts.spot_allocation,
            ),
            LaunchTemplate=autoscaling.LaunchTemplate(
                LaunchTemplateSpecification=specification,
                Overrides=[autoscaling.LaunchTemplateOverrides(InstanceType=kind) for kind in hosts.instance_types],
            ),
        )
        extra["CapacityRebalance"] = hosts.capacity_rebalance
    else:
        extra["LaunchTemplate"] = specification
    group = autoscaling.AutoScalingGroup(
        ids.group,
        **extra,
        MinSize=str(hosts.min_size),
        MaxSize=str(hosts.max_size),
        DesiredCapacity=str(hosts.desired_capacity),
        VPCZoneIdentifier=subnets,
        HealthCheckType=hosts.health_check_type,
        HealthCheckGracePeriod=hosts.health_check_grace_seconds,
        LifecycleHookSpecificationList=[
            # The host completes this one itself once it has joined; silence means it did not.
            autoscaling.LifecycleHookSpecification(
                LifecycleHookName=names.LAUNCH_HOOK,
                LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
                DefaultResult="ABANDON",
                HeartbeatTimeout=lifecycle.launch_timeout_seconds,
            ),
            # A roll or `cluster heal` completes this one after draining; the timeout bounds how long a blocked
            # drain can hold back the termination.
            autoscaling.LifecycleHookSpecification(
                LifecycleHookName=names.TERMINATE_HOOK,
                LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                DefaultResult=lifecycle.terminate_default_result,
                HeartbeatTimeout=lifecycle.terminate_timeout_seconds,
            ),
        ],
        # Group metrics feed the queue-backlog scaling policy and `cluster status`.
        MetricsCollection=[autoscaling.MetricsCollection(Granularity="1Minute")],
        TerminationPolicies=["OldestLaunchTemplate", "OldestInstance"],
        # Instances get their tags from the launch template; the group's own tags scope the hosts' IAM policy.
        Tags=autoscaling.Tags(**{names.CLUSTER_TAG: (config.name, False)})
        + autoscaling.Tags(**{key: (value, False) for key, value in tags.items() if key != names.CLUSTER_TAG}),
        # A stack update must not reset the group's size: a roll or an autoscaler owns it between deploys.
        UpdatePolicy=UpdatePolicy(
            AutoScalingScheduledAction=AutoScalingScheduledAction(IgnoreUnmodifiedGroupSizeProperties=True)
        ),
    )
    template.add_resource(group)
    return GroupResources(launch_template=launch_template, group=group, digest=digest)
