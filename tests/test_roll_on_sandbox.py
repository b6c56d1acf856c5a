"""`cluster replace` and `cluster patch` through the installed command on the sandbox, in real time: two small hosts
that boot in half a second, the sample workload under its budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
import yaml
from lightkube import Client, KubeConfig
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from provision.aws.parameters import Parameters
from provision.roll.lock import RunLock
from provision.sandbox.state import SandboxState, is_ours
from tests.conftest import CLUSTER, EXAMPLE, run_installed


def cluster(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_installed(folder, *args)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Path]:
    text = EXAMPLE.read_text()
    for old, new in [
        ("min_size = 3", "min_size = 1"),
        ("desired_capacity = 3", "desired_capacity = 2"),
        ("drain_timeout_seconds = 900", "drain_timeout_seconds = 60"),
    ]:
        text = text.replace(old, new)
    (tmp_path / "cluster.toml").write_text(text)
    # The same cluster with a short drain deadline, for the test whose budget never lets a pod go.
    (tmp_path / "impatient.toml").write_text(text.replace("drain_timeout_seconds = 60", "drain_timeout_seconds = 6"))
    assert cluster(tmp_path, "sandbox", "start", "--boot-seconds", "0.5").returncode == 0
    up = cluster(tmp_path, "--sandbox", "up", "--yes")
    assert up.returncode == 0, up.stderr
    yield tmp_path
    state = SandboxState.load(tmp_path / ".cluster")
    cluster(tmp_path, "sandbox", "stop")
    assert state is None or not is_ours(state.pid)


def hosts(folder: Path) -> list[dict[str, object]]:
    result = cluster(folder, "--sandbox", "status", "--output", "json")
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, object]] = json.loads(result.stdout)["hosts"]
    return listed


def test_replace_one_host_by_its_node_name(sandbox: Path) -> None:
    [first, second] = hosts(sandbox)

    result = cluster(sandbox, "--sandbox", "replace", str(first["node"]), "--yes")

    assert result.returncode == 0, result.stderr
    assert f"replaced {first['instance_id']} by i-" in result.stdout
    after = {str(host["instance_id"]) for host in hosts(sandbox)}
    assert first["instance_id"] not in after and second["instance_id"] in after and len(after) == 2


def test_roll_replaces_every_host_though_all_are_current_and_replace_finds_a_host_by_its_ip(sandbox: Path) -> None:
    before = {str(host["instance_id"]) for host in hosts(sandbox)}
    assert all(host["current"] is True for host in hosts(sandbox)), "nothing for patch to do"

    plan = cluster(sandbox, "--sandbox", "roll", "--dry-run")
    result = cluster(sandbox, "--sandbox", "roll", "--yes")

    assert plan.returncode == 0 and "dry run: nothing was changed" in plan.stdout, plan.stderr
    assert all(f"{instance} (" in plan.stdout for instance in before), "the plan names every host"
    assert result.returncode == 0, result.stderr
    assert "lowest ready capacity seen: 2" in result.stdout
    rolled = {str(host["instance_id"]) for host in hosts(sandbox)}
    assert not before & rolled and len(rolled) == 2

    victim = sorted(rolled)[0]
    replace = cluster(sandbox, "--sandbox", "replace", private_ip(sandbox, victim), "--dry-run")

    assert replace.returncode == 0, replace.stderr
    assert f"replace {victim}: 1 host(s)" in replace.stdout, "a private IP names its host"


def test_patch_dry_run_prints_the_plan_and_changes_nothing(sandbox: Path) -> None:
    before = hosts(sandbox)

    result = cluster(sandbox, "--sandbox", "patch", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "patch: 2 host(s) of" in result.stdout and "ready capacity never below 2" in result.stdout
    for host in before:
        assert f"{host['instance_id']} ({host['availability_zone']}, outdated by the new patch generation)" in (
            result.stdout
        )
    assert "dry run: nothing was changed" in result.stdout
    assert hosts(sandbox) == before, "no host outdated: the stack was not updated"
    assert sandbox_lock(sandbox).holder() is None, "a dry run takes no lock"


def test_patch_replaces_every_host_and_a_second_patch_run_finds_nothing_left_behind(sandbox: Path) -> None:
    before = {str(host["instance_id"]) for host in hosts(sandbox)}

    result = cluster(sandbox, "--sandbox", "patch", "--yes")

    assert result.returncode == 0, result.stderr
    assert "lowest ready capacity seen: 2" in result.stdout
    after = hosts(sandbox)
    assert not before & {str(host["instance_id"]) for host in after}
    assert all(host["current"] is True and host["ready"] == "yes" for host in after)
    status = cluster(sandbox, "--sandbox", "status")
    assert "suspended processes: none" in status.stdout and "desired 2 (min 1, max 6)" in status.stdout
    counters = simulator_counters(sandbox)
    assert counters["evictions"] > 0 and counters["budget_violations"] == 0, counters


def test_a_blocked_budget_halts_the_patch_cleanly(sandbox: Path) -> None:
    config = yaml.safe_load((sandbox / ".cluster" / "kubeconfig").read_text())
    client = Client(KubeConfig.from_dict(config))
    client.patch(PodDisruptionBudget, "web", {"spec": {"maxUnavailable": 0}}, namespace="default",
                 patch_type=PatchType.MERGE)  # fmt: skip
    before = {str(host["instance_id"]) for host in hosts(sandbox)}

    result = cluster(sandbox, "--sandbox", "patch", "--yes", "-c", "impatient.toml")

    assert result.returncode == 1
    assert "PodDisruptionBudget default/web needs" in result.stderr.splitlines()[-1]
    after = hosts(sandbox)
    assert {str(host["instance_id"]) for host in after} == before, "the surge host was removed, the old ones stay"
    assert all(host["schedulable"] == "yes" for host in after), "the old node was uncordoned"
    status = cluster(sandbox, "--sandbox", "status")
    assert "suspended processes: none" in status.stdout and "desired 2 (min 1, max 6)" in status.stdout
    assert sandbox_lock(sandbox).holder() is None, "the lock was released"
    assert simulator_counters(sandbox)["budget_violations"] == 0


def sandbox_lock(folder: Path) -> RunLock:
    state = SandboxState.load(folder / ".cluster")
    assert state is not None
    ssm = boto3.client("ssm", endpoint_url=state.aws_endpoint, region_name="eu-west-1")
    return RunLock(Parameters(ssm), "/cluster/demo")


def private_ip(folder: Path, instance_id: str) -> str:
    state = SandboxState.load(folder / ".cluster")
    assert state is not None
    ec2 = boto3.client("ec2", endpoint_url=state.aws_endpoint, region_name="eu-west-1")
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservation["Instances"][0]["PrivateIpAddress"])


def test_a_second_patch_is_refused_while_a_roll_holds_the_lock_and_changes_nothing(sandbox: Path) -> None:
    lock = sandbox_lock(sandbox)
    lock.acquire("replace i-0abc", "alice@ops-1", ttl=timedelta(hours=1))
    before = hosts(sandbox)

    result = cluster(sandbox, "--sandbox", "patch", "--yes")

    assert result.returncode == 6
    assert "another roll holds the cluster: replace i-0abc by alice@ops-1 since " in result.stderr
    assert hosts(sandbox) == before, "not even the stack was updated: no host is outdated"


def test_replace_and_roll_are_refused_while_a_patch_runs_before_asking_or_saving_anything(sandbox: Path) -> None:
    sandbox_lock(sandbox).acquire("patch", "bob@ops-2", ttl=timedelta(hours=1))
    before = hosts(sandbox)
    victim = str(before[0]["instance_id"])

    replace = cluster(sandbox, "--sandbox", "replace", victim, "--yes")
    roll = cluster(sandbox, "--sandbox", "roll", "--yes")

    for refused in (replace, roll):
        assert refused.returncode == 6, refused.stdout + refused.stderr
        assert "another roll holds the cluster: patch by bob@ops-2 since " in refused.stderr
    assert not (sandbox / "diagnostics").exists(), "no diagnostics were taken for a replace that cannot run"
    assert hosts(sandbox) == before


@pytest.mark.parametrize(
    "kill_at",
    ["desired capacity ", "drained "],  # the surge just asked for; the first old node drained, not yet terminated
)
def test_a_patch_killed_mid_roll_is_finished_by_running_it_again(sandbox: Path, kill_at: str) -> None:
    before = {str(host["instance_id"]) for host in hosts(sandbox)}
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
    patch = subprocess.Popen(
        [CLUSTER, "--sandbox", "patch", "--yes", "--max-surge", "2"], cwd=sandbox, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert patch.stdout is not None
    seen = []
    for line in patch.stdout:  # read as it goes, to kill it the moment it says it reached `kill_at`
        seen.append(line)
        if line.split(" ", 1)[-1].startswith(kill_at):
            patch.send_signal(signal.SIGKILL)  # no chance to clean up: lock, suspensions, surge all left behind
            break
    patch.wait(timeout=60)
    assert patch.returncode == -signal.SIGKILL, "".join(seen)
    assert sandbox_lock(sandbox).holder() is not None, "the killed patch left its lock"

    again = cluster(sandbox, "--sandbox", "patch", "--yes", "--max-surge", "2")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "continuing it, with the stack updated to the configuration as it is now (the same patch" in again.stdout
    assert "no changes" in again.stdout.lower(), "the configuration did not change: the stack stays as it was"
    assert "lowest ready capacity seen: 2" in again.stdout
    after = hosts(sandbox)
    assert not before & {str(host["instance_id"]) for host in after} and len(after) == 2, "no extra host left"
    assert all(host["current"] is True and host["ready"] == "yes" and host["schedulable"] == "yes" for host in after)
    status = cluster(sandbox, "--sandbox", "status")
    assert "suspended processes: none" in status.stdout and "desired 2 (min 1, max 6)" in status.stdout
    assert sandbox_lock(sandbox).holder() is None, "the lock is released"
    counters = simulator_counters(sandbox)
    assert counters["evictions"] > 0 and counters["budget_violations"] == 0, counters


def simulator_counters(folder: Path) -> dict[str, int]:
    state = SandboxState.load(folder / ".cluster")
    assert state is not None
    with urllib.request.urlopen(f"{state.kube_url}/simulator/counters", timeout=5) as answer:  # noqa: S310
        counters: dict[str, int] = json.load(answer)
    return counters


def test_roll_terminate_first_never_grows_the_group(sandbox: Path) -> None:
    before = {str(host["instance_id"]) for host in hosts(sandbox)}

    plan = cluster(sandbox, "--sandbox", "roll", "--dry-run", "--max-surge", "0", "--max-unavailable", "1")
    result = cluster(sandbox, "--sandbox", "roll", "--yes", "--max-surge", "0", "--max-unavailable", "1")

    assert "one at a time, each taken out first; ready capacity never below 1, at most 2 hosts at once" in plan.stdout
    assert "what the roll does first" in plan.stdout and "cordoned and drained first" in plan.stdout
    assert result.returncode == 0, result.stderr
    sizes = [int(line.split("→")[1].split(":")[0]) for line in result.stdout.splitlines() if "desired capacity" in line]
    assert sizes and max(sizes) <= 2, "the group is never asked for more hosts than its desired capacity"
    after = hosts(sandbox)
    assert not before & {str(host["instance_id"]) for host in after} and len(after) == 2
    bad = cluster(sandbox, "--sandbox", "roll", "--dry-run", "--max-surge", "150%")
    assert bad.returncode == 2 and "'150%' is neither a number of hosts" in bad.stderr


def test_pods_that_crash_only_on_the_new_configuration_halt_the_patch_at_the_canary_and_a_fixed_patch_continues(
    sandbox: Path,
) -> None:
    label = 'labels = { "example.com/pool" = "workers" }'
    good = (sandbox / "cluster.toml").read_text().replace("bake_seconds = 0", "bake_seconds = 5")
    assert label in good and "canary = 1" in good
    # The new configuration's hosts make the workload crash-loop (the sandbox's fault label, on their nodes).
    bad = good.replace(label, 'labels = { "example.com/pool" = "workers", "sandbox.cluster/fault" = "crash-loop" }')
    (sandbox / "cluster.toml").write_text(bad)
    before = {str(host["instance_id"]) for host in hosts(sandbox)}

    halted = cluster(sandbox, "--sandbox", "patch", "--yes")

    assert halted.returncode == 1, halted.stdout + halted.stderr
    assert "CrashLoopBackOff" in halted.stderr and "crash-looping where they run: default/web-" in halted.stderr
    # The canary's drain stopped at once (waiting would not make crashing pods healthy) and was undone: its old host
    # back in service, its replacement drained and gone; the other host was never touched.
    assert {str(host["instance_id"]) for host in hosts(sandbox)} == before
    assert "back in service" in halted.stdout and "undo: removing" in halted.stdout
    # A stopped roll still leaves its report, the error in it.
    reported = json.loads(next((sandbox / "reports").glob("patch-*.json")).read_text())
    assert "CrashLoopBackOff" in reported["error"]["message"] and reported["timeline"]["steps"]
    assert "roll report: reports/patch-" in halted.stdout

    (sandbox / "cluster.toml").write_text(good)
    fixed = cluster(sandbox, "--sandbox", "patch", "--yes")

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "baking the canary for 5s" in fixed.stdout and "the canary baked clean" in fixed.stdout
    final = hosts(sandbox)
    assert len(final) == 2 and all(host["current"] is True and host["ready"] == "yes" for host in final)
    assert not before & {str(host["instance_id"]) for host in final}
    counters = simulator_counters(sandbox)
    assert counters["budget_violations"] == 0, counters


def test_patch_roll_and_replace_print_one_json_document_with_output_json(sandbox: Path) -> None:
    before = {str(host["instance_id"]): host for host in hosts(sandbox)}

    planned = cluster(sandbox, "--sandbox", "patch", "--dry-run", "--output", "json")

    assert planned.returncode == 0, planned.stderr
    document = json.loads(planned.stdout)  # the whole of stdout: one document; the progress went to stderr
    assert "dry run: nothing was changed" in planned.stderr
    assert document["dry_run"] is True and document["result"] is None and document["error"] is None
    plan = document["plan"]
    assert {host["instance_id"] for host in plan["hosts"]} == set(before), "every outdated host"
    for host in plan["hosts"]:
        assert host["zone"] == before[host["instance_id"]]["availability_zone"]
        assert host["reason"] == "outdated by the new patch generation" and host["group"] == plan["group"]
    assert [host["order"] for host in plan["hosts"]] == [1, 2] and plan["waves"] == 2
    assert plan["budget"] == {"max_surge": 1, "max_unavailable": 0, "overlap": True}

    rolled = cluster(sandbox, "--sandbox", "roll", "--yes", "--output", "json")

    assert rolled.returncode == 0, rolled.stderr
    page = sandbox / json.loads(rolled.stdout)["report"]
    assert page.parent == sandbox / "reports" and page.name.startswith("roll-") and page.suffix == ".html"
    assert f"roll report: {page.relative_to(sandbox)}" in rolled.stderr and page.with_suffix(".json").is_file()
    assert planned.stdout.count('"report": null') == 1 and not list((sandbox / "reports").glob("patch-*")), "dry run"
    result = json.loads(rolled.stdout)["result"]
    assert {item["instance_id"] for item in result["replaced"]} == set(before) and result["lowest_ready"] == 2
    assert all(item["replacement"].startswith("i-") and item["seconds"] > 0 for item in result["replaced"])

    refused = cluster(sandbox, "--sandbox", "replace", "i-0123456789abcdef0", "--yes", "--output", "json")

    assert refused.returncode == 2
    error = json.loads(refused.stdout)["error"]
    assert error["exit_code"] == 2 and "i-0123456789abcdef0" in error["message"]
    assert refused.stderr.strip().endswith(error["message"]), "the same line on stderr"
