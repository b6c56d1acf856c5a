"""The shipped health agent (userdata/health-agent.sh, as the boot script installs it from the user-data) on hosts of
a deployed sandbox group, end to end: bash runs it on a fake root with stubs for the host's own commands only
(systemctl, curl, df, logger) and the real `aws` CLI, which reaches the sandbox's moto through an HTTP endpoint sharing
its state. Its kubelet check fails; after `failures_before_unhealthy` runs the agent reports the host Unhealthy, the
group replaces it and `cluster heal` drains it under its budget before it goes. Five hosts failing at once are
replaced at most `health_agent.max_unhealthy` at a time (the storm guard), and all of them in the end."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from provision import names
from provision.config.schema import ClusterConfig
from provision.deploy.status import collect, show
from provision.doctor.checks import diagnose
from provision.doctor.observe import gather
from provision.render.userdata import render_userdata
from tests.bootstub import Host, Run
from tests.deploykit import REGION, config, recording_ui
from tests.simkit import Simulator, simulator
from tests.test_heal_on_sandbox import CONFIG, DEADLINE, Sandbox, assert_healed_by_heal, sandbox, sandbox_of

__all__ = ["sandbox", "simulator"]  # the fixtures

AGENT = Path("usr/local/bin/cluster-health-agent")  # below a host's root, where its boot script installed it
AWS_CLI = Path(sys.executable).parent / "aws"  # awscli, from the test extra
DF = "#!/bin/bash\nprintf 'Use%%\\n 42%%\\n'\n"  # a root disk with room to spare: only the kubelet is sick


@pytest.fixture
def endpoint(sandbox: Sandbox) -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """moto's server in this process: it serves the same state as the in-process moto the sandbox runs on."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    address, port = server.get_host_and_port()
    try:
        yield f"http://{address}:{port}"
    finally:
        server.stop()


@pytest.fixture
def host(tmp_path: Path, sandbox: Sandbox) -> Host:
    return agent_host(tmp_path / "host", CONFIG, sandbox.snapshot().hosts[0].instance_id)


def agent_host(base: Path, cfg: ClusterConfig, instance_id: str) -> Host:
    """A host of the group: its boot script, run with stubs, installs the agent and its settings for that instance;
    then the real `aws` replaces the stub."""
    base.mkdir()
    host = Host(base)
    boot = base / "user-data.sh"
    boot.write_text(render_userdata(cfg))
    assert host.run(boot, extra_env={"STUB_INSTANCE_ID": instance_id}).code == 0
    (host.stubs / "aws").unlink()
    (host.stubs / "df").write_text(DF)
    (host.stubs / "df").chmod(0o755)
    return host


def aws_env(host: Host, endpoint: str) -> dict[str, str]:
    """The host's environment for the real `aws`: the sandbox's endpoint, no credentials or config of the machine."""
    return {
        "PATH": os.pathsep.join([str(host.stubs), str(AWS_CLI.parent), os.environ["PATH"]]),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(host.root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(host.root / "no-aws-credentials"),
    }


def test_the_agent_reports_a_sick_host_and_heal_drains_it_before_it_goes(
    sandbox: Sandbox, endpoint: str, host: Host
) -> None:
    assert AWS_CLI.exists(), "awscli is not installed (pip install -e '.[test]')"
    victim = sandbox.snapshot().hosts[0].instance_id
    env = aws_env(host, endpoint)
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)

    def health() -> str:
        [instance] = autoscaling.describe_auto_scaling_instances(InstanceIds=[victim])["AutoScalingInstances"]
        return instance["HealthStatus"]

    failures = CONFIG.health_agent.failures_before_unhealthy
    seen = []
    for _ in range(failures):  # as its timer runs it; the sandbox's clock stands still meanwhile
        run = host.run(host.root / AGENT, fail="healthz", extra_env=env)
        assert run.code == 0, run.output
        seen.append(health().upper())
    assert seen == ["HEALTHY"] * (failures - 1) + ["UNHEALTHY"], "reported once its failures reached the limit"
    assert run.called("logger -t cluster-health-agent unhealthy after")

    # The agent tagged its own instance with its verdict (set on the first failed run, unchanged since) and wrote
    # nothing to SSM; `cluster status` shows the verdict in its agent column.
    [tag] = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [victim]},
                                       {"Name": "key", "Values": [names.HEALTH_TAG]}])["Tags"]  # fmt: skip
    assert tag["Value"].split()[1:] == ["failing:kubelet", "failures=1"], tag
    assert sandbox.cloud.parameters.names_under(names.host_records_path(CONFIG.parameter_path)) == []
    [row] = [row for row in collect(CONFIG, sandbox.cloud, now=datetime.now(UTC)).hosts if row.instance_id == victim]
    assert row.agent == "failing:kubelet"

    sandbox.heal_until(lambda: sandbox.settled(3) and victim not in {h.instance_id for h in sandbox.snapshot().hosts})

    assert sandbox.settled(3), "the group replaced the host: three again, every pod Running and Ready"
    assert victim not in {h.instance_id for h in sandbox.snapshot().hosts}
    assert_healed_by_heal(sandbox, victim)  # drained under its budget, completed by heal, the queue empty
    assert sandbox.sim.clock.now() < DEADLINE, "completed by heal, long before the hook's timeout"


STORM = config(hosts={"min_size": 1, "desired_capacity": 5, "max_size": 10},
               health_agent={"failures_before_unhealthy": 1, "max_unhealthy": "40%"})  # fmt: skip
LIMIT = 2  # 40 % of 5


@pytest.fixture
def storm(simulator: Simulator) -> Iterator[Sandbox]:
    with sandbox_of(simulator, STORM) as box:
        yield box


@pytest.fixture
def storm_endpoint(storm: Sandbox) -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def test_five_hosts_sick_at_once_are_replaced_at_most_max_unhealthy_at_a_time(
    storm: Sandbox, storm_endpoint: str, tmp_path: Path
) -> None:
    """The same fault on every host (a kubelet bug in a new patch, say): all five agents find it in the same run and
    race to report. At most two at a time are ever reported Unhealthy or on their way out; the others are held, say
    so, and take their turn at their next run once a host under repair has left; in the end all five are replaced."""
    assert AWS_CLI.exists(), "awscli is not installed (pip install -e '.[test]')"
    sick = [host.instance_id for host in storm.snapshot().hosts]
    hosts = {instance: agent_host(tmp_path / instance, STORM, instance) for instance in sick}
    peak = 0

    def under_repair() -> set[str]:
        """The sick hosts the group has been told of: reported Unhealthy, or on their way out."""
        nonlocal peak
        found = {
            host.instance_id
            for host in storm.snapshot().hosts
            if host.instance_id in hosts and (host.health != "Healthy" or host.lifecycle_state != "InService")
        }
        peak = max(peak, len(found))
        return found

    def run_agents(instances: list[str]) -> dict[str, Run]:
        """Each host's timer fires in the same moment: the agents start together, each on its own thread."""
        start = threading.Barrier(len(instances))
        runs: dict[str, Run] = {}

        def run(instance: str) -> None:
            start.wait()
            host = hosts[instance]
            runs[instance] = host.run(host.root / AGENT, fail="healthz", extra_env=aws_env(host, storm_endpoint))

        threads = [threading.Thread(target=run, args=(instance,)) for instance in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return runs

    waiting = list(sick)
    turns: list[list[str]] = []
    while waiting:
        assert len(turns) < len(sick), f"no progress: {waiting} still waiting after {turns}"
        runs = run_agents(waiting)
        assert all(run.code == 0 for run in runs.values()), {i: run.output for i, run in runs.items() if run.code}
        reported = sorted(instance for instance, run in runs.items() if "; reporting to" in _logged(run))
        held = sorted(instance for instance, run in runs.items() if "; repair held:" in _logged(run))
        assert sorted(reported + held) == sorted(waiting), "each agent either reported or was held"
        assert len(reported) == min(LIMIT, len(waiting)), (reported, held)
        assert under_repair() == set(reported)
        if not turns:
            first_held = held
            # What `cluster status` and `cluster doctor` show meanwhile: the held hosts, the limit, what to do.
            report = collect(STORM, storm.cloud, now=datetime.now(UTC))
            assert report.repair_held is not None
            assert str(report.repair_held) == f"repair held: 5 sick, limit {LIMIT}"
            assert sorted(report.repair_held.held) == held and sorted(report.repair_held.in_repair) == reported
            assert {row.repair for row in report.hosts if row.instance_id in held} == {"held"}
            assert json.loads(report.to_json())["repair_held"] == {
                "sick": 5,
                "limit": LIMIT,
                "held": list(report.repair_held.held),
                "in_repair": list(report.repair_held.in_repair),
            }
            ui, out = recording_ui()
            show(report, ui)
            assert f"repair held: 5 sick, limit {LIMIT}: waiting for a turn: " in out.getvalue()
            tags = storm.cloud.instances.of_ids(held)
            for instance in held:
                state, _, by, why = tags[instance].tags[names.REPAIR_TAG].split()
                assert (state, by, why) == ("held", "by=agent", "why=kubelet")
            findings = diagnose(gather(STORM, storm.cloud, now=datetime.now(UTC), kube=storm.kube)).findings
            [finding] = [finding for finding in findings if finding.check == "repair"]
            assert finding.what == f"repair held: 5 sick, limit {LIMIT}" and sorted(finding.resources) == held
            assert "cluster replace" in finding.next_step and "kubelet" in finding.cause
        turns.append(reported)
        waiting = held
        # The group replaces the reported hosts and heal drains them, in virtual time; none of the others is touched.
        storm.heal_until(lambda: not under_repair() and storm.settled(5), cfg=STORM)
        assert not under_repair() and storm.settled(5)

    assert peak == LIMIT, f"at most {LIMIT} under repair at once, and the guard let {LIMIT} through at once"
    assert [len(turn) for turn in turns] == [2, 2, 1], turns
    assert sorted(turns[1] + turns[2]) == first_held
    members = {host.instance_id for host in storm.snapshot().hosts}
    assert not members & set(sick), "all five were replaced"
    assert storm.settled(5)
    assert storm.sim.world.counters.budget_violations == 0
    for instance in sick:
        assert storm.pods_when_gone.get(instance) == 0, f"{instance} left only once drained"


def _logged(run: Run) -> str:
    """What the agent told the journal (its `logger` calls)."""
    return "\n".join(call for call in run.calls if call.startswith("logger -t cluster-health-agent"))
