"""Constrained value types for the configuration schema.

Each type states the character set it admits. Values that reach resource names, tags or the host's user-data are held
to these sets, so that a quote, ``$( )`` or a newline in the TOML file is rejected here with the key's name, long before
the user-data's quoting would have to cope with it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field

from provision import names

_T = TypeVar("_T")


class FieldProblem(ValueError):
    """Raised by a model validator about one field of its model, so that the error names that field's key path
    (relative to the model) instead of the whole section."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check(pattern: str, what: str) -> AfterValidator:
    """A validator that accepts a string fully matching ``pattern`` and otherwise names what was expected."""
    compiled = re.compile(pattern)

    def validate(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(validate)


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a CIDR block ({error})") from None
    return str(network)


# The most public address space one list of ingress networks may open a port to: a /16's worth. An office, a VPN's
# egress or a CI provider's published ranges fit many times over; "0.0.0.0/1" plus "128.0.0.0/1" (the whole internet
# in two rules) does not. Private and other non-global ranges (RFC 1918, 100.64.0.0/10, ...) are not counted.
PUBLIC_ADDRESS_LIMIT = 65_536
_PUBLIC_LIMIT_TEXT = f"more than {PUBLIC_ADDRESS_LIMIT:,} public addresses (a /16's worth)"
_OPEN_HINT = "name the networks that need access (private ranges are not limited)"


def _world_closed(value: str) -> str:
    block = ipaddress.ip_network(value)
    if block.prefixlen == 0:
        raise ValueError(f"{value!r} opens the port to the whole internet; name the networks that need it")
    if not isinstance(block, ipaddress.IPv4Network):
        raise ValueError(f"{value!r} is not an IPv4 block (security group and EKS endpoint rules here are IPv4)")
    if _public_addresses([block]) > PUBLIC_ADDRESS_LIMIT:
        raise ValueError(f"{value!r} covers {_PUBLIC_LIMIT_TEXT}; {_OPEN_HINT}")
    return value


def _public_addresses(blocks: list[ipaddress.IPv4Network], limit: int = PUBLIC_ADDRESS_LIMIT) -> int:
    """How many addresses of the blocks' union are public (``is_global``), counted until the count passes
    ``limit``. A block that is not global lies wholly inside one special-purpose range; a global one may still hold
    some (0.0.0.0/1 holds 10.0.0.0/8), so it is halved until each part is either, down to /24s."""

    def count(block: ipaddress.IPv4Network, room: int) -> int:
        if not block.is_global:
            return 0
        if block.prefixlen >= 24:
            return block.num_addresses
        total = 0
        for half in block.subnets(prefixlen_diff=1):
            total += count(half, room - total)
            if total > room:
                break
        return total

    total = 0
    for block in ipaddress.collapse_addresses(blocks):
        total += count(block, limit - total)
        if total > limit:
            break
    return total


def _public_space_limited(values: list[str]) -> list[str]:
    """The whole list: each entry once, and within the public address limit together."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"lists {value} twice")
        seen.add(value)
    blocks = [ipaddress.IPv4Network(value) for value in values]
    if _public_addresses(blocks) > PUBLIC_ADDRESS_LIMIT:
        raise ValueError(f"the networks together cover {_PUBLIC_LIMIT_TEXT}; {_OPEN_HINT}")
    return values


def _port_in_range(value: str) -> str:
    """A host:port (or [user@]host[:port]) whose port, when given, is one a socket can use."""
    address = value.rpartition("@")[2]
    if ":" in address:
        port = int(address.rpartition(":")[2])
        if not 1 <= port <= 65_535:
            raise ValueError(f"{value!r} has port {port}; a port is 1 to 65535")
    return value


# The label namespaces the kubelet keeps for itself. It refuses --node-labels in kubernetes.io or k8s.io (or a
# subdomain of either) unless the label is one it sets itself or lies in kubelet.kubernetes.io or node.kubernetes.io
# (k8s.io/kubelet/pkg/apis IsKubeletLabel); a host given another would fail to start its kubelet, and never join.
# node-role.kubernetes.io is refused too: a node's role label is set through the API, not by the node.
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    }
)
_KUBELET_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
_RESERVED_NAMESPACES = ("kubernetes.io", "k8s.io")


def _kubelet_may_set(key: str) -> str:
    namespace = key.partition("/")[0] if "/" in key else ""
    reserved = any(namespace == name or namespace.endswith(f".{name}") for name in _RESERVED_NAMESPACES)
    allowed = key in _KUBELET_LABELS or any(
        namespace == name or namespace.endswith(f".{name}") for name in _KUBELET_NAMESPACES
    )
    if reserved and not allowed:
        raise ValueError(
            f"{key!r} is in a namespace the kubelet refuses to set (kubernetes.io and k8s.io, except "
            "kubelet.kubernetes.io/ and node.kubernetes.io/), so the host would never join; use your own prefix "
            "such as 'example.com/'"
        )
    return key


# Taints: Kubernetes keeps kubernetes.io and k8s.io (and their subdomains) for its own. The node controllers add and
# remove the node.kubernetes.io/ taints (not-ready, unreachable, ...) themselves, so one the kubelet registered would be
# taken off again, or mistaken for a condition the node is in; other namespaces there (node-role.kubernetes.io, ...)
# belong to Kubernetes' own components. Unlike labels, no namespace there is left to the user.
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Kubernetes' qualified names, for label and taint keys alike, and their values.
_LABEL_KEY_PATTERN = r"([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_LABEL_VALUE_PATTERN = r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?"
_LABEL_KEY = re.compile(_LABEL_KEY_PATTERN)
_LABEL_VALUE = re.compile(_LABEL_VALUE_PATTERN)
_TAINT_FORM = "key=value:Effect such as 'dedicated=system:NoSchedule'"


def _taint(value: str) -> str:
    """``key=value:Effect`` or ``key:Effect``, as `kubectl taint` and the kubelet's --register-with-taints take them."""
    pair, colon, effect = value.rpartition(":")
    if not colon:
        raise ValueError(f"{value!r} is not a taint {_TAINT_FORM}")
    if effect not in TAINT_EFFECTS:
        raise ValueError(f"{value!r} has effect {effect!r}; a taint's effect is one of {', '.join(TAINT_EFFECTS)}")
    key, _, taint_value = pair.partition("=")
    if not _LABEL_KEY.fullmatch(key):
        raise ValueError(f"{value!r}: {key!r} is not a taint key such as 'dedicated' or 'example.com/dedicated'")
    if not _LABEL_VALUE.fullmatch(taint_value):
        raise ValueError(f"{value!r}: {taint_value!r} is not a taint value (63 of A-Za-z0-9_.-)")
    namespace = key.partition("/")[0] if "/" in key else ""
    if any(namespace == name or namespace.endswith(f".{name}") for name in _RESERVED_NAMESPACES):
        raise ValueError(
            f"{value!r} is in a namespace Kubernetes keeps for its own taints (kubernetes.io and k8s.io); use your "
            "own prefix such as 'example.com/'"
        )
    return value


def _taint_identity(taint: str) -> tuple[str, str]:
    """A node holds at most one taint per key and effect."""
    pair, _, effect = taint.rpartition(":")
    return pair.partition("=")[0], effect


def _taints_unique(taints: list[str]) -> list[str]:
    seen: set[tuple[str, str]] = set()
    for taint in taints:
        identity = _taint_identity(taint)
        if identity in seen:
            raise ValueError(f"lists key {identity[0]!r} with effect {identity[1]} twice; a node holds one of each")
        seen.add(identity)
    return taints


def _listed_once(values: list[_T]) -> list[_T]:
    if len(set(values)) != len(values):
        duplicate = next(value for value in values if values.count(value) > 1)
        raise ValueError(f"lists {duplicate!r} twice")
    return values


# Tags that `cluster` sets itself, on every resource or on every host; none may be given in [tags].
OWN_TAGS = (names.CLUSTER_TAG, names.FINGERPRINT_TAG, names.HEALTH_TAG, names.NAME_TAG)
AWS_TAGS_PER_RESOURCE = 50


def _not_reserved(key: str) -> str:
    folded = key.casefold()
    if folded.startswith("aws:"):
        raise ValueError(f"{key!r} starts with 'aws:' (in any case), which AWS keeps for its own tags")
    if folded.startswith(names.OWN_TAG_PREFIX):
        raise ValueError(
            f"{key!r} starts with {names.OWN_TAG_PREFIX!r} (in any case), which cluster keeps for its own tags: "
            f"{names.CLUSTER_TAG} says which cluster owns a resource"
        )
    if folded == names.NAME_TAG.casefold():
        raise ValueError(f"{key!r} is set by cluster itself (hosts are named <name>-host, or <name>-<group>-host)")
    return key


def _room_for_own_tags(tags: dict[str, str]) -> dict[str, str]:
    room = AWS_TAGS_PER_RESOURCE - len(OWN_TAGS)
    if len(tags) > room:
        raise ValueError(
            f"has {len(tags)} tags; AWS allows {AWS_TAGS_PER_RESOURCE} per resource and cluster sets {len(OWN_TAGS)} "
            f"of its own on every host ({', '.join(OWN_TAGS)}), so at most {room}"
        )
    return tags


ClusterName = Annotated[
    str,
    _check(r"[a-z][a-z0-9-]{0,26}[a-z0-9]", "a cluster name (2-28 of a-z, 0-9 and '-', starting with a letter)"),
]
Region = Annotated[str, _check(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]", "an AWS region such as 'eu-west-1'")]
InstanceType = Annotated[
    str, _check(r"[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.[0-9]*[a-z][a-z0-9]*", "an EC2 instance type such as 'm4.large'")
]
ImageSource = Annotated[
    str,
    _check(
        r"ami-([0-9a-f]{8}|[0-9a-f]{17})|ssm:(/[A-Za-z0-9_.-]+)+",
        "an AMI id such as 'ami-0123456789abcdef0' or an SSM parameter path such as 'ssm:/aws/service/...'",
    ),
]
KubeContext = Annotated[str, _check(r"[A-Za-z0-9_.:@/-]{1,253}", "a kubeconfig context name")]
# 1.31 is the first release whose kubeadm reads the v1beta4 JoinConfiguration that the user-data writes.
KubernetesVersion = Annotated[
    str, _check(r"1\.(3[1-9]|[4-9][0-9])", "a Kubernetes minor version, 1.31 or later, such as '1.34'")
]
DnfRelease = Annotated[
    str, _check(r"latest|20[0-9]{2}\.[0-9]+\.[0-9]{8}(\.[0-9]+)?", "'latest' or a release such as '2023.6.20241010'")
]
ApiEndpoint = Annotated[
    str,
    _check(
        r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[0-9]{1,5}",
        "an API server address host:port such as '10.0.0.10:6443'",
    ),
    AfterValidator(_port_in_range),
]
CaCertHash = Annotated[str, _check(r"sha256:[0-9a-f]{64}", "a CA cert hash 'sha256:' followed by 64 hex digits")]
KmsKey = Annotated[
    str,
    _check(
        r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}",
        "a KMS key ARN such as 'arn:aws:kms:eu-west-1:123456789012:key/<uuid>'",
    ),
]
VpcId = Annotated[str, _check(r"vpc-([0-9a-f]{8}|[0-9a-f]{17})", "a VPC id such as 'vpc-0123456789abcdef0'")]
SubnetId = Annotated[
    str, _check(r"subnet-([0-9a-f]{8}|[0-9a-f]{17})", "a subnet id such as 'subnet-0123456789abcdef0'")
]
KeyPairName = Annotated[str, _check(r"[A-Za-z0-9_.-]{1,255}", "a key pair name (letters, digits, '_', '.', '-')")]
QueueName = Annotated[str, _check(r"[A-Za-z0-9_-]{1,75}(\.fifo)?", "an SQS queue name (letters, digits, '_', '-')")]
UnixUser = Annotated[str, _check(r"[a-z_][a-z0-9_-]{0,31}", "a user name such as 'ec2-user'")]
SshTarget = Annotated[
    str,
    _check(
        r"([a-z_][a-z0-9_-]{0,31}@)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?",
        "a bastion as [user@]host[:port]",
    ),
    AfterValidator(_port_in_range),
]
FilePath = Annotated[str, _check(r"[A-Za-z0-9_./~+-]+", "a file path (letters, digits, '_', '.', '/', '~', '+', '-')")]
# AWS's tag limits: keys 1-128 and values 0-256 of letters, digits, spaces and _.:/=+@- (ASCII here: these also
# reach IAM conditions and the hosts' shell).
TagKey = Annotated[
    str,
    _check(r"[A-Za-z0-9 _.:/=+@-]{1,128}", "a tag key (1-128 of letters, digits, spaces, _.:/=+@-)"),
    AfterValidator(_not_reserved),
]
TagValue = Annotated[
    str, _check(r"[A-Za-z0-9 _.:/=+@-]{0,256}", "a tag value (0-256 of letters, digits, spaces, _.:/=+@-)")
]
UserTags = Annotated[dict[TagKey, TagValue], AfterValidator(_room_for_own_tags)]
LabelKey = Annotated[
    str,
    _check(_LABEL_KEY_PATTERN, "a Kubernetes label key such as 'team' or 'example.com/team'"),
    AfterValidator(_kubelet_may_set),
]
LabelValue = Annotated[str, _check(_LABEL_VALUE_PATTERN, "a Kubernetes label value (63 of A-Za-z0-9_.-)")]
Cidr = Annotated[str, AfterValidator(_cidr)]
IngressCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_world_closed)]
IngressCidrs = Annotated[list[IngressCidr], AfterValidator(_public_space_limited)]
Seconds = Annotated[int, Field(ge=1, le=86_400)]


# A count of hosts, or a percentage of the group's desired capacity ("25%"), as kops and Cluster API take them.
def _share(value: int | str) -> int | str:
    if isinstance(value, int) and 0 <= value <= 100:
        return value
    if isinstance(value, str) and re.fullmatch(r"(100|[1-9]?[0-9])%", value):
        return value
    raise ValueError(f"{value!r} is neither a number of hosts from 0 to 100 nor a percentage such as '25%'")


HostShare = Annotated[int | str, AfterValidator(_share)]


# At most this many hosts under repair at once: a count of at least 1, or a percentage of the group's desired capacity
# (rounded down, at least 1), as Cluster API's MachineHealthCheck takes its limit.
def _repair_share(value: int | str) -> int | str:
    if isinstance(value, int) and 1 <= value <= 1000:
        return value
    if isinstance(value, str) and re.fullmatch(r"(100|[1-9][0-9]?)%", value):
        return value
    raise ValueError(f"{value!r} is neither a number of hosts from 1 to 1000 nor a percentage from '1%' to '100%'")


RepairShare = Annotated[int | str, AfterValidator(_repair_share)]


def _not_ready(value: str) -> str:
    if value == "Ready":
        raise ValueError("'Ready' is always watched (False or Unknown); list the conditions whose True means sick")
    return value


# A node condition type, as node-problem-detector sets them ("KernelDeadlock", "ReadonlyFilesystem"): a sick node
# carries it with status True.
NodeConditionType = Annotated[
    str,
    _check(r"[A-Za-z][A-Za-z0-9_.-]{0,62}", "a node condition type such as 'KernelDeadlock'"),
    AfterValidator(_not_ready),
]
AlarmName = Annotated[
    str, _check(r"[A-Za-z0-9 _.:/#()+=@-]{1,255}", "a CloudWatch alarm name (letters, digits, spaces, _.:/#()+=@-)")
]

# A host group's name (``[groups.<name>]``): it reaches logical ids, output names and the hosts' Name tag.
GroupName = Annotated[
    str,
    _check(
        r"[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?",
        "a group name (1-20 of a-z, 0-9 and '-', not starting or ending with '-')",
    ),
]
Taint = Annotated[str, AfterValidator(_taint)]
Taints = Annotated[list[Taint], Field(max_length=50), AfterValidator(_taints_unique)]
# One of the network's availability zones, counted from 1 in the order AWS lists the region's zones (Fn::GetAZs).
ZoneNumber = Annotated[int, Field(ge=1, le=6)]
ZoneNumbers = Annotated[list[ZoneNumber], Field(min_length=1), AfterValidator(_listed_once)]
SubnetIds = Annotated[list[SubnetId], Field(min_length=1), AfterValidator(_listed_once)]
InstanceTypes = Annotated[list[InstanceType], Field(min_length=1, max_length=40), AfterValidator(_listed_once)]
