"""checkov on the rendered template, both modes (and the optional parts each can add): no failure, and every check
the template skips names its reason. checkov runs from the venv `./dev` gives it (it pins its own boto3), offline:
no download of Prisma Cloud's guidelines, no update check."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provision.config.loader import load_config, parse_config
from provision.config.schema import ClusterConfig, EksControlPlane
from provision.render.template import render
from tests.conftest import REPO
from tests.test_template import CASES, TWO_GROUPS, with_changes

CHECKOV = REPO / ".venv" / "checkov" / "bin" / "checkov"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"


def checkov_or_skip() -> None:
    if CHECKOV.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHECKOV} is missing; `./dev test` installs it")
    pytest.skip(f"{CHECKOV} is missing: run `./dev lint` (or `./dev test`) once to install it")


def checkov(template: Path) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(template.parent),
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",  # otherwise it asks PyPI for a newer checkov
        "LOG_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [str(CHECKOV), "--file", str(template), "--framework", "cloudformation", "--output", "json",
         "--skip-download", "--compact"],
        capture_output=True, text=True, env=env, cwd=template.parent, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr  # 1: findings, reported below
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["check_type"] == "cloudformation"
    return report


def eks_with_keys() -> ClusterConfig:
    data = tomllib.loads(CASES["eks"].read_text())
    data["control_plane"] |= {"secrets_kms_key": KMS_KEY, "endpoint_public_access": False}
    data["control_plane"].pop("public_access_cidrs")
    data["hosts"]["volume_kms_key"] = KMS_KEY
    return parse_config(data, source="test")


# Both modes as the golden files have them (tests/configs/eks.toml also takes an existing network, queue scaling and
# an SSH rule), and each with the optional keys they take.
VARIANTS: dict[str, Callable[[], ClusterConfig]] = {
    "kubeadm": lambda: load_config(CASES["kubeadm"]),
    "eks": lambda: load_config(CASES["eks"]),
    "kubeadm-keys-single-nat": lambda: with_changes(
        control_plane={"token_kms_key": KMS_KEY}, hosts={"volume_kms_key": KMS_KEY}, network={"nat_gateways": "single"}
    ),
    "eks-keys-private": eks_with_keys,
    # Two host groups each (tainted, in some zones or subnets, a mixed-instances policy).
    "groups-kubeadm": lambda: load_config(TWO_GROUPS["groups-kubeadm"]),
    "groups-eks": lambda: load_config(TWO_GROUPS["groups-eks"]),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkov_finds_nothing_unexplained_in_the_template(variant: str, tmp_path: Path) -> None:
    checkov_or_skip()
    config = VARIANTS[variant]()
    template = tmp_path / f"{variant}.template.json"
    template.write_text(render(config).text("json"))

    report = checkov(template)

    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert failed == [], "fix each, or accept it with its reason in provision/render/accepted.py"
    assert report["summary"]["passed"] >= 20, "checkov read the template and ran its checks"
    skipped = report["results"]["skipped_checks"]
    # The two queues' managed encryption; EKS's default envelope encryption only where no key of one's own is set.
    eks_default = isinstance(config.control_plane, EksControlPlane) and not config.control_plane.secrets_kms_key
    assert sorted(check["check_id"] for check in skipped) == ["CKV_AWS_27", "CKV_AWS_27"] + (
        ["CKV_AWS_58"] if eks_default else []
    )
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check
