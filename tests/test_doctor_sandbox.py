"""`cluster doctor` on the sandbox: moto (in-process) as AWS, the API simulator as the cluster and the host simulator
booting the hosts, in virtual time. A healthy cluster needs no attention; then each problem doctor knows is injected
once, and doctor must name the host or resource and the cause, and exit 1 (through the real CLI edge too)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from moto.autoscaling.models import autoscaling_backends
from moto.cloudformation.models import Event, cloudformation_backends

from provision import names
from provision.aws.cloud import Cloud
from provision.deploy.up import Up
from provision.doctor.checks import diagnose
from provision.doctor.findings import Finding, Report, Severity
from provision.doctor.observe import gather
from provision.fleet.model import Snapshot
from provision.fleet.observe import Fleet
from provision.kube.facade import Kube, connect
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from provision.roll.state import RollRecord
from provision.sandbox.hosts import HostSimulator
from tests.conftest import EXAMPLE, Outcome
from tests.deploykit import REGION, TOKEN, config, recording_ui
from tests.kubectlkit import kubectl_binaries, require_kubectl
from tests.simkit import Simulator, simulator, virtual_cloud

STARTED = datetime(2026, 1, 1, tzinfo=UTC)  # when the roll began

__all__ = ["simulator"]  # the fixture

CONFIG = config()
LABELS = {str(key): str(value) for key, value in CONFIG.hosts.labels.items()}


@dataclass
class Sandbox:
    cloud: Cloud
    sim: Simulator
    kube: Kube
    hosts: HostSimulator

    def snapshot(self) -> Snapshot:
        return Fleet.of_stack(self.cloud, CONFIG.stack_name).snapshot()

    def first_host(self) -> str:
        return self.snapshot().hosts[0].instance_id

    def node_of(self, instance_id: str) -> str:
        [node] = [node.name for node in self.kube.nodes() if node.instance_id == instance_id]
        return node

    def doctor(self, *, later: timedelta = timedelta(0)) -> Report:
        observations = gather(CONFIG, self.cloud, now=datetime.now(UTC) + later, kube=self.kube)
        return diagnose(observations)


@pytest.fixture
def sandbox(simulator: Simulator) -> Iterator[Sandbox]:
    with virtual_cloud(simulator, REGION) as (cloud, hosts):
        Up(CONFIG, cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)
        simulator.settle(12)  # the hosts boot and join
        kube = Kube(connect(kubeconfig=str(simulator.kubeconfig)))
        for node in kube.nodes():  # as the boot script's --node-labels does
            kube.label(node.name, dict(LABELS))
        yield Sandbox(cloud, simulator, kube, hosts)


def problems(report: Report) -> list[Finding]:
    return [finding for finding in report.findings if finding.needs_attention]


def test_a_healthy_sandbox_needs_no_attention(sandbox: Sandbox) -> None:
    report = sandbox.doctor()

    assert problems(report) == [], problems(report)
    assert report.skipped == ()
    checks = {finding.check for finding in report.findings}
    assert checks == {"stack", "boot", "health", "repair", "nodes", "lifecycle", "processes", "lock", "roll", "config"}


# --- the problems, each injected once: (inject, what doctor must say) ---


def abandoned_boot(box: Sandbox) -> tuple[str, str]:
    instance = box.first_host()
    record = (
        f"failed step=join exit=1 at={datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\n+ kubeadm join 10.0.0.10:6443\n"
        "error execution phase kubelet-start: timed out waiting for the condition"
    )
    box.cloud.parameters.put(f"{names.host_records_path(CONFIG.parameter_path)}/{instance}/boot", record)
    return instance, "error execution phase kubelet-start: timed out waiting for the condition"


def unhealthy_host(box: Sandbox) -> tuple[str, str]:
    instance = box.first_host()
    box.cloud.groups.client.set_instance_health(InstanceId=instance, HealthStatus="Unhealthy")
    record = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} failing:kubelet failures=3"
    box.cloud.instances.set_tag(instance, names.HEALTH_TAG, record)  # as the agent tags its own instance
    return instance, "the health agent finds kubelet failing (3 checks in a row)"


def not_ready_node(box: Sandbox) -> tuple[str, str]:
    instance = box.first_host()
    box.hosts.faults.not_ready.add(instance)
    box.sim.settle(2)
    return box.node_of(instance), "the kubelet stopped reporting Ready"


def terminating_wait(box: Sandbox) -> tuple[str, str]:
    # moto has no lifecycle hooks: hold the instance in Terminating:Wait as AWS would while the hook waits.
    instance = box.first_host()
    for regions in autoscaling_backends.values():
        for backend in regions.values():
            for group in backend.autoscaling_groups.values():
                for state in group.instance_states:
                    if state.instance.id == instance:
                        state.lifecycle_state = "Terminating:Wait"
    return instance, "nobody has completed its termination hook"


def suspended_process(box: Sandbox) -> tuple[str, str]:
    group = box.snapshot().group
    box.cloud.groups.suspend(group, ["AZRebalance"])
    return group, "suspended outside a roll"


def held_lock(box: Sandbox) -> tuple[str, str]:
    RunLock(box.cloud.parameters, CONFIG.parameter_path).acquire("patch", "alice@laptop", ttl=timedelta(hours=1))
    return f"{CONFIG.parameter_path}/roll-lock", "other rolls are refused"


def expired_lock(box: Sandbox) -> tuple[str, str]:
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    lock = RunLock(box.cloud.parameters, CONFIG.parameter_path, now=lambda: long_ago)
    lock.acquire("patch", "alice@laptop", ttl=timedelta(hours=1))
    return f"{CONFIG.parameter_path}/roll-lock", "crashed or was killed"


def interrupted_roll(box: Sandbox) -> tuple[str, str]:
    record = RollRecord("patch", box.snapshot().group, 3, 6, STARTED)
    Journal(box.cloud.parameters, CONFIG.parameter_path).save(record)
    return f"{CONFIG.parameter_path}/roll-state", "stopped before its first host"


def outdated_host(box: Sandbox) -> tuple[str, str]:
    # What `cluster patch` does first: a new patch generation, so every running host is outdated.
    Up(CONFIG, box.cloud, recording_ui()[0], timeout=600).run(
        dry_run=False, join_token=None, next_patch_generation=True
    )
    return box.first_host(), f"a host launched now gets {box.snapshot().fingerprint}"


def stray_node(box: Sandbox) -> tuple[str, str]:
    name = "ip-10-42-9-9.eu-west-1.compute.internal"
    box.sim.world.add_node(name, provider_id="aws:///eu-west-1a/i-0000000000000dead", ready=False)
    box.kube.label(name, dict(LABELS))
    return name, "its instance i-0000000000000dead is not a member of"


def node_never_joined(box: Sandbox) -> tuple[str, str]:
    snapshot = box.snapshot()
    box.hosts.faults.never_join_next = 1
    box.cloud.groups.set_size(snapshot.group, desired=snapshot.desired + 1)
    box.sim.settle(15)
    [new] = {host.instance_id for host in box.snapshot().hosts} - {host.instance_id for host in snapshot.hosts}
    return new, "no node has"


def failed_stack_update(box: Sandbox) -> tuple[str, str]:
    # moto neither fails nor rolls back updates: set the stack where a failed update leaves it, with its events.
    [backend] = [regions[REGION] for regions in cloudformation_backends.values() if REGION in regions]
    [stack] = [stack for stack in backend.stacks.values() if stack.name == CONFIG.stack_name]
    for logical, kind, status, reason in [
        (stack.name, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated"),
        ("HostLaunchTemplate", "AWS::EC2::LaunchTemplate", "UPDATE_FAILED", "The image id '[ami-0bad]' does not exist"),
        ("HostGroup", "AWS::AutoScaling::AutoScalingGroup", "UPDATE_FAILED", "Resource update cancelled"),
        (stack.name, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE", ""),
    ]:
        stack.events.append(Event(stack.stack_id, stack.name, logical, logical, kind, status, reason, None))
    stack.status = "UPDATE_ROLLBACK_COMPLETE"
    return CONFIG.stack_name, "The image id '[ami-0bad]' does not exist"


INJECTIONS: dict[str, tuple[Callable[[Sandbox], tuple[str, str]], str, timedelta]] = {
    # name: (inject, the checks that may find it, how much later doctor looks)
    "abandoned boot": (abandoned_boot, "boot", timedelta(0)),
    "unhealthy host": (unhealthy_host, "health", timedelta(0)),
    "NotReady node": (not_ready_node, "nodes", timedelta(0)),
    "Terminating:Wait": (terminating_wait, "lifecycle", timedelta(0)),
    "suspended process": (suspended_process, "processes", timedelta(0)),
    "held lock": (held_lock, "lock", timedelta(0)),
    "expired lock": (expired_lock, "lock", timedelta(0)),
    "interrupted roll": (interrupted_roll, "roll", timedelta(0)),
    "outdated host": (outdated_host, "config", timedelta(0)),
    "node without a host": (stray_node, "nodes", timedelta(0)),
    # The host boots in virtual time, but EC2 dates its launch in real time: look past the launch timeout. A host
    # held by its launch hook (Pending:Wait, as on AWS) is the lifecycle check's; one merely Pending, the nodes'.
    "node never joined": (node_never_joined, "lifecycle nodes", timedelta(hours=1)),
    "failed stack update": (failed_stack_update, "stack", timedelta(0)),
}


@pytest.mark.parametrize("problem", list(INJECTIONS))
def test_doctor_finds_each_injected_problem_with_its_resource_and_cause(sandbox: Sandbox, problem: str) -> None:
    inject, checks, later = INJECTIONS[problem]
    resource, cause = inject(sandbox)

    report = sandbox.doctor(later=later)

    assert report.needs_attention
    found = [f for f in problems(report) if f.check in checks.split() and resource in f.resources]
    assert found, f"{problem}: nothing about {resource} in {problems(report)}"
    [finding] = found
    assert cause in f"{finding.what} {finding.cause}", finding
    assert finding.next_step


def test_a_stack_failure_is_reported_with_its_root_cause_not_the_cascade(sandbox: Sandbox) -> None:
    failed_stack_update(sandbox)

    [finding] = [finding for finding in sandbox.doctor().findings if finding.check == "stack"]

    assert finding.severity is Severity.WARNING
    assert finding.cause == (
        "UPDATE_FAILED HostLaunchTemplate (AWS::EC2::LaunchTemplate): The image id '[ami-0bad]' does not exist"
    )


def test_without_a_stack_doctor_says_so_and_runs_the_checks_that_need_no_group(cloud: Cloud) -> None:
    RunLock(cloud.parameters, CONFIG.parameter_path).acquire("patch", "bob@ci", ttl=timedelta(hours=1))

    report = diagnose(gather(CONFIG, cloud, now=datetime.now(UTC), kube=None, kube_note="no kubeconfig"))

    [stack, lock] = problems(report)
    assert stack.what == "there is no stack cluster-demo in eu-west-1" and stack.next_step == "cluster up"
    assert lock.check == "lock" and "patch by bob@ci" in lock.what
    why = {skipped.check: skipped.why for skipped in report.skipped}
    assert why["outdated hosts"] == why["NotReady nodes"] == "there is no stack cluster-demo"


def test_an_in_service_host_whose_node_is_gone_is_a_host_without_a_node(sandbox: Sandbox) -> None:
    instance = sandbox.first_host()
    sandbox.kube.delete_node(sandbox.node_of(instance))  # as `kubectl delete node` does; the host runs on
    sandbox.sim.settle(2)

    [finding] = [finding for finding in problems(sandbox.doctor()) if instance in finding.resources]

    assert (finding.severity, finding.check) == (Severity.PROBLEM, "nodes")
    assert finding.what == "no node for this host (InService)"
    assert finding.cause.startswith("InService since launch ")
    assert finding.cause.endswith(" ago, and no node has its id, DNS name or IP")
    assert finding.next_step == f"cluster replace {instance} --dead"


def test_an_abandoned_launch_names_the_step_its_boot_script_failed_at(sandbox: Sandbox) -> None:
    before = sandbox.snapshot()
    sandbox.hosts.faults.boot_fails_next = 1  # its boot script records the failed step and abandons the launch
    sandbox.cloud.groups.set_size(before.group, desired=before.desired + 1)
    sandbox.sim.settle(1)
    [failed] = {host.instance_id for host in sandbox.snapshot().hosts} - {host.instance_id for host in before.hosts}
    sandbox.sim.settle(14)

    [finding] = [finding for finding in sandbox.doctor().findings if finding.check == "boot"]

    assert finding.resources == (failed,)
    assert finding.what.startswith("launch abandoned at step join (exit 1) ")
    assert finding.what.endswith("; the group replaced the host")
    assert finding.cause == "kubeadm join: couldn't validate the identity of the API Server"  # its last log line
    assert finding.next_step == (
        f"aws ssm get-parameter --name {names.host_records_path(CONFIG.parameter_path)}/{failed}/boot "
        "--query Parameter.Value --output text"
    )


# --- through the CLI edge ---


@pytest.fixture
def config_file(in_tmp: Path) -> Path:
    path = in_tmp / "cluster.toml"
    path.write_text(EXAMPLE.read_text())
    return path


def test_the_command_exits_0_on_a_healthy_sandbox_and_1_naming_the_host_when_one_breaks(
    sandbox: Sandbox, config_file: Path, run_main: Callable[..., Outcome]
) -> None:
    kubeconfig = str(sandbox.sim.kubeconfig)

    healthy = run_main("--kubeconfig", kubeconfig, "doctor", "-c", str(config_file))
    instance, cause = unhealthy_host(sandbox)
    sick = run_main("--kubeconfig", kubeconfig, "doctor", "-c", str(config_file))

    assert healthy.code == 0, healthy.out + healthy.err
    assert "nothing needs attention" in healthy.out and "PROBLEM" not in healthy.out
    assert sick.code == 1
    lines = sick.out.splitlines()
    [line] = [number for number, text in enumerate(lines) if text.startswith("PROBLEM") and instance in text]
    assert lines[line + 1].strip() == f"cause: {cause}"
    assert lines[line + 2].strip() == f"next:  cluster replace -c {config_file} {instance}"
    assert lines[-1] == "1 problem(s), 0 warning(s): needs attention"


def test_json_output_for_scripts(sandbox: Sandbox, config_file: Path, run_main: Callable[..., Outcome]) -> None:
    instance, _ = terminating_wait(sandbox)

    result = run_main("--kubeconfig", str(sandbox.sim.kubeconfig), "doctor", "-c", str(config_file), "--output", "json")

    assert result.code == 1
    data = json.loads(result.out)
    assert data["needs_attention"] is True and data["cluster"] == "demo" and data["stack"] == "cluster-demo"
    [waiting] = [finding for finding in data["findings"] if finding["check"] == "lifecycle"]
    assert waiting["severity"] == "warning" and waiting["resources"] == [instance]
    assert set(waiting) == {"severity", "check", "what", "resources", "cause", "next_step"}


def test_without_the_kubernetes_api_doctor_says_which_checks_it_skipped(
    sandbox: Sandbox, config_file: Path, run_main: Callable[..., Outcome]
) -> None:
    result = run_main("--kubeconfig", str(config_file.parent / "missing"), "doctor", "-c", str(config_file))

    assert result.code == 0, result.out + result.err
    skipped = [line for line in result.out.splitlines() if line.startswith("skipped")]
    assert [line.split(":")[0] for line in skipped] == [
        "skipped  NotReady nodes",
        "skipped  nodes without a host",
        "skipped  hosts without a node",
    ]
    assert "no kubeconfig at" in skipped[0]


# --- the kubectl next steps, run as printed ---


@contextmanager
def ticking(sim: Simulator) -> Iterator[None]:
    """Virtual time runs on its own (a second every 20 ms) while a real client waits on the sandbox."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.02):
            sim.clock.sleep(1.0)

    ticker = threading.Thread(target=tick, name="virtual-clock", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


def test_every_kubectl_step_doctor_prints_works_as_printed(
    sandbox: Sandbox, config_file: Path, run_main: Callable[..., Outcome], tmp_path: Path
) -> None:
    kubectl = require_kubectl(next(iter(kubectl_binaries()), None))
    world = sandbox.sim.world
    cordoned = sandbox.node_of(sandbox.first_host())
    sandbox.kube.cordon(cordoned)  # left cordoned by hand: doctor suggests uncordon
    for name, ready in (
        ("ip-10-42-9-9.eu-west-1.compute.internal", True),
        ("ip-10-42-9-8.eu-west-1.compute.internal", False),
    ):
        world.add_node(name, provider_id=f"aws:///eu-west-1a/i-0000000000000{name[-4:].replace('.', '')}", ready=ready)
        sandbox.kube.label(name, dict(LABELS))
    stray = "ip-10-42-9-9.eu-west-1.compute.internal"
    # A pod with scratch data on the Ready stray node: kubectl drain refuses it without --delete-emptydir-data.
    sandbox.sim.deployment(
        "scratch", 1, nodeSelector={"kubernetes.io/hostname": stray}, volumes=[{"name": "tmp", "emptyDir": {}}]
    )
    sandbox.sim.settle(3)
    kubeconfig = str(sandbox.sim.kubeconfig)

    report = run_main("--kubeconfig", kubeconfig, "doctor", "-c", str(config_file))
    steps = [line.strip().removeprefix("next:").strip() for line in report.out.splitlines() if "next:  kubectl" in line]
    environment = {**os.environ, "HOME": str(tmp_path), "PATH": f"{kubectl.parent}{os.pathsep}{os.environ['PATH']}"}
    with ticking(sandbox.sim):
        runs = [
            subprocess.run(["bash", "-c", step.replace("kubectl ", f"{kubectl.name} ")], capture_output=True,
                           text=True, env=environment, timeout=120, check=False)
            for step in steps
        ]  # fmt: skip
    after = run_main("--kubeconfig", kubeconfig, "doctor", "-c", str(config_file))

    assert sorted(step.split()[3] for step in steps) == ["delete", "drain", "uncordon"], steps
    for step, run in zip(steps, runs, strict=True):
        assert run.returncode == 0, f"{step}: {run.stdout}{run.stderr}"
    assert "--delete-emptydir-data" in next(step for step in steps if " drain " in step)
    assert sorted(node["metadata"]["name"] for node in world.select("Node", None)) == sorted(
        sandbox.node_of(host.instance_id) for host in sandbox.snapshot().hosts
    ), "both stray nodes deleted"
    assert not world.get("Node", "", cordoned)["spec"].get("unschedulable")
    assert (world.counters.evictions, world.counters.pod_deletions) == (1, 0), "the scratch pod evicted, not deleted"
    assert not [line for line in after.out.splitlines() if "next:  kubectl" in line], after.out
