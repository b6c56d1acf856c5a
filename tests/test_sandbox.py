"""`cluster sandbox start|status|stop` and `cluster --sandbox …` as a user runs them: subprocesses in a scratch
folder, real time (the sandbox's hosts boot in a second), and no process left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.sandbox.state import SandboxState, is_ours
from tests.conftest import run_installed
from tests.kubectlkit import kubectl_binaries, require_kubectl, table

ROOT = Path(__file__).resolve().parent.parent


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


def readme_kubectl_lines() -> list[str]:
    """Every kubectl command the README shows in a shell block, without its comment."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("kubectl ")]


def test_up_on_the_sandbox_brings_ready_nodes_that_kubectl_sees_drains_and_scales(folder: Path) -> None:
    binary = require_kubectl(next(iter(kubectl_binaries()), None))
    assert cluster(folder, "sandbox", "start", "--boot-seconds", "0.5").returncode == 0
    kubeconfig = str(folder / ".cluster" / "kubeconfig")
    environment = {**os.environ, "HOME": str(folder), "PATH": f"{binary.parent}{os.pathsep}{os.environ['PATH']}"}

    def kubectl(line: str) -> subprocess.CompletedProcess[str]:
        """A command line as a user types it in the folder (the README's name .cluster/kubeconfig)."""
        command = line.replace("kubectl ", f"{binary.name} ", 1)
        return subprocess.run(["bash", "-c", command], cwd=folder, env=environment, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip

    up = cluster(folder, "--sandbox", "up", "--yes")
    status = cluster(folder, "--sandbox", "status", "--output", "json")
    shown = {line: kubectl(line) for line in readme_kubectl_lines()}
    nodes = kubectl(f"kubectl --kubeconfig {kubeconfig} get nodes -o wide")
    first = table(nodes.stdout)[0]["NAME"]
    described = kubectl(f"kubectl --kubeconfig {kubeconfig} describe node {first}")
    drained = kubectl(f"kubectl --kubeconfig {kubeconfig} drain {first} --ignore-daemonsets --delete-emptydir-data")
    scaled = kubectl(f"kubectl --kubeconfig {kubeconfig} scale deployment/web --replicas=7")
    rolled = kubectl(f"kubectl --kubeconfig {kubeconfig} rollout status deployment/web --timeout=60s")
    events = kubectl(f"kubectl --kubeconfig {kubeconfig} get events --field-selector reason=Scheduled")
    state = SandboxState.load(folder / ".cluster")
    assert state is not None
    with urllib.request.urlopen(f"{state.kube_url}/simulator/counters", timeout=10) as answer:  # noqa: S310
        counters = json.loads(answer.read())

    assert up.returncode == 0, up.stderr
    assert "3 host(s) InService" in up.stdout and "3 node(s) Ready" in up.stdout
    report = json.loads(status.stdout)
    assert [host["ready"] for host in report["hosts"]] == ["yes", "yes", "yes"]
    pods = [int(host["pods"]) for host in report["hosts"]]
    assert sum(pods) >= 6 and min(pods) >= 2, f"the sample workload spreads over the hosts: {pods}"
    assert shown, "the README shows kubectl commands"
    for line, done in shown.items():
        assert done.returncode == 0 and done.stdout.startswith("NAMESPACE"), f"{line}: {done.stderr}"
    assert [row["STATUS"] for row in table(nodes.stdout)] == ["Ready"] * 3
    assert all(row["INTERNAL-IP"] != "<none>" for row in table(nodes.stdout))
    assert re.search(rf"HolderIdentity:\s+{first}", described.stdout), described.stdout
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert re.search(rf"^node/{first} (drained|evicted)$", drained.stdout, re.MULTILINE), (
        drained.stdout
    )  # 1.20: evicted
    assert (counters["budget_violations"], counters["pod_deletions"]) == (0, 0), counters
    assert counters["evictions"] >= 2, "the node's web pods went through the Eviction API"
    assert scaled.returncode == 0 and rolled.returncode == 0, scaled.stderr + rolled.stderr
    assert rolled.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out'
    assert {row["REASON"] for row in table(events.stdout)} == {"Scheduled"}
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
