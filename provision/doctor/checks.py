"""The checks of `cluster doctor`: each a pure function of the ``Observations`` of one gathering pass, returning its
findings (an "ok" finding when all is well), each with the cause when known and one next step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from provision import names
from provision.deploy.host_records import repair_held
from provision.deploy.report import describe_event
from provision.deploy.up import EXPLAIN, RECREATE_STATES
from provision.doctor.findings import Finding, Report, Severity, Skipped
from provision.doctor.observe import Observations
from provision.fleet.model import Snapshot
from provision.kube.model import NodeState
from provision.roll.plan import outdated

PROBLEM, WARNING, OK = Severity.PROBLEM, Severity.WARNING, Severity.OK
# A boot failure of a host that is gone still explains the next one for this long; older ones are history.
RECENT_BOOT_FAILURE = timedelta(hours=24)
# Suspended, these leave the group unable to launch, terminate or replace sick hosts.
HEALING_PROCESSES = {"Launch", "Terminate", "HealthCheck", "ReplaceUnhealthy"}
# States in which a host has no node for a reason the lifecycle check already tells.
LEAVING = {"Terminating", "Terminating:Wait", "Terminating:Proceed", "Detaching", "Pending:Wait"}


def stack_status(obs: Observations) -> list[Finding]:
    stack = obs.stack
    if stack is None:
        return [
            Finding(
                PROBLEM,
                "stack",
                f"there is no stack {obs.stack_name} in {obs.region}",
                (obs.stack_name,),
                next_step=obs.invocation.cluster("up"),
            )
        ]
    cause = describe_event(obs.stack_causes[0]) if obs.stack_causes else stack.status_reason
    resource = (stack.name,)
    if stack.status in RECREATE_STATES:
        fix = "down" if stack.status == "DELETE_FAILED" else "up"
        what = f"stack {stack.name} is {stack.status}: {EXPLAIN[stack.status]}"
        return [Finding(PROBLEM, "stack", what, resource, cause, obs.invocation.cluster(fix))]
    if stack.status == "UPDATE_ROLLBACK_FAILED":
        return [
            Finding(
                PROBLEM,
                "stack",
                f"stack {stack.name} is UPDATE_ROLLBACK_FAILED: it can be neither updated nor rolled back",
                resource,
                cause,
                obs.invocation.aws(f"cloudformation continue-update-rollback --stack-name {stack.name}")
                + " (after fixing the cause)",
            )
        ]
    if stack.status == "UPDATE_ROLLBACK_COMPLETE":
        return [
            Finding(
                WARNING,
                "stack",
                f"stack {stack.name} is UPDATE_ROLLBACK_COMPLETE: its last update failed; the old configuration runs",
                resource,
                cause,
                f"fix the cause, then {obs.invocation.cluster('up')}",
            )
        ]
    if stack.in_progress:
        return [
            Finding(
                WARNING,
                "stack",
                f"stack {stack.name} is {stack.status}: an operation is still running",
                resource,
                next_step=obs.invocation.aws(f"cloudformation describe-stack-events --stack-name {stack.name}"),
            )
        ]
    return [Finding(OK, "stack", f"stack {stack.name} is {stack.status}")]


def abandoned_launches(obs: Observations) -> list[Finding]:
    members = _members(obs.snapshot)
    findings = []
    for record in obs.boot_records:
        member = record.instance_id in members
        recent = record.at is None or obs.now - record.at <= RECENT_BOOT_FAILURE
        if not member and not recent:
            continue
        when = f" {_duration(obs.now - record.at)} ago" if record.at else ""
        what = f"launch abandoned at step {record.step} (exit {record.exit_code}){when}"
        if not member:
            what += "; the group replaced the host"
        findings.append(
            Finding(
                PROBLEM if member else WARNING,
                "boot",
                what,
                (record.instance_id,),
                cause=record.log[-1] if record.log else "the host recorded no log lines",
                next_step=obs.invocation.aws(
                    f"ssm get-parameter --name {record.parameter} --query Parameter.Value --output text"
                ),
            )
        )
    return findings or [Finding(OK, "boot", "no launch abandoned recently")]


def unhealthy_hosts(obs: Observations) -> list[Finding]:
    snapshot = _group(obs)
    findings = []
    for host in snapshot.hosts:
        record = obs.health.get(host.instance_id)
        agent = (
            f"the health agent finds {record.failed_checks} failing ({record.failures} checks in a row)"
            if record and record.failing
            else ""
        )
        if host.lifecycle_state.startswith("Terminating"):
            continue  # the group is replacing it already; the lifecycle check tells why it may be slow
        if host.health == "Unhealthy":
            cause = agent or "the group's health check (EC2 status checks, or the load balancer's) failed"
            if "ReplaceUnhealthy" in snapshot.suspended:
                cause += "; ReplaceUnhealthy is suspended, so the group will not replace it"
            findings.append(
                Finding(
                    PROBLEM,
                    "health",
                    "marked Unhealthy in its auto-scaling group",
                    (host.instance_id,),
                    cause,
                    obs.invocation.cluster(f"replace {host.instance_id}"),
                )
            )
        elif agent and host.lifecycle_state == "InService":
            findings.append(
                Finding(
                    WARNING,
                    "health",
                    "its health agent reports failing checks (not yet reported Unhealthy)",
                    (host.instance_id,),
                    agent,
                    obs.invocation.cluster(f"replace {host.instance_id}"),
                )
            )
    return findings or [Finding(OK, "health", f"{len(snapshot.hosts)} host(s) Healthy in their group")]


def held_repairs(obs: Observations) -> list[Finding]:
    """Sick hosts the storm guard holds back: more are sick than may be replaced at once."""
    snapshot = _group(obs)
    held = repair_held(snapshot, obs.repair, obs.repair_limit)
    if held is None:
        return [Finding(OK, "repair", f"no repair held (at most {obs.repair_limit} host(s) under repair at once)")]
    under = ", ".join(held.in_repair) or "none of them any more: the next check of a held host takes its turn"
    cause = f"at most {held.limit} host(s) under repair at once (health_agent.max_unhealthy); under repair: {under}"
    shared = {obs.repair[instance].why for instance in held.held if instance in obs.repair}
    if len(held.held) > 1 and len(shared) == 1 and "" not in shared:
        cause += f"; every held host has the same trouble ({shared.pop()}): one fault on many hosts, fix it first"
    step = (
        "wait: they are reported as those under repair leave; to replace one now, "
        + obs.invocation.cluster(f"replace {held.held[0]}")
        + "; to repair more at once, raise health_agent.max_unhealthy"
    )
    return [Finding(WARNING, "repair", str(held), held.held, cause, step)]


def not_ready_nodes(obs: Observations) -> list[Finding]:
    snapshot = _group(obs)
    findings = []
    in_flight = obs.hosts_in_flight()
    for host in snapshot.hosts:
        node = obs.node_of.get(host.instance_id)
        if node is None:
            continue
        resources = (host.instance_id, node.name)
        if not node.ready:
            record = obs.health.get(host.instance_id)
            cause = (
                f"the health agent finds {record.failed_checks} failing"
                if record and record.failing
                else "the kubelet stopped reporting Ready; no health record says why"
            )
            step = obs.invocation.cluster(f"replace {host.instance_id}") + " (a NotReady host is replaced as dead)"
            findings.append(Finding(PROBLEM, "nodes", f"node {node.name} is NotReady", resources, cause, step))
        elif node.unschedulable and host.instance_id not in in_flight:
            findings.append(
                Finding(
                    WARNING,
                    "nodes",
                    f"node {node.name} is cordoned and no roll is working on it",
                    resources,
                    "left cordoned by hand or by a roll that stopped",
                    obs.invocation.kubectl(f"uncordon {node.name}"),
                )
            )
    ready = sum(1 for node in obs.node_of.values() if node.ready)
    return findings or [Finding(OK, "nodes", f"{ready} node(s) of the group Ready and schedulable")]


def lifecycle_waits(obs: Observations) -> list[Finding]:
    snapshot = _group(obs)
    in_flight = obs.hosts_in_flight()
    findings = []
    for host in snapshot.hosts:
        since = obs.waiting_since.get(host.instance_id)
        if host.lifecycle_state == "Pending:Wait":
            since = since or host.launched
            waited = obs.now - since if since else None
            node = "its node has joined" if host.instance_id in obs.node_of else "no node has joined yet"
            if waited is not None and waited <= obs.launch_timeout:
                what = f"booting: waiting {_duration(waited)} for its launch hook ({node})"
                findings.append(Finding(OK, "lifecycle", what, (host.instance_id,)))
                continue
            findings.append(
                Finding(
                    PROBLEM,
                    "lifecycle",
                    f"its launch hook has waited {_for(waited)}, past the launch timeout "
                    f"({_duration(obs.launch_timeout)})",
                    (host.instance_id,),
                    f"{node}; the boot script completes the hook when the host has joined",
                    _complete(obs, snapshot.group, names.LAUNCH_HOOK, host.instance_id, "ABANDON"),
                )
            )
        elif host.lifecycle_state == "Terminating:Wait":
            waited = obs.now - since if since else None
            if obs.lock_live() and host.instance_id in in_flight:
                what = f"terminating: the running roll completes its termination hook (waiting {_for(waited)})"
                findings.append(Finding(OK, "lifecycle", what, (host.instance_id,)))
                continue
            late = waited is not None and waited > obs.terminate_timeout
            record = obs.health.get(host.instance_id)
            why = "marked Unhealthy" if host.health == "Unhealthy" else ""
            if why and record and record.failing:
                why += f" (the health agent finds {record.failed_checks} failing)"
            findings.append(
                Finding(
                    PROBLEM if late else WARNING,
                    "lifecycle",
                    f"held in Terminating:Wait for {_for(waited)}",
                    (host.instance_id,),
                    (f"{why}, so the group is replacing it; " if why else "")
                    + "nobody has completed its termination hook (is `cluster heal` running?), so it goes only "
                    f"when the hook times out ({_duration(obs.terminate_timeout)}), drained or not",
                    obs.invocation.cluster("heal --once") + " (drains it, then lets its termination go on)",
                )
            )
    return findings or [Finding(OK, "lifecycle", "no lifecycle action waiting")]


def suspended_processes(obs: Observations) -> list[Finding]:
    snapshot = _group(obs)
    suspended = list(snapshot.suspended)
    if not suspended:
        return [Finding(OK, "processes", "no scaling process suspended")]
    if obs.lock_live():
        return [Finding(OK, "processes", f"suspended for the running roll: {', '.join(suspended)}")]
    ours = obs.journal is not None and set(obs.journal.suspended) & set(suspended)
    if ours and obs.journal is not None:
        cause = f"suspended by an interrupted roll ({obs.journal.operation}), which did not resume them"
        step = _resume_roll(obs, obs.journal.operation) + " (resumes them when it finishes)"
    else:
        cause = "suspended outside a roll (by hand, or by another tool)"
        step = obs.invocation.aws(
            f"autoscaling resume-processes --auto-scaling-group-name {snapshot.group} "
            f"--scaling-processes {' '.join(suspended)}"
        )
    healing = sorted(HEALING_PROCESSES & set(suspended))
    what = f"scaling processes left suspended: {', '.join(suspended)}"
    if healing:
        what += f" (without {', '.join(healing)} the group cannot heal)"
    return [Finding(PROBLEM if healing else WARNING, "processes", what, (snapshot.group,), cause, step)]


def roll_lock(obs: Observations) -> list[Finding]:
    lock = obs.lock
    lock_name = names.roll_lock_parameter(obs.parameter_path)
    if lock is None:
        return [Finding(OK, "lock", "no roll holds the lock")]
    if lock.expired(obs.now):
        return [
            Finding(
                PROBLEM,
                "lock",
                f"the roll lock has expired without being released: {lock.describe()}",
                (lock_name,),
                "the roll that held it crashed or was killed",
                obs.invocation.cluster(f"{_operation(lock.operation)} --break-lock")
                + " (continues from its recorded progress)",
            )
        ]
    if obs.lock_abandoned:
        return [
            Finding(
                PROBLEM,
                "lock",
                f"the roll holding the lock is gone: {lock.describe()}",
                (lock_name,),
                "its process on this machine no longer runs (killed, or its terminal closed)",
                obs.invocation.cluster(_operation(lock.operation))
                + " (takes the lock over and continues from its recorded progress)",
            )
        ]
    return [
        Finding(
            WARNING,
            "lock",
            f"a roll is running: {lock.describe()}",
            (lock_name,),
            "hosts are being replaced; other rolls are refused until it ends",
            f"wait for it to end; {obs.invocation.cluster('status')} shows the hosts",
        )
    ]


def interrupted_roll(obs: Observations) -> list[Finding]:
    journal_name = names.roll_state_parameter(obs.parameter_path)
    if obs.journal_error:
        return [
            Finding(
                PROBLEM,
                "roll",
                "the roll journal cannot be read",
                (journal_name,),
                obs.journal_error,
                obs.invocation.aws(f"ssm get-parameter --name {journal_name} --query Parameter.Value --output text"),
            )
        ]
    record = obs.journal
    if record is None:
        return [Finding(OK, "roll", "no interrupted roll")]
    flights = "; ".join(
        f"{flight.old} → {flight.new or '(no replacement yet)'} at phase "
        + (flight.phase.value if flight.phase else "start")
        for flight in record.flights
    )
    if obs.lock_live():
        return [Finding(OK, "roll", f"the running roll ({record.operation}) is at: {flights or 'its start'}")]
    return [
        Finding(
            PROBLEM,
            "roll",
            f"an interrupted roll: {record.operation} of {record.group}",
            tuple(sorted(obs.hosts_in_flight())) or (journal_name,),
            f"stopped with {flights}" if flights else "stopped before its first host",
            _resume_roll(obs, record.operation) + " (continues from the recorded phase)",
        )
    ]


def outdated_hosts(obs: Observations) -> list[Finding]:
    snapshot = _group(obs)
    if not snapshot.fingerprint:
        return [Finding(OK, "config", "the launch template carries no fingerprint: cannot tell outdated hosts")]
    plan = outdated(snapshot, operation="patch", include_protected=False)
    protected = [instance for instance, why in plan.left_alone if "protected" in why]
    stale = [step.old for step in plan.replacements] + protected
    if not stale:
        return [Finding(OK, "config", f"{len(snapshot.hosts)} host(s) current ({snapshot.fingerprint})")]
    old = sorted({step.reason.removeprefix("outdated: ") for step in plan.replacements})
    cause = f"they run {', '.join(old) or 'an older configuration'}; a host launched now gets {snapshot.fingerprint}"
    step = obs.invocation.cluster("patch")
    if protected:
        cause += f"; {len(protected)} of them protected from scale-in"
        step += " --include-protected"
    return [Finding(WARNING, "config", f"{len(stale)} host(s) outdated", tuple(stale), cause, step)]


def nodes_without_host(obs: Observations) -> list[Finding]:
    snapshot = _group(obs)
    matched = {node.name for node in obs.node_of.values()}
    in_flight = obs.hosts_in_flight() if obs.lock_live() else set()
    findings = []
    others = 0
    for node in obs.nodes or ():
        if node.name in matched:
            continue
        if not _of_this_cluster(node, obs):
            others += 1
            continue
        if node.instance_id and node.instance_id in in_flight:
            continue  # the running roll's host, leaving
        cause = (
            f"its instance {node.instance_id} is not a member of {snapshot.group}"
            if node.instance_id
            else f"it carries this cluster's labels, but no providerID and no name of a host of {snapshot.group}"
        )
        findings.append(
            Finding(
                WARNING,
                "nodes",
                f"node {node.name} has no host in the group ({'Ready' if node.ready else 'NotReady'})",
                (node.name,),
                cause,
                obs.invocation.kubectl(
                    f"drain {node.name} --ignore-daemonsets"
                    # kubectl refuses pods with emptyDir data without it; the tool's own drains delete it if allowed
                    + (" --delete-emptydir-data" if obs.delete_emptydir_data else "")
                )
                + " && "
                + obs.invocation.kubectl(f"delete node {node.name}")
                if node.ready
                else obs.invocation.kubectl(f"delete node {node.name}"),
            )
        )
    note = f"; {others} other node(s) are not this group's" if others else ""
    return findings or [Finding(OK, "nodes", f"every node of the group has a host{note}")]


def hosts_without_node(obs: Observations) -> list[Finding]:
    snapshot = _group(obs)
    boot = {record.instance_id: record for record in obs.boot_records}
    findings = []
    for host in snapshot.hosts:
        if host.instance_id in obs.node_of or host.lifecycle_state in LEAVING:
            continue
        age = obs.now - host.launched if host.launched else None
        if host.lifecycle_state.startswith("Pending") and age is not None and age <= obs.launch_timeout:
            what = f"booting: launched {_duration(age)} ago, no node yet"
            findings.append(Finding(OK, "nodes", what, (host.instance_id,)))
            continue
        record = boot.get(host.instance_id)
        # A host past Pending did boot; its node may have joined and been deleted since, so say no more than "no node".
        what = "no node joined for this host" if host.lifecycle_state.startswith("Pending") else "no node for this host"
        cause = (
            f"its boot failed at step {record.step} (exit {record.exit_code})"
            if record
            else f"{host.lifecycle_state} since launch {_for(age)} ago, and no node has its id, DNS name or IP"
        )
        findings.append(
            Finding(
                PROBLEM,
                "nodes",
                f"{what} ({host.lifecycle_state})",
                (host.instance_id,),
                cause,
                obs.invocation.cluster(f"replace {host.instance_id} --dead"),
            )
        )
    return findings or [Finding(OK, "nodes", "every host of the group has a node")]


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Observations], list[Finding]]
    needs_group: bool = True
    needs_kubernetes: bool = False


CHECKS = (
    Check("stack", stack_status, needs_group=False),
    Check("abandoned launches", abandoned_launches, needs_group=False),
    Check("unhealthy hosts", unhealthy_hosts),
    Check("held repairs", held_repairs),
    Check("NotReady nodes", not_ready_nodes, needs_kubernetes=True),
    Check("lifecycle actions", lifecycle_waits),
    Check("suspended processes", suspended_processes),
    Check("roll lock", roll_lock, needs_group=False),
    Check("interrupted roll", interrupted_roll, needs_group=False),
    Check("outdated hosts", outdated_hosts),
    Check("nodes without a host", nodes_without_host, needs_kubernetes=True),
    Check("hosts without a node", hosts_without_node, needs_kubernetes=True),
)


def diagnose(obs: Observations) -> Report:
    """Run every check that the observations allow; say which could not run and why."""
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    for check in CHECKS:
        if check.needs_group and obs.snapshot is None:
            skipped.append(Skipped(check.name, obs.no_group))
        elif check.needs_kubernetes and obs.nodes is None:
            skipped.append(Skipped(check.name, obs.kube_note or "the Kubernetes API was not used"))
        else:
            findings += check.run(obs)
    return Report(obs.cluster, obs.stack_name, tuple(findings), tuple(skipped))


# --- helpers ---


def _group(obs: Observations) -> Snapshot:
    assert obs.snapshot is not None, "the runner skips checks that need the group when there is none"
    return obs.snapshot


def _members(snapshot: Snapshot | None) -> set[str]:
    return {host.instance_id for host in snapshot.hosts} if snapshot else set()


def _of_this_cluster(node: NodeState, obs: Observations) -> bool:
    """A node of this cluster's hosts: its instance carries the cluster's tag, or it carries every label the
    configuration gives the hosts' nodes. Nodes of other groups and of the control plane are none of doctor's
    business."""
    if node.instance_id and node.instance_id in obs.cluster_instances:
        return True
    return bool(obs.node_labels) and all(node.labels.get(key) == value for key, value in obs.node_labels.items())


def _operation(operation: str) -> str:
    """The verb (and host) that a lock's or journal's operation names, as the command to run again."""
    return operation if operation.partition(" ")[0] in {"patch", "replace"} else "patch"


def _resume_roll(obs: Observations, operation: str) -> str:
    expired = obs.lock is not None and obs.lock.expired(obs.now)
    return obs.invocation.cluster(_operation(operation) + (" --break-lock" if expired else ""))


def _complete(obs: Observations, group: str, hook: str, instance: str, result: str) -> str:
    return obs.invocation.aws(
        f"autoscaling complete-lifecycle-action --auto-scaling-group-name {group} --lifecycle-hook-name {hook} "
        f"--instance-id {instance} --lifecycle-action-result {result}"
    )


def _for(delta: timedelta | None) -> str:
    return _duration(delta) if delta is not None else "an unknown time"


def _duration(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"
