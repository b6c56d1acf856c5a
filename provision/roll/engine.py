"""The executor: the only code that changes hosts during a roll.

For each host of the plan, in phases written to the journal before moving on (so the same command continues after a
crash or Ctrl-C): raise the desired capacity by one so the replacement launches first; wait until the new host is
InService and its node Ready; cordon the old node (ready capacity never drops below the desired capacity); drain it
through the Eviction API; wait until its pods run elsewhere; terminate it with a decrement, completing its
termination hook at once. The lock is held and the fighting processes suspended for the whole roll. When a host's
step fails, what that step started is undone (the surge host terminated, the old node uncordoned) before the error
goes up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from provision.clock import Clock, wait_until
from provision.config.schema import Rolling
from provision.errors import ClusterError
from provision.kube.drain import Drainer, DrainPolicy
from provision.kube.facade import Kube
from provision.kube.migration import migration, owners_of, ready_counts
from provision.kube.model import NodeState, Owner
from provision.roll.fleet import Fleet, Host, Snapshot
from provision.roll.journal import Journal, RollRecord
from provision.roll.lock import RunLock
from provision.roll.plan import Plan, Replacement
from provision.roll.suspension import processes_suspended
from provision.ui import UI

PHASES = ("surged", "replacement-ready", "cordoned", "drained", "migrated", "terminated")
POLL_SECONDS = 3.0  # AWS and the API server answer these reads cheaply; a roll should not lag behind them
LOCK_TTL = timedelta(hours=2)
SURGE_ANNOTATION = "cluster-autoscaler.kubernetes.io/scale-down-disabled"

Checkpoint = Callable[[str], None]


@dataclass(frozen=True)
class Replaced:
    old: str
    new: str
    old_image: str
    new_image: str
    seconds: float


@dataclass
class RollResult:
    replaced: list[Replaced] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (old, why)
    lowest_ready: int | None = None


class Roll:
    def __init__(
        self,
        fleet: Fleet,
        kube: Kube,
        journal: Journal,
        lock: RunLock,
        ui: UI,
        clock: Clock,
        rolling: Rolling,
        *,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.fleet = fleet
        self.kube = kube
        self.journal = journal
        self.lock = lock
        self.ui = ui
        self.clock = clock
        self.rolling = rolling
        self.checkpoint = checkpoint or (lambda _phase: None)
        self.result = RollResult()

    def run(self, plan: Plan, *, owner: str, break_lock: bool = False) -> RollResult:
        if not plan.replacements and self.journal.load() is None:
            return self.result  # nothing to replace and no interrupted roll to tidy up
        held = self.lock.acquire(plan.operation, owner, ttl=LOCK_TTL, break_expired=break_lock)
        try:
            record = self._record(plan)
            version = self.fleet.launch_current_configuration()
            if version:
                self.ui.say(f"the group now launches launch template version {version}, the current configuration")
            with processes_suspended(self.fleet.groups, self.journal, record) as suspended:
                self.ui.say(f"suspended {', '.join(suspended) or 'nothing'} for the roll")
                for step in self._steps(plan, record):
                    self._replace(step, record, gated=plan.gated)
                    held = self.lock.refresh(held, ttl=LOCK_TTL)
            self._restore_size(record)
            self.journal.clear()
            return self.result
        finally:
            self.lock.release(held)

    def _record(self, plan: Plan) -> RollRecord:
        record = self.journal.load()
        if record is not None and record.group == plan.group:
            doing = record.in_flight
            self.ui.say(
                f"continuing the {record.operation} that stopped"
                + (f" with {doing['old']} at phase {doing.get('phase') or 'start'}" if doing else "")
            )
            return record
        record = RollRecord(plan.operation, plan.group, plan.desired, plan.max_size)
        self.journal.save(record)
        return record

    def _steps(self, plan: Plan, record: RollRecord) -> list[Replacement]:
        """The plan, led by the host an interrupted roll left in flight when this plan would not list it (say, a
        `replace` of a current host interrupted, then a `patch`): it is finished first, never left half-done."""
        steps = list(plan.replacements)
        flying = record.in_flight.get("old", "")
        if flying and all(step.old != flying for step in steps):
            host = self.fleet.snapshot().host(flying)
            if host is not None:
                steps.insert(0, Replacement(flying, host.zone, f"left in flight by an interrupted {record.operation}"))
        return steps

    # --- one host ---

    def _replace(self, step: Replacement, record: RollRecord, *, gated: bool) -> None:
        if record.in_flight.get("old") != step.old:
            record.in_flight = {"old": step.old, "phase": ""}
        self.ui.say(f"replacing {step.old} ({step.zone}, {step.reason})")
        started = self.clock.now()
        old = self.fleet.snapshot().host(step.old)
        try:
            self._phases(step, record, gated=gated)
        except SkipHost as skip:
            self._undo(record, old_node=self._node_of(step.old))
            self.result.skipped.append((step.old, str(skip)))
            self.ui.warn(f"skipped {step.old}: {skip}")
            return
        except (KeyboardInterrupt, SystemExit):
            raise  # an interrupt leaves the journal as it is: the next run continues from here
        except BaseException:
            self._undo(record, old_node=self._node_of(step.old))
            raise
        new = record.in_flight.get("new", "")
        replacement = self.fleet.snapshot().host(new)
        self.result.replaced.append(
            Replaced(
                step.old,
                new,
                old.image if old else "",
                replacement.image if replacement else "",
                self.clock.now() - started,
            )
        )
        record.in_flight = {}
        self.journal.save(record)
        self.ui.say(f"replaced {step.old} by {new or '?'}")

    def _phases(self, step: Replacement, record: RollRecord, *, gated: bool) -> None:
        """Each phase runs unless the journal says it is done; each is safe to repeat after a crash."""
        flight = record.in_flight
        if self._before(flight, "surged"):
            self._surge(record, gated=gated)
        if self._before(flight, "replacement-ready"):
            flight["new"] = self._await_replacement(flight)
            self._advance(record, "replacement-ready")
        old_node = self._node_of(step.old)
        if self._before(flight, "cordoned"):
            if old_node is not None:
                self.kube.cordon(old_node.name)
                flight["node"] = old_node.name
            self._advance(record, "cordoned")
        if self._before(flight, "drained"):
            if not step.dead:
                owners = self._drain(step, old_node)
                flight["owners"] = ";".join(f"{o.kind}/{o.namespace}/{o.name}={n}" for o, n in owners.items())
            self._advance(record, "drained")
        if self._before(flight, "migrated"):
            self._await_migration(flight, old_node)
            self._advance(record, "migrated")
        if self._before(flight, "terminated"):
            self._terminate(step.old)
            if step.dead and flight.get("node"):
                self._clear_dead_node(flight["node"])
            self._advance(record, "terminated")

    def _before(self, flight: dict[str, str], phase: str) -> bool:
        done = flight.get("phase", "")
        return PHASES.index(phase) > (PHASES.index(done) if done else -1)

    def _advance(self, record: RollRecord, phase: str) -> None:
        record.in_flight["phase"] = phase
        self.journal.save(record)
        self._measure()
        self.checkpoint(phase)

    def _surge(self, record: RollRecord, *, gated: bool) -> None:
        if gated:
            self._gate()
        snapshot = self.fleet.snapshot()
        record.in_flight["before"] = ",".join(host.instance_id for host in snapshot.hosts)
        desired = record.original_desired + 1
        self.fleet.set_size(desired=desired, max_size=max(record.original_max, desired))
        self.ui.say(f"desired capacity {record.original_desired} → {desired}: the replacement launches first")
        self._advance(record, "surged")

    def _gate(self) -> None:
        """Before each host: the group's own nodes are Ready. Unrelated nodes elsewhere do not matter."""
        snapshot = self.fleet.snapshot()
        nodes = self._nodes(snapshot)
        sick = [h.instance_id for h in snapshot.hosts if h.lifecycle_state == "InService" and not _ready(nodes, h)]
        if sick:
            raise ClusterError(f"not starting the next host: the node of {', '.join(sick)} is not Ready")

    def _await_replacement(self, flight: dict[str, str]) -> str:
        before = set(flight.get("before", "").split(","))

        def ready_new_host() -> str | None:
            snapshot = self.fleet.snapshot()
            nodes = self._nodes(snapshot)
            for host in snapshot.hosts:
                if host.instance_id not in before and host.fingerprint != snapshot.fingerprint:
                    flight["new"] = host.instance_id
                    raise ClusterError(
                        f"the replacement {host.instance_id} launched with configuration {host.fingerprint}, not the "
                        f"current {snapshot.fingerprint}: the group does not launch the current launch template"
                    )
                if host.instance_id not in before and host.lifecycle_state == "InService" and _ready(nodes, host):
                    node = nodes[host.instance_id]
                    self.kube.annotate(node.name, {SURGE_ANNOTATION: "true"})  # no scale-down mid-roll
                    return host.instance_id
            new = [h.instance_id for h in snapshot.hosts if h.instance_id not in before]
            if new:
                flight["new"] = new[0]  # known before it is ready, so an undo can remove it
            return None

        return wait_until(
            ready_new_host,
            clock=self.clock,
            timeout=self.rolling.ready_timeout_seconds,
            interval=POLL_SECONDS,
            what="the replacement host to be InService with a Ready node",
            next_step="`cluster status` shows the new host; its boot record (cluster doctor) says why it did not join",
        )

    def _drain(self, step: Replacement, node: NodeState | None) -> dict[Owner, int]:
        """Drain the node; returns each moved pod's owner and the Ready count it had before, to get back to."""
        if node is None:
            self.ui.say(f"{step.old} has no node: nothing to drain")
            return {}
        pods = self.kube.pods(node=node.name)
        before = ready_counts(self.kube, owners_of(pods))
        policy = DrainPolicy(
            timeout_seconds=self.rolling.drain_timeout_seconds,
            on_blocked_budget=self.rolling.on_blocked_budget,
            delete_emptydir_data=self.rolling.delete_emptydir_data,
            evict_unmanaged_pods=self.rolling.evict_unmanaged_pods,
        )
        report = Drainer(self.kube, self.clock, policy).drain(node.name)
        if report.blocked:
            raise SkipHost("; ".join(blocker.explain() for blocker in report.blocked))
        self.ui.say(f"drained {node.name}: {len(report.evicted)} pod(s) evicted, {len(report.forced)} forced")
        moved = owners_of([pod for pod in pods if pod.ref in report.evicted or pod.ref in report.forced])
        return {owner: before[owner] for owner in moved}

    def _await_migration(self, flight: dict[str, str], node: NodeState | None) -> None:
        owners: dict[Owner, int | None] = {}
        for entry in filter(None, flight.get("owners", "").split(";")):
            owner, _, count = entry.partition("=")
            owners[Owner(*owner.split("/", 2))] = int(count) if count else None
        if node is None or not owners:
            return

        def migrated() -> bool | None:
            status = migration(self.kube, owners, away_from=node.name)
            return True if status.done else None

        wait_until(
            migrated,
            clock=self.clock,
            timeout=self.rolling.ready_timeout_seconds,
            interval=POLL_SECONDS,
            what=f"the pods of {node.name} to run elsewhere",
            next_step="`kubectl get pods -A --field-selector status.phase=Pending` shows what cannot be placed",
        )

    def _terminate(self, instance_id: str) -> None:
        """Terminate with a decrement; a host held in Terminating:Wait by the group's hook is drained already, so
        its lifecycle action is completed at once rather than at the hook's timeout."""
        self.fleet.terminate(instance_id)

        def gone() -> bool | None:
            host = self.fleet.snapshot().host(instance_id)
            if host is not None and host.lifecycle_state == "Terminating:Wait":
                self.fleet.complete_termination(instance_id)
            return True if host is None else None

        wait_until(
            gone,
            clock=self.clock,
            timeout=self.rolling.drain_timeout_seconds,
            interval=POLL_SECONDS,
            what=f"{instance_id} to leave the group",
            next_step="it may be in Terminating:Wait; `cluster status` shows its lifecycle state",
        )

    def _clear_dead_node(self, node: str) -> None:
        """A dead host's pods cannot be evicted; once the host is gone, delete them and its Node so the controllers
        reschedule them now rather than after the node controller's eviction timeout."""
        pods = self.kube.pods(node=node)
        for pod in pods:
            self.kube.delete_pod(pod, grace_seconds=0)
        self.kube.delete_node(node)
        self.ui.say(f"deleted {len(pods)} pod(s) of the dead node {node} and the node itself")

    # --- undo and restore ---

    def _undo(self, record: RollRecord, *, old_node: NodeState | None) -> None:
        """Undo what this host's step started: the old node back in service, the surge host gone."""
        flight = record.in_flight
        if old_node is not None and old_node.unschedulable:
            self.kube.uncordon(old_node.name)
        if flight.get("new"):
            self.fleet.terminate(flight["new"])  # with a decrement: the group returns to its size
        elif flight.get("phase"):
            self.fleet.set_size(desired=record.original_desired, max_size=record.original_max)
        record.in_flight = {}
        self.journal.save(record)

    def _restore_size(self, record: RollRecord) -> None:
        snapshot = self.fleet.snapshot()
        if (snapshot.desired, snapshot.max_size) != (record.original_desired, record.original_max):
            self.fleet.set_size(desired=record.original_desired, max_size=record.original_max)

    # --- observations ---

    def _node_of(self, instance_id: str) -> NodeState | None:
        snapshot = self.fleet.snapshot()
        host = snapshot.host(instance_id)
        if host is None:
            return None
        return self.kube.match_hosts(self.kube.nodes(), {instance_id: host.names}).get(instance_id)

    def _nodes(self, snapshot: Snapshot) -> dict[str, NodeState]:
        return self.kube.match_hosts(self.kube.nodes(), {host.instance_id: host.names for host in snapshot.hosts})

    def _measure(self) -> None:
        """Track the lowest ready capacity seen: InService hosts whose node is Ready and schedulable."""
        snapshot = self.fleet.snapshot()
        nodes = self._nodes(snapshot)
        ready = sum(
            1
            for host in snapshot.hosts
            if host.lifecycle_state == "InService" and _ready(nodes, host) and not nodes[host.instance_id].unschedulable
        )
        lowest = self.result.lowest_ready
        self.result.lowest_ready = ready if lowest is None else min(lowest, ready)


class SkipHost(ClusterError):
    """The policy says to skip a host whose drain is blocked; the roll goes on with the next one."""


def _ready(nodes: dict[str, NodeState], host: Host) -> bool:
    return host.instance_id in nodes and nodes[host.instance_id].ready
