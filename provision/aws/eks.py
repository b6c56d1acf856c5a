"""EKS, typed: what a kubeconfig needs to reach a cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_eks import EKSClient


@dataclass(frozen=True)
class ClusterAccess:
    endpoint: str
    certificate_authority: str


class EksClusters:
    def __init__(self, client: EKSClient) -> None:
        self.client = client

    def access(self, name: str) -> ClusterAccess:
        cluster = self.client.describe_cluster(name=name)["cluster"]
        return ClusterAccess(
            endpoint=cluster.get("endpoint", ""),
            certificate_authority=cluster.get("certificateAuthority", {}).get("data", ""),
        )
