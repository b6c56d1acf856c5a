"""EC2, typed: the instances of a group and what a cluster leaves behind, paged, never one call per host."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str
    launch_time: datetime
    image_id: str
    private_dns_name: str
    private_ip: str
    tags: dict[str, str]


@dataclass(frozen=True)
class TemplateVersion:
    version: str  # "" when the template has none
    tags: dict[str, str]


class Instances:
    def __init__(self, client: EC2Client) -> None:
        self.client = client

    def describe(self, instance_ids: list[str]) -> dict[str, Instance]:
        """These instances, by a filter rather than InstanceIds: one AWS does not know yet (just launched) is left
        out instead of failing the call."""
        return self._describe([{"Name": "instance-id", "Values": instance_ids}])

    def of_group(self, group_name: str) -> dict[str, Instance]:
        return self._describe(
            [
                {"Name": "tag:aws:autoscaling:groupName", "Values": [group_name]},
                {"Name": "instance-state-name", "Values": LIVE_STATES},
            ]
        )

    def of_cluster(self, cluster_tag: str, cluster: str) -> dict[str, Instance]:
        return self._describe(
            [
                {"Name": f"tag:{cluster_tag}", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": LIVE_STATES},
            ]
        )

    def _describe(self, filters: list[FilterTypeDef]) -> dict[str, Instance]:
        found: dict[str, Instance] = {}
        for page in self.client.get_paginator("describe_instances").paginate(
            Filters=filters,
            PaginationConfig={"PageSize": 1000},  # AWS's largest page: 1000 instances a call
        ):
            for reservation in page["Reservations"]:
                for raw in reservation["Instances"]:
                    found[raw["InstanceId"]] = Instance(
                        instance_id=raw["InstanceId"],
                        state=raw["State"]["Name"],
                        launch_time=raw["LaunchTime"],
                        image_id=raw.get("ImageId", ""),
                        private_dns_name=raw.get("PrivateDnsName", ""),
                        private_ip=raw.get("PrivateIpAddress", ""),
                        tags={tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])},
                    )
        return found

    def of_ids(self, instance_ids: list[str]) -> dict[str, Instance]:
        return self._describe([{"Name": "instance-id", "Values": instance_ids}])

    def set_tag(self, instance_id: str, key: str, value: str) -> None:
        """What a host's health agent does to its own instance; the sandbox and the demo play it."""
        self.client.create_tags(Resources=[instance_id], Tags=[{"Key": key, "Value": value}])

    def keeping(self) -> KeptInstances:
        """These instances' facade, keeping what it describes (see ``KeptInstances``)."""
        return KeptInstances(self.client)

    def console_output(self, instance_id: str) -> str:
        """The instance's serial console as EC2 last captured it (AWS gives it base64-encoded; boto3 decodes it)."""
        return self.client.get_console_output(InstanceId=instance_id).get("Output", "")

    def tagged_vpcs(self, cluster_tag: str, cluster: str) -> list[str]:
        vpcs = self.client.describe_vpcs(Filters=[{"Name": f"tag:{cluster_tag}", "Values": [cluster]}])["Vpcs"]
        return sorted(vpc["VpcId"] for vpc in vpcs)

    def launch_template(self, launch_template_id: str) -> TemplateVersion:
        """The template's latest version: its number and the instance tags a host launched now would carry."""
        versions = self.client.describe_launch_template_versions(
            LaunchTemplateId=launch_template_id, Versions=["$Latest"]
        )["LaunchTemplateVersions"]
        if not versions:
            return TemplateVersion("", {})
        specs = versions[0].get("LaunchTemplateData", {}).get("TagSpecifications", [])
        tags = {
            tag["Key"]: tag["Value"]
            for spec in specs
            if spec.get("ResourceType") == "instance"
            for tag in spec.get("Tags", [])
        }
        return TemplateVersion(str(versions[0]["VersionNumber"]), tags)


class KeptInstances(Instances):
    """Instances that keep every instance they describe, for a caller that reads the group through a snapshot (which
    describes the group's instances once) and then needs what the snapshot leaves out, such as their tags, without
    describing them a second time."""

    def __init__(self, client: EC2Client) -> None:
        super().__init__(client)
        self.described: dict[str, Instance] = {}

    def _describe(self, filters: list[FilterTypeDef]) -> dict[str, Instance]:
        found = super()._describe(filters)
        self.described |= found
        return found
