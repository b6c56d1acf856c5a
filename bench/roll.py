"""Simulate rolls of 3, 30 and 300 hosts in virtual time and print how long they take against the lower bound, and
how many AWS calls they make per replaced host, next to a sequential cordon-drain-terminate-wait baseline.

    .venv/bin/python -m bench.roll [--boot 120] [--drain 60] [--pods 4]

The engine is the real one (provision.roll.engine.Roll, with the real Drainer and migration check); AWS and
Kubernetes are the in-memory models of the engine tests (tests/rollfakes.py), whose time is the injected clock: a new
host is InService with its node Ready `--boot` seconds after launch; an evicted pod is gone `--drain` seconds after
its eviction and Ready elsewhere at once.

Lower bound, for this engine's rules (at most `surge` hosts booting at once, and the hosts of one wave drained
together once their replacements are Ready): the boots come in ceil(n / surge) waves, so do the drains, one wave after
another, and neither the first drain nor the last can start before a boot ends:
max(waves * boot + drain, boot + waves * drain); without overlap every wave's drain also waits for its boot:
waves * (boot + drain).
"""

from __future__ import annotations

import argparse
import io
import math

from rich.console import Console

from provision.config.schema import Rolling
from provision.roll.engine import Roll
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from provision.roll.plan import outdated
from provision.ui import UI
from tests.rollfakes import FakeFleet, FakeKube, FakeParameters, World

SETTINGS = [(1, False), (1, True), (3, True)]  # (surge, overlap)


def engine_roll(hosts: int, surge: int, overlap: bool, args: argparse.Namespace) -> tuple[float, float, int]:
    world = World.with_hosts(hosts, boot=args.boot, drain=args.drain, pods_per_host=args.pods)
    start = world.clock.now()
    fleet, parameters = FakeFleet(world), FakeParameters()
    quiet = UI(Console(file=io.StringIO()), ask=None, assume_yes=True)
    rolling = Rolling(drain_timeout_seconds=3600, ready_timeout_seconds=3600)
    roll = Roll(
        fleet, FakeKube(world), Journal(parameters, "/b"), RunLock(parameters, "/b"), quiet, world.clock, rolling
    )
    plan = outdated(fleet.snapshot(), operation="patch", include_protected=False, surge=surge, overlap=overlap)
    result = roll.run(plan, owner="bench")
    assert len(result.replaced) == hosts and world.lowest_ready == hosts
    return world.clock.now() - start, sum(world.calls.values()) / hosts, world.peak_hosts - hosts


def sequential_roll(hosts: int, args: argparse.Namespace) -> tuple[float, float, int]:
    """The baseline: cordon, drain, terminate without a decrement, wait for the group's replacement, next."""
    world = World.with_hosts(hosts, boot=args.boot, drain=args.drain, pods_per_host=args.pods)
    start = world.clock.now()
    fleet, kube = FakeFleet(world), FakeKube(world)
    for old in [host.instance_id for host in fleet.snapshot().hosts]:
        kube.cordon(old)
        for pod in kube.pods(node=old):
            kube.evict(pod)
        while kube.pods(node=old):
            world.clock.sleep(5)
        world.calls["TerminateInstanceInAutoScalingGroup"] += 1
        world.machines.pop(old)
        world.cordoned.discard(old)
        world.fill()
        while not all(host.lifecycle_state == "InService" for host in fleet.snapshot().hosts):
            world.clock.sleep(5)
    assert world.lowest_ready is not None
    return world.clock.now() - start, sum(world.calls.values()) / hosts, world.lowest_ready - hosts


def lower_bound(hosts: int, surge: int, overlap: bool, boot: float, drain: float) -> float:
    waves = math.ceil(hosts / surge)
    if not overlap:
        return waves * (boot + drain)
    return max(waves * boot + drain, boot + waves * drain)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boot", type=float, default=120.0, help="seconds from launch to a Ready node")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds from eviction to the pod gone")
    parser.add_argument("--pods", type=int, default=4, help="pods per host")
    args = parser.parse_args()
    print(f"boot {args.boot:.0f}s, drain {args.drain:.0f}s, {args.pods} pods per host\n")
    print("| hosts | roll | surge, overlap | time | lower bound | ratio | AWS calls/host | hosts above size |")
    print("|---|---|---|---|---|---|---|---|")
    for hosts in (3, 30, 300):
        for surge, overlap in SETTINGS:
            took, calls, extra = engine_roll(hosts, surge, overlap, args)
            bound = lower_bound(hosts, surge, overlap, args.boot, args.drain)
            print(f"| {hosts} | engine | {surge}, {'yes' if overlap else 'no'} | {took:.0f} s | {bound:.0f} s "
                  f"| {took / bound:.3f} | {calls:.0f} | up to {extra} |")  # fmt: skip
        took, calls, short = sequential_roll(hosts, args)
        bound = hosts * (args.boot + args.drain)
        print(f"| {hosts} | sequential baseline | - | {took:.0f} s | {bound:.0f} s | {took / bound:.3f} "
              f"| {calls:.0f} | {short} (one host short while each drains) |")  # fmt: skip


if __name__ == "__main__":
    main()
