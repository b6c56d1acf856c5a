"""``eks`` mode: the EKS control plane and the access entry that lets the hosts' role join it."""

from __future__ import annotations

from troposphere import GetAtt, Ref, Tags, Template, eks, iam

from provision import names
from provision.config.schema import ClusterConfig, EksControlPlane
from provision.render.accepted import EKS_DEFAULT_ENVELOPE_ENCRYPTION, accept
from provision.render.iam import add_eks_cluster_role
from provision.render.network import Placement

LOG_TYPES = ("api", "audit", "authenticator")


def add_eks(
    template: Template,
    config: ClusterConfig,
    plane: EksControlPlane,
    placement: Placement,
    host_role: iam.Role,
    tags: Tags,
) -> tuple[eks.Cluster, eks.AccessEntry]:
    cluster_role = add_eks_cluster_role(template, tags)
    vpc_config = eks.ResourcesVpcConfig(
        SubnetIds=placement.subnets,
        EndpointPrivateAccess=True,
        EndpointPublicAccess=plane.endpoint_public_access,
    )
    if plane.public_access_cidrs:
        vpc_config.PublicAccessCidrs = list(plane.public_access_cidrs)
    extra: dict[str, object] = {}
    if plane.secrets_kms_key:
        extra["EncryptionConfig"] = [
            eks.EncryptionConfig(Provider=eks.Provider(KeyArn=plane.secrets_kms_key), Resources=["secrets"])
        ]
    cluster = template.add_resource(
        eks.Cluster(
            names.EKS_CLUSTER,
            Name=config.name,
            Version=plane.kubernetes_version,
            RoleArn=GetAtt(cluster_role, "Arn"),
            ResourcesVpcConfig=vpc_config,
            # Access entries only (no aws-auth ConfigMap); whoever creates the stack administers the cluster.
            AccessConfig=eks.AccessConfig(AuthenticationMode="API", BootstrapClusterCreatorAdminPermissions=True),
            Logging=eks.Logging(
                ClusterLogging=eks.ClusterLogging(EnabledTypes=[eks.LoggingTypeConfig(Type=kind) for kind in LOG_TYPES])
            ),
            Tags=tags,
            **extra,
        )
    )
    if not plane.secrets_kms_key:
        accept(cluster, EKS_DEFAULT_ENVELOPE_ENCRYPTION)
    entry = template.add_resource(
        eks.AccessEntry(
            "HostAccessEntry", ClusterName=Ref(cluster), PrincipalArn=GetAtt(host_role, "Arn"), Type="EC2_LINUX"
        )
    )
    return cluster, entry
