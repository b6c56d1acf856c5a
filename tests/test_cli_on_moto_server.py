"""The installed `cluster` command, run as a user runs it, against moto's server over HTTP (AWS_ENDPOINT_URL).
One server for the session, reset between tests."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import EXAMPLE, run_installed
from tests.deploykit import REGION, TOKEN


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def endpoint(moto_server: str) -> str:
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own server on 127.0.0.1
        pass
    return moto_server


def cluster(
    endpoint: str, *args: str, token: str | None = TOKEN, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ["HOME"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.environ["AWS_CONFIG_FILE"],
        "AWS_SHARED_CREDENTIALS_FILE": os.environ["AWS_SHARED_CREDENTIALS_FILE"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
        **({"CLUSTER_JOIN_TOKEN": token} if token else {}),
    }
    return run_installed(cwd or Path.cwd(), *args, env=env)


def test_up_shows_progress_then_a_second_run_has_nothing_to_do(endpoint: str) -> None:
    first = cluster(endpoint, "up", "--yes", "-c", str(EXAMPLE))

    assert first.returncode == 0, first.stderr
    assert "+  HostGroup" in first.stdout
    assert "CREATE_COMPLETE cluster-demo (AWS::CloudFormation::Stack)" in first.stdout
    assert "3 host(s) InService" in first.stdout
    assert TOKEN not in first.stdout + first.stderr

    second = cluster(endpoint, "up", "--yes", "-c", str(EXAMPLE), token=None)

    assert second.returncode == 0, second.stderr
    assert "no changes: stack cluster-demo is up to date" in second.stdout


def test_status_lists_the_hosts(endpoint: str) -> None:
    assert cluster(endpoint, "up", "--yes", "-c", str(EXAMPLE)).returncode == 0

    table = cluster(endpoint, "status", "-c", str(EXAMPLE))
    data = json.loads(cluster(endpoint, "status", "-c", str(EXAMPLE), "--output", "json").stdout)

    assert table.returncode == 0, table.stderr
    assert "stack cluster-demo: CREATE_COMPLETE" in table.stdout
    assert "3 host(s), 0 outdated" in table.stdout
    assert f"configuration {data['fingerprint']}" in table.stdout and "/0/" in data["fingerprint"]
    assert len(data["hosts"]) == 3
    for host in data["hosts"]:
        assert host["instance_id"] in table.stdout
        assert host["current"] is True


def test_down_removes_the_stack(endpoint: str, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
        for i, z in enumerate("abc")
    ]
    config = tmp_path / "cluster.toml"
    config.write_text(
        EXAMPLE.read_text().replace(
            '# vpc_id = "vpc-0123456789abcdef0"', f'vpc_id = "{vpc}"\nsubnet_ids = {json.dumps(subnets)}'
        )
    )
    assert cluster(endpoint, "up", "--yes", cwd=tmp_path).returncode == 0

    refused = cluster(endpoint, "down", cwd=tmp_path)
    gone = cluster(endpoint, "down", "--yes", "--purge", cwd=tmp_path)

    assert refused.returncode == 2
    assert refused.stderr.startswith("error: did not delete stack cluster-demo (3 host(s)): rerun with --yes")
    assert gone.returncode == 0, gone.stderr
    assert "deleted stack cluster-demo" in gone.stdout
    assert "removed 1 SSM parameter(s)" in gone.stdout
    assert cluster(endpoint, "status", cwd=tmp_path).stderr.startswith("error: no stack cluster-demo")


def test_a_broken_config_names_the_cause_in_the_first_line(endpoint: str, tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(EXAMPLE.read_text().replace("max_size = 6", "max_size = 2"))

    result = cluster(endpoint, "up", "--yes", "-c", str(config))

    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(f"error: {config}: hosts.min_size: (3) is greater than max_size")
    assert result.stdout == ""


def test_kubeadm_without_a_token_says_how_to_give_one(endpoint: str) -> None:
    result = cluster(endpoint, "up", "--yes", "-c", str(EXAMPLE), token=None)

    assert result.returncode == 2
    assert "pass it through CLUSTER_JOIN_TOKEN or --join-token-file FILE" in result.stderr
