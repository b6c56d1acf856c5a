"""`cluster doctor`'s checks, each on small hand-built observations: what is found, the cause it names and the one
next step it gives; and the report around them (order, skipped checks, JSON, exit status)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provision.aws.stacks import Stack, StackEvent
from provision.deploy.host_records import BootRecord, HealthRecord, RepairRecord
from provision.doctor.checks import diagnose
from provision.doctor.findings import Finding, Report, Severity
from provision.doctor.observe import Invocation, Observations
from provision.fleet.model import Host, Snapshot
from provision.kube.model import NodeState
from provision.roll.lock import Lock
from provision.roll.state import Flight, Kind, Phase, RollRecord

STARTED = datetime(2026, 1, 1, tzinfo=UTC)  # when the roll began

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CURRENT = "ami-0new/2/abc123"
OLD = "ami-0old/1/abc123"
GROUP = "cluster-demo-HostGroup-1"
LABELS = {"example.com/pool": "workers"}
IDS = ("i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c")


def host(instance_id: str, **changes: Any) -> Host:
    base = Host(
        instance_id=instance_id,
        zone="eu-west-1a",
        lifecycle_state="InService",
        health="Healthy",
        protected=False,
        fingerprint=CURRENT,
        image="ami-0new",
        launched=NOW - timedelta(hours=5),
        names=(f"ip-{instance_id[-1]}.eu-west-1.compute.internal", f"10.0.0.{ord(instance_id[-1])}"),
    )
    return dataclasses.replace(base, **changes)


def node(instance_id: str, **changes: Any) -> NodeState:
    base = NodeState(
        name=f"ip-{instance_id[-1]}.eu-west-1.compute.internal",
        provider_id=f"aws:///eu-west-1a/{instance_id}",
        addresses=(),
        ready=True,
        unschedulable=False,
        labels=dict(LABELS),
    )
    return dataclasses.replace(base, **changes)


def stack(status: str = "UPDATE_COMPLETE", reason: str = "") -> Stack:
    return Stack("cluster-demo", "arn:stack/cluster-demo/1", status, reason, {}, {}, {})


def observe(
    hosts: tuple[Host, ...] | None = None,
    nodes: tuple[NodeState, ...] | None = None,
    suspended: tuple[str, ...] = (),
    **changes: Any,
) -> Observations:
    """A healthy cluster of three current hosts with Ready nodes, changed by the keyword arguments."""
    hosts = hosts if hosts is not None else tuple(host(instance) for instance in IDS)
    nodes = nodes if nodes is not None else tuple(node(h.instance_id) for h in hosts)
    by_instance = {n.instance_id: n for n in nodes}
    obs = Observations(
        cluster="demo",
        region="eu-west-1",
        stack_name="cluster-demo",
        parameter_path="/cluster/demo",
        now=NOW,
        stack=stack(),
        snapshot=Snapshot(GROUP, len(hosts), 3, 6, CURRENT, hosts, suspended),
        nodes=nodes,
        node_of={h.instance_id: by_instance[h.instance_id] for h in hosts if h.instance_id in by_instance},
        cluster_instances=frozenset(h.instance_id for h in hosts),
        node_labels=LABELS,
    )
    return dataclasses.replace(obs, **changes)


def attention(obs: Observations) -> list[Finding]:
    report = diagnose(obs)
    return [finding for finding in report.findings if finding.needs_attention]


def only(obs: Observations) -> Finding:
    [finding] = attention(obs)
    return finding


def lock(operation: str = "patch", *, expires: datetime) -> Lock:
    return Lock("alice@laptop", operation, (NOW - timedelta(hours=2)).isoformat(), expires.isoformat(), "t0k")


def test_a_healthy_cluster_needs_no_attention_and_every_check_ran() -> None:
    report = diagnose(observe())

    assert not report.needs_attention
    assert report.skipped == ()
    assert {finding.severity for finding in report.findings} == {Severity.OK}
    assert report.summary() == "nothing needs attention"
    what = " | ".join(finding.what for finding in report.findings)
    assert "stack cluster-demo is UPDATE_COMPLETE" in what and f"3 host(s) current ({CURRENT})" in what


def test_without_kubernetes_the_node_checks_are_skipped_and_say_why() -> None:
    unreachable = "the Kubernetes API is not reachable (refused)"
    report = diagnose(dataclasses.replace(observe(), nodes=None, node_of={}, kube_note=unreachable))

    assert [skipped.check for skipped in report.skipped] == [
        "NotReady nodes",
        "nodes without a host",
        "hosts without a node",
    ]
    assert {skipped.why for skipped in report.skipped} == {unreachable}
    assert not report.needs_attention


def test_no_stack_is_a_problem_and_the_group_checks_are_skipped() -> None:
    report = diagnose(observe(stack=None, snapshot=None, no_group="there is no stack cluster-demo"))

    [problem] = [finding for finding in report.findings if finding.needs_attention]
    assert problem.what == "there is no stack cluster-demo in eu-west-1"
    assert problem.next_step == "cluster up"
    assert "outdated hosts" in {skipped.check for skipped in report.skipped}
    assert "roll lock" not in {skipped.check for skipped in report.skipped}


def test_a_rolled_back_stack_names_its_root_cause_and_the_way_out() -> None:
    cause = StackEvent("e1", NOW, "HostGroup", "AWS::AutoScaling::AutoScalingGroup", "CREATE_FAILED", "quota hit")

    finding = only(observe(stack=stack("ROLLBACK_COMPLETE"), stack_causes=(cause,)))

    assert finding.severity is Severity.PROBLEM
    assert "ROLLBACK_COMPLETE" in finding.what and "cannot be updated" in finding.what
    assert finding.cause == "CREATE_FAILED HostGroup (AWS::AutoScaling::AutoScalingGroup): quota hit"
    assert finding.next_step == "cluster up"


@pytest.mark.parametrize(
    ("status", "severity", "next_step"),
    [
        ("UPDATE_ROLLBACK_FAILED", Severity.PROBLEM, "aws cloudformation continue-update-rollback"),
        ("UPDATE_ROLLBACK_COMPLETE", Severity.WARNING, "fix the cause, then cluster up"),
        ("DELETE_FAILED", Severity.PROBLEM, "cluster down"),
        ("UPDATE_IN_PROGRESS", Severity.WARNING, "aws cloudformation describe-stack-events"),
    ],
)
def test_each_unsettled_stack_state_has_its_next_step(status: str, severity: Severity, next_step: str) -> None:
    finding = only(observe(stack=stack(status, reason="because")))

    assert finding.severity is severity and status in finding.what
    assert finding.next_step.startswith(next_step)


def boot(instance: str, at: datetime) -> BootRecord:
    log = ("+ kubeadm join 10.0.0.10:6443", "error execution phase preflight: couldn't validate the identity")
    return BootRecord(instance, f"/cluster/demo/hosts/{instance}/boot", "join", "1", at, log)


def test_an_abandoned_launch_of_a_member_is_a_problem_with_its_step_and_last_log_line() -> None:
    finding = only(observe(boot_records=(boot(IDS[0], NOW - timedelta(minutes=3)),)))

    assert finding.severity is Severity.PROBLEM and finding.resources == (IDS[0],)
    assert finding.what == "launch abandoned at step join (exit 1) 3m ago"
    assert finding.cause == "error execution phase preflight: couldn't validate the identity"
    assert finding.next_step == (
        f"aws ssm get-parameter --name /cluster/demo/hosts/{IDS[0]}/boot --query Parameter.Value --output text"
    )


def test_abandoned_launches_of_gone_hosts_warn_while_recent_and_are_history_after_a_day() -> None:
    recent, old = (
        boot("i-00000000000000077", NOW - timedelta(hours=1)),
        boot("i-00000000000000066", NOW - timedelta(days=3)),
    )

    finding = only(observe(boot_records=(recent, old)))

    assert finding.severity is Severity.WARNING and finding.resources == ("i-00000000000000077",)
    assert "the group replaced the host" in finding.what


def test_an_unhealthy_host_names_the_health_agents_verdict() -> None:
    hosts = (host(IDS[0], health="Unhealthy"), host(IDS[1]), host(IDS[2]))
    health = {IDS[0]: HealthRecord(IDS[0], "failing:kubelet disk", 3, NOW)}

    finding = only(observe(hosts=hosts, health=health))

    assert finding.severity is Severity.PROBLEM and finding.resources == (IDS[0],)
    assert finding.what == "marked Unhealthy in its auto-scaling group"
    assert finding.cause == "the health agent finds kubelet, disk failing (3 checks in a row)"
    assert finding.next_step == f"cluster replace {IDS[0]}"


def test_an_unhealthy_host_the_group_will_not_replace_says_so() -> None:
    hosts = (host(IDS[0], health="Unhealthy"), host(IDS[1]), host(IDS[2]))

    findings = attention(observe(hosts=hosts, suspended=("ReplaceUnhealthy",)))

    [unhealthy] = [finding for finding in findings if finding.check == "health"]
    assert unhealthy.cause.endswith("ReplaceUnhealthy is suspended, so the group will not replace it")


def test_a_failing_health_agent_verdict_warns_before_the_group_acts() -> None:
    finding = only(observe(health={IDS[1]: HealthRecord(IDS[1], "failing:container_runtime", 1, NOW)}))

    assert finding.severity is Severity.WARNING and finding.resources == (IDS[1],)


def test_sick_hosts_the_storm_guard_holds_warn_with_the_limit_and_what_to_do() -> None:
    hosts = (host(IDS[0], health="Unhealthy"), host(IDS[1]), host(IDS[2]))
    repair = {
        IDS[0]: RepairRecord(IDS[0], "reported", NOW, "agent", "kubelet"),
        IDS[1]: RepairRecord(IDS[1], "held", NOW, "agent", "kubelet"),
        IDS[2]: RepairRecord(IDS[2], "held", NOW, "agent", "kubelet"),
    }
    health = {i: HealthRecord(i, "failing:kubelet", 3, NOW) for i in IDS}

    findings = attention(observe(hosts=hosts, repair=repair, repair_limit=1, health=health))

    [held] = [finding for finding in findings if finding.check == "repair"]
    assert held.severity is Severity.WARNING
    assert held.what == "repair held: 3 sick, limit 1" and held.resources == (IDS[1], IDS[2])
    assert held.cause == (
        f"at most 1 host(s) under repair at once (health_agent.max_unhealthy); under repair: {IDS[0]}; every held "
        "host has the same trouble (kubelet): one fault on many hosts, fix it first"
    )
    assert held.next_step == (
        f"wait: they are reported as those under repair leave; to replace one now, cluster replace {IDS[1]}; to "
        "repair more at once, raise health_agent.max_unhealthy"
    )


def test_no_repair_is_held_once_the_held_hosts_recovered_or_left() -> None:
    repair = {
        IDS[1]: RepairRecord(IDS[1], "clear", NOW, "agent", ""),
        "i-0000000000000000f": RepairRecord("i-0000000000000000f", "held", NOW, "heal", "Ready:Unknown"),  # gone
    }
    report = diagnose(observe(repair=repair, repair_limit=1))

    [ok] = [finding for finding in report.findings if finding.check == "repair"]
    assert ok.severity is Severity.OK and ok.what == "no repair held (at most 1 host(s) under repair at once)"


def test_a_notready_node_is_a_problem_whose_next_step_replaces_it() -> None:
    nodes = (node(IDS[0]), node(IDS[1], ready=False), node(IDS[2]))

    finding = only(observe(nodes=nodes))

    assert finding.severity is Severity.PROBLEM
    assert finding.resources == (IDS[1], "ip-b.eu-west-1.compute.internal")
    assert finding.what == "node ip-b.eu-west-1.compute.internal is NotReady"
    assert finding.next_step.startswith(f"cluster replace {IDS[1]}")


def test_a_node_left_cordoned_outside_a_roll_warns() -> None:
    nodes = (node(IDS[0], unschedulable=True), node(IDS[1]), node(IDS[2]))

    finding = only(observe(nodes=nodes))

    assert (
        finding.severity is Severity.WARNING and finding.next_step == "kubectl uncordon ip-a.eu-west-1.compute.internal"
    )


def test_a_host_booting_in_pending_wait_is_fine_until_the_launch_timeout() -> None:
    young = host(IDS[2], lifecycle_state="Pending:Wait", launched=NOW - timedelta(minutes=2))
    old = host(IDS[2], lifecycle_state="Pending:Wait", launched=NOW - timedelta(minutes=40))
    nodes = (node(IDS[0]), node(IDS[1]))

    assert attention(observe(hosts=(host(IDS[0]), host(IDS[1]), young), nodes=nodes)) == []
    finding = only(observe(hosts=(host(IDS[0]), host(IDS[1]), old), nodes=nodes))
    assert finding.severity is Severity.PROBLEM and "40m, past the launch timeout (15m)" in finding.what
    assert finding.cause.startswith("no node has joined yet")
    assert "--lifecycle-hook-name host-launch" in finding.next_step and "ABANDON" in finding.next_step


def test_a_host_held_in_terminating_wait_warns_and_says_how_long_when_known() -> None:
    hosts = (host(IDS[0], lifecycle_state="Terminating:Wait"), host(IDS[1]), host(IDS[2]))

    unknown = only(observe(hosts=hosts))
    late = only(observe(hosts=hosts, waiting_since={IDS[0]: NOW - timedelta(minutes=30)}))

    assert unknown.severity is Severity.WARNING and unknown.what == "held in Terminating:Wait for an unknown time"
    assert unknown.next_step == "cluster heal --once (drains it, then lets its termination go on)"
    assert late.severity is Severity.PROBLEM and late.what == "held in Terminating:Wait for 30m"


def test_an_unhealthy_host_the_group_is_replacing_is_one_finding_that_says_why() -> None:
    hosts = (host(IDS[0], lifecycle_state="Terminating:Wait", health="Unhealthy"), host(IDS[1]), host(IDS[2]))
    health = {IDS[0]: HealthRecord(IDS[0], "failing:disk", 3, NOW)}

    finding = only(observe(hosts=hosts, health=health))

    assert finding.check == "lifecycle" and finding.resources == (IDS[0],)
    assert finding.cause.startswith(
        "marked Unhealthy (the health agent finds disk failing), so the group is replacing it; nobody has completed"
    )


def test_a_host_terminating_for_a_running_roll_is_fine() -> None:
    hosts = (host(IDS[0], lifecycle_state="Terminating:Wait"), host(IDS[1]), host(IDS[2]))
    running = lock(expires=NOW + timedelta(hours=1))

    report = diagnose(
        observe(
            hosts=hosts,
            lock=running,
            journal=RollRecord("patch", GROUP, 3, 6, STARTED, flights=[Flight(IDS[0], Kind.SURGE, 1)]),
        )
    )

    assert [f.check for f in report.findings if f.needs_attention] == ["lock"]  # only "a roll is running"


def test_processes_suspended_by_hand_warn_and_name_the_resume_command() -> None:
    finding = only(observe(suspended=("AZRebalance", "ScheduledActions")))

    assert finding.severity is Severity.WARNING and finding.resources == (GROUP,)
    assert finding.next_step == (
        f"aws autoscaling resume-processes --auto-scaling-group-name {GROUP} "
        "--scaling-processes AZRebalance ScheduledActions"
    )


def test_a_suspended_launch_process_is_a_problem() -> None:
    finding = only(observe(suspended=("Launch",)))

    assert finding.severity is Severity.PROBLEM and "the group cannot heal" in finding.what


def test_processes_an_interrupted_roll_suspended_are_resumed_by_running_it_again() -> None:
    record = RollRecord("patch", GROUP, 3, 6, STARTED, suspended=["AZRebalance"])

    findings = attention(observe(suspended=("AZRebalance",), journal=record))

    [processes] = [f for f in findings if f.check == "processes"]
    assert processes.cause.startswith("suspended by an interrupted roll (patch)")
    assert processes.next_step.startswith("cluster patch")


def test_processes_suspended_while_a_roll_runs_are_fine() -> None:
    running = lock(expires=NOW + timedelta(hours=1))

    findings = attention(observe(suspended=("AZRebalance",), lock=running))

    assert [f.check for f in findings] == ["lock"]


def test_a_held_lock_warns_with_owner_and_since() -> None:
    finding = only(observe(lock=lock(expires=NOW + timedelta(minutes=20))))

    assert finding.severity is Severity.WARNING
    assert finding.what.startswith("a roll is running: patch by alice@laptop since 2026-11-25T10:00:00+00:00")


def test_an_expired_lock_is_a_problem_whose_next_step_breaks_it() -> None:
    finding = only(observe(lock=lock(f"replace {IDS[1]}", expires=NOW - timedelta(minutes=1))))

    assert finding.severity is Severity.PROBLEM and "expired without being released" in finding.what
    assert finding.next_step.startswith(f"cluster replace {IDS[1]} --break-lock")


def test_a_lock_whose_roll_died_on_this_machine_is_a_problem_and_rerunning_takes_it_over() -> None:
    findings = attention(
        observe(
            lock=lock(expires=NOW + timedelta(minutes=20)),
            lock_abandoned=True,
            journal=RollRecord("patch", GROUP, 3, 6, STARTED, suspended=["AZRebalance"]),
            suspended=("AZRebalance",),
        )
    )

    by_check = {finding.check: finding for finding in findings}
    assert set(by_check) == {"lock", "roll", "processes"}  # a dead roll's suspension is debris, not "for the roll"
    assert (
        by_check["lock"].severity is Severity.PROBLEM and "the roll holding the lock is gone" in by_check["lock"].what
    )
    assert by_check["lock"].next_step.startswith("cluster patch (takes the lock over")
    assert by_check["roll"].next_step.startswith("cluster patch (continues")


def test_an_interrupted_roll_names_its_hosts_and_phase_and_continues_with_the_same_command() -> None:
    flights = [Flight(IDS[0], Kind.SURGE, 1, new="i-000000000000000ff", phase=Phase.DRAINED)]

    finding = only(observe(journal=RollRecord("patch", GROUP, 3, 6, STARTED, flights=flights)))

    assert finding.severity is Severity.PROBLEM and finding.what == f"an interrupted roll: patch of {GROUP}"
    assert finding.resources == (IDS[0], "i-000000000000000ff")
    assert finding.cause == f"stopped with {IDS[0]} → i-000000000000000ff at phase drained"
    assert finding.next_step.startswith("cluster patch (continues")


def test_an_interrupted_roll_under_an_expired_lock_continues_with_break_lock() -> None:
    findings = attention(
        observe(journal=RollRecord("patch", GROUP, 3, 6, STARTED), lock=lock(expires=NOW - timedelta(minutes=1)))
    )

    [roll] = [f for f in findings if f.check == "roll"]
    assert roll.next_step.startswith("cluster patch --break-lock")


def test_an_unreadable_journal_is_a_problem() -> None:
    finding = only(observe(journal_error="/cluster/demo/roll-state cannot be read (bad JSON)"))

    assert finding.severity is Severity.PROBLEM and finding.cause.endswith("(bad JSON)")


def test_outdated_hosts_warn_and_the_next_step_is_patch() -> None:
    hosts = (host(IDS[0], fingerprint=OLD), host(IDS[1], fingerprint=OLD, protected=True), host(IDS[2]))

    finding = only(observe(hosts=hosts))

    assert finding.severity is Severity.WARNING and finding.what == "2 host(s) outdated"
    assert finding.resources == (IDS[0], IDS[1])
    assert finding.cause == f"they run {OLD}; a host launched now gets {CURRENT}; 1 of them protected from scale-in"
    assert finding.next_step == "cluster patch --include-protected"


def test_a_node_of_this_cluster_without_a_host_warns_and_other_nodes_are_left_alone() -> None:
    stray = node("i-00000000000000099", name="ip-stray.eu-west-1.compute.internal", ready=False)
    control_plane = NodeState("control-plane-1", "", (), True, False, {"node-role.kubernetes.io/control-plane": ""})
    nodes = (*(node(i) for i in IDS), stray, control_plane)

    finding = only(observe(nodes=nodes))

    assert finding.severity is Severity.WARNING and finding.resources == ("ip-stray.eu-west-1.compute.internal",)
    assert finding.cause == f"its instance i-00000000000000099 is not a member of {GROUP}"
    assert finding.next_step == "kubectl delete node ip-stray.eu-west-1.compute.internal"
    assert not attention(observe(nodes=(*(node(i) for i in IDS), control_plane)))


def test_a_host_whose_node_never_joined_is_a_problem_after_the_launch_timeout() -> None:
    booting = host(IDS[2], lifecycle_state="Pending", launched=NOW - timedelta(minutes=1))
    stuck = host(IDS[2], lifecycle_state="Pending", launched=NOW - timedelta(hours=2))
    nodes = (node(IDS[0]), node(IDS[1]))

    assert not attention(observe(hosts=(host(IDS[0]), host(IDS[1]), booting), nodes=nodes))
    finding = only(observe(hosts=(host(IDS[0]), host(IDS[1]), stuck), nodes=nodes))
    assert finding.severity is Severity.PROBLEM and finding.resources == (IDS[2],)
    assert finding.cause == "Pending since launch 2h0m ago, and no node has its id, DNS name or IP"
    assert finding.next_step == f"cluster replace {IDS[2]} --dead"


def test_next_steps_repeat_the_users_flags_config_file_endpoint_and_kubeconfig() -> None:
    invocation = Invocation(
        "--sandbox ", " -c prod.toml", " --region eu-west-1 --endpoint-url http://x", " --kubeconfig k"
    )
    stray = node("i-00000000000000099", name="ip-stray", ready=False)

    expired = only(observe(lock=lock(f"replace {IDS[0]}", expires=NOW - timedelta(seconds=1)), invocation=invocation))
    suspended = only(observe(suspended=("AZRebalance",), invocation=invocation))
    leftover = only(observe(nodes=(*(node(i) for i in IDS), stray), invocation=invocation))

    assert expired.next_step.startswith(f"cluster --sandbox replace -c prod.toml {IDS[0]} --break-lock")
    assert suspended.next_step.startswith("aws autoscaling resume-processes")
    assert suspended.next_step.endswith("AZRebalance --region eu-west-1 --endpoint-url http://x")
    assert leftover.next_step == "kubectl --kubeconfig k delete node ip-stray"


def test_the_report_orders_problems_first_and_its_json_carries_every_field() -> None:
    report = Report(
        "demo",
        "cluster-demo",
        (
            Finding(Severity.OK, "stack", "fine"),
            Finding(Severity.WARNING, "config", "old", ("i-1",), "why", "cluster patch"),
            Finding(Severity.PROBLEM, "lock", "expired", ("lock",), "crash", "cluster patch --break-lock"),
        ),
    )

    assert [finding.severity for finding in report.ordered()] == [Severity.PROBLEM, Severity.WARNING, Severity.OK]
    data = json.loads(report.to_json())
    assert data["needs_attention"] is True and (data["problems"], data["warnings"]) == (1, 1)
    assert data["findings"][0] == {
        "severity": "problem",
        "check": "lock",
        "what": "expired",
        "resources": ["lock"],
        "cause": "crash",
        "next_step": "cluster patch --break-lock",
    }
