"""An EKS bearer token made the way `aws eks get-token` makes it: a presigned STS GetCallerIdentity URL that names
the cluster in the signed `x-k8s-aws-id` header, base64url-encoded behind `k8s-aws-v1.`. Valid for 15 minutes."""

from __future__ import annotations

import base64

import boto3
from botocore.exceptions import NoCredentialsError
from botocore.signers import RequestSigner

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - the token format's prefix, not a secret
PRESIGN_SECONDS = 60  # what aws-cli uses; EKS accepts the token for 15 minutes from signing


def eks_token(session: boto3.Session, cluster: str, region: str) -> str:
    credentials = session.get_credentials()
    if credentials is None:
        raise NoCredentialsError()
    sts = session.client("sts", region_name=region)
    signer = RequestSigner(sts.meta.service_model.service_id, region, "sts", "v4", credentials, session.events)
    url = signer.generate_presigned_url(
        {
            "method": "GET",
            "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            "body": {},
            "headers": {"x-k8s-aws-id": cluster},
            "context": {},
        },
        region_name=region,
        expires_in=PRESIGN_SECONDS,
        operation_name="",
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def eks_kubeconfig(cluster: str, endpoint: str, certificate_authority: str, token: str) -> dict[str, object]:
    """An in-memory kubeconfig for the facade (never written to disk: it holds a bearer token)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority}}
        ],
        "users": [{"name": cluster, "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
        "current-context": cluster,
    }
