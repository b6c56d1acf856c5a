"""`cluster demo`: the whole story on a fresh sandbox, with progress all the way and a closing summary.

up → status → replace one host → patch every host → a host falls sick and `cluster heal` drains it as the group
replaces it → status → down, against a sandbox started for the demo in a temporary folder (so it never touches a
sandbox of yours) and stopped at the end whatever happens. The demo brings its own network, as many clusters do, so
that `down` ends clean on moto too.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.session import AwsFactory, AwsSettings, aws_errors
from provision.clock import SystemClock, wait_until
from provision.config.loader import parse_config
from provision.config.schema import ClusterConfig
from provision.deploy.down import down
from provision.deploy.status import collect, show
from provision.deploy.up import Up
from provision.errors import ClusterError
from provision.fleet.observe import Fleet
from provision.heal.actionlog import ActionLog
from provision.heal.consumer import Stop
from provision.heal.service import connect_queue, heal_service
from provision.heal.slots import Slots
from provision.kube.facade import Kube, connect
from provision.roll.engine import Roll, RollResult
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from provision.roll.plan import Budget, Plan, Strategy, one_host, outdated
from provision.sandbox import control
from provision.sandbox.state import SandboxState
from provision.ui import UI

OWNER = "cluster-demo"


@dataclass
class Summary:
    replaced: int = 0
    lowest_ready: int | None = None
    desired: int = 0
    unavailable: int = 0  # the budget's: ready capacity may go this far below the desired capacity
    healed: int = 0  # terminations `cluster heal` drained and completed (not left to the hook's timeout)
    budget_violations: int | None = None  # healthy pods removed against their budget, as the API simulator counted

    def add(self, result: RollResult) -> None:
        self.replaced += len(result.replaced)
        if result.lowest_ready is not None:
            lowest = self.lowest_ready
            self.lowest_ready = result.lowest_ready if lowest is None else min(lowest, result.lowest_ready)


def run_demo(
    ui: UI, *, boot_seconds: float, max_surge: int | str | None = None, max_unavailable: int | str | None = None
) -> Summary:
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="cluster-demo-"))
    ui.say("== starting a fresh sandbox: moto as AWS, a Kubernetes API simulator, hosts that boot and join")
    state = control.start(folder, boot_seconds=boot_seconds)
    try:
        summary = _story(ui, state, max_surge, max_unavailable)
        counters = _counters(state)
        summary.budget_violations = counters.get("budget_violations")
    finally:
        control.stop(folder)
        ui.say("== sandbox stopped")
    ui.table(
        ["", ""],
        [
            ["hosts replaced", str(summary.replaced)],
            ["time", f"{time.monotonic() - started:.0f}s"],
            [
                "lowest ready capacity seen",
                f"{summary.lowest_ready} (desired {summary.desired}, at most {summary.unavailable} out at once)",
            ],
            ["sick hosts drained by cluster heal", f"{summary.healed} (completed by heal, not by the hook's timeout)"],
            ["evictions", str(counters.get("evictions", 0))],
            ["evictions refused by budgets", str(counters.get("evictions_refused", 0))],
            ["budget violations", "unknown" if summary.budget_violations is None else str(summary.budget_violations)],
        ],
        title="Demo summary",
    )
    return summary


def _story(ui: UI, state: SandboxState, max_surge: int | str | None, max_unavailable: int | str | None) -> Summary:
    settings = AwsSettings(region="eu-west-1", endpoint_url=state.aws_endpoint, static_credentials=("demo", "demo"))
    with aws_errors(settings):
        factory = AwsFactory(settings)
        cloud = Cloud.connect(factory, SystemClock())
        config = _demo_config(factory)
        kube = Kube(connect(state.kubeconfig))
        summary = Summary(desired=config.hosts.desired_capacity)

        ui.say("== cluster up: the stack, its hosts, their nodes")
        Up(config, cloud, ui, timeout=600, kube=lambda: (kube, "")).run(dry_run=False, join_token=_token())
        _status(ui, config, cloud, kube)

        fleet = Fleet.of_stack(cloud, config.stack_name, kube=kube)
        budget = Budget.resolve(
            config.rolling, config.hosts.desired_capacity, max_surge=max_surge, max_unavailable=max_unavailable
        )
        summary.unavailable = budget.unavailable
        victim = fleet.snapshot().hosts[0].instance_id
        ui.say(f"== cluster replace {victim}: a new host first, then cordon, drain under the budget, terminate")
        summary.add(_roll(ui, config, cloud, kube, one_host(fleet.snapshot(), victim, operation="replace", dead=False)))

        ui.say("== cluster patch: a new patch generation, then every host replaced, replacement first")
        Up(config, cloud, ui, timeout=600, kube=lambda: (kube, "")).run(
            dry_run=False, join_token=None, next_patch_generation=True
        )
        fleet.template_changed()
        summary.add(
            _roll(
                ui,
                config,
                cloud,
                kube,
                outdated(
                    fleet.snapshot(),
                    operation="patch",
                    include_protected=False,
                    budget=budget,
                    strategy=Strategy.of(config.rolling),
                ),
            )
        )
        summary.healed = _heal(ui, config, cloud, factory, kube)
        _status(ui, config, cloud, kube)

        ui.say("== cluster down")
        down(config, cloud, ui, purge=True, timeout=600)
    return summary


def _roll(ui: UI, config: ClusterConfig, cloud: Cloud, kube: Kube, plan: Plan) -> RollResult:
    for line in plan.describe(config.rolling.drain_timeout_seconds):
        ui.say(line)
    engine = Roll(
        Fleet.of_stack(cloud, config.stack_name, kube=kube),
        kube,
        Journal(cloud.parameters, config.parameter_path),
        RunLock(cloud.parameters, config.parameter_path),
        ui,
        SystemClock(),
        config.rolling,
    )
    result = engine.run(plan, owner=OWNER)
    ui.say(f"lowest ready capacity during the roll: {result.lowest_ready}")
    return result


def _heal(ui: UI, config: ClusterConfig, cloud: Cloud, factory: AwsFactory, kube: Kube) -> int:
    """With `cluster heal --watch` running (a thread here), a host falls sick and reports itself Unhealthy as its health
    agent does; the group replaces it and holds it in Terminating:Wait; heal drains it under the budget and lets it
    go. Returns how many terminations heal completed itself."""
    ui.say("== cluster heal --watch: a host falls sick, reports itself, is replaced; heal drains it before it goes")
    clock = SystemClock()
    completed: list[str] = []

    def show(line: str) -> None:
        action = line.split(" ", 1)[1]  # the UI stamps its own time
        if action.startswith("action=completed "):
            completed.append(action)
        ui.say(f"heal: {action}")

    stop = Stop()
    queue = connect_queue(factory, cloud, config)
    ui.say("heal starts with the rolls' events still queued: the hosts they name are gone or joined, so it drops them")
    heal = heal_service(config, cloud, kube, queue, clock, ActionLog(show), stop, wait_seconds=1)
    thread = threading.Thread(target=heal.run, kwargs={"once": False}, name="cluster-heal", daemon=True)
    thread.start()
    try:
        fleet = Fleet.of_stack(cloud, config.stack_name, kube=kube)
        victim = fleet.snapshot().hosts[0].instance_id
        # What the health agent does after `failures_before_unhealthy` failed checks (a full disk: the kubelet runs):
        # it takes a repair slot of the storm guard, then reports its host.
        verdict = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} failing:disk failures=3"
        cloud.instances.set_tag(victim, names.HEALTH_TAG, verdict)
        snapshot = fleet.snapshot()
        admission = Slots(cloud.parameters, config.parameter_path).admit(
            victim,
            by="agent",
            limit=config.health_agent.repair_limit(snapshot.desired),
            members={host.instance_id: host for host in snapshot.hosts},
            now=int(datetime.now(UTC).timestamp()),
        )
        if admission.slot is None:
            under = ", ".join(admission.in_repair)
            raise ClusterError(f"the storm guard holds {victim}'s repair: {under} under repair")
        cloud.groups.report_unhealthy(victim)
        ui.say(
            f"{victim}'s health agent: the disk check failed 3 times in a row; it took repair slot {admission.slot} "
            f"(at most {admission.limit} host(s) under repair at once) and reported its host Unhealthy"
        )

        def healed() -> bool | None:
            snapshot = fleet.snapshot()
            serving = [host for host in snapshot.hosts if host.ready]
            web = [pod for pod in kube.pods(namespace="default") if not pod.terminating]
            done = (
                snapshot.host(victim) is None
                and len(serving) == len(snapshot.hosts) == config.hosts.desired_capacity
                and all(pod.ready for pod in web)
                and queue.depth() == (0, 0)
            )
            return True if done else None

        wait_until(healed, clock=clock, timeout=120, interval=1.0, what=f"{victim} to be replaced and drained",
                   next_step="the heal lines above say what it waits for")  # fmt: skip
    finally:
        stop.request(clock.now())
        thread.join(timeout=10)
    ui.say(f"{victim} was drained under the budget and replaced; the queue is empty")
    return len(completed)


def _status(ui: UI, config: ClusterConfig, cloud: Cloud, kube: Kube) -> None:
    ui.say("== cluster status")
    show(collect(config, cloud, now=datetime.now(UTC), kube=kube), ui)


def _demo_config(factory: AwsFactory) -> ClusterConfig:
    """The packaged example, on a network of its own in the sandbox."""
    ec2 = factory.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{index}.0/24", AvailabilityZone=f"eu-west-1{zone}")["Subnet"][
            "SubnetId"
        ]
        for index, zone in enumerate("abc")
    ]
    data = tomllib.loads(files("provision.templates").joinpath("cluster.example.toml").read_text())
    data["network"] = {"vpc_id": vpc, "subnet_ids": subnets}
    data["rolling"]["drain_timeout_seconds"] = 120
    return parse_config(data, source="cluster.example.toml (demo network)")


def _token() -> str:
    return f"{secrets.token_hex(3)}.{secrets.token_hex(8)}"


def _counters(state: SandboxState) -> dict[str, int]:
    try:
        with urllib.request.urlopen(f"{state.kube_url}/simulator/counters", timeout=2) as answer:  # noqa: S310
            counters: dict[str, int] = json.load(answer)
            return counters
    except OSError:
        return {}
