"""`cluster sandbox start|status|stop` and `cluster --sandbox …` as a user runs them: subprocesses in a scratch
folder, real time (the sandbox's hosts boot in a second), and no process left behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.sandbox.state import SandboxState, is_ours
from tests.conftest import run_installed


def cluster(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_installed(folder, *args)


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # Whatever a test did, no sandbox outlives it.
    state = SandboxState.load(tmp_path / ".cluster")
    if state is not None and is_ours(state.pid):
        cluster(tmp_path, "sandbox", "stop")


def test_start_status_stop_leave_nothing_running(folder: Path) -> None:
    started = cluster(folder, "sandbox", "start", "--boot-seconds", "0.5")
    assert started.returncode == 0, started.stderr
    state = SandboxState.load(folder / ".cluster")
    assert state is not None and is_ours(state.pid)
    assert f"sandbox running (pid {state.pid})" in started.stdout
    assert "cluster --sandbox up --yes" in started.stdout

    again = cluster(folder, "sandbox", "start")
    status = cluster(folder, "sandbox", "status")
    stopped = cluster(folder, "sandbox", "stop")

    assert again.returncode == 2 and "already running" in again.stderr
    assert status.returncode == 0 and status.stdout.count("answers") == 2
    assert stopped.returncode == 0 and f"sandbox stopped (pid {state.pid})" in stopped.stdout
    assert not is_ours(state.pid), "the daemon is gone"
    assert not (folder / ".cluster" / "sandbox.json").exists()
    after = cluster(folder, "sandbox", "status")
    assert after.returncode == 1 and "no sandbox is running here" in after.stderr


def test_stop_leaves_alone_a_process_that_is_not_the_sandbox(folder: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        SandboxState(other.pid, "http://127.0.0.1:9", "http://127.0.0.1:9", "k", "l").save(folder / ".cluster")

        stopped = cluster(folder, "sandbox", "stop")

        assert stopped.returncode == 0
        assert other.poll() is None, "a recycled pid is not ours to kill"
    finally:
        other.kill()
        other.wait()


def test_verbs_need_a_running_sandbox(folder: Path) -> None:
    result = cluster(folder, "--sandbox", "status")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "error: --sandbox: no sandbox is running here; start one with `cluster sandbox start`"
    )


def test_up_on_the_sandbox_brings_ready_nodes_with_the_sample_workload_spread_over_them(folder: Path) -> None:
    assert cluster(folder, "sandbox", "start", "--boot-seconds", "0.5").returncode == 0

    up = cluster(folder, "--sandbox", "up", "--yes")
    status = cluster(folder, "--sandbox", "status", "--output", "json")

    assert up.returncode == 0, up.stderr
    assert "3 host(s) InService" in up.stdout and "3 node(s) Ready" in up.stdout
    report = json.loads(status.stdout)
    assert [host["ready"] for host in report["hosts"]] == ["yes", "yes", "yes"]
    pods = [int(host["pods"]) for host in report["hosts"]]
    assert sum(pods) >= 6 and min(pods) >= 2, f"the sample workload spreads over the hosts: {pods}"
    assert cluster(folder, "sandbox", "stop").returncode == 0


def test_demo_tells_the_whole_story_with_no_budget_violation(folder: Path) -> None:
    result = cluster(folder, "demo", "--boot-seconds", "0.5")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    for chapter in ["== cluster up", "== cluster replace", "== cluster patch", "== cluster down", "== sandbox stopped"]:
        assert chapter in out
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.split("Demo summary")[1].splitlines() if line.strip()]
    summary = {row[0]: row[1] for row in rows if len(row) == 2}
    assert summary["budget violations"] == "0"
    assert summary["hosts replaced"] == "4"
    assert summary["lowest ready capacity seen"].startswith("3 ")
    assert int(summary["evictions"]) > 0
    assert "took repair slot 0 (at most 1 host(s) under repair at once)" in out, "the storm guard admitted it"
    healed = summary["sick hosts drained by cluster heal"]
    assert healed.split()[0] == "1", f"completed by heal, not by the hook's timeout: {healed}"
    assert not list(folder.glob(".cluster/*")), "the demo's sandbox lived in its own folder"
