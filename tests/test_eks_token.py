"""The EKS bearer token, made as `aws eks get-token` makes it, and the in-memory kubeconfig around it."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.exceptions import NoCredentialsError

from provision.aws.eks_token import TOKEN_PREFIX, eks_kubeconfig, eks_token


def decode(token: str) -> str:
    body = token.removeprefix(TOKEN_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def test_token_is_a_presigned_get_caller_identity_naming_the_cluster() -> None:
    session = boto3.Session(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1")

    token = eks_token(session, "batch", "eu-west-1")

    assert token.startswith("k8s-aws-v1.") and "=" not in token
    url = urlsplit(decode(token))
    query = parse_qs(url.query)
    assert url.scheme == "https" and url.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"] and query["Version"] == ["2011-06-15"]
    assert query["X-Amz-SignedHeaders"] == ["host;x-k8s-aws-id"], "the cluster name is part of the signature"
    assert query["X-Amz-Expires"] == ["60"]
    assert query["X-Amz-Credential"][0].startswith("AKIAEXAMPLE/")
    assert "secret" not in token


def test_no_credentials_is_the_usual_aws_error(monkeypatch: pytest.MonkeyPatch) -> None:
    session = boto3.Session(region_name="eu-west-1")
    monkeypatch.setattr(session, "get_credentials", lambda: None)

    with pytest.raises(NoCredentialsError):
        eks_token(session, "batch", "eu-west-1")


def test_kubeconfig_carries_the_endpoint_authority_and_token() -> None:
    config = eks_kubeconfig("batch", "https://abc.eks.amazonaws.com", "Q0E=", "k8s-aws-v1.x")
    assert config["clusters"] == [
        {"name": "batch", "cluster": {"server": "https://abc.eks.amazonaws.com", "certificate-authority-data": "Q0E="}}
    ]
    assert config["users"] == [{"name": "batch", "user": {"token": "k8s-aws-v1.x"}}]
