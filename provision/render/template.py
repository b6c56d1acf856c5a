"""Assemble the whole CloudFormation template from its parts. Pure: the same config gives byte-identical output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from troposphere import AWSObject, GetAtt, Output, Parameter, Ref, Tags, Template

from provision.config.schema import ClusterConfig, EksControlPlane
from provision.render import names
from provision.render.eks import add_eks
from provision.render.hosts import add_hosts, fingerprint
from provision.render.iam import add_host_role
from provision.render.lifecycle import add_lifecycle_events
from provision.render.network import add_network, add_security_group
from provision.render.scaling import add_queue_scaling
from provision.render.userdata import render_userdata

Format = Literal["yaml", "json"]


@dataclass(frozen=True)
class Rendered:
    """What `cluster render` produces: the template, the user-data it embeds, and the static part of the hosts'
    configuration fingerprint (the image and patch generation are added by CloudFormation)."""

    template: Template
    userdata: str
    digest: str

    def text(self, fmt: Format) -> str:
        if fmt == "json":
            return str(self.template.to_json(indent=2)) + "\n"
        return str(self.template.to_yaml(clean_up=True))


def cluster_tags(config: ClusterConfig) -> dict[str, str]:
    return {names.CLUSTER_TAG: config.name} | dict(sorted(config.tags.items()))


def render(config: ClusterConfig, *, patch_generation: int = 0) -> Rendered:
    """``patch_generation``: raised by `cluster patch` to make every host outdated even when the image is the same
    (their boot then installs the latest security updates); `cluster up` keeps the deployed one."""
    template = Template(
        Description=f"cluster {config.name}: self-healing Kubernetes worker hosts ({config.control_plane.mode} mode)"
    )
    _add_parameters(template, config)
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
    userdata = render_userdata(config)
    launch_template, group, digest = add_hosts(
        template,
        config,
        placement=placement,
        security_groups=security_groups,
        profile=profile,
        userdata=userdata,
        tags=tag_values,
        depends_on=depends_on,
        generation=patch_generation,
    )
    if config.queue_scaling is not None:
        add_queue_scaling(template, config.queue_scaling, group)
    add_lifecycle_events(template, config, group, tags)
    outputs = [
        Output(names.OUTPUT_GROUP, Description="The hosts' auto-scaling group", Value=Ref(group)),
        Output(names.OUTPUT_LAUNCH_TEMPLATE, Description="The hosts' launch template", Value=Ref(launch_template)),
        Output(names.OUTPUT_ROLE, Description="The hosts' IAM role", Value=GetAtt(role, "Arn")),
        Output(
            names.OUTPUT_FINGERPRINT,
            Description="Configuration of up-to-date hosts",
            Value=fingerprint(digest, patch_generation),
        ),
        Output(names.OUTPUT_PARAMETER_PATH, Description="SSM path of this cluster", Value=config.parameter_path),
    ]
    if eks_cluster is not None:
        outputs.append(Output(names.OUTPUT_EKS_CLUSTER, Description="The EKS cluster", Value=Ref(eks_cluster)))
    template.add_output(outputs)
    return Rendered(template=template, userdata=userdata, digest=digest)


def _add_parameters(template: Template, config: ClusterConfig) -> None:
    ami = config.image
    if ami.startswith("ssm:"):
        # CloudFormation resolves the path at every deploy, so a deploy after a new image is published picks it up.
        image = Parameter(
            names.IMAGE_PARAMETER,
            Type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            Default=ami.removeprefix("ssm:"),
            Description="SSM parameter that names the hosts' image (hosts.ami)",
        )
    else:
        image = Parameter(names.IMAGE_PARAMETER, Type="AWS::EC2::Image::Id", Default=ami, Description="hosts.ami")
    template.add_parameter(image)
