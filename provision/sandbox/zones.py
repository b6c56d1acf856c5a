"""Availability zones in the sandbox, as AWS has them.

moto resolves ``Fn::GetAZs`` to us-east-1a…d whatever the stack's region, and launches every instance of a group
into the first subnet of its ``VPCZoneIdentifier``: a stack in eu-west-1 got all its hosts in "us-east-1a", so
nothing that depends on zones (a roll in zone order, a zone's outage) could be tried. This module patches moto so
that:

- ``Fn::GetAZs`` returns the zones moto's EC2 knows for the region asked (the stack's own for ``""``), in name order;
- a group launches each new instance into the zone with the fewest members that count towards its capacity (ties
  broken by zone name), through that zone's subnet (the first one listed for it), as AWS's AZ balancing does; the
  instance's Placement.AvailabilityZone, its SubnetId and the group member's AvailabilityZone then agree.

Why a patch at launch rather than the host simulator moving instances afterwards: moto fixes an instance's subnet,
private address and DNS name when it runs it, and a client may describe the instance in the same instant; only the
launch itself can place it where AWS would. The lifecycle model calls ``launch`` for every group launch, and
``install`` once per process with its own patches, so this holds wherever the sandbox's host simulator runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection
from typing import Any

_ORIGINAL: dict[str, Any] = {}
_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Patch moto's CloudFormation once per process so ``Fn::GetAZs`` answers with the region's own zones."""
    from moto.cloudformation import parsing

    with _INSTALL_LOCK:
        if _ORIGINAL:
            return
        _ORIGINAL["clean_json"] = parsing.clean_json
        # clean_json calls itself through the module's global name, so nested GetAZs (in a Select) come here too.
        parsing.clean_json = _clean_json


def launch(group: Any, count_needed: int, propagated_tags: dict[str, str], *, counted: Collection[str]) -> None:
    """moto's FakeAutoScalingGroup.replace_autoscaling_group_instances, but one instance at a time, each into the
    least populated zone. Members whose lifecycle state is in ``counted`` occupy their zone."""
    from moto.autoscaling.models import ASG_NAME_TAG, InstanceState

    propagated_tags[ASG_NAME_TAG] = group.name
    propagated_tags.update(group.instance_tags)
    subnets = _subnet_by_zone(group)
    members = Counter(state.availability_zone for state in group.instance_states if state.lifecycle_state in counted)
    associate_public_ip = group.launch_config.associate_public_ip_address if group.launch_config else None
    launch_template = None
    if group.ec2_launch_template:
        if group.ec2_launch_template.id:
            launch_template = {"LaunchTemplateId": group.ec2_launch_template.id}
        elif group.ec2_launch_template.name:
            launch_template = {"LaunchTemplateName": group.ec2_launch_template.name}
    for _ in range(count_needed):
        zone = min(subnets, key=lambda name: (members[name], name))
        reservation = group.autoscaling_backend.ec2_backend.run_instances(
            group.image_id,
            1,
            group.user_data,
            group.security_groups,
            instance_type=group.instance_type,
            tags={"instance": propagated_tags},
            placement=zone,
            launch_config=group.launch_config,
            launch_template=launch_template,
            is_instance_type_default=False,
            associate_public_ip=associate_public_ip,
            subnet_id=subnets[zone],
        )
        for instance in reservation.instances:
            instance.autoscaling_group = group
            group.instance_states.append(
                InstanceState(instance, protected_from_scale_in=group.new_instances_protected_from_scale_in)
            )
            members[instance.placement.zone] += 1


def _subnet_by_zone(group: Any) -> dict[str, str | None]:
    """The group's zones, each with the subnet its instances go to: the first listed in VPCZoneIdentifier for that
    zone; a group given only AvailabilityZones launches into the zone's default subnet (None)."""
    if not group.vpc_zone_identifier:
        return dict.fromkeys(group.availability_zones)
    ids = group.vpc_zone_identifier.split(",")
    zones = {
        subnet.id: subnet.availability_zone
        for subnet in group.autoscaling_backend.ec2_backend.describe_subnets(subnet_ids=ids)
    }
    chosen: dict[str, str | None] = {}
    for subnet_id in ids:
        chosen.setdefault(zones[subnet_id], subnet_id)
    return chosen


def _clean_json(resource_json: Any, resources_map: Any) -> Any:
    if isinstance(resource_json, dict) and "Fn::GetAZs" in resource_json:
        region = _ORIGINAL["clean_json"](resource_json["Fn::GetAZs"], resources_map) or resources_map._region_name
        return _region_zones(resources_map._account_id, region)
    return _ORIGINAL["clean_json"](resource_json, resources_map)


def _region_zones(account_id: str, region: str) -> list[str]:
    from moto.ec2.models import ec2_backends

    return sorted(zone.name for zone in ec2_backends[account_id][region].describe_availability_zones())
