"""The typed schema of ``cluster.toml``. Every verb receives a validated ``ClusterConfig``; nothing re-checks it.

Each section is a frozen model that forbids unknown keys, so a typo is an error with a did-you-mean, not a silently
ignored setting. ``cluster.example.toml`` documents every field below; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from provision.config.types import (
    AlarmName,
    ApiEndpoint,
    CaCertHash,
    Cidr,
    ClusterName,
    DnfRelease,
    FieldProblem,
    FilePath,
    HostShare,
    ImageSource,
    IngressCidrs,
    InstanceType,
    KeyPairName,
    KmsKey,
    KubeContext,
    KubernetesVersion,
    LabelKey,
    LabelValue,
    NodeConditionType,
    QueueName,
    Region,
    RepairShare,
    Seconds,
    SshTarget,
    SubnetId,
    UnixUser,
    UserTags,
    VpcId,
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EksControlPlane(Section):
    """The stack creates an EKS control plane; hosts join it through an access entry for their role."""

    mode: Literal["eks"]
    kubernetes_version: KubernetesVersion = "1.34"
    endpoint_public_access: bool = False
    public_access_cidrs: IngressCidrs = Field(default_factory=list)
    secrets_kms_key: KmsKey | None = None

    @model_validator(mode="after")
    def _public_cidrs_need_public_access(self) -> EksControlPlane:
        if self.public_access_cidrs and not self.endpoint_public_access:
            raise FieldProblem("public_access_cidrs", "is set but endpoint_public_access is false")
        return self


class KubeadmControlPlane(Section):
    """Hosts join an existing cluster with ``kubeadm join``; the bootstrap token lives in an SSM SecureString."""

    mode: Literal["kubeadm"]
    kubernetes_version: KubernetesVersion = "1.34"
    api_endpoint: ApiEndpoint
    ca_cert_hash: CaCertHash
    token_kms_key: KmsKey | None = None
    control_plane_cidrs: IngressCidrs = Field(default_factory=list)


ControlPlane = Annotated[EksControlPlane | KubeadmControlPlane, Field(discriminator="mode")]


class Network(Section):
    """Either a new VPC across ``availability_zones`` AZs, or an existing VPC and its subnets."""

    vpc_cidr: Cidr = "10.42.0.0/16"
    availability_zones: Annotated[int, Field(ge=2, le=6)] = 3
    nat_gateways: Literal["per-az", "single"] = "per-az"
    vpc_id: VpcId | None = None
    subnet_ids: list[SubnetId] = Field(default_factory=list)

    @model_validator(mode="after")
    def _new_or_existing(self) -> Network:
        if bool(self.vpc_id) != bool(self.subnet_ids):
            missing = "subnet_ids" if self.vpc_id else "vpc_id"
            raise FieldProblem(
                missing, "is missing: vpc_id and subnet_ids go together (an existing network), or neither"
            )
        if len(set(self.subnet_ids)) != len(self.subnet_ids):
            raise FieldProblem("subnet_ids", "lists a subnet twice")
        block = ipaddress.ip_network(self.vpc_cidr)
        if block.version != 4:
            raise FieldProblem("vpc_cidr", "must be an IPv4 block (a VPC's primary block is IPv4)")
        prefix = block.prefixlen
        if not 16 <= prefix <= 22:
            # 22 keeps the smallest public subnet (1/64 of the VPC) at AWS's minimum of /28.
            raise FieldProblem("vpc_cidr", f"must be between /16 and /22, not /{prefix}")
        return self

    @property
    def creates_vpc(self) -> bool:
        return self.vpc_id is None


class Hosts(Section):
    instance_type: InstanceType = "m4.large"
    min_size: Annotated[int, Field(ge=0, le=1000)] = 3
    max_size: Annotated[int, Field(ge=1, le=1000)] = 6
    desired_capacity: Annotated[int, Field(ge=0, le=1000)] = 3
    ami: ImageSource | None = None  # None: the mode's default, see ClusterConfig.image
    root_volume_gib: Annotated[int, Field(ge=20, le=16_384)] = 50
    volume_kms_key: KmsKey | None = None
    key_pair: KeyPairName | None = None
    health_check_type: Literal["EC2", "ELB"] = "EC2"
    health_check_grace_seconds: Seconds = 300
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sizes_in_order(self) -> Hosts:
        if self.min_size > self.max_size:
            raise FieldProblem("min_size", f"({self.min_size}) is greater than max_size ({self.max_size})")
        if not self.min_size <= self.desired_capacity <= self.max_size:
            raise FieldProblem(
                "desired_capacity",
                f"({self.desired_capacity}) must lie between min_size ({self.min_size}) and max_size ({self.max_size})",
            )
        return self


class Patching(Section):
    security_updates_at_boot: bool = True
    release: DnfRelease = "latest"
    reboot_if_needed: bool = True


class Rolling(Section):
    max_surge: HostShare = 1
    overlap: bool = True
    max_unavailable: HostShare = 0
    canary: Annotated[int, Field(ge=1, le=100)] = 1
    bake_seconds: Annotated[int, Field(ge=0, le=86_400)] = 0
    halt_on_alarms: list[AlarmName] = Field(default_factory=list, max_length=100)
    order: Literal["oldest", "zone"] = "oldest"
    drain_timeout_seconds: Seconds = 900
    ready_timeout_seconds: Seconds = 900
    on_blocked_budget: Literal["wait", "skip", "force"] = "wait"
    delete_emptydir_data: bool = True
    evict_unmanaged_pods: bool = False

    @model_validator(mode="after")
    def _some_room(self) -> Rolling:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise FieldProblem(
                "max_unavailable",
                "and max_surge are both 0: a roll needs room to launch a host first (max_surge) or to take one out "
                "first (max_unavailable)",
            )
        return self


class Lifecycle(Section):
    launch_timeout_seconds: Annotated[int, Field(ge=30, le=7200)] = 900
    terminate_timeout_seconds: Annotated[int, Field(ge=30, le=7200)] = 1200
    terminate_default_result: Literal["CONTINUE", "ABANDON"] = "CONTINUE"


HealthCheck = Literal["kubelet", "container_runtime", "disk"]


class HealthAgent(Section):
    enabled: bool = True
    interval_seconds: Annotated[int, Field(ge=10, le=3600)] = 30
    failures_before_unhealthy: Annotated[int, Field(ge=1, le=100)] = 3
    checks: list[HealthCheck] = Field(default_factory=lambda: list(get_args(HealthCheck)))
    disk_min_free_percent: Annotated[int, Field(ge=1, le=90)] = 10
    # The storm guard: at most this many hosts of the group reported Unhealthy and being replaced at once, whoever
    # reports them (the agent on the host, or `cluster heal` from the cluster side); the others wait their turn.
    max_unhealthy: RepairShare = "20%"
    # Repair from the cluster side (`cluster heal`): a node NotReady or Unknown, or carrying one of node_conditions
    # with status True, for this long while its host is InService.
    node_not_ready_seconds: Annotated[int, Field(ge=60, le=604_800)] = 600
    node_conditions: list[NodeConditionType] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _checks_listed_once(self) -> HealthAgent:
        if self.enabled and not self.checks:
            raise FieldProblem("checks", "is empty; list at least one check or set enabled = false")
        if len(set(self.checks)) != len(self.checks):
            raise FieldProblem("checks", "lists a check twice")
        if len(set(self.node_conditions)) != len(self.node_conditions):
            raise FieldProblem("node_conditions", "lists a condition twice")
        return self

    def repair_limit(self, desired: int) -> int:
        """``max_unhealthy`` as a number of hosts for a group of ``desired`` hosts: a percentage rounds down (as
        Cluster API's does), and the limit is never below one, or a sick host could never be replaced."""
        share = self.max_unhealthy
        count = desired * int(share.rstrip("%")) // 100 if isinstance(share, str) else share
        return max(count, 1)


class QueueScaling(Section):
    queue_name: QueueName
    backlog_per_host: Annotated[int, Field(ge=1, le=1_000_000)] = 100


class Ssh(Section):
    user: UnixUser = "ec2-user"
    bastion: SshTarget | None = None
    known_hosts: FilePath = "~/.ssh/known_hosts"
    identity_file: FilePath | None = None
    config_file: FilePath = "~/.ssh/config"
    connect_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 10
    allow_from: IngressCidrs = Field(default_factory=list)


class Kubernetes(Section):
    kubeconfig: FilePath | None = None
    context: KubeContext | None = None


class ClusterConfig(Section):
    name: ClusterName
    region: Region
    control_plane: ControlPlane
    network: Network = Field(default_factory=Network)
    hosts: Hosts = Field(default_factory=Hosts)
    patching: Patching = Field(default_factory=Patching)
    rolling: Rolling = Field(default_factory=Rolling)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    health_agent: HealthAgent = Field(default_factory=HealthAgent)
    queue_scaling: QueueScaling | None = None
    ssh: Ssh = Field(default_factory=Ssh)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)
    tags: UserTags = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross_section(self) -> ClusterConfig:
        if self.lifecycle.terminate_timeout_seconds < self.rolling.drain_timeout_seconds:
            raise FieldProblem(
                "lifecycle.terminate_timeout_seconds",
                f"({self.lifecycle.terminate_timeout_seconds}) is shorter than "
                f"rolling.drain_timeout_seconds ({self.rolling.drain_timeout_seconds}): a terminating host would die "
                "before its pods are drained",
            )
        if self.network.vpc_id is None:
            return self
        if len(self.network.subnet_ids) < 2:
            raise FieldProblem("network.subnet_ids", "give subnets in at least two availability zones")
        return self

    @property
    def image(self) -> str:
        """The hosts' image: ``hosts.ami``, else Amazon Linux 2023 for kubeadm (the boot script installs the kubelet)
        or the EKS-optimized Amazon Linux 2023 image of the cluster's version for eks (it brings nodeadm)."""
        if self.hosts.ami:
            return self.hosts.ami
        if isinstance(self.control_plane, EksControlPlane):
            version = self.control_plane.kubernetes_version
            return (
                f"ssm:/aws/service/eks/optimized-ami/{version}/amazon-linux-2023/x86_64/standard/recommended/image_id"
            )
        return "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

    @property
    def stack_name(self) -> str:
        return f"cluster-{self.name}"

    @property
    def parameter_path(self) -> str:
        """The SSM path that belongs to this cluster; the hosts' role may read and write below it only."""
        return f"/cluster/{self.name}"
