"""The hosts' network: a new VPC with private host subnets behind NAT across N AZs, or the existing one the config
names; and the hosts' security group, which opens nothing from outside unless the config asks."""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass

from troposphere import AWSObject, GetAZs, Ref, Select, Tags, Template, ec2

from provision import names
from provision.config.schema import ClusterConfig, HostGroup, KubeadmControlPlane, Network

ALL_TRAFFIC = "-1"
KUBELET_PORT = 10250


@dataclass(frozen=True)
class Placement:
    """Where the hosts live: the VPC and the subnets the group spreads over (CloudFormation refs or literal ids)."""

    vpc: object
    subnets: list[object]  # one per zone, in the zones' order

    def of(self, group: HostGroup) -> list[object]:
        """The subnets of one group: its zones of a new VPC (numbered from 1), its subnet_ids of an existing
        network, or all. In the network's order whatever the group's, so that reordering them changes nothing."""
        if group.zones is not None:
            return [self.subnets[zone - 1] for zone in sorted(group.zones)]
        if group.subnet_ids is not None:
            return [subnet for subnet in self.subnets if subnet in group.subnet_ids]
        return self.subnets


def add_network(template: Template, config: ClusterConfig, tags: Tags) -> Placement:
    network = config.network
    if not network.creates_vpc:
        return Placement(vpc=network.vpc_id, subnets=list(network.subnet_ids))
    return _new_vpc(template, network, tags)


def subnet_blocks(network: Network) -> tuple[list[str], list[str]]:
    """Host and public (NAT) subnet blocks, one of each per AZ: hosts get whole eighths of the VPC, the public
    subnets share the last eighth. Deterministic, so the same config always renders the same template."""
    eighths = list(ipaddress.IPv4Network(network.vpc_cidr).subnets(prefixlen_diff=3))
    public = list(eighths[-1].subnets(prefixlen_diff=3))
    count = network.availability_zones
    return [str(block) for block in eighths[:count]], [str(block) for block in public[:count]]


def _new_vpc(template: Template, network: Network, tags: Tags) -> Placement:
    private_blocks, public_blocks = subnet_blocks(network)
    vpc = template.add_resource(
        ec2.VPC("Vpc", CidrBlock=network.vpc_cidr, EnableDnsHostnames=True, EnableDnsSupport=True, Tags=tags)
    )
    gateway = template.add_resource(ec2.InternetGateway("InternetGateway", Tags=tags))
    attachment = template.add_resource(
        ec2.VPCGatewayAttachment("InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(gateway))
    )
    public_routes = template.add_resource(ec2.RouteTable("PublicRouteTable", VpcId=Ref(vpc), Tags=tags))
    template.add_resource(
        ec2.Route(
            "PublicDefaultRoute",
            DependsOn=attachment,
            RouteTableId=Ref(public_routes),
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId=Ref(gateway),
        )
    )
    nats: list[AWSObject] = []
    subnets: list[object] = []
    for index, letter in enumerate(string.ascii_uppercase[: network.availability_zones]):
        zone = Select(index, GetAZs(""))
        public = template.add_resource(
            ec2.Subnet(
                f"PublicSubnet{letter}",
                VpcId=Ref(vpc),
                AvailabilityZone=zone,
                CidrBlock=public_blocks[index],
                MapPublicIpOnLaunch=False,
                Tags=tags,
            )
        )
        template.add_resource(
            ec2.SubnetRouteTableAssociation(
                f"PublicSubnet{letter}Routes", SubnetId=Ref(public), RouteTableId=Ref(public_routes)
            )
        )
        if network.nat_gateways == "per-az" or not nats:
            address = template.add_resource(
                ec2.EIP(f"NatAddress{letter}", Domain="vpc", DependsOn=attachment, Tags=tags)
            )
            nats.append(
                template.add_resource(
                    ec2.NatGateway(
                        f"NatGateway{letter}",
                        AllocationId=address.get_att("AllocationId"),
                        SubnetId=Ref(public),
                        Tags=tags,
                    )
                )
            )
        private = template.add_resource(
            ec2.Subnet(
                f"HostSubnet{letter}",
                VpcId=Ref(vpc),
                AvailabilityZone=zone,
                CidrBlock=private_blocks[index],
                MapPublicIpOnLaunch=False,
                Tags=tags,
            )
        )
        private_routes = template.add_resource(ec2.RouteTable(f"HostRouteTable{letter}", VpcId=Ref(vpc), Tags=tags))
        template.add_resource(
            ec2.Route(
                f"HostDefaultRoute{letter}",
                RouteTableId=Ref(private_routes),
                DestinationCidrBlock="0.0.0.0/0",
                NatGatewayId=Ref(nats[-1]),
            )
        )
        template.add_resource(
            ec2.SubnetRouteTableAssociation(
                f"HostSubnet{letter}Routes", SubnetId=Ref(private), RouteTableId=Ref(private_routes)
            )
        )
        subnets.append(Ref(private))
    return Placement(vpc=Ref(vpc), subnets=subnets)


def add_security_group(
    template: Template, config: ClusterConfig, placement: Placement, tags: Tags
) -> ec2.SecurityGroup:
    """No port is open from outside by default; SSH only from ``ssh.allow_from``, the kubelet only from the kubeadm
    control plane's networks. Hosts talk freely to each other (pod networking)."""
    ingress = [
        ec2.SecurityGroupRule(IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp=cidr, Description="SSH (ssh.allow_from)")
        for cidr in config.ssh.allow_from
    ]
    plane = config.control_plane
    if isinstance(plane, KubeadmControlPlane):
        ingress += [
            ec2.SecurityGroupRule(
                IpProtocol="tcp",
                FromPort=KUBELET_PORT,
                ToPort=KUBELET_PORT,
                CidrIp=cidr,
                Description="kubelet API from the control plane",
            )
            for cidr in plane.control_plane_cidrs
        ]
    group = template.add_resource(
        ec2.SecurityGroup(
            names.HOST_SECURITY_GROUP,
            GroupDescription=f"Kubernetes worker hosts of cluster {config.name}",
            VpcId=placement.vpc,
            SecurityGroupIngress=ingress,
            SecurityGroupEgress=[
                ec2.SecurityGroupRule(
                    IpProtocol=ALL_TRAFFIC, CidrIp="0.0.0.0/0", Description="updates, images, AWS and Kubernetes APIs"
                )
            ],
            Tags=tags,
        )
    )
    template.add_resource(
        ec2.SecurityGroupIngress(
            "HostToHostIngress",
            GroupId=Ref(group),
            IpProtocol=ALL_TRAFFIC,
            SourceSecurityGroupId=Ref(group),
            Description="host to host (pod network)",
        )
    )
    return group
