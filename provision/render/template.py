"""Assemble the whole CloudFormation template from its parts. Pure: the same config gives byte-identical output."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from troposphere import AWSObject, GetAtt, Output, Parameter, Ref, Tags, Template

from provision import names
from provision.config.schema import ClusterConfig, EksControlPlane, HostGroup
from provision.render.eks import add_eks
from provision.render.hosts import GroupResources, add_hosts, fingerprint
from provision.render.iam import add_host_role
from provision.render.lifecycle import add_lifecycle_events
from provision.render.network import add_network, add_security_group
from provision.render.scaling import add_queue_scaling
from provision.render.userdata import render_userdata

Format = Literal["yaml", "json"]


@dataclass(frozen=True)
class RenderedGroup:
    """One host group as rendered: its hosts' user-data and the static part of their fingerprint."""

    name: str
    userdata: str
    digest: str


@dataclass(frozen=True)
class Rendered:
    """What `cluster render` produces: the template, each group's user-data and the static part of its hosts'
    configuration fingerprint (the image and patch generation are added by CloudFormation), and the values of the
    template's parameters (each group's image)."""

    template: Template
    groups: dict[str, RenderedGroup]
    parameters: dict[str, str]

    @property
    def userdata(self) -> str:
        """The first group's user-data: the only group's in a config without [groups]."""
        return next(iter(self.groups.values())).userdata

    @property
    def digest(self) -> str:
        """The first group's digest: the only group's in a config without [groups]."""
        return next(iter(self.groups.values())).digest

    def body(self) -> str:
        """The template as `cluster up` sends it: compact JSON, the smallest text CloudFormation reads (its inline
        limit is 51,200 bytes, and each group's user-data counts)."""
        return json.dumps(self.template.to_dict(), sort_keys=True, separators=(",", ":"))

    def text(self, fmt: Format) -> str:
        if fmt == "json":
            return str(self.template.to_json(indent=2)) + "\n"
        return str(self.template.to_yaml(clean_up=True))


def cluster_tags(config: ClusterConfig) -> dict[str, str]:
    return {names.CLUSTER_TAG: config.name} | dict(sorted(config.tags.items()))


def render(
    config: ClusterConfig, *, patch_generation: int = 0, generations: Mapping[str, int] | None = None
) -> Rendered:
    """``patch_generation``: raised by `cluster patch` to make every host outdated even when the image is the same
    (their boot then installs the latest security updates); `cluster up` keeps the deployed one. ``generations``
    gives some groups (by name) a generation of their own; the others get ``patch_generation``."""
    template = Template(
        Description=f"cluster {config.name}: self-healing Kubernetes worker hosts ({config.control_plane.mode} mode)"
    )
    parameters = {
        group.names.image_parameter: _add_image_parameter(template, config, group) for group in config.groups.values()
    }
    tag_values = cluster_tags(config)
    tags = Tags(**tag_values)
    placement = add_network(template, config, tags)
    security_group = add_security_group(template, config, placement, tags)
    role, profile = add_host_role(template, config, tags)
    security_groups: list[object] = [Ref(security_group)]
    depends_on: list[AWSObject] = []
    plane = config.control_plane
    eks_cluster = None
    if isinstance(plane, EksControlPlane):
        eks_cluster, access_entry = add_eks(template, config, plane, placement, role, tags)
        # Hosts join the cluster security group that EKS creates, so the control plane reaches their kubelets.
        security_groups.append(GetAtt(eks_cluster, "ClusterSecurityGroupId"))
        depends_on.append(access_entry)
    rendered: dict[str, RenderedGroup] = {}
    resources: dict[str, GroupResources] = {}
    outputs: list[Output] = []
    for group in config.groups.values():
        userdata = render_userdata(config, group)
        generation = (generations or {}).get(group.name, patch_generation)
        made = add_hosts(
            template,
            config,
            group,
            subnets=placement.of(group),
            security_groups=security_groups,
            profile=profile,
            userdata=userdata,
            tags=tag_values,
            depends_on=depends_on,
            generation=generation,
        )
        rendered[group.name] = RenderedGroup(name=group.name, userdata=userdata, digest=made.digest)
        resources[group.name] = made
        ids = group.names
        outputs += [
            Output(ids.output_group, Description=f"The {ids.hosts}' auto-scaling group", Value=Ref(made.group)),
            Output(
                ids.output_launch_template,
                Description=f"The {ids.hosts}' launch template",
                Value=Ref(made.launch_template),
            ),
            Output(
                ids.output_fingerprint,
                Description=f"Configuration of up-to-date {ids.hosts}",
                Value=fingerprint(ids.image_parameter, made.digest, generation),
            ),
        ]
    scaled = config.scaled_group
    if config.queue_scaling is not None and scaled is not None:
        add_queue_scaling(template, config.queue_scaling, resources[scaled.name].group)
    add_lifecycle_events(template, config, [made.group for made in resources.values()], tags)
    outputs += [
        Output(names.OUTPUT_ROLE, Description="The hosts' IAM role", Value=GetAtt(role, "Arn")),
        Output(names.OUTPUT_PARAMETER_PATH, Description="SSM path of this cluster", Value=config.parameter_path),
    ]
    if eks_cluster is not None:
        outputs.append(Output(names.OUTPUT_EKS_CLUSTER, Description="The EKS cluster", Value=Ref(eks_cluster)))
    template.add_output(outputs)
    return Rendered(template=template, groups=rendered, parameters=parameters)


def _add_image_parameter(template: Template, config: ClusterConfig, group: HostGroup) -> str:
    """The parameter that names the group's image; returns the value `cluster up` passes for it."""
    ami = config.image_of(group)
    where = config.group_key(group, "ami")
    name = group.names.image_parameter
    if ami.startswith("ssm:"):
        # CloudFormation resolves the path at every deploy, so a deploy after a new image is published picks it up.
        image = Parameter(
            name,
            Type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            Default=ami.removeprefix("ssm:"),
            Description=f"SSM parameter that names the {group.names.hosts}' image ({where})",
        )
    else:
        image = Parameter(name, Type="AWS::EC2::Image::Id", Default=ami, Description=where)
    template.add_parameter(image)
    return ami.removeprefix("ssm:")
