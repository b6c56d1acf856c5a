"""One gathering pass for `cluster doctor`: everything the checks look at, read once from AWS (the stack, the roll's
snapshot of the group with each host's health verdict, the failed boots' records, the lock and the journal) and, when
it can be reached, the Kubernetes API. The checks are pure functions of the ``Observations`` this returns.

No read grows with the fleet: the verdicts are tags of the instances the snapshot describes anyway, and the hosts'
path in SSM holds only boot failures, whose records go with their hosts (``host_records.forget_hosts``); one
GetParametersByPath (ten to a page) reads them, a single empty page for a fleet that boots well, whatever its size.
Reading them for troubled hosts only would hide the launches the group has already given up on and replaced, which
are the evidence of a broken launch configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.stacks import Stack, StackEvent
from provision.config.schema import ClusterConfig
from provision.deploy.host_records import (
    BootRecord,
    HealthRecord,
    RepairRecord,
    boot_records,
    snapshot_with_health,
)
from provision.deploy.report import root_causes
from provision.errors import ClusterError
from provision.fleet.model import Snapshot
from provision.kube.model import NodeState
from provision.roll.journal import Journal
from provision.roll.lock import Lock, RunLock
from provision.roll.state import RollRecord

if TYPE_CHECKING:
    from provision.kube.facade import Kube

# The stack events that open an operation: the root causes of the latest one are the ones that matter now.
OPERATION_STARTS = {"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "IMPORT_IN_PROGRESS"}
WAIT_STATES = {"Pending:Wait", "Terminating:Wait"}


@dataclass(frozen=True)
class Invocation:
    """How the user ran doctor, so that each next step is a command they can paste as it stands."""

    global_flags: str = ""  # e.g. "--sandbox "
    config_flag: str = ""  # e.g. " -c prod.toml"
    aws_flags: str = ""  # e.g. " --region eu-west-1 --endpoint-url http://127.0.0.1:5055"
    kubectl_flags: str = ""  # e.g. " --kubeconfig .cluster/kubeconfig"

    def cluster(self, verb_and_arguments: str) -> str:
        verb, _, rest = verb_and_arguments.partition(" ")
        return f"cluster {self.global_flags}{verb}{self.config_flag}" + (f" {rest}" if rest else "")

    def aws(self, arguments: str) -> str:
        return f"aws {arguments}{self.aws_flags}"

    def kubectl(self, arguments: str) -> str:
        return f"kubectl{self.kubectl_flags} {arguments}"


@dataclass(frozen=True)
class Observations:
    cluster: str
    region: str
    stack_name: str
    parameter_path: str
    now: datetime
    stack: Stack | None
    stack_causes: tuple[StackEvent, ...] = ()
    snapshot: Snapshot | None = None
    no_group: str = ""  # why there is no snapshot of the group
    boot_records: tuple[BootRecord, ...] = ()
    health: Mapping[str, HealthRecord] = field(default_factory=dict)
    repair: Mapping[str, RepairRecord] = field(default_factory=dict)  # instance -> where it stands with the guard
    repair_limit: int = 1  # health_agent.max_unhealthy for the group's desired capacity
    lock: Lock | None = None
    lock_abandoned: bool = False  # the lock's taker ran on this machine and is gone
    journal: RollRecord | None = None
    journal_error: str = ""  # the journal exists but cannot be read
    waiting_since: Mapping[str, datetime] = field(default_factory=dict)  # instance -> start of its lifecycle action
    nodes: tuple[NodeState, ...] | None = None  # None: the Kubernetes API could not be used
    kube_note: str = ""  # why not
    node_of: Mapping[str, NodeState] = field(default_factory=dict)  # instance -> its node
    cluster_instances: frozenset[str] = frozenset()  # live instances tagged with this cluster, members or not
    node_labels: Mapping[str, str] = field(default_factory=dict)  # the labels every host's node carries
    launch_timeout: timedelta = timedelta(seconds=900)
    terminate_timeout: timedelta = timedelta(seconds=1200)
    delete_emptydir_data: bool = True  # the drain policy (rolling.delete_emptydir_data) a suggested drain follows
    invocation: Invocation = Invocation()

    def lock_live(self) -> bool:
        """A roll holds the lock and, as far as can be told, still runs."""
        return self.lock is not None and not self.lock.expired(self.now) and not self.lock_abandoned

    def hosts_in_flight(self) -> set[str]:
        """The old hosts and replacements the journal's roll was working on."""
        return self.journal.hosts_in_flight() if self.journal else set()


def gather(
    config: ClusterConfig,
    cloud: Cloud,
    *,
    now: datetime,
    kube: Kube | None,
    kube_note: str = "",
    invocation: Invocation | None = None,
) -> Observations:
    parameters = cloud.parameters
    stack = cloud.stacks.find(config.stack_name)
    records = parameters.values_under(names.host_records_path(config.parameter_path))
    journal_store, run_lock = Journal(parameters, config.parameter_path), RunLock(parameters, config.parameter_path)
    stored = parameters.values([journal_store.name, run_lock.name])  # both in one call
    journal, journal_error = _journal(journal_store, stored.get(journal_store.name))
    lock = run_lock.parse(stored.get(run_lock.name))
    seen, no_group = None, f"there is no stack {config.stack_name}"
    if stack is not None:
        try:
            seen, no_group = snapshot_with_health(cloud, config.stack_name, kube, described=stack), ""
        except ClusterError as error:
            no_group = str(error)
    snapshot = seen.snapshot if seen else None
    nodes: tuple[NodeState, ...] | None = None
    node_of: dict[str, NodeState] = {}
    cluster_instances: frozenset[str] = frozenset()
    if kube is not None:
        nodes = snapshot.nodes if snapshot is not None else tuple(kube.nodes())
        node_of = {host.instance_id: host.node for host in snapshot.hosts if host.node} if snapshot else {}
        # The snapshot's first look described every instance of the cluster, members or not.
        cluster_instances = (
            seen.cluster_instances if seen else frozenset(cloud.instances.of_cluster(names.CLUSTER_TAG, config.name))
        )
    waiting = [host for host in snapshot.hosts if host.lifecycle_state in WAIT_STATES] if snapshot else []
    return Observations(
        cluster=config.name,
        region=config.region,
        stack_name=config.stack_name,
        parameter_path=config.parameter_path,
        now=now,
        stack=stack,
        stack_causes=_latest_causes(cloud, stack) if stack and _failed(stack) else (),
        snapshot=snapshot,
        no_group=no_group,
        boot_records=tuple(boot_records(records, config.parameter_path)),
        health=seen.health if seen else {},
        repair=seen.repair if seen else {},
        repair_limit=config.health_agent.repair_limit(snapshot.desired if snapshot else 0),
        lock=lock,
        lock_abandoned=lock is not None and lock.abandoned(),
        journal=journal,
        journal_error=journal_error,
        # When each waiting host's activity began: one call, and only when some host waits.
        waiting_since=cloud.groups.activities_in_progress(snapshot.group) if snapshot and waiting else {},
        nodes=nodes,
        kube_note=kube_note if kube is None else "",
        node_of=node_of,
        cluster_instances=cluster_instances,
        node_labels=dict(config.hosts.labels),
        launch_timeout=timedelta(seconds=config.lifecycle.launch_timeout_seconds),
        terminate_timeout=timedelta(seconds=config.lifecycle.terminate_timeout_seconds),
        delete_emptydir_data=config.rolling.delete_emptydir_data,
        invocation=invocation or Invocation(),
    )


def _failed(stack: Stack) -> bool:
    return "FAILED" in stack.status or "ROLLBACK" in stack.status


def _latest_causes(cloud: Cloud, stack: Stack) -> tuple[StackEvent, ...]:
    """The root causes of the stack's latest operation (all of its history's when that cannot be told apart)."""
    events = cloud.stacks.events(stack.stack_id, after=None)
    starts = [
        index
        for index, event in enumerate(events)
        if event.resource_type == "AWS::CloudFormation::Stack" and event.status in OPERATION_STARTS
    ]
    latest = root_causes(events[starts[-1] :]) if starts else []
    return tuple(latest or root_causes(events))


def _journal(journal: Journal, raw: str | None) -> tuple[RollRecord | None, str]:
    try:
        return journal.parse(raw), ""
    except (ValueError, TypeError) as error:  # written by another version, or damaged
        return None, f"{journal.name} cannot be read ({error})"
