"""`cluster diagnose` and the diagnostics `cluster replace` saves first: a host's evidence from a real sshd, its
node's events from the API simulator and its records from SSM (moto), EC2's console output when SSH fails, a hung
host held to the collection's bound; and on the sandbox, a replaced host leaves its folder behind."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.core_v1 import Event

from provision.aws.cloud import Cloud
from provision.aws.session import AwsFactory, AwsSettings
from provision.fleet.observe import Fleet
from provision.remote.diagnostics import COMMANDS, SUMMARY, decode_console_output
from provision.sandbox.state import SandboxState, is_ours
from provision.verbs.aws import Connection
from provision.verbs.options import Globals
from provision.verbs.remote_access import diagnose_before_replace
from tests.conftest import EXAMPLE, Outcome, run_installed
from tests.deploykit import REGION, config, recording_ui
from tests.simkit import Simulator, simulator
from tests.sshkit import Sshd, SshLab, free_port, hosts3, silent_port, ssh_home, ssh_lab, trust
from tests.test_exec_cli import deployed, map_hosts

__all__ = ["hosts3", "silent_port", "simulator", "ssh_home", "ssh_lab"]  # fixtures

Run = Callable[..., Outcome]


def folder_of(root: Path) -> Path:
    [folder] = (root / "diagnostics").iterdir()
    return folder


def summary(folder: Path) -> list[str]:
    return (folder / "summary.txt").read_text().splitlines()


def test_diagnose_saves_the_hosts_logs_its_node_events_and_its_records(
    run_main: Run,
    cloud: Cloud,
    ssh_lab: SshLab,
    hosts3: list[Sshd],
    ssh_home: Path,
    simulator: Simulator,
    in_tmp: Path,
) -> None:
    hosts = deployed(cloud)
    (instance_id, ip), _, _ = hosts
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in hosts], [server.port for server in hosts3])
    trust(ssh_home, *hosts3)
    node = f"ip-{ip.replace('.', '-')}.eu-west-1.compute.internal"
    simulator.world.add_node(node, provider_id=f"aws:///{REGION}a/{instance_id}", internal_ip=ip)
    simulator.world.set_node_ready(node, False)
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=f"/cluster/demo/hosts/{instance_id}/boot", Value="failed at step join (exit 1)", Type="String"
    )
    cloud.instances.set_tag(instance_id, "cluster:health", "2026-11-25T06:00:00Z failing:kubelet failures=3")

    outcome = run_main("--kubeconfig", str(simulator.kubeconfig), "diagnose", "-c", str(EXAMPLE), node)

    assert outcome.code == 0, outcome.err
    folder = folder_of(in_tmp)
    assert folder.name.startswith(f"{instance_id}-20") and folder.name.endswith("Z")
    assert f"diagnostics saved in diagnostics/{folder.name}/" in outcome.out
    assert (folder / "disk.txt").read_text().startswith("Filesystem")
    assert "Mem:" in (folder / "memory.txt").read_text()
    lines = summary(folder)
    assert lines[0] == f"host {instance_id} ({node}), address {ip}"
    for name, _ in COMMANDS:  # every command ran and its outcome is recorded, whether or not the host has it
        assert (folder / name).exists()
        assert any(line.startswith(f"{name}: exit ") or line.startswith(f"{name}: not available") for line in lines)
    assert "NodeNotReady" in (folder / "node-events.txt").read_text()
    assert "failed at step join (exit 1)" in (folder / "host-records.txt").read_text()
    assert (
        "== tag cluster:health\n2026-11-25T06:00:00Z failing:kubelet failures=3"
        in (folder / "host-records.txt").read_text()
    )
    assert not (folder / "console-output.txt").exists(), "SSH worked: no fallback needed"


def test_a_command_the_host_lacks_is_recorded_not_fatal(
    run_main: Run,
    cloud: Cloud,
    ssh_lab: SshLab,
    hosts3: list[Sshd],
    ssh_home: Path,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts = deployed(cloud)
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in hosts], [server.port for server in hosts3])
    trust(ssh_home, *hosts3)
    commands = (("tool.txt", "no-such-tool --version"), ("disk.txt", "df -h"))
    monkeypatch.setattr("provision.remote.diagnostics.COMMANDS", commands)
    (instance_id, _), _, _ = hosts

    outcome = run_main("diagnose", "-c", str(EXAMPLE), instance_id)

    assert outcome.code == 0, outcome.err
    lines = summary(folder_of(in_tmp))
    assert "tool.txt: not available on the host (exit 127): no-such-tool --version" in lines
    assert "disk.txt: exit 0: df -h" in lines, "the next command still ran"
    assert "node-events.txt: not collected (no node, or the Kubernetes API is not reachable)" in lines


def test_what_diagnose_saves_is_private_whatever_the_umask(
    run_main: Run, cloud: Cloud, ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path, in_tmp: Path
) -> None:
    hosts = deployed(cloud)
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in hosts], [server.port for server in hosts3])
    trust(ssh_home, *hosts3)
    (instance_id, _), _, _ = hosts
    shared = in_tmp / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)

    previous = os.umask(0)  # the most open umask: nothing may come out group- or world-readable
    try:
        into_missing = run_main("diagnose", "-c", str(EXAMPLE), instance_id, "--output", "saved/by/cluster")
        into_shared = run_main("diagnose", "-c", str(EXAMPLE), instance_id, "--output", str(shared))
    finally:
        os.umask(previous)

    assert into_missing.code == 0 and into_shared.code == 0, into_missing.err + into_shared.err
    [folder] = (in_tmp / "saved" / "by" / "cluster").iterdir()
    for made in (in_tmp / "saved", in_tmp / "saved" / "by", in_tmp / "saved" / "by" / "cluster", folder):
        assert made.stat().st_mode & 0o777 == 0o700, made
    [other] = shared.iterdir()
    assert other.stat().st_mode & 0o777 == 0o700
    assert shared.stat().st_mode & 0o777 == 0o755, "a folder the user named is left as it was"
    files = [*folder.iterdir(), *other.iterdir()]
    assert {"kubelet.log", "disk.txt", "host-records.txt", SUMMARY} <= {path.name for path in files}
    assert {path.name: path.stat().st_mode & 0o777 for path in files} == {path.name: 0o600 for path in files}


def test_when_ssh_fails_the_console_output_is_saved_instead(
    run_main: Run, cloud: Cloud, ssh_lab: SshLab, ssh_home: Path, in_tmp: Path
) -> None:
    hosts = deployed(cloud)
    closed = free_port()  # nothing listens there
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in hosts], [closed] * 3)
    (instance_id, _), _, _ = hosts

    outcome = run_main("diagnose", "-c", str(EXAMPLE), instance_id)

    assert outcome.code == 0, outcome.err
    folder = folder_of(in_tmp)
    assert "the EC2 console output is saved in its place" in outcome.out
    assert f"cannot connect to [127.0.0.1]:{closed}" in outcome.out
    assert (folder / "console-output.txt").read_text().startswith("Linux version")  # moto's fixed text
    assert any(line.startswith(f"ssh: {instance_id}: cannot connect") for line in summary(folder))


def test_a_hung_host_cannot_hold_the_collection_past_its_bound(
    run_main: Run, cloud: Cloud, ssh_lab: SshLab, ssh_home: Path, silent_port: int, in_tmp: Path
) -> None:
    hosts = deployed(cloud)
    # ConnectTimeout 600: only the collection's own bound can end the wait.
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in hosts], [silent_port] * 3, connect_timeout=600)
    (instance_id, _), _, _ = hosts

    outcome = run_main("diagnose", "-c", str(EXAMPLE), instance_id, "--timeout", "1")

    assert outcome.code == 0, outcome.err
    folder = folder_of(in_tmp)
    assert "stopped after 1s: the rest was not collected" in summary(folder)
    assert (folder / "console-output.txt").exists()


# --- the replace path: `replace` calls diagnose_before_replace before its engine runs -------------------------------


def before_replace(cloud: Cloud, instance_id: str) -> str:
    """What the replace verb shows while it saves a host's diagnostics; the call must return for the engine to run."""
    cfg = config()
    connection = Connection(cfg, Globals(), AwsFactory(AwsSettings(region=REGION)), cloud)
    snapshot = Fleet.of_stack(cloud, cfg.stack_name).snapshot()
    ui, out = recording_ui()
    diagnose_before_replace(cfg, connection, snapshot, None, instance_id, ui)
    return out.getvalue()


def test_before_a_replace_a_hung_host_is_held_to_the_replace_limits(
    cloud: Cloud, ssh_lab: SshLab, ssh_home: Path, silent_port: int, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = deployed(cloud)
    # ConnectTimeout 600: only the collection's own bound can end the wait.
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in hosts], [silent_port] * 3, connect_timeout=600)
    monkeypatch.setattr("provision.verbs.remote_access.REPLACE_LIMITS_SECONDS", (0.2, 0.5))  # 10 s, 30 s: scaled
    (instance_id, _), _, _ = hosts

    shown = before_replace(cloud, instance_id)

    folder = folder_of(in_tmp)
    assert f"saving the diagnostics of {instance_id} first (at most 0.5s; --no-diagnostics skips this)" in shown
    assert (
        f"diagnostics saved in diagnostics/{folder.name}/ (SSH failed: the host did not finish within 0.5s); "
        "the EC2 console output is saved in its place"
    ) in shown
    assert "stopped after 0.5s: the rest was not collected" in summary(folder)
    assert (folder / "console-output.txt").exists()


def test_before_a_replace_a_failure_to_save_is_a_warning_and_the_replace_goes_on(cloud: Cloud, in_tmp: Path) -> None:
    hosts = deployed(cloud)
    (in_tmp / "diagnostics").write_text("a file where the folder would go\n")  # so nothing can be saved
    (instance_id, _), _, _ = hosts

    shown = before_replace(cloud, instance_id)  # returns: the verb goes on to replace the host

    [warning] = [line.partition("WARNING: ")[2] for line in shown.splitlines() if "WARNING: " in line]
    assert warning.startswith(f"the diagnostics of {instance_id} were not saved ([Errno 20] Not a directory")
    assert warning.endswith("; replacing it anyway")


def test_console_output_is_decoded_from_base64_or_kept_as_text() -> None:
    text = "cloud-init: failed at step join\n"
    assert decode_console_output(base64.b64encode(text.encode()).decode()) == text
    assert decode_console_output(text) == text


# --- on the sandbox: `cluster replace` leaves the evidence behind ------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text()
    for old, new in [
        ("min_size = 3", "min_size = 1"),
        ("desired_capacity = 3", "desired_capacity = 2"),
        ("connect_timeout_seconds = 10", "connect_timeout_seconds = 1"),
    ]:
        text = text.replace(old, new)
    (tmp_path / "cluster.toml").write_text(text)
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    return tmp_path


def cluster(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "HOME": str(folder / "home")}  # not the developer's ~/.ssh
    env.pop("SSH_AUTH_SOCK", None)
    return run_installed(folder, *args, env=env)


def test_replace_saves_the_hosts_diagnostics_first_unless_told_not_to(sandbox: Path) -> None:
    assert cluster(sandbox, "sandbox", "start", "--boot-seconds", "0.5").returncode == 0
    try:
        assert cluster(sandbox, "--sandbox", "up", "--yes").returncode == 0
        [first, second] = json.loads(cluster(sandbox, "--sandbox", "status", "--output", "json").stdout)["hosts"]

        replaced = cluster(sandbox, "--sandbox", "replace", str(first["instance_id"]), "--yes")

        assert replaced.returncode == 0, replaced.stderr
        folder = folder_of(sandbox)
        assert folder.name.startswith(f"{first['instance_id']}-")
        assert f"diagnostics saved in diagnostics/{folder.name}/" in replaced.stdout
        # The simulated hosts run no sshd: EC2's console output stands in, and the node's events are there.
        assert (folder / "console-output.txt").exists() and (folder / "node-events.txt").exists()

        again = cluster(sandbox, "--sandbox", "replace", str(second["instance_id"]), "--yes", "--no-diagnostics")

        assert again.returncode == 0, again.stderr
        assert [path.name for path in (sandbox / "diagnostics").iterdir()] == [folder.name]
    finally:
        state = SandboxState.load(sandbox / ".cluster")
        cluster(sandbox, "sandbox", "stop")
        assert state is None or not is_ours(state.pid)


def test_the_api_simulator_lists_a_nodes_events_as_the_api_server_does(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    simulator.world.add_node("node-b")
    simulator.world.set_node_ready("node-a", False)
    simulator.world.set_node_ready("node-a", True)
    simulator.world.set_node_ready("node-b", False)
    client = Client(KubeConfig.from_file(str(simulator.kubeconfig)))

    events = list(client.list(Event, namespace="*", fields={"involvedObject.name": "node-a"}))

    assert sorted((event.reason, event.type) for event in events) == [
        ("NodeNotReady", "Warning"),
        ("NodeReady", "Normal"),
    ]
    assert {event.metadata.namespace for event in events if event.metadata} == {"default"}
    with pytest.raises(ApiError) as refused:
        list(client.list(Event, namespace="*", fields={"involvedObject.color": "red"}))
    assert refused.value.status.code == 400
