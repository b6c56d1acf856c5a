"""The typed schema of ``cluster.toml``. Every verb receives a validated ``ClusterConfig``; nothing re-checks it.

Each section is a frozen model that forbids unknown keys, so a typo is an error with a did-you-mean, not a silently
ignored setting. ``cluster.example.toml`` documents every field below; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, PrivateAttr, model_validator

from provision import names
from provision.config.types import (
    AlarmName,
    ApiEndpoint,
    CaCertHash,
    Cidr,
    ClusterName,
    DnfRelease,
    FieldProblem,
    FilePath,
    GroupName,
    HostShare,
    ImageSource,
    IngressCidrs,
    InstanceType,
    InstanceTypes,
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
    SubnetIds,
    Taints,
    UnixUser,
    UserTags,
    VpcId,
    ZoneNumbers,
)
from provision.names import DEFAULT_GROUP, GroupNames, group_names


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


SpotAllocation = Literal[
    "price-capacity-optimized", "capacity-optimized", "capacity-optimized-prioritized", "lowest-price"
]
# The keys that choose a group's instances: one instance type, or a mixed-instances policy. A group that names its own
# instance_type or instance_types chooses afresh and inherits none of these from [hosts].
MIX_KEYS = ("on_demand_base", "on_demand_percentage", "spot_allocation", "capacity_rebalance")
INSTANCE_CHOICE = ("instance_type", "instance_types", *MIX_KEYS)


class Hosts(Section):
    instance_type: InstanceType = "m4.large"
    # A mixed-instances policy instead of instance_type: the types to launch, in order of preference for on-demand.
    instance_types: InstanceTypes | None = None
    on_demand_base: Annotated[int, Field(ge=0, le=1000)] = 0
    on_demand_percentage: Annotated[int, Field(ge=0, le=100)] = 100
    spot_allocation: SpotAllocation = "price-capacity-optimized"
    capacity_rebalance: bool = False
    min_size: Annotated[int, Field(ge=0, le=1000)] = 3
    max_size: Annotated[int, Field(ge=1, le=1000)] = 6
    desired_capacity: Annotated[int, Field(ge=0, le=1000)] = 3
    ami: ImageSource | None = None  # None: the mode's default, see ClusterConfig.image_of
    root_volume_gib: Annotated[int, Field(ge=20, le=16_384)] = 50
    volume_kms_key: KmsKey | None = None
    key_pair: KeyPairName | None = None
    health_check_type: Literal["EC2", "ELB"] = "EC2"
    health_check_grace_seconds: Seconds = 300
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    taints: Taints = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_instance_choice(self) -> Hosts:
        if self.instance_types is None:
            stray = [key for key in MIX_KEYS if key in self.model_fields_set]
            if stray:
                raise FieldProblem(stray[0], "is part of a mixed-instances policy: give instance_types too")
        elif "instance_type" in self.model_fields_set:
            raise FieldProblem(
                "instance_types", "and instance_type are both given: one instance type, or a mix of instance_types"
            )
        return self

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

    @property
    def mixed(self) -> bool:
        """Whether the hosts come from a mixed-instances policy (instance_types) rather than one instance_type."""
        return self.instance_types is not None


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


class HostGroup(Hosts):
    """One group of hosts: a ``[groups.<name>]`` table, which inherits ``[hosts]``, ``[rolling]`` and ``[health_agent]``
    key by key (``ClusterConfig._resolve_groups`` merges them before validation), or the one group ``workers`` of a
    configuration without ``[groups]``, which is exactly ``[hosts]``, ``[rolling]`` and ``[health_agent]``."""

    name: GroupName  # the table's name; not a key of the table
    # Where the group's hosts live: some of a new VPC's zones (numbered from 1), or some of an existing network's
    # subnet_ids. None: all of them.
    zones: ZoneNumbers | None = None
    subnet_ids: SubnetIds | None = None
    rolling: Rolling
    health_agent: HealthAgent

    @property
    def names(self) -> GroupNames:
        """The group's logical ids and output names in the stack (``provision.names``)."""
        return group_names(self.name)


class QueueScaling(Section):
    queue_name: QueueName
    backlog_per_host: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    # The group whose size follows the queue; needed when there are several groups.
    group: GroupName | None = None


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
    # Every group of hosts by name, in the file's order (after [hosts], [rolling] and [health_agent], whose errors
    # are reported first: a group inherits them). Always at least one: without [groups] it is `workers`.
    groups: dict[GroupName, HostGroup] = Field(default_factory=dict)
    queue_scaling: QueueScaling | None = None
    ssh: Ssh = Field(default_factory=Ssh)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)
    tags: UserTags = Field(default_factory=dict)
    # Whether the file has [groups]; without, the one group `workers` is [hosts] itself (and named so in messages).
    _groups_given: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _resolve_groups(cls, data: Any, handler: ModelWrapValidatorHandler[ClusterConfig]) -> ClusterConfig:
        """Each group inherits [hosts], [rolling] and [health_agent]: its table's keys replace theirs one by one
        (a group naming instance_type or instance_types replaces the whole instance choice). Without [groups], the
        one group `workers` inherits everything. Whatever is not a table is left for validation to report."""
        given = isinstance(data, dict) and "groups" in data
        if isinstance(data, dict):
            tables = data.get("groups", {DEFAULT_GROUP: {}})
            if isinstance(tables, dict):
                if given and not tables:
                    raise FieldProblem("groups", "has no group: add [groups.<name>] tables, or leave [groups] out")
                data = data | {"groups": {name: _inherit(data, name, table) for name, table in tables.items()}}
        config = handler(data)
        if isinstance(data, dict):  # not when handed a ClusterConfig already made
            config._groups_given = given
        return config

    @model_validator(mode="after")
    def _cross_section(self) -> ClusterConfig:
        if self.lifecycle.terminate_timeout_seconds < self.rolling.drain_timeout_seconds:
            raise FieldProblem(
                "lifecycle.terminate_timeout_seconds",
                f"({self.lifecycle.terminate_timeout_seconds}) is shorter than "
                f"rolling.drain_timeout_seconds ({self.rolling.drain_timeout_seconds}): a terminating host would die "
                "before its pods are drained",
            )
        if self.network.vpc_id is not None and len(self.network.subnet_ids) < 2:
            raise FieldProblem("network.subnet_ids", "give subnets in at least two availability zones")
        suffixes: dict[str, str] = {}
        for group in self.groups.values():
            self._check_group(group)
            folded = names.group_suffix(group.name).casefold()
            if folded in suffixes:
                raise FieldProblem(
                    f"groups.{group.name}",
                    f"and groups.{suffixes[folded]} would give their resources the same names "
                    f"({group.names.group}); rename one",
                )
            suffixes[folded] = group.name
        if self.queue_scaling is not None:
            scaled = self.queue_scaling.group
            if scaled is None and len(self.groups) > 1:
                raise FieldProblem(
                    "queue_scaling.group", f"is needed with several groups: name one of {', '.join(self.groups)}"
                )
            if scaled is not None and scaled not in self.groups:
                raise FieldProblem("queue_scaling.group", f"{scaled!r} is not a group: {', '.join(self.groups)}")
        return self

    def _check_group(self, group: HostGroup) -> None:
        drain = group.rolling.drain_timeout_seconds
        if self.lifecycle.terminate_timeout_seconds < drain:
            raise FieldProblem(
                f"groups.{group.name}.rolling.drain_timeout_seconds",
                f"({drain}) is longer than lifecycle.terminate_timeout_seconds "
                f"({self.lifecycle.terminate_timeout_seconds}): a terminating host would die before its pods are "
                "drained",
            )
        network = self.network
        if network.creates_vpc:
            if group.subnet_ids is not None:
                raise FieldProblem(
                    f"groups.{group.name}.subnet_ids",
                    "is for an existing network (network.subnet_ids); in a new VPC choose zones = [1, 2, ...]",
                )
            outside = [zone for zone in group.zones or [] if zone > network.availability_zones]
            if outside:
                raise FieldProblem(
                    f"groups.{group.name}.zones",
                    f"zone {outside[0]} is not one of the network's {network.availability_zones} availability "
                    f"zones (1 to {network.availability_zones}, network.availability_zones)",
                )
        else:
            if group.zones is not None:
                raise FieldProblem(
                    f"groups.{group.name}.zones",
                    "is for a new VPC; in an existing network choose subnet_ids from network.subnet_ids",
                )
            foreign = [subnet for subnet in group.subnet_ids or [] if subnet not in network.subnet_ids]
            if foreign:
                raise FieldProblem(f"groups.{group.name}.subnet_ids", f"{foreign[0]} is not one of network.subnet_ids")

    def group_key(self, group: HostGroup, key: str) -> str:
        """Where the user sets ``key`` of ``group``: ``groups.<name>.<key>``, or ``hosts.<key>`` without [groups]."""
        return f"groups.{group.name}.{key}" if self._groups_given else f"hosts.{key}"

    @property
    def scaled_group(self) -> HostGroup | None:
        """The group whose size follows queue_scaling, if any."""
        if self.queue_scaling is None:
            return None
        return self.groups[self.queue_scaling.group or next(iter(self.groups))]

    @property
    def image(self) -> str:
        """The image of the hosts of [hosts] (see ``image_of``)."""
        return self.image_of(self.hosts)

    def image_of(self, hosts: Hosts) -> str:
        """The hosts' image: their ``ami``, else Amazon Linux 2023 for kubeadm (the boot script installs the kubelet)
        or the EKS-optimized Amazon Linux 2023 image of the cluster's version for eks (it brings nodeadm)."""
        if hosts.ami:
            return hosts.ami
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


def _inherit(data: dict[str, Any], name: object, table: object) -> object:
    """A group's table with what it leaves out taken from [hosts], [rolling] and [health_agent] (see
    ``ClusterConfig._resolve_groups``); its name added. A table that names itself is refused: the name is the
    table's."""
    if not isinstance(table, dict):
        return table
    if "name" in table:
        raise FieldProblem(f"groups.{name}.name", "unknown key: a group's name is its table's, [groups.<name>]")
    hosts = data.get("hosts", {})
    inherited = dict(hosts) if isinstance(hosts, dict) else {}
    if "instance_type" in table or "instance_types" in table:
        inherited = {key: value for key, value in inherited.items() if key not in INSTANCE_CHOICE}
    merged: dict[str, Any] = inherited | table | {"name": name}
    for section in ("rolling", "health_agent"):
        defaults, own = data.get(section, {}), table.get(section, {})
        if isinstance(defaults, dict) and isinstance(own, dict):
            merged[section] = defaults | own
    return merged
