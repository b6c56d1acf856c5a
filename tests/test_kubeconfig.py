"""The kubeconfig entry `cluster up` writes in eks mode: merged into the user's file, never clobbering it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import boto3
import pytest
import yaml

from provision import kubeconfig
from provision.aws.cloud import Cloud
from provision.aws.stacks import Stacks
from provision.config.loader import load_config
from provision.deploy.up import Up
from tests.conftest import CONFIGS
from tests.deploykit import REGION, recording_ui
from tests.fake_cloudformation import STACK_TYPE, ScriptedCloudFormation, event

OTHER = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "other", "cluster": {"server": "https://other"}}],
    "users": [{"name": "other", "user": {"token": "keep-me"}}],
    "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
    "current-context": "other",
}


def entry(server: str = "https://batch.example") -> dict[str, object]:
    return kubeconfig.eks_entry("batch", "us-west-2", server, "Q0E=")


def test_a_new_file_gets_the_entry_as_current_context_and_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "kube" / "config"

    assert kubeconfig.write_entry(path, entry()) is True

    data = yaml.safe_load(path.read_text())
    assert data["current-context"] == "batch"
    assert data["users"][0]["user"]["exec"]["args"] == [
        "--region", "us-west-2", "eks", "get-token", "--cluster-name", "batch", "--output", "json",
    ]  # fmt: skip
    assert path.stat().st_mode & 0o777 == 0o600


def test_merging_keeps_other_clusters_and_the_current_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(OTHER))

    assert kubeconfig.write_entry(path, entry()) is False
    kubeconfig.write_entry(path, entry("https://moved.example"))

    data = yaml.safe_load(path.read_text())
    assert data["current-context"] == "other"
    assert [c["name"] for c in data["clusters"]] == ["other", "batch"]
    assert data["clusters"][1]["cluster"]["server"] == "https://moved.example", "an entry is replaced, not repeated"
    assert data["users"][0]["user"]["token"] == "keep-me"


def test_default_path_follows_config_then_kubeconfig_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert kubeconfig.default_path(None) == tmp_path / "a"
    assert kubeconfig.default_path(str(tmp_path / "c")) == tmp_path / "c"


def test_up_in_eks_mode_writes_the_kubeconfig_entry(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # moto's CloudFormation ignores AWS::EKS::Cluster, so the stack is scripted and the cluster made directly.
    config = load_config(CONFIGS / "eks.toml")
    boto3.client("eks", region_name=REGION).create_cluster(
        name="batch",
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": list(config.network.subnet_ids)},
    )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    fake = ScriptedCloudFormation(
        config.stack_name,
        tags={"cluster:name": "batch"},
        after_execute=[("CREATE_COMPLETE", [event(config.stack_name, STACK_TYPE, "CREATE_COMPLETE")])],
    )
    ui, out = recording_ui()

    Up(config, dataclasses.replace(cloud, stacks=Stacks(fake, cloud.clock)), ui, timeout=600).run(  # type: ignore[arg-type]
        dry_run=False, join_token=None
    )

    data = yaml.safe_load((tmp_path / "config").read_text())
    [cluster] = data["clusters"]
    endpoint = boto3.client("eks", region_name=REGION).describe_cluster(name="batch")["cluster"]["endpoint"]
    assert cluster == {
        "name": "batch",
        "cluster": {"server": endpoint, "certificate-authority-data": cluster["cluster"]["certificate-authority-data"]},
    }
    assert cluster["cluster"]["certificate-authority-data"]
    assert f"kubeconfig {tmp_path / 'config'}: context batch" in out.getvalue()
