"""The rendered boot script, run under bash with stub commands (tests/bootstub.py): what a host does at boot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provision.config.loader import load_config
from provision.render.userdata import render_userdata
from tests.bootstub import GROUP, INSTANCE_ID, JOIN_TOKEN, Host, Run
from tests.conftest import CONFIGS, EXAMPLE


def _script(tmp_path: Path, config: Path) -> Path:
    path = tmp_path / "user-data.sh"
    path.write_text(render_userdata(load_config(config)))
    return path


@pytest.fixture
def kubeadm_script(tmp_path: Path) -> Path:
    return _script(tmp_path, EXAMPLE)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def assert_token_kept_secret(script: Path, run: Run) -> None:
    assert JOIN_TOKEN not in script.read_text()
    assert JOIN_TOKEN not in run.output
    assert JOIN_TOKEN not in run.log_text()
    assert not [call for call in run.calls if JOIN_TOKEN in call], "the token reached a command line"
    assert JOIN_TOKEN not in run.files_text(), "the token was left in a file on the host"


def test_kubeadm_boot_patches_first_then_joins_then_reports_ready(kubeadm_script: Path, host: Host) -> None:
    run = host.run(kubeadm_script)

    assert run.code == 0, run.output
    [update] = run.called("dnf -y --releasever=latest upgrade --security")
    [join] = run.called("kubeadm join --config")
    [continue_] = run.called("aws autoscaling complete-lifecycle-action")
    assert update < run.called("dnf -y install kubelet kubeadm")[0] < join < continue_
    assert run.calls[continue_].endswith("--lifecycle-action-result CONTINUE")
    assert (
        f"--auto-scaling-group-name {GROUP} --lifecycle-hook-name host-launch --instance-id {INSTANCE_ID}"
        in (run.calls[continue_])
    )
    [signal] = run.called("aws cloudformation signal-resource")
    assert signal > continue_ and run.calls[signal].endswith("--status SUCCESS")
    assert "--stack-name cluster-demo --logical-resource-id HostGroup" in run.calls[signal]
    assert not [call for call in run.calls if "ABANDON" in call]
    # The token went to kubeadm in a root-only file, which is gone afterwards.
    assert JOIN_TOKEN in (host.stubs / "kubeadm-config-seen").read_text()
    assert (host.stubs / "kubeadm-config-mode").read_text().strip() == "600"
    assert f"aws:///eu-west-1a/{INSTANCE_ID}" in (host.stubs / "kubeadm-config-seen").read_text()
    assert_token_kept_secret(kubeadm_script, run)


def test_imds_is_used_with_a_session_token_only(kubeadm_script: Path, host: Host) -> None:
    run = host.run(kubeadm_script)

    metadata_calls = [call for call in run.calls if call.startswith("curl") and "169.254.169.254" in call]
    assert metadata_calls
    for call in metadata_calls:
        assert "/api/token" in call or "X-aws-ec2-metadata-token: imds-token" in call


def test_health_agent_is_installed_and_started(kubeadm_script: Path, host: Host) -> None:
    run = host.run(kubeadm_script)

    assert run.called("systemctl enable --now cluster-health-agent.timer")
    timer = (host.root / "etc/systemd/system/cluster-health-agent.timer").read_text()
    assert "OnUnitActiveSec=30s" in timer
    agent = host.root / "usr/local/bin/cluster-health-agent"
    assert agent.stat().st_mode & 0o111
    env = (host.root / "etc/cluster/health-agent.env").read_text()
    assert INSTANCE_ID in env and "kubelet container_runtime disk" in env


@pytest.mark.parametrize(
    ("broken", "step"),
    [
        pytest.param("dnf", "security-updates", id="updates"),
        pytest.param("modprobe", "kubelet", id="kubelet-install"),
        pytest.param("kubeadm", "join", id="join"),
        pytest.param("healthz", "kubelet-healthy", id="kubelet-never-healthy"),
    ],
)
def test_a_failing_step_abandons_the_launch_and_records_why(
    kubeadm_script: Path, host: Host, broken: str, step: str
) -> None:
    run = host.run(kubeadm_script, fail=broken)

    assert run.code != 0
    [abandon] = run.called("aws autoscaling complete-lifecycle-action")
    assert run.calls[abandon].endswith("--lifecycle-action-result ABANDON")
    [record] = run.called("aws ssm put-parameter")
    assert f"--name /cluster/demo/hosts/{INSTANCE_ID}/boot" in run.calls[record]
    assert f"failed step={step} exit=" in run.calls[record]
    [signal] = run.called("aws cloudformation signal-resource")
    assert run.calls[signal].endswith("--status FAILURE")
    assert not [call for call in run.calls if "CONTINUE" in call or "--status SUCCESS" in call]
    assert f"step {step} failed" in run.output
    assert_token_kept_secret(kubeadm_script, run)


def test_running_twice_changes_nothing_the_second_time(kubeadm_script: Path, host: Host) -> None:
    first = host.run(kubeadm_script)
    second = host.run(kubeadm_script)

    assert first.code == 0 and second.code == 0
    assert not second.called("dnf") and not second.called("kubeadm") and not second.called("aws")
    assert "step join: done before" in second.output


def test_a_kernel_update_reboots_and_the_script_resumes_after_it(kubeadm_script: Path, host: Host) -> None:
    per_boot = host.root / "var/lib/cloud/scripts/per-boot/cluster-bootstrap"

    before = host.run(kubeadm_script, needs_reboot=True)

    assert before.code == 0
    assert before.called("reboot") and not before.called("kubeadm")
    assert per_boot.read_text() == kubeadm_script.read_text()

    after = host.run(per_boot)

    assert after.code == 0, after.output
    assert not after.called("dnf -y --releasever=latest upgrade"), "updates installed twice"
    assert after.called("kubeadm join") and after.called("aws autoscaling complete-lifecycle-action")
    assert not per_boot.exists(), "the resume hook was left behind"


def test_eks_boot_joins_with_nodeadm(tmp_path: Path, host: Host) -> None:
    script = _script(tmp_path, CONFIGS / "eks.toml")

    run = host.run(script)

    assert run.code == 0, run.output
    [update] = run.called("dnf -y --releasever=2023.6.20241010 upgrade --security")
    [describe] = run.called("aws eks describe-cluster --name batch")
    [join] = run.called("nodeadm init --config-source file://")
    assert update < describe < join
    node_config = (host.root / "var/lib/cluster-bootstrap/nodeconfig.yaml").read_text()
    assert 'apiServerEndpoint: "https://ABC.gr7.eu-west-1.eks.amazonaws.com"' in node_config
    assert "--node-labels=example.com/pool=batch,team=data" in node_config
    assert run.calls[run.called("aws autoscaling complete-lifecycle-action")[0]].endswith("CONTINUE")


def test_eks_boot_on_a_plain_image_says_which_image_to_use(tmp_path: Path, host: Host) -> None:
    script = _script(tmp_path, CONFIGS / "eks.toml")
    (host.stubs / "nodeadm").unlink()

    run = host.run(script)

    assert run.code != 0
    assert "use an EKS-optimized AMI (hosts.ami)" in run.output
    assert "failed step=kubelet" in run.calls[run.called("aws ssm put-parameter")[0]]


class TestHealthAgent:
    """The agent installed by the boot script, run as its timer would run it."""

    @pytest.fixture
    def agent(self, kubeadm_script: Path, host: Host) -> Path:
        assert host.run(kubeadm_script).code == 0
        return host.root / "usr/local/bin/cluster-health-agent"

    def test_reports_unhealthy_once_after_consecutive_failures(self, agent: Path, host: Host) -> None:
        runs = [host.run(agent, fail="systemctl") for _ in range(5)]

        reports = [run.called("aws --region eu-west-1 autoscaling set-instance-health") for run in runs]
        assert [len(report) for report in reports] == [0, 0, 1, 0, 0]
        report = runs[2].calls[reports[2][0]]
        assert f"--instance-id {INSTANCE_ID} --health-status Unhealthy" in report
        # Otherwise the group ignores the report during its health-check grace period, and the agent never repeats it.
        assert "--no-should-respect-grace-period" in report.split()
        assert "failing:kubelet container_runtime failures=5" in (host.root / "var/lib/cluster-health/last").read_text()

    def test_a_recovery_resets_the_count(self, agent: Path, host: Host) -> None:
        host.run(agent, fail="systemctl")
        host.run(agent, fail="systemctl")
        host.run(agent)
        runs = [host.run(agent, fail="systemctl") for _ in range(2)]

        assert not [run for run in runs if run.called("aws --region eu-west-1 autoscaling set-instance-health")]
        assert "failures=2" in (host.root / "var/lib/cluster-health/last").read_text()

    def test_publishes_its_verdict_as_a_tag_of_its_own_instance_only_when_it_changes(
        self, agent: Path, host: Host
    ) -> None:
        runs = [host.run(agent), host.run(agent), host.run(agent, fail="systemctl"), host.run(agent, fail="systemctl")]

        published = [run.called("aws --region eu-west-1 ec2 create-tags") for run in runs]
        assert [len(calls) for calls in published] == [1, 0, 1, 0]
        first, failing = runs[0].calls[published[0][0]], runs[2].calls[published[2][0]]
        assert f"--resources {INSTANCE_ID} " in first and '"Key": "cluster:health"' in first
        assert " healthy failures=0" in first
        assert " failing:kubelet container_runtime failures=1" in failing
        assert not [call for run in runs for call in run.calls if " ssm " in call], "nothing goes to SSM any more"

    def test_a_report_beyond_max_unhealthy_is_held_and_made_when_a_slot_frees(self, agent: Path, host: Host) -> None:
        """The storm guard: another host holds the group's only repair slot (20 % of 3 hosts, at least 1) while the
        group replaces it; this host's report waits, says so, and is made once that host has left the group."""
        other = "i-0aaaaaaaaaaaaaaaa"
        slot = f"/cluster/demo/repair/slots/0\t{other} 1700000000 agent"
        replacing = {"STUB_REPAIR": slot, "STUB_MEMBERS": f"{other}\tTerminating:Wait\tUnhealthy"}

        held = [host.run(agent, fail="systemctl", extra_env=replacing) for _ in range(4)]

        assert not [run for run in held if run.called("aws --region eu-west-1 autoscaling set-instance-health")]
        assert not [run for run in held if run.called("aws --region eu-west-1 ssm put-parameter")], "no slot free"
        [log] = held[2].called("logger -t cluster-health-agent")
        assert "repair held: 1 host(s) under repair, at most 1 at once" in held[2].calls[log]
        tagged = [[run.calls[i] for i in run.called("aws --region eu-west-1 ec2 create-tags")] for run in held]
        assert [len(calls) for calls in tagged] == [1, 0, 1, 0], "the verdict when it changed, then the held state"
        assert '"Key": "cluster:repair", "Value": "held ' in tagged[2][0]
        assert "by=agent why=kubelet+container_runtime" in tagged[2][0] and "cluster:health" not in tagged[2][0]

        # The other host is gone: its slot is taken over by creating its one handover, then the report is made.
        gone = host.run(agent, fail="systemctl", extra_env={"STUB_REPAIR": slot})

        claim, shortcut = (gone.calls[i] for i in gone.called("aws --region eu-west-1 ssm put-parameter"))
        assert claim.startswith(
            f"aws --region eu-west-1 ssm put-parameter --name /cluster/demo/repair/handovers/0/{other} --type String "
            f"--no-overwrite --value {INSTANCE_ID} "
        )
        assert shortcut.startswith(
            "aws --region eu-west-1 ssm put-parameter --name /cluster/demo/repair/slots/0 --type String --overwrite "
            f"--value {INSTANCE_ID} "
        ), "then the slot names its holder, for the next reader"
        assert gone.called("aws --region eu-west-1 autoscaling set-instance-health")
        [tag] = gone.called("aws --region eu-west-1 ec2 create-tags")
        assert '"Key": "cluster:repair", "Value": "reported ' in gone.calls[tag]

    def test_a_held_host_that_recovers_says_so(self, agent: Path, host: Host) -> None:
        other = "i-0aaaaaaaaaaaaaaaa"
        replacing = {"STUB_REPAIR": f"/cluster/demo/repair/slots/0\t{other} 1700000000 heal",
                     "STUB_MEMBERS": f"{other}\tInService\tUnhealthy"}  # fmt: skip
        runs = [host.run(agent, fail="systemctl", extra_env=replacing) for _ in range(3)] + [host.run(agent)]

        assert not [run for run in runs if run.called("aws --region eu-west-1 autoscaling set-instance-health")]
        [tag] = runs[3].called("aws --region eu-west-1 ec2 create-tags")
        assert '"Key": "cluster:repair", "Value": "clear ' in runs[3].calls[tag]
        assert '"Key": "cluster:health"' in runs[3].calls[tag] and " healthy failures=0" in runs[3].calls[tag]

    def test_a_guard_it_cannot_read_holds_the_report(self, agent: Path, host: Host) -> None:
        """Fail closed: when every host finds the same fault, an unreadable guard must not let them all go."""
        runs = [host.run(agent, fail="systemctl", extra_env={"STUB_DESIRED": "None"}) for _ in range(3)]

        assert not [run for run in runs if run.called("aws --region eu-west-1 autoscaling set-instance-health")]
        [log] = runs[2].called("logger -t cluster-health-agent")
        assert "repair held: the storm guard could not be read" in runs[2].calls[log]
        [tag] = runs[2].called("aws --region eu-west-1 ec2 create-tags")
        assert '"Key": "cluster:repair", "Value": "held ' in runs[2].calls[tag]

    def test_the_installed_agent_is_the_shipped_one_without_its_comment_lines(self, agent: Path) -> None:
        shipped = (Path(__file__).resolve().parent.parent / "userdata" / "health-agent.sh").read_text()
        code = [line for line in shipped.splitlines()[1:] if not line.lstrip().startswith("#")]
        assert agent.read_text().splitlines() == [shipped.splitlines()[0], *code]
        assert agent.stat().st_mode & 0o111


# --- host groups: each group's boot script registers its own taints and signals its own group ---


def _group_script(tmp_path: Path, config: Path, group: str) -> Path:
    loaded = load_config(config)
    path = tmp_path / f"user-data-{group}.sh"
    path.write_text(render_userdata(loaded, loaded.groups[group]))
    return path


def test_kubeadm_group_joins_with_its_taints_and_signals_its_own_group(tmp_path: Path, host: Host) -> None:
    run = host.run(_group_script(tmp_path, CONFIGS / "groups-kubeadm.toml", "system"))

    assert run.code == 0, run.output
    join = yaml.safe_load((host.stubs / "kubeadm-config-seen").read_text())
    arguments = {item["name"]: item["value"] for item in join["nodeRegistration"]["kubeletExtraArgs"]}
    assert arguments["register-with-taints"] == "dedicated=system:NoSchedule"
    assert arguments["node-labels"] == "example.com/pool=system"
    [signal] = run.called("aws cloudformation signal-resource")
    assert "--stack-name cluster-demo --logical-resource-id HostGroupSystem " in run.calls[signal]


def test_kubeadm_group_without_taints_registers_none(tmp_path: Path, host: Host) -> None:
    run = host.run(_group_script(tmp_path, CONFIGS / "groups-kubeadm.toml", "workers"))

    assert run.code == 0, run.output
    join = yaml.safe_load((host.stubs / "kubeadm-config-seen").read_text())
    assert [item["name"] for item in join["nodeRegistration"]["kubeletExtraArgs"]] == ["provider-id", "node-labels"]
    [signal] = run.called("aws cloudformation signal-resource")
    assert "--logical-resource-id HostGroup " in run.calls[signal]


def test_eks_group_gives_nodeadm_its_taints(tmp_path: Path, host: Host) -> None:
    run = host.run(_group_script(tmp_path, CONFIGS / "groups-eks.toml", "system"))

    assert run.code == 0, run.output
    node_config = yaml.safe_load((host.root / "var/lib/cluster-bootstrap/nodeconfig.yaml").read_text())
    assert node_config["spec"]["kubelet"]["flags"] == [
        "--node-labels=example.com/pool=system",
        "--register-with-taints=CriticalAddonsOnly:NoSchedule,example.com/dedicated=system:NoExecute",
    ]
    [signal] = run.called("aws cloudformation signal-resource")
    assert "--stack-name cluster-batch --logical-resource-id HostGroupSystem " in run.calls[signal]
