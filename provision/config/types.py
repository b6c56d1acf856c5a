"""Constrained value types for the configuration schema.

Each type states the character set it admits. Values that reach resource names, tags or the host's user-data are held
to these sets, so that a quote, ``$( )`` or a newline in the TOML file is rejected here with the key's name, long before
the user-data's quoting would have to cope with it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field


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


def _world_closed(value: str) -> str:
    block = ipaddress.ip_network(value)
    if block.prefixlen == 0:
        raise ValueError(f"{value!r} opens the port to the whole internet; name the networks that need it")
    if block.version != 4:
        raise ValueError(f"{value!r} is not an IPv4 block (security group and EKS endpoint rules here are IPv4)")
    return value


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
]
FilePath = Annotated[str, _check(r"[A-Za-z0-9_./~+-]+", "a file path (letters, digits, '_', '.', '/', '~', '+', '-')")]
TagKey = Annotated[
    str,
    _check(
        r"(?!aws:)[A-Za-z0-9 _.:/=+@-]{1,128}", "a tag key (1-128 of letters, digits, spaces, _.:/=+@-; not 'aws:')"
    ),
]
TagValue = Annotated[str, _check(r"[A-Za-z0-9 _.:/=+@-]{0,256}", "a tag value (letters, digits, spaces, _.:/=+@-)")]
LabelKey = Annotated[
    str,
    _check(
        r"([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?",
        "a Kubernetes label key such as 'team' or 'example.com/team'",
    ),
]
LabelValue = Annotated[
    str, _check(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?", "a Kubernetes label value (63 of A-Za-z0-9_.-)")
]
Cidr = Annotated[str, AfterValidator(_cidr)]
IngressCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_world_closed)]
Seconds = Annotated[int, Field(ge=1, le=86_400)]


# A count of hosts, or a percentage of the group's desired capacity ("25%"), as kops and Cluster API take them.
def _share(value: int | str) -> int | str:
    if isinstance(value, int) and 0 <= value <= 100:
        return value
    if isinstance(value, str) and re.fullmatch(r"(100|[1-9]?[0-9])%", value):
        return value
    raise ValueError(f"{value!r} is neither a number of hosts from 0 to 100 nor a percentage such as '25%'")


HostShare = Annotated[int | str, AfterValidator(_share)]
AlarmName = Annotated[
    str, _check(r"[A-Za-z0-9 _.:/#()+=@-]{1,255}", "a CloudWatch alarm name (letters, digits, spaces, _.:/#()+=@-)")
]
