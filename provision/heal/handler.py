"""What `cluster heal` does with one lifecycle event, and nothing about queues.

A terminating host of this cluster's group: cordon, drain under the budgets with the roll's drain policy (a dead or
NotReady node, or one carrying a condition of ``health_agent.node_conditions``, takes the fast path: its pods and Node
object are deleted), heartbeats to the hook while the drain runs,
then CONTINUE. A launching host: report it joined, or why it did not (the step and log tail its boot record holds).

Every decision is safe to repeat, because a message may come twice, late or out of order: a host already gone, an
action already completed ("No active Lifecycle Action found"), another group's host and the test notification are
logged and dropped. A drain that cannot finish stops heartbeating and is left to the hook's timeout, whose default
result lets the termination go on: capacity recovery is never blocked for good. While a roll holds the cluster's
lock, the hosts its journal names are the roll's: it drains and completes them itself.

Hosts that leave together (a scale-in of several, a lower desired capacity) are drained one at a time, in the order
their messages came: all their nodes are cordoned before the first drain, so no pod is moved onto a host about to go,
and the hooks of those waiting their turn get heartbeats on the same cadence as the one draining.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from provision import names
from provision.clock import Clock
from provision.config.schema import Rolling
from provision.deploy.host_records import boot_record, forget_hosts
from provision.errors import ClusterError
from provision.fleet.model import Host, Snapshot
from provision.heal.actionlog import ActionLog
from provision.heal.events import LifecycleEvent
from provision.heal.repair import node_trouble
from provision.kube.drain import DrainBlocked, Drainer
from provision.kube.facade import Kube
from provision.kube.removal import clear_dead_node, drain_policy
from provision.roll.journal import Journal
from provision.roll.lock import RunLock

HEARTBEATS_PER_TIMEOUT = 3  # a heartbeat every third of the hook's timeout: two may be lost before it runs out
LATE_MARGIN = 60.0  # a message left for the hook's timeout comes back this long after it, to find the host gone
LOG_TAIL_LINES = 5
COMPLETED_KEPT = 4096


class Fleet(Protocol):
    """The group as heal sees it (``provision.fleet.observe.Fleet`` with the nodes: every host joined to its node)."""

    group: str

    def snapshot(self) -> Snapshot: ...


class LifecycleActions(Protocol):
    """``provision.aws.groups.Groups``: False when no action waits any more."""

    def complete_action(
        self, name: str, hook: str, instance_id: str, token: str, result: Literal["CONTINUE", "ABANDON"]
    ) -> bool: ...

    def heartbeat(self, name: str, hook: str, instance_id: str, token: str) -> bool: ...


class Records(Protocol):
    """``provision.aws.parameters.Parameters``: where hosts keep their boot records."""

    def value(self, name: str) -> str | None: ...

    def delete(self, names: list[str]) -> None: ...


RollHosts = Callable[[], set[str]]  # the hosts a roll in progress owns (empty when no roll holds the lock)
Tick = Callable[[], None]  # called between the drain's waits: extends the message's visibility, may raise to stop


@dataclass(frozen=True)
class Outcome:
    """What becomes of the message: ``done`` (delete it), ``later`` (hide it for ``seconds``, then see again),
    ``watch`` (keep it and look again soon: a launch not settled yet)."""

    verdict: Literal["done", "later", "watch"]
    seconds: float = 0.0


DONE = Outcome("done")


@dataclass(frozen=True)
class Timeouts:
    heartbeat: float  # the terminate hook's heartbeat timeout (lifecycle.terminate_timeout_seconds)
    launch: float  # the launch hook's (lifecycle.launch_timeout_seconds)

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat / HEARTBEATS_PER_TIMEOUT


@dataclass
class Handler:
    fleet: Fleet
    actions: LifecycleActions
    kube: Kube
    records: Records
    roll_hosts: RollHosts
    clock: Clock
    log: ActionLog
    rolling: Rolling
    timeouts: Timeouts
    parameter_path: str
    # Node conditions that mean a broken node when True (health_agent.node_conditions): such a node, like a NotReady
    # one, takes the dead-node fast path, as the host heal reported for it does.
    node_conditions: tuple[str, ...] = ()
    # Event keys this process has finished, newest last; a duplicate usually follows within minutes, so the newest
    # few thousand are enough (an older duplicate is still safe: its host is gone or its action completed).
    completed: dict[tuple[str, str, str], None] = field(default_factory=dict)
    first_seen: dict[tuple[str, str, str], float] = field(default_factory=dict)  # launches being watched
    # The boot records of hosts that left, removed from SSM as they went, kept here for a launch message that comes
    # after its host's terminate message (messages come in any order); the newest few thousand, as for `completed`.
    departed: dict[str, str] = field(default_factory=dict)
    # Terminations received with others, by event key, until their turn: their hooks get heartbeats meanwhile.
    waiting: dict[tuple[str, str, str], Heartbeats] = field(default_factory=dict)

    def leaving_together(self, events: Sequence[LifecycleEvent]) -> None:
        """The events received together, before any is handled. When several are terminations of this group's hosts
        (not the roll's, each in Terminating:Wait), every one of their nodes is cordoned now, so pods evicted from the
        first are not rescheduled onto another about to go, and each waits in ``waiting`` until ``handle`` takes it."""
        self.waiting = {}
        leaving = {
            event.key: event
            for event in events
            if event.kind == "terminate" and event.group == self.fleet.group and event.key not in self.completed
        }
        if len(leaving) < 2:
            return  # one termination: handle cordons it when it drains, as always
        owned = self.roll_hosts()
        snapshot = self.fleet.snapshot()
        hosts = {
            key: host
            for key, event in leaving.items()
            if event.instance_id not in owned
            and (host := snapshot.host(event.instance_id)) is not None
            and host.lifecycle_state == "Terminating:Wait"
        }
        if len(hosts) < 2:
            return
        for key, host in hosts.items():
            node = host.node
            if node is not None and not node.unschedulable:
                self.kube.cordon(node.name)
                self.log("cordon", instance=host.instance_id, node=node.name, leaving=len(hosts))
            beats = Heartbeats(self, leaving[key])
            beats.beat()  # how long it waited in the queue is unknown: its hook's timeout starts again from now
            self.waiting[key] = beats

    @property
    def groups(self) -> tuple[str, ...]:
        return (self.fleet.group,)

    def handle(self, event: LifecycleEvent, tick: Tick) -> Outcome:
        beats = self.waiting.pop(event.key, None)  # its turn: heartbeats from its own drain from now on
        if event.kind == "test":
            self.log("test-notification", group=event.group or None, result="dropped")
            return DONE
        if event.group != self.fleet.group:
            self.log("other-group", instance=event.instance_id, group=event.group, result="dropped")
            return DONE
        if event.key in self.completed:
            self.log("duplicate", instance=event.instance_id, kind=event.kind, result="dropped")
            return DONE
        if event.instance_id in self.roll_hosts():
            self.log("left-to-roll", instance=event.instance_id, kind=event.kind, result="dropped")
            return DONE
        if event.kind == "launch":
            return self._launch(event)
        return self._terminate(event, tick, beats or Heartbeats(self, event))

    # --- terminating hosts ---

    def _terminate(self, event: LifecycleEvent, tick: Tick, beats: Heartbeats) -> Outcome:
        host = self.fleet.snapshot().host(event.instance_id)
        if host is None:
            self.log("gone", instance=event.instance_id, result="dropped")
            return self._gone(event)
        if host.lifecycle_state != "Terminating:Wait":
            # Terminating:Proceed: completed already; anything else: not (or no longer) waiting to terminate.
            self.log("not-waiting", instance=host.instance_id, state=host.lifecycle_state, result="dropped")
            return self._finished(event)
        node = host.node
        trouble = node_trouble(node, self.node_conditions) if node is not None else None
        if node is None:
            self.log("no-node", instance=host.instance_id, result="nothing to drain")
        elif not node.ready or trouble is not None:
            deleted = clear_dead_node(self.kube, node.name)
            self.log("dead-node-cleared", instance=host.instance_id, node=node.name, why=trouble, pods_deleted=deleted)
        else:
            if not node.unschedulable:  # else cordoned already, with the hosts that leave with it (or by a person)
                self.log("cordon", instance=host.instance_id, node=node.name)
            blocked = self._drain(event, host, node.name, tick, beats)
            if blocked is not None:
                return blocked
        return self._complete(event)

    def _drain(self, event: LifecycleEvent, host: Host, node: str, tick: Tick, beats: Heartbeats) -> Outcome | None:
        """Drain while heartbeating, to this host's hook and to those of the hosts waiting their turn; None when
        drained, else the outcome that leaves the host to the hook."""
        beats.beat()
        started = self.clock.now()

        def between_waits() -> None:
            for due in (beats, *self.waiting.values()):
                due.due()
            tick()

        drainer = Drainer(self.kube, _Paced(self.clock, between_waits), drain_policy(self.rolling))
        try:
            report = drainer.drain(node)
        except DrainBlocked as blocked:
            blockers = " | ".join(b.explain() for kept in blocked.reports for b in kept.blocked)
            return self._leave_to_timeout(event, host, node, beats, blockers)
        except ClusterError as error:  # pods the policy refuses to evict, pods that never go away
            return self._leave_to_timeout(event, host, node, beats, str(error))
        if report.skipped:  # on_blocked_budget = "skip"
            blockers = " | ".join(blocker.explain() for blocker in report.blocked)
            return self._leave_to_timeout(event, host, node, beats, blockers)
        self.log(
            "drained",
            instance=host.instance_id,
            node=node,
            evicted=len(report.evicted),
            forced=len(report.forced) or None,
            seconds=round(self.clock.now() - started),
            heartbeats=beats.sent,
        )
        return None

    def _leave_to_timeout(
        self, event: LifecycleEvent, host: Host, node: str, beats: Heartbeats, blockers: str
    ) -> Outcome:
        remaining = max(beats.last + self.timeouts.heartbeat - self.clock.now(), 0.0)
        self.log(
            "drain-blocked",
            instance=host.instance_id,
            node=node,
            blockers=blockers,
            result=f"no more heartbeats: the hook times out in {remaining:.0f}s and the termination goes on",
        )
        return Outcome("later", remaining + LATE_MARGIN)

    def _complete(self, event: LifecycleEvent) -> Outcome:
        hook = event.hook or names.TERMINATE_HOOK
        if self.actions.complete_action(self.fleet.group, hook, event.instance_id, event.token, "CONTINUE"):
            self.log("completed", instance=event.instance_id, hook=hook, result="CONTINUE")
        else:
            self.log("completed-already", instance=event.instance_id, hook=hook, result="no action waiting")
        return self._gone(event)

    def _gone(self, event: LifecycleEvent) -> Outcome:
        """The host has left the group or is on its way out: what it kept in SSM goes with it."""
        boot = self.records.value(self._boot_record(event.instance_id))
        if boot:
            self.departed[event.instance_id] = boot
            if len(self.departed) > COMPLETED_KEPT:
                del self.departed[next(iter(self.departed))]
        forget_hosts(self.records, self.parameter_path, [event.instance_id])
        return self._finished(event)

    def _finished(self, event: LifecycleEvent) -> Outcome:
        self.completed[event.key] = None
        if len(self.completed) > COMPLETED_KEPT:
            del self.completed[next(iter(self.completed))]
        return DONE

    # --- launching hosts ---

    def _launch(self, event: LifecycleEvent) -> Outcome:
        """The host completes its own launch action; heal reports how it went, once it is known."""
        first = self.first_seen.setdefault(event.key, self.clock.now())
        failure = self._boot_failure(event.instance_id)
        host = self.fleet.snapshot().host(event.instance_id)
        if failure is not None:
            step, code, tail = failure
            self.log("launch-failed", instance=event.instance_id, step=step, exit=code, log=tail)
        elif host is not None and host.lifecycle_state == "InService":
            self.log("joined", instance=event.instance_id)
        elif host is None or not host.lifecycle_state.startswith("Pending"):
            # Past its launch already (a late or repeated message): it may well have joined and left since; only a
            # failure record would say otherwise, and there is none.
            state = host.lifecycle_state if host else "gone"
            self.log(
                "launch-stale", instance=event.instance_id, state=state, result="dropped: no boot failure recorded"
            )
        elif self.clock.now() - first < self.timeouts.launch + LATE_MARGIN:
            return Outcome("watch")
        else:
            self.log("launch-unconfirmed", instance=event.instance_id, state=host.lifecycle_state,
                     reason=f"no confirmation and no failure record within {self.timeouts.launch:.0f}s")  # fmt: skip
        self.first_seen.pop(event.key, None)
        return self._finished(event)

    def _boot_failure(self, instance_id: str) -> tuple[str, str, str] | None:
        """(step, exit code, last log lines) from the boot record `failed step=… exit=… at=…` + log tail."""
        name = self._boot_record(instance_id)
        record = boot_record(name, instance_id, self.records.value(name) or self.departed.get(instance_id, ""))
        if record is None:
            return None
        return record.step, record.exit_code, " | ".join(record.log[-LOG_TAIL_LINES:])

    def _boot_record(self, instance_id: str) -> str:
        return f"{names.host_records_path(self.parameter_path)}/{instance_id}/boot"


class Heartbeats:
    """Heartbeats to the terminate hook while a drain runs, every third of the hook's timeout."""

    def __init__(self, handler: Handler, event: LifecycleEvent) -> None:
        self.handler = handler
        self.event = event
        self.last = handler.clock.now()
        self.sent = 0

    def beat(self) -> None:
        handler, event = self.handler, self.event
        hook = event.hook or names.TERMINATE_HOOK
        if handler.actions.heartbeat(handler.fleet.group, hook, event.instance_id, event.token):
            self.sent += 1
        self.last = handler.clock.now()

    def due(self) -> None:
        if self.handler.clock.now() - self.last >= self.handler.timeouts.heartbeat_every:
            self.beat()


class _Paced:
    """The drain's clock: after each of its waits, ``on_wait`` runs (heartbeats, message visibility, stop)."""

    def __init__(self, clock: Clock, on_wait: Tick) -> None:
        self.clock = clock
        self.on_wait = on_wait

    def now(self) -> float:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        self.on_wait()


def roll_in_progress(lock: RunLock, journal: Journal) -> RollHosts:
    """The hosts a live roll owns: the old hosts and replacements its journal has in flight while it holds the lock.
    An expired lock is a roll that died; its hosts are no one's, so heal handles them."""

    def hosts() -> set[str]:
        held = lock.holder()
        if held is None or held.expired(lock.now()):
            return set()
        record = journal.load()
        return record.hosts_in_flight() if record else set()

    return hosts


class Handles(Protocol):
    """What the queue loop asks of heal: a ``Handler``, or ``EveryGroup`` of them."""

    @property
    def groups(self) -> tuple[str, ...]: ...

    def leaving_together(self, events: Sequence[LifecycleEvent]) -> None: ...

    def handle(self, event: LifecycleEvent, tick: Tick) -> Outcome: ...


class EveryGroup:
    """Heal for a cluster of several host groups: each event goes to its own group's handler (its drain policy, its
    hooks' cadence), and hosts leaving together are cordoned ahead by each group's. An event of a group that is not
    this cluster's goes to the first, which drops it and says so, as with one group."""

    def __init__(self, handlers: Sequence[Handler]) -> None:
        self.handlers = {handler.fleet.group: handler for handler in handlers}
        self.first = handlers[0]

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.handlers)

    def leaving_together(self, events: Sequence[LifecycleEvent]) -> None:
        for group, handler in self.handlers.items():
            handler.leaving_together([event for event in events if event.group == group])

    def handle(self, event: LifecycleEvent, tick: Tick) -> Outcome:
        return self.handlers.get(event.group, self.first).handle(event, tick)
