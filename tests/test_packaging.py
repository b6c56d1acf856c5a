"""The wheel carries templates/ and userdata/ and renders from a clean virtual environment, away from the checkout."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, GOLDEN, REPO

SHIPPED_DATA = [
    "provision/templates/cluster.example.toml",
    "provision/templates/cfn-lint-rules.txt",
    "provision/userdata/bootstrap.sh.j2",
    "provision/userdata/health-agent.sh",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy so the checkout gets no build/ or egg-info debris.
    source = tmp_path_factory.mktemp("source") / "cluster"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def clean_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with only the wheel installed. Its dependencies are borrowed from this interpreter through a .pth
    line (no network); the checkout's editable install is not: a plain path in a .pth does not run other .pth files."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    borrowed = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (Path(purelib) / "borrowed-dependencies.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def test_wheel_ships_templates_and_userdata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        contents = set(archive.namelist())
    assert set(SHIPPED_DATA) <= contents
    assert archive_text(wheel, "provision/templates/cluster.example.toml") == EXAMPLE.read_text(), (
        "the packaged example must be the repository's cluster.example.toml"
    )


def archive_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name).decode()


def test_installed_wheel_renders_the_example(clean_venv: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(clean_venv / "bin/python"), "-c", "import provision; print(provision.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(clean_venv)), f"provision was imported from {where}, not from the wheel"

    result = subprocess.run(
        [str(clean_venv / "bin/cluster"), "render", "-c", str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / "kubeadm.template.yaml").read_text()


def test_installed_wheel_falls_back_to_its_packaged_example(clean_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(clean_venv / "bin/cluster"), "render", "--userdata"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / "kubeadm.userdata.sh").read_text()
