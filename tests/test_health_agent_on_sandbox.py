"""The shipped health agent (userdata/health-agent.sh, unmodified) on one host of a deployed sandbox group, end to
end: bash runs it on a fake root with stubs for the host's own commands only (systemctl, curl, df, logger) and the
real `aws` CLI, which reaches the sandbox's moto through an HTTP endpoint sharing its state. Its kubelet check fails;
after `failures_before_unhealthy` runs the agent reports the host Unhealthy, the group replaces it and `cluster heal`
drains it under its budget before it goes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from provision.deploy.status import collect
from provision.render import names
from provision.render.userdata import render_userdata
from tests.bootstub import Host
from tests.deploykit import REGION
from tests.simkit import simulator
from tests.test_heal_on_sandbox import CONFIG, DEADLINE, Sandbox, assert_healed_by_heal, sandbox

__all__ = ["sandbox", "simulator"]  # the fixtures

AGENT = Path(__file__).resolve().parent.parent / "userdata" / "health-agent.sh"
AWS_CLI = Path(sys.executable).parent / "aws"  # awscli, from the test extra
DF = "#!/bin/bash\nprintf 'Use%%\\n 42%%\\n'\n"  # a root disk with room to spare: only the kubelet is sick


@pytest.fixture
def endpoint(sandbox: Sandbox) -> Iterator[str]:
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
    """One host of the group: its boot script, run with stubs, installs the agent's settings for that instance;
    then the real `aws` replaces the stub."""
    host = Host(tmp_path)
    boot = tmp_path / "user-data.sh"
    boot.write_text(render_userdata(CONFIG))
    victim = sandbox.snapshot().hosts[0].instance_id
    assert host.run(boot, extra_env={"STUB_INSTANCE_ID": victim}).code == 0
    (host.stubs / "aws").unlink()
    (host.stubs / "df").write_text(DF)
    (host.stubs / "df").chmod(0o755)
    return host


def test_the_agent_reports_a_sick_host_and_heal_drains_it_before_it_goes(
    sandbox: Sandbox, endpoint: str, host: Host
) -> None:
    assert AWS_CLI.exists(), "awscli is not installed (pip install -e '.[test]')"
    victim = sandbox.snapshot().hosts[0].instance_id
    env = {
        "PATH": os.pathsep.join([str(host.stubs), str(AWS_CLI.parent), os.environ["PATH"]]),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(host.root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(host.root / "no-aws-credentials"),
    }
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)

    def health() -> str:
        [instance] = autoscaling.describe_auto_scaling_instances(InstanceIds=[victim])["AutoScalingInstances"]
        return instance["HealthStatus"]

    failures = CONFIG.health_agent.failures_before_unhealthy
    seen = []
    for _ in range(failures):  # as its timer runs it; the sandbox's clock stands still meanwhile
        run = host.run(AGENT, fail="healthz", extra_env=env)
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
