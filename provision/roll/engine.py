"""The executor: the only code that changes hosts during a roll.

For each host of the plan, in phases written to the journal before moving on (so the same command continues after a
crash or Ctrl-C): raise the desired capacity so its replacement launches first; wait until the new host is InService
and its node Ready; cordon the old node (ready capacity never drops below the desired capacity); drain it through the
Eviction API; wait until its pods run elsewhere; terminate it with a decrement, completing its termination hook at
once. Hosts go through this as a pipeline: up to ``surge`` replacements boot at once, their old hosts are cordoned
together and drained together once every one of them has its replacement Ready, and, with overlap, the next ones boot
while these drain, so a roll takes about as long as its boots rather than boots plus drains.
The lock is held and the fighting processes suspended for the whole roll. When a host's step fails, what the roll
started is undone (surge hosts terminated, old nodes uncordoned) before the error goes up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from provision.clock import Clock, WaitTimeout, wait_until
from provision.config.schema import Rolling
from provision.errors import ClusterError
from provision.kube.drain import Drainer
from provision.kube.facade import Kube
from provision.kube.migration import migration, owners_of, ready_counts
from provision.kube.model import NodeState, Owner
from provision.kube.removal import clear_dead_node, drain_policy
from provision.roll.fleet import Fleet, Host, Snapshot
from provision.roll.journal import Journal, RollRecord
from provision.roll.lock import Lock, RunLock
from provision.roll.plan import Plan, Replacement
from provision.roll.suspension import processes_suspended
from provision.ui import UI

PHASES = ("surged", "replacement-ready", "cordoned", "drained", "migrated", "terminated")
GATE_CONFIRMATIONS = 2  # as kops validates twice: one Ready answer from a flapping node is not enough
POLL_SECONDS = 3.0  # AWS and the API server answer these reads cheaply; a roll should not lag behind them
SURGE_VISIBLE_SECONDS = 60.0  # a launched instance is listed by its group within seconds; past this it never was
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
        self._started: dict[str, float] = {}  # old host -> when its replacement launched, for the closing table

    def run(self, plan: Plan, *, owner: str, break_lock: bool = False, held: Lock | None = None) -> RollResult:
        """Carry out the plan. ``held``: the run lock, when the caller took it earlier (``patch`` holds it across its
        stack update); it is released here either way."""
        if held is None and not plan.replacements and self.journal.load() is None:
            return self.result  # nothing to replace and no interrupted roll to tidy up
        held = held or self.lock.acquire(plan.operation, owner, ttl=LOCK_TTL, break_expired=break_lock)
        try:
            self.checkpoint("locked")
            record = self._record(plan)
            version = self.fleet.launch_current_configuration()
            if version:
                self.ui.say(f"the group now launches launch template version {version}, the current configuration")
            with processes_suspended(self.fleet.groups, self.journal, record) as suspended:
                self.ui.say(f"suspended {', '.join(suspended) or 'nothing'} for the roll")
                try:
                    self._pipeline(plan, record, held)
                except (KeyboardInterrupt, SystemExit):
                    raise  # the roll is not over: its new hosts stay marked until the rerun finishes
                except BaseException:
                    self._unmark(record)
                    raise
                self._unmark(record)
                self.checkpoint("restoring")  # every host done; the processes and the size are restored next
            self._restore_size(record)
            self.journal.clear()
            return self.result
        finally:
            self.lock.release(held)

    def _record(self, plan: Plan) -> RollRecord:
        """The interrupted roll's record, when there is one for this group; hosts it left in flight are finished
        first, even when this plan would not list them (say, a `replace` of a current host interrupted, then a
        `patch`), so nothing is left half-done."""
        record = self.journal.load()
        if record is not None and record.group == plan.group:
            doing = ", ".join(f"{flight['old']} at phase {flight.get('phase') or 'start'}" for flight in record.flights)
            self.ui.say(f"continuing the {record.operation} that stopped" + (f" with {doing}" if doing else ""))
            # A crash between writing a flight and raising the size left its replacement unlaunched: launch it.
            snapshot = self.fleet.snapshot()
            surged = _surged_size(record, snapshot)
            if snapshot.desired < surged:
                self.fleet.set_size(desired=surged, max_size=max(record.original_max, surged))
            return record
        record = RollRecord(plan.operation, plan.group, plan.desired, plan.max_size)
        self.journal.save(record)
        return record

    # --- the pipeline ---

    def _pipeline(self, plan: Plan, record: RollRecord, held: Lock) -> None:
        """The hosts an interrupted run left in flight, then the plan's others, as a pipeline (see ``_launch``)."""
        pending = deque(plan.excluding(record.not_to_plan()).replacements)
        while pending or record.flights:
            try:
                self._launch(pending, record, plan)
            except (KeyboardInterrupt, SystemExit):
                raise  # the journal knows the hosts in flight: the next run continues them
            except BaseException:
                self._undo(list(record.flights), record)
                raise
            self._finish(record.flights[: plan.surge], record, plan, pending)
            held = self.lock.refresh(held, ttl=LOCK_TTL)

    def _launch(self, pending: deque[Replacement], record: RollRecord, plan: Plan) -> None:
        """Start replacements while the plan's surge allows: at most ``surge`` booting, and (with overlap) as many
        again whose old hosts drain. A failed gate stops the roll only when nothing is in flight; otherwise the
        hosts in flight finish first and the gate is tried again."""
        booting = sum(1 for flight in record.flights if self._before(flight, "replacement-ready"))
        room = min(plan.surge - booting, plan.surge * (2 if plan.overlap else 1) - len(record.flights), len(pending))
        if room <= 0:
            return
        if plan.gated:
            if not record.flights:
                self._await_steady_group(record)
            elif self._sick_group_nodes(record):
                return  # the hosts in flight go on; the gate is tried again when the next one is Ready
        snapshot = self.fleet.snapshot()
        before = ",".join(host.instance_id for host in snapshot.hosts)
        for step in (pending.popleft() for _ in range(room)):
            flight = {"old": step.old, "phase": "surged", "before": before, "zone": step.zone, "reason": step.reason}
            record.flights.append(flight | ({"dead": "yes"} if step.dead else {}))
            self._started[step.old] = self.clock.now()
        desired = _surged_size(record, snapshot)
        self.journal.save(record)  # the flights are known before the group grows, so an undo finds their hosts
        self.fleet.set_size(desired=desired, max_size=max(record.original_max, desired))
        self.ui.say(f"desired capacity {desired - room} → {desired}: {room} replacement(s) launch first")
        self._measure()
        self.checkpoint("surged")

    def _finish(self, batch: list[dict[str, str]], record: RollRecord, plan: Plan, pending: deque[Replacement]) -> None:
        """Take the oldest hosts in flight (up to the surge: they launched their replacements together) through their
        remaining phases together. A blocked drain under the skip policy undoes that host only; any other failure
        undoes every host in flight and stops the roll."""
        started: dict[str, float] = {}
        old_hosts: dict[str, Host | None] = {}
        snapshot = self.fleet.snapshot()
        for flight in batch:
            old = flight["old"]
            self.ui.say(f"replacing {old} ({flight.get('zone', '?')}, {flight.get('reason', 'in flight')})")
            started[old] = self._started.setdefault(old, self.clock.now())
            old_hosts[old] = snapshot.host(old)
        try:
            skipped = self._phases(batch, record, after_ready=lambda: self._launch(pending, record, plan))
        except (KeyboardInterrupt, SystemExit):
            raise  # an interrupt leaves the journal as it is: the next run continues from here
        except BaseException:
            self._undo(list(record.flights), record)
            raise
        snapshot = self.fleet.snapshot()
        for flight in batch:
            old = flight["old"]
            if old in skipped:
                continue
            new = flight.get("new", "")
            record.replacements.append(new)  # taken: no later host in flight may claim it
            old_host, replacement = old_hosts[old], snapshot.host(new)
            self.result.replaced.append(
                Replaced(
                    old,
                    new,
                    old_host.image if old_host else "",
                    replacement.image if replacement else "",
                    self.clock.now() - started[old],
                )
            )
            record.flights.remove(flight)
            self.journal.save(record)
            self.ui.say(f"replaced {old} by {new or '?'}")

    def _phases(
        self, batch: list[dict[str, str]], record: RollRecord, *, after_ready: Callable[[], None]
    ) -> dict[str, str]:
        """Each phase runs for every host of the batch unless the journal says it is done for that host; each is safe
        to repeat after a crash. Returns the hosts the skip policy gave up on (undone already), with why."""
        for flight in batch:
            if self._before(flight, "replacement-ready"):
                flight["new"] = self._await_replacement(flight, record)
                self._advance(record, flight, "replacement-ready")
        if any(self._before(flight, "cordoned") for flight in batch):
            after_ready()  # the next replacements boot while these hosts drain
        # Every old node of the batch is cordoned before any drains, so no pod moves from one onto another; each
        # has its own Ready replacement, so ready capacity stays at the desired capacity.
        nodes = {flight["old"]: self._node_of(flight["old"]) for flight in batch}
        for flight in batch:
            if self._before(flight, "cordoned"):
                node = nodes[flight["old"]]
                if node is not None:
                    self.kube.cordon(node.name)
                    flight["node"] = node.name
                self._advance(record, flight, "cordoned")
        skipped = self._drain_phase(batch, record, nodes)
        batch = [flight for flight in batch if flight["old"] not in skipped]
        for flight in batch:
            if self._before(flight, "migrated"):
                self._await_migration(flight, nodes[flight["old"]])
                self._advance(record, flight, "migrated")
        for flight in batch:
            if self._before(flight, "terminated"):
                self._terminate(flight["old"])
                if flight.get("dead") and flight.get("node"):
                    deleted = clear_dead_node(self.kube, flight["node"])
                    self.ui.say(f"deleted {deleted} pod(s) of the dead node {flight['node']} and the node itself")
                self._advance(record, flight, "terminated")
        return skipped

    def _before(self, flight: dict[str, str], phase: str) -> bool:
        done = flight.get("phase", "")
        return PHASES.index(phase) > (PHASES.index(done) if done else -1)

    def _advance(self, record: RollRecord, flight: dict[str, str], phase: str) -> None:
        flight["phase"] = phase
        self.journal.save(record)
        self._measure()
        self.checkpoint(phase)

    def _await_steady_group(self, record: RollRecord) -> None:
        """The gate with nothing in flight: the group's nodes Ready in ``GATE_CONFIRMATIONS`` checks in a row, so a
        node that flaps does not let the roll take the next host at the wrong moment. A node that stays NotReady
        until the deadline stops the roll, naming it."""
        streak = 0
        sick: list[str] = []

        def steady() -> bool | None:
            nonlocal streak, sick
            now_sick = self._sick_group_nodes(record)
            if now_sick and now_sick != sick:
                self.ui.say(f"waiting for the node of {', '.join(now_sick)} to be Ready before the next host")
            sick, streak = (now_sick or sick), (0 if now_sick else streak + 1)
            return True if streak >= GATE_CONFIRMATIONS else None

        try:
            wait_until(
                steady,
                clock=self.clock,
                timeout=self.rolling.ready_timeout_seconds,
                interval=POLL_SECONDS,
                what="the group's nodes to be Ready",
                next_step="",
            )
        except WaitTimeout as timeout:
            raise ClusterError(
                f"not starting the next host: the node of {', '.join(sick) or '?'} is not Ready (waited "
                f"{self.rolling.ready_timeout_seconds}s); `cluster replace` it first, or find why with `cluster doctor`"
            ) from timeout

    def _sick_group_nodes(self, record: RollRecord) -> list[str]:
        """The gate before each host: the group's own InService hosts whose node is not Ready (hosts this roll is
        already replacing excepted: their replacement is under way). Unrelated nodes elsewhere do not matter."""
        snapshot = self.fleet.snapshot()
        nodes, replacing = self._nodes(snapshot), record.olds()
        return [
            host.instance_id
            for host in snapshot.hosts
            if host.lifecycle_state == "InService" and not _ready(nodes, host) and host.instance_id not in replacing
        ]

    def _await_replacement(self, flight: dict[str, str], record: RollRecord) -> str:
        """The flight's replacement (see ``_claim``), once it is InService with a Ready node."""

        def ready_new_host() -> str | None:
            snapshot = self.fleet.snapshot()
            host = self._claim(flight, record, snapshot)
            if host is None:
                return None
            if host.fingerprint != snapshot.fingerprint:
                raise ClusterError(
                    f"the replacement {host.instance_id} launched with configuration {host.fingerprint}, not the "
                    f"current {snapshot.fingerprint}: the group does not launch the current launch template"
                )
            nodes = self._nodes(snapshot)
            if host.lifecycle_state != "InService" or not _ready(nodes, host):
                return None
            self.kube.annotate(nodes[host.instance_id].name, {SURGE_ANNOTATION: "true"})  # no scale-down mid-roll
            return host.instance_id

        return wait_until(
            ready_new_host,
            clock=self.clock,
            timeout=self.rolling.ready_timeout_seconds,
            interval=POLL_SECONDS,
            what="the replacement host to be InService with a Ready node",
            next_step="`cluster status` shows the new host; its boot record (cluster doctor) says why it did not join",
        )

    def _claim(self, flight: dict[str, str], record: RollRecord, snapshot: Snapshot) -> Host | None:
        """The flight's replacement: a host that was not in the group when the flight launched and that no other
        flight has taken (replacements are interchangeable). Claimed as soon as it is seen, before it is ready, so
        an undo can remove it."""
        if flight.get("new"):
            host = snapshot.host(flight["new"])
            if host is not None:
                return host
            del flight["new"]  # its launch was abandoned and it is gone: the group launches another
        before = set(flight.get("before", "").split(","))
        taken = {other.get("new") for other in record.flights} | set(record.replacements)
        for host in snapshot.hosts:
            if host.instance_id not in before and host.instance_id not in taken:
                flight["new"] = host.instance_id
                self.journal.save(record)
                return host
        return None

    def _drain_phase(
        self, batch: list[dict[str, str]], record: RollRecord, nodes: dict[str, NodeState | None]
    ) -> dict[str, str]:
        """The batch's hosts not drained yet drained together (a dead host's pods cannot be evicted: it has nothing
        to do here). Hosts the skip policy gives up on are undone and returned, with why."""
        draining = [flight for flight in batch if self._before(flight, "drained")]
        skipped = self._drain([flight for flight in draining if not flight.get("dead")], nodes)
        for flight in draining:
            if flight["old"] not in skipped:
                self._advance(record, flight, "drained")
        for flight in [flight for flight in batch if flight["old"] in skipped]:
            self._undo([flight], record)
            self.result.skipped.append((flight["old"], skipped[flight["old"]]))
            self.ui.warn(f"skipped {flight['old']}: {skipped[flight['old']]}")
        return skipped

    def _drain(self, flights: list[dict[str, str]], nodes: dict[str, NodeState | None]) -> dict[str, str]:
        """Drain these hosts' nodes together. Each flight records its moved pods' owners and the Ready count each had
        before, to get back to. Returns the hosts whose drain the skip policy gave up on, with the blockers."""
        by_node: dict[str, dict[str, str]] = {}
        for flight in flights:
            node = nodes[flight["old"]]
            if node is None:
                self.ui.say(f"{flight['old']} has no node: nothing to drain")
            else:
                by_node[node.name] = flight
        if not by_node:
            return {}
        pods = {name: self.kube.pods(node=name) for name in by_node}
        before = ready_counts(self.kube, owners_of([pod for listed in pods.values() for pod in listed]))
        reports = Drainer(self.kube, self.clock, drain_policy(self.rolling)).drain_all(list(by_node))
        skipped: dict[str, str] = {}
        for report in reports:
            flight = by_node[report.node]
            if report.skipped:
                skipped[flight["old"]] = "; ".join(blocker.explain() for blocker in report.blocked)
                continue
            self.ui.say(f"drained {report.node}: {len(report.evicted)} pod(s) evicted, {len(report.forced)} forced")
            moved = owners_of([pod for pod in pods[report.node] if pod.ref in {*report.evicted, *report.forced}])
            flight["owners"] = ";".join(f"{o.kind}/{o.namespace}/{o.name}={before[o]}" for o in moved)
        return skipped

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

    # --- undo and restore ---

    def _undo(self, flights: list[dict[str, str]], record: RollRecord) -> None:
        """Undo what these hosts' steps started: their old nodes back in service, their surge hosts gone."""
        for flight in reversed(flights):
            if flight["phase"] != "terminated":  # else its old host is gone and its replacement is in service
                old_node = self._node_of(flight["old"])
                if old_node is not None and old_node.unschedulable:
                    self.kube.uncordon(old_node.name)
                surge_host = self._await_surge_host(flight, record)
                if surge_host is not None:
                    self._remove_surge_host(surge_host)
            record.flights.remove(flight)
        # What is still above the size is surge the group has not launched yet (or never will): lower the size.
        snapshot = self.fleet.snapshot()
        target = _surged_size(record, snapshot)
        if snapshot.desired > target:
            self.fleet.set_size(desired=target, max_size=max(record.original_max, target))
        self.journal.save(record)

    def _await_surge_host(self, flight: dict[str, str], record: RollRecord) -> str | None:
        """The flight's surge host, waiting a little for one AWS has not listed yet: lowering the size instead would
        let the group's termination policy pick an old, undrained host."""

        def claimed() -> str | None:
            host = self._claim(flight, record, self.fleet.snapshot())
            return host.instance_id if host else None

        try:
            return wait_until(
                claimed,
                clock=self.clock,
                timeout=SURGE_VISIBLE_SECONDS,
                interval=POLL_SECONDS,
                what="the surge host to be listed",
                next_step="",
            )
        except WaitTimeout:
            return None

    def _remove_surge_host(self, instance_id: str) -> None:
        """Drain a surge host (pods may have moved onto it) and terminate it with a decrement, completing its hook.
        If its pods cannot move, it stays, uncordoned, and the user is told: capacity is kept, no budget broken."""
        node = self._node_of(instance_id)
        try:
            if node is not None:
                Drainer(self.kube, self.clock, drain_policy(self.rolling)).drain(node.name)
            self._terminate(instance_id)
        except ClusterError as error:
            if node is not None:
                self.kube.uncordon(node.name)
            self.ui.warn(f"left the surge host {instance_id} running, the group one host larger: {error}")

    def _unmark(self, record: RollRecord) -> None:
        """The roll is over: its new hosts are ordinary members again, which cluster-autoscaler may scale down. A
        failure here only warns: it must not hide the error that ended the roll, nor leave the roll unfinished."""
        try:
            nodes = self._nodes(self.fleet.snapshot())
            for instance_id in record.replacements:
                if instance_id in nodes:
                    self.kube.annotate(nodes[instance_id].name, {SURGE_ANNOTATION: None})
        except Exception as error:
            self.ui.warn(f"could not remove {SURGE_ANNOTATION} from the new hosts' nodes: {error}")

    def _restore_size(self, record: RollRecord) -> None:
        """Every host's decrement has brought the desired capacity back; only the maximum is put back. A desired
        capacity that differs was changed by something else (an autoscaler, a person, a surge host that could not
        be drained): it is left as it is, since lowering it would let the group terminate a host of its own choosing,
        undrained."""
        snapshot = self.fleet.snapshot()
        if snapshot.desired != record.original_desired:
            self.ui.warn(
                f"the group's desired capacity is {snapshot.desired}, not the {record.original_desired} it had before "
                "the roll; left as it is (`cluster status` shows its hosts)"
            )
        max_size = max(record.original_max, snapshot.desired)
        if snapshot.max_size != max_size:
            self.fleet.set_size(desired=snapshot.desired, max_size=max_size)

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


def _surged_size(record: RollRecord, snapshot: Snapshot) -> int:
    """The group's size with the roll's surge: one more host for each host in flight whose old host still serves. An
    old host terminated already (its decrement made, perhaps by a run killed before it could journal that) counts no
    more, else the next run would launch a host too many."""
    olds = [snapshot.host(flight["old"]) for flight in record.flights]
    return record.original_desired + sum(
        1 for old in olds if old is not None and not old.lifecycle_state.startswith("Terminating")
    )


def _ready(nodes: dict[str, NodeState], host: Host) -> bool:
    return host.instance_id in nodes and nodes[host.instance_id].ready
