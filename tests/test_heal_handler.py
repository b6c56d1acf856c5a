"""`cluster heal`'s handler and consumer in virtual time: in-memory fakes of the queue, the group and its lifecycle
hook (which times out on the same clock), the real Kubernetes facade and drain against the API simulator over HTTP,
with a Deployment of six pods under a budget of one at a time on three nodes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Literal, cast

import pytest

from provision import names
from provision.aws.queues import Message
from provision.config.schema import ClusterConfig
from provision.fleet.model import Host, Snapshot
from provision.heal.actionlog import ActionLog, parse_line
from provision.heal.consumer import GRACE_SECONDS, Consumer, Stop
from provision.heal.events import LifecycleEvent
from provision.heal.handler import DONE, EveryGroup, Handler, Outcome, Tick, Timeouts
from provision.kube.facade import Kube, connect
from provision.kube.model import PodState
from tests.deploykit import config
from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture

GROUP = "cluster-demo-HostGroup-1"
HOOK_TIMEOUT = 600.0
CONFIG = config(rolling={"drain_timeout_seconds": 300}, lifecycle={"terminate_timeout_seconds": int(HOOK_TIMEOUT)})
RECORDS = f"{CONFIG.parameter_path}/hosts"


def host(index: int, state: str = "InService") -> Host:
    return Host(f"i-{index:017x}", "eu-west-1a", state, "Healthy", False, "", "ami-1", None,
                (node_name(index), f"10.0.0.{index}"))  # fmt: skip


def node_name(index: int) -> str:
    return f"ip-10-0-0-{index}.eu-west-1.compute.internal"


@dataclass
class FakeGroup:
    """The group and its hooks: a host removed from the group waits in Terminating:Wait until its action is
    completed or the hook times out (HOOK_TIMEOUT after the last heartbeat; the default result goes on)."""

    now: Callable[[], float]
    kube: Kube
    hosts: dict[str, Host] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)
    completed: list[tuple[str, str, str]] = field(default_factory=list)  # (instance, token, result)
    heartbeats: list[tuple[float, str]] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    group: str = GROUP
    hook_timeout: float = HOOK_TIMEOUT

    def snapshot(self) -> Snapshot:
        """The group with every host joined to its node, as the fleet gives it."""
        self.expire()
        every_node = tuple(self.kube.nodes())
        nodes = Kube.match_hosts(every_node, {host.instance_id: host.names for host in self.hosts.values()})
        hosts = tuple(replace(host, node=nodes.get(host.instance_id)) for host in self.hosts.values())
        return Snapshot(GROUP, len(self.hosts), 0, 6, "", hosts, (), nodes=every_node)

    def terminating(self, instance_id: str) -> None:
        self.hosts[instance_id] = replace(self.hosts[instance_id], lifecycle_state="Terminating:Wait")
        self.deadlines[instance_id] = self.now() + self.hook_timeout

    def expire(self) -> None:
        for instance_id, deadline in list(self.deadlines.items()):
            if self.now() >= deadline:
                del self.deadlines[instance_id]
                self.hosts.pop(instance_id, None)
                self.timed_out.append(instance_id)

    def complete_action(
        self, name: str, hook: str, instance_id: str, token: str, result: Literal["CONTINUE", "ABANDON"]
    ) -> bool:
        assert (name, hook) == (GROUP, names.TERMINATE_HOOK)
        self.expire()
        if instance_id not in self.deadlines:
            return False  # "No active Lifecycle Action found"
        del self.deadlines[instance_id]
        self.hosts.pop(instance_id)
        self.completed.append((instance_id, token, result))
        return True

    def heartbeat(self, name: str, hook: str, instance_id: str, token: str) -> bool:
        self.expire()
        if instance_id not in self.deadlines:
            return False
        self.deadlines[instance_id] = self.now() + self.hook_timeout
        self.heartbeats.append((self.now(), instance_id))
        return True


@dataclass
class FakeQueue:
    """SQS in virtual time: a receive hides what it returns; an empty long poll waits out its seconds."""

    clock: Callable[[], float]
    sleep: Callable[[float], None]
    messages: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # id -> (body, visible at, receives)
    deleted: list[str] = field(default_factory=list)

    def send(self, body: str) -> str:
        message_id = str(uuid.uuid4())
        self.messages[message_id] = (body, 0.0, 0)
        return message_id

    def receive(self, *, wait_seconds: int, visibility_seconds: int, max_messages: int = 10) -> list[Message]:
        visible = [(key, value) for key, value in self.messages.items() if value[1] <= self.clock()][:max_messages]
        if not visible:
            self.sleep(wait_seconds)
            return []
        received = []
        for key, (body, _, count) in visible:
            self.messages[key] = (body, self.clock() + visibility_seconds, count + 1)
            received.append(Message(key, f"receipt-{key}-{count + 1}", body, count + 1))
        return received

    def delete(self, message: Message) -> None:
        if self.messages.pop(message.message_id, None) is not None:
            self.deleted.append(message.message_id)

    def hide(self, message: Message, seconds: float) -> None:
        if message.message_id in self.messages:
            body, _, count = self.messages[message.message_id]
            self.messages[message.message_id] = (body, self.clock() + seconds, count)

    def visible(self) -> int:
        return sum(1 for _, at, _ in self.messages.values() if at <= self.clock())


@dataclass
class Rig:
    sim: Simulator
    kube: Kube
    group: FakeGroup
    queue: FakeQueue
    records: dict[str, str]
    lines: list[str]
    roll: set[str]
    stop: Stop
    handler: Handler

    def consumer(self) -> Consumer:
        return Consumer(self.queue, self.handler, self.sim.clock, self.handler.log, self.stop)

    def log(self) -> list[dict[str, str]]:
        return [parse_line(line) for line in self.lines]

    def actions(self) -> list[str]:
        return [entry["action"] for entry in self.log()]

    def pods_on(self, index: int) -> list[str]:
        return [pod.ref for pod in self.kube.pods(node=node_name(index)) if not pod.daemon]

    def budget(self, max_unavailable: int) -> None:
        self.sim.world.patch("PodDisruptionBudget", "default", "web", {"spec": {"maxUnavailable": max_unavailable}})


def make_handler(sim: Simulator, kube: Kube, group: FakeGroup, records: dict[str, str], lines: list[str],
                 roll: set[str], cfg: ClusterConfig = CONFIG) -> Handler:  # fmt: skip
    return Handler(
        fleet=group,
        actions=group,
        kube=kube,
        records=_Records(records),
        roll_hosts=lambda: set(roll),
        clock=sim.clock,
        log=ActionLog(lines.append, now=lambda: datetime(2026, 11, 25, 6, tzinfo=UTC)),
        rolling=cfg.rolling,
        timeouts=Timeouts(
            heartbeat=cfg.lifecycle.terminate_timeout_seconds, launch=cfg.lifecycle.launch_timeout_seconds
        ),
        parameter_path=cfg.parameter_path,
    )


@dataclass
class _Records:
    values: dict[str, str]

    def value(self, name: str) -> str | None:
        return self.values.get(name)

    def delete(self, names: list[str]) -> None:
        for name in names:
            self.values.pop(name, None)


@pytest.fixture
def rig(simulator: Simulator) -> Rig:
    clock = simulator.clock
    kube = Kube(connect(kubeconfig=str(simulator.kubeconfig)))
    group = FakeGroup(clock.now, kube)
    for index in (1, 2, 3):
        group.hosts[host(index).instance_id] = host(index)
        simulator.world.add_node(node_name(index), provider_id=f"aws:///eu-west-1a/{host(index).instance_id}",
                                 internal_ip=f"10.0.0.{index}")  # fmt: skip
    simulator.deployment("web", 6)
    simulator.budget("web", "web", maxUnavailable=1)
    simulator.settle(5)
    records: dict[str, str] = {}
    lines: list[str] = []
    roll: set[str] = set()
    handler = make_handler(simulator, kube, group, records, lines, roll)
    queue = FakeQueue(clock.now, clock.sleep)
    return Rig(simulator, kube, group, queue, records, lines, roll, Stop(), handler)


def event(kind: Literal["launch", "terminate"], index: int, *, group: str = GROUP, token: str = "") -> str:
    """The EventBridge envelope AWS puts on the queue."""
    launch = kind == "launch"
    return json.dumps({
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": f"EC2 Instance-{kind} Lifecycle Action",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2026-11-25T06:00:00Z",
        "region": "eu-west-1",
        "resources": [f"arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:x:autoScalingGroupName/{group}"],
        "detail": {
            "LifecycleActionToken": token or str(uuid.uuid4()),
            "AutoScalingGroupName": group,
            "LifecycleHookName": names.LAUNCH_HOOK if launch else names.TERMINATE_HOOK,
            "EC2InstanceId": host(index).instance_id,
            "LifecycleTransition": f"autoscaling:EC2_INSTANCE_{'LAUNCHING' if launch else 'TERMINATING'}",
            "Origin": "EC2" if launch else "AutoScalingGroup",
            "Destination": "AutoScalingGroup" if launch else "EC2",
        },
    })  # fmt: skip


def test_a_terminating_host_is_drained_under_its_budget_then_completed(rig: Rig) -> None:
    victim = host(2).instance_id
    assert rig.pods_on(2), "the victim runs pods of the sample workload"
    rig.group.terminating(victim)
    rig.queue.send(event("terminate", 2, token="tok-2"))

    rig.consumer().run(once=True)

    assert rig.group.completed == [(victim, "tok-2", "CONTINUE")], "completed by heal, with the event's token"
    assert rig.group.timed_out == []
    assert rig.pods_on(2) == [], "its pods moved out"
    assert rig.sim.world.counters.budget_violations == 0
    assert rig.sim.world.counters.evictions_refused > 0, "the budget let one pod go at a time"
    assert rig.queue.messages == {}, "the message is deleted"
    drained = next(entry for entry in rig.log() if entry["action"] == "drained")
    assert drained["instance"] == victim and drained["node"] == node_name(2) and int(drained["evicted"]) >= 2
    assert rig.actions()[-2:] == ["drained", "completed"]


def test_a_duplicate_message_is_handled_once_and_both_are_deleted(rig: Rig) -> None:
    rig.group.terminating(host(1).instance_id)
    body = event("terminate", 1, token="tok-1")
    rig.queue.send(body)
    rig.queue.send(body)

    rig.consumer().run(once=True)

    assert len(rig.group.completed) == 1
    assert rig.actions().count("drained") == 1 and "duplicate" in rig.actions()
    assert rig.queue.messages == {}

    # Delivered again after a restart (a new process remembers nothing): the host is gone, nothing is done twice.
    rig.lines.clear()
    handler = make_handler(rig.sim, rig.kube, rig.group, rig.records, rig.lines, rig.roll)
    rig.queue.send(body)
    Consumer(rig.queue, handler, rig.sim.clock, handler.log, rig.stop).run(once=True)
    assert rig.actions() == ["gone"] and len(rig.group.completed) == 1 and rig.queue.messages == {}


def test_an_unknown_host_another_groups_host_a_test_message_and_garbage_are_dropped(rig: Rig) -> None:
    rig.queue.send(event("terminate", 9))  # not in the group (gone long ago, or never ours)
    rig.queue.send(event("terminate", 1, group="someone-elses-group"))
    rig.queue.send(json.dumps({"Event": "autoscaling:TEST_NOTIFICATION", "AutoScalingGroupName": GROUP}))
    rig.queue.send("this is not an event")

    rig.consumer().run(once=True)

    assert rig.actions() == ["gone", "other-group", "test-notification", "unreadable"]
    assert rig.group.completed == [] and rig.group.heartbeats == []
    assert [node.name for node in rig.kube.nodes() if node.unschedulable] == [], "nothing was cordoned"
    assert rig.queue.messages == {}


def test_launch_and_terminate_out_of_order(rig: Rig) -> None:
    """A host whose boot failed and was terminated: its terminate event comes first, its launch event after."""
    rig.group.hosts[host(4).instance_id] = host(4, "Pending:Wait")
    rig.group.terminating(host(4).instance_id)
    rig.records[f"{RECORDS}/{host(4).instance_id}/boot"] = (
        "failed step=join exit=1 at=2026-11-25T05:59:00Z\nkubeadm join: connecting\nerror: token expired\n"
    )
    rig.queue.send(event("terminate", 4))
    rig.queue.send(event("launch", 4))

    rig.consumer().run(once=True)

    assert rig.actions() == ["no-node", "completed", "launch-failed"]
    failed = rig.log()[-1]
    assert (failed["instance"], failed["step"], failed["exit"]) == (host(4).instance_id, "join", "1")
    assert "error: token expired" in failed["log"]
    assert rig.queue.messages == {}
    assert rig.records == {}, "the record went with its host, after heal had reported it"


def test_the_records_of_replaced_hosts_do_not_accumulate(rig: Rig) -> None:
    """Hosts replaced one after another, some after a failed boot: each one's records go as heal sees it leave, and
    those of the hosts still in the group stay."""
    for index in (1, 2, 3):
        rig.records[f"{RECORDS}/{host(index).instance_id}/boot"] = (
            f"failed step=join exit=1 at=2026-11-25T05:5{index}:00Z"
        )
        rig.records[f"{RECORDS}/{host(index).instance_id}/health"] = "2026-11-25T05:00:00Z healthy failures=0"
    for index in (1, 2):
        rig.group.terminating(host(index).instance_id)
        rig.queue.send(event("terminate", index))
        rig.consumer().run(once=True)
    rig.queue.send(event("terminate", 9))  # a host the group dropped while heal was not running
    rig.records[f"{RECORDS}/{host(9).instance_id}/boot"] = "failed step=join exit=1 at=2026-11-25T05:00:00Z"
    rig.consumer().run(once=True)

    assert rig.actions().count("completed") == 2 and rig.actions()[-1] == "gone"
    assert sorted(rig.records) == [f"{RECORDS}/{host(3).instance_id}/boot", f"{RECORDS}/{host(3).instance_id}/health"]


def test_a_launch_is_watched_until_the_host_joins(rig: Rig) -> None:
    rig.group.hosts[host(5).instance_id] = host(5, "Pending:Wait")
    launch = event("launch", 5)
    rig.queue.send(launch)

    def boot(now: float) -> None:
        rig.sim.world.tick()
        if now >= 40 and rig.group.hosts[host(5).instance_id].lifecycle_state != "InService":
            rig.group.hosts[host(5).instance_id] = host(5)  # joined and confirmed its own launch

    rig.sim.clock.on_sleep = boot
    consumer = rig.consumer()
    consumer.run(once=True)  # the queue is empty now; the pending launch is released for later
    assert rig.actions() == ["released"] and rig.queue.visible() == 1
    rig.sim.clock.sleep(60)

    consumer.run(once=True)

    assert rig.actions()[-1] == "joined" and rig.queue.messages == {}
    rig.queue.send(launch)  # the same message again, later: said once is enough
    consumer.run(once=True)
    assert rig.log()[-1]["action"] == "duplicate" and rig.queue.messages == {}


def test_a_launch_that_never_confirms_is_reported_at_its_timeout(rig: Rig) -> None:
    rig.group.hosts[host(6).instance_id] = host(6, "Pending:Wait")  # never joins, never records a failure
    rig.queue.send(event("launch", 6))
    rig.sim.clock.on_sleep = None  # nothing else moves
    consumer = rig.consumer()
    consumer.run(once=True)
    assert rig.actions() == ["released"]

    rig.sim.clock.sleep(CONFIG.lifecycle.launch_timeout_seconds + 61)
    consumer.run(once=True)

    unconfirmed = rig.log()[-1]
    assert unconfirmed["action"] == "launch-unconfirmed" and unconfirmed["instance"] == host(6).instance_id
    assert "no confirmation and no failure record within 900s" in unconfirmed["reason"]
    assert rig.queue.messages == {}


def test_a_late_launch_message_of_a_host_gone_since_claims_nothing(rig: Rig) -> None:
    rig.queue.send(event("launch", 8))  # host 8 joined, served and was removed before heal saw this

    rig.consumer().run(once=True)

    assert rig.log() == [{"time": "2026-11-25T06:00:00Z", "action": "launch-stale", "instance": host(8).instance_id,
                          "state": "gone", "result": "dropped: no boot failure recorded"}]  # fmt: skip
    assert rig.queue.messages == {}


def test_a_drain_blocked_by_a_budget_is_left_to_the_hooks_timeout(rig: Rig) -> None:
    rig.budget(0)
    victim = host(3).instance_id
    rig.group.terminating(victim)
    rig.queue.send(event("terminate", 3))

    rig.consumer().run(once=True)

    blocked = next(entry for entry in rig.log() if entry["action"] == "drain-blocked")
    assert "PodDisruptionBudget default/web needs" in blocked["blockers"]
    assert "hook times out" in blocked["result"]
    assert rig.group.completed == [], "not completed: the hook's timeout decides"
    assert rig.queue.visible() == 0 and len(rig.queue.messages) == 1, "the message is left, hidden"
    assert rig.group.heartbeats and rig.group.heartbeats[-1][0] <= CONFIG.rolling.drain_timeout_seconds
    assert rig.sim.world.counters.budget_violations == 0

    rig.sim.clock.sleep(HOOK_TIMEOUT)  # no heartbeat comes any more: the hook times out, the termination goes on
    rig.group.expire()
    assert rig.group.timed_out == [victim]
    rig.consumer().run(once=True)  # the message comes back after the timeout, finds the host gone
    assert rig.actions()[-1] == "gone" and rig.queue.messages == {}


def test_heartbeats_every_third_of_the_hook_timeout_while_the_drain_waits(simulator: Simulator, rig: Rig) -> None:
    cfg = config(rolling={"drain_timeout_seconds": 1100}, lifecycle={"terminate_timeout_seconds": 1200})
    rig.group.hook_timeout = 1200
    rig.handler = make_handler(rig.sim, rig.kube, rig.group, rig.records, rig.lines, rig.roll, cfg)
    rig.budget(0)
    rig.group.terminating(host(1).instance_id)
    rig.queue.send(event("terminate", 1))

    def budget_opens_late(now: float) -> None:
        simulator.world.tick()
        if 1000 <= now < 1006:
            rig.budget(1)

    simulator.clock.on_sleep = budget_opens_late
    rig.consumer().run(once=True)

    times = [at for at, _ in rig.group.heartbeats]
    assert len(times) == 3, times  # at the start, and every 400 s until the drain ends after 1000 s
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert all(400 <= gap < 406 for gap in gaps), gaps
    assert rig.group.timed_out == [] and [c[0] for c in rig.group.completed] == [host(1).instance_id]
    assert rig.pods_on(1) == [] and simulator.world.counters.budget_violations == 0


def test_sigterm_with_a_blocked_drain_in_flight_releases_the_message(simulator: Simulator, rig: Rig) -> None:
    rig.budget(0)
    rig.group.terminating(host(1).instance_id)
    rig.queue.send(event("terminate", 1))
    stopped_at = simulator.clock.now() + 30

    def sigterm(now: float) -> None:
        simulator.world.tick()
        if now >= stopped_at:
            rig.stop.request(now)

    simulator.clock.on_sleep = sigterm
    rig.consumer().run(once=False)  # --watch: returns only because it was stopped

    assert rig.actions()[-1] == "released"
    assert simulator.clock.now() - stopped_at <= GRACE_SECONDS + 6, "within the grace (plus one drain wait)"
    assert rig.queue.visible() == 1, "visible again at once, for the next heal"
    assert rig.group.completed == [] and host(1).instance_id in rig.group.deadlines


def test_sigterm_lets_a_drain_that_can_finish_finish_and_receives_no_more(simulator: Simulator, rig: Rig) -> None:
    rig.group.terminating(host(1).instance_id)
    rig.group.terminating(host(2).instance_id)
    rig.queue.send(event("terminate", 1))

    def sigterm_then_more(now: float) -> None:
        simulator.world.tick()
        if not rig.stop.requested:
            rig.stop.request(now)
            rig.queue.send(event("terminate", 2))

    simulator.clock.on_sleep = sigterm_then_more
    rig.consumer().run(once=False)

    assert [c[0] for c in rig.group.completed] == [host(1).instance_id], "the message in flight finished"
    assert rig.queue.visible() == 1, "the next one is left for the next heal"


def test_sigterm_during_the_pause_after_an_endpoint_error_stops_within_a_second(
    simulator: Simulator, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(**_: object) -> list[Message]:
        raise ConnectionError("the endpoint is unreachable")

    monkeypatch.setattr(rig.queue, "receive", unreachable)
    stopped_at = simulator.clock.now() + 5

    def sigterm(now: float) -> None:
        if now >= stopped_at:
            rig.stop.request(now)

    simulator.clock.on_sleep = sigterm
    rig.consumer().run(once=False)  # --watch outlives endpoint errors: returns only because it was stopped

    assert rig.actions()[0] == "error"
    assert simulator.clock.now() - stopped_at <= 1, "not after the whole retry pause"


def test_a_dead_node_takes_the_fast_path(rig: Rig) -> None:
    rig.sim.world.set_node_ready(node_name(2), False)
    rig.group.terminating(host(2).instance_id)
    rig.queue.send(event("terminate", 2))

    rig.consumer().run(once=True)

    assert rig.actions() == ["dead-node-cleared", "completed"]
    assert node_name(2) not in {node.name for node in rig.kube.nodes()}
    assert rig.sim.world.counters.evictions == 0, "no eviction waits on a kubelet that is gone"
    assert len(rig.group.completed) == 1


def test_a_node_with_a_watched_condition_takes_the_fast_path_though_ready(rig: Rig) -> None:
    """node-problem-detector's KernelDeadlock: the kubelet still posts Ready, but processes hang; a host heal reported
    for it (health_agent.node_conditions) is not left waiting on evictions that cannot finish."""
    world = rig.sim.world
    ready = world.get("Node", "", node_name(2))["status"]["conditions"]
    when = world.now().isoformat()
    deadlock = {"type": "KernelDeadlock", "status": "True", "reason": "DockerHung", "message": "task hung",
                "lastHeartbeatTime": when, "lastTransitionTime": when}  # fmt: skip
    world.patch("Node", "", node_name(2), {"status": {"conditions": [*ready, deadlock]}}, status=True)
    rig.handler.node_conditions = ("KernelDeadlock",)
    rig.group.terminating(host(2).instance_id)
    rig.queue.send(event("terminate", 2))

    rig.consumer().run(once=True)

    [cleared] = [entry for entry in rig.log() if entry["action"] == "dead-node-cleared"]
    assert cleared["why"] == "KernelDeadlock:True" and int(cleared["pods_deleted"]) >= 1
    assert rig.actions() == ["dead-node-cleared", "completed"]
    assert rig.sim.world.counters.evictions == 0

    # Unwatched, the same condition is just a condition: the host is drained as any other.
    rig.lines.clear()
    rig.handler.node_conditions = ()
    ready = world.get("Node", "", node_name(3))["status"]["conditions"]
    world.patch("Node", "", node_name(3), {"status": {"conditions": [*ready, deadlock]}}, status=True)
    rig.group.terminating(host(3).instance_id)
    rig.queue.send(event("terminate", 3))
    rig.consumer().run(once=True)
    assert rig.actions()[-2:] == ["drained", "completed"]


def test_the_hosts_of_a_roll_in_progress_are_left_to_the_roll(rig: Rig) -> None:
    rig.roll.add(host(1).instance_id)
    rig.group.terminating(host(1).instance_id)
    rig.queue.send(event("terminate", 1))

    rig.consumer().run(once=True)

    assert rig.actions() == ["left-to-roll"]
    assert rig.group.completed == [] and rig.queue.messages == {}
    assert rig.pods_on(1), "the roll drains it, not heal"


def test_a_failing_handler_puts_the_message_back_for_a_retry(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Snapshot:
        raise RuntimeError("describe failed")

    monkeypatch.setattr(rig.group, "snapshot", broken)
    rig.queue.send(event("terminate", 1))

    rig.consumer().run(once=True)

    error = rig.log()[-1]
    assert error["action"] == "error" and "describe failed" in error["error"] and error["attempt"] == "1"
    assert len(rig.queue.messages) == 1 and rig.queue.visible() == 0


def test_hosts_leaving_together_are_cordoned_first_heartbeated_while_waiting_and_drained_in_turn(
    simulator: Simulator, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scale-in of three whose drains are slow: the budget lets the first go only near its drain timeout (which
    cannot exceed the hook's), the second likewise, so the third waits far longer than its hook's timeout. The hosts
    behind the one draining must neither receive its pods nor run out of time."""
    rig.handler = make_handler(rig.sim, rig.kube, rig.group, rig.records, rig.lines, rig.roll,
                               config(rolling={"drain_timeout_seconds": int(HOOK_TIMEOUT)},
                                      lifecycle={"terminate_timeout_seconds": int(HOOK_TIMEOUT)}))  # fmt: skip
    for index in (4, 5):  # where the pods go
        rig.group.hosts[host(index).instance_id] = host(index)
        simulator.world.add_node(node_name(index), provider_id=f"aws:///eu-west-1a/{host(index).instance_id}",
                                 internal_ip=f"10.0.0.{index}")  # fmt: skip
    leaving = [1, 2, 3]
    before = {index: len(rig.pods_on(index)) for index in leaving}
    for index in leaving:
        rig.group.terminating(host(index).instance_id)
        rig.queue.send(event("terminate", index, token=f"tok-{index}"))
    cordoned_at_first_eviction: list[set[str]] = []
    evict = rig.kube.evict

    def spy(pod: PodState) -> None:
        if not cordoned_at_first_eviction:
            cordoned_at_first_eviction.append({node.name for node in rig.kube.nodes() if node.unschedulable})
        evict(pod)

    monkeypatch.setattr(rig.kube, "evict", spy)
    most_on: dict[int, int] = dict.fromkeys(leaving, 0)
    visible_at: list[float] = []
    allowed = [-1]

    def world(now: float) -> None:
        simulator.world.tick()
        first_gone = host(1).instance_id not in rig.group.hosts
        opens = 2 * HOOK_TIMEOUT - 120 if first_gone else HOOK_TIMEOUT - 50
        if allowed[0] != (now >= opens):
            allowed[0] = now >= opens
            rig.budget(int(allowed[0]))
        for index in leaving:
            if host(index).instance_id in rig.group.hosts:
                most_on[index] = max(most_on[index], len(rig.pods_on(index)))
        if rig.queue.visible():
            visible_at.append(now)

    simulator.clock.on_sleep = world
    started = simulator.clock.now()
    rig.consumer().run(once=True)

    assert cordoned_at_first_eviction == [{node_name(index) for index in leaving}], "all three before any eviction"
    assert rig.group.timed_out == [], "no hook ran out while its host waited its turn"
    assert rig.group.completed == [(host(index).instance_id, f"tok-{index}", "CONTINUE") for index in leaving]
    assert rig.actions().count("drained") == 3 and "drain-blocked" not in rig.actions()
    assert simulator.clock.now() - started > 1.5 * HOOK_TIMEOUT, "the third host waited longer than its hook's timeout"
    for index in (2, 3):
        beats = [at for at, instance in rig.group.heartbeats if instance == host(index).instance_id]
        assert beats[0] == started, "a heartbeat as soon as it is known to wait"
        assert all(later - earlier < HOOK_TIMEOUT / 3 + 6 for earlier, later in pairwise(beats)), (index, beats)
        assert most_on[index] <= before[index], "no pod was moved onto a host about to go"
    assert visible_at == [], "the waiting messages stayed hidden"
    assert [rig.pods_on(index) for index in leaving] == [[], [], []]
    assert simulator.world.counters.budget_violations == 0
    assert rig.queue.messages == {}


def test_a_roll_host_leaving_with_others_is_left_to_the_roll(rig: Rig) -> None:
    rig.roll.add(host(2).instance_id)
    for index in (1, 2, 3):
        rig.group.terminating(host(index).instance_id)
        rig.queue.send(event("terminate", index))

    rig.consumer().run(once=True)

    cordoned = [entry["instance"] for entry in rig.log() if entry["action"] == "cordon"]
    assert cordoned == [host(1).instance_id, host(3).instance_id], "the roll's host is not heal's to cordon"
    assert "left-to-roll" in rig.actions()
    assert host(2).instance_id not in {instance for _, instance in rig.group.heartbeats}
    assert [instance for instance, _, _ in rig.group.completed] == [host(1).instance_id, host(3).instance_id]
    node = rig.kube.node(node_name(2))
    assert node is not None and not node.unschedulable and rig.pods_on(2), "the roll drains it, not heal"


@dataclass
class _GroupStub:
    """A group's handler as EveryGroup sees it: its fleet's group, what it was given."""

    group: str
    handled: list[str] = field(default_factory=list)
    together: list[list[str]] = field(default_factory=list)

    @property
    def fleet(self) -> _GroupStub:
        return self

    def leaving_together(self, events: Sequence[LifecycleEvent]) -> None:
        self.together.append([event.instance_id for event in events])

    def handle(self, event: LifecycleEvent, tick: Tick) -> Outcome:
        self.handled.append(event.instance_id)
        return DONE


def test_every_group_is_healed_by_its_own_handler_and_a_foreign_groups_event_goes_to_the_first() -> None:
    workers, system = _GroupStub("cluster-demo-HostGroup-1"), _GroupStub("cluster-demo-HostGroupSystem-2")
    every = EveryGroup([cast(Handler, workers), cast(Handler, system)])

    def event(instance: str, group: str) -> LifecycleEvent:
        return LifecycleEvent("terminate", group, instance, names.TERMINATE_HOOK, f"token-{instance}")

    events = [event("i-1", workers.group), event("i-2", system.group), event("i-3", system.group)]
    every.leaving_together(events)
    for each in [*events, event("i-9", "someone-elses-group")]:
        every.handle(each, lambda: None)

    assert every.groups == (workers.group, system.group)
    assert (workers.together, system.together) == ([["i-1"]], [["i-2", "i-3"]])
    assert (workers.handled, system.handled) == (["i-1", "i-9"], ["i-2", "i-3"]), "the first drops the foreign one"
