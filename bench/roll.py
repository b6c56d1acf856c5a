"""Simulate rolls of 3, 30 and 300 hosts in virtual time and print how long they take against the lower bound, and
how many AWS calls and Kubernetes requests they make per replaced host, by operation.

    .venv/bin/python -m bench.roll [--boot 120] [--drain 60] [--pods 4]

The engine is the real one (provision.roll.engine.Roll, with the real Fleet, Observer, decide, Drainer and
migration check); what it calls are the typed AWS facades and the Kubernetes facade, faked in memory
(tests/rollfakes.py), where one method call is one AWS call or one API request; a test runs a roll on the sandbox and
checks that the real facades make the same operations. Time is the injected clock: a new host is InService with its
node Ready `--boot` seconds after launch; an evicted pod is gone `--drain` seconds after its eviction and Ready
elsewhere at once; a terminated host waits in its terminate hook until the roll completes it.

Lower bounds: with surge, the boots come in ceil(n / surge) waves, and so do the drains, one wave after another, and
neither the first drain nor the last can start before a boot ends: max(waves * boot + drain, boot + waves * drain);
without overlap every wave's drain also waits for its boot: waves * (boot + drain). Terminate-first (surge 0) drains
each wave, then boots its replacements: waves * (drain + boot).
"""

from __future__ import annotations

import argparse
import io
import math
from collections import Counter

from rich.console import Console

from provision.config.schema import Rolling
from provision.deploy.host_records import forget_hosts
from provision.roll.engine import Roll
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from provision.roll.plan import Budget, outdated
from provision.ui import UI
from tests.rollfakes import FakeKube, FakeParameters, World, fake_fleet

STRATEGIES = [(1, 0, False), (1, 0, True), (3, 0, True), (0, 1, False)]  # (surge, unavailable, overlap)


def engine_roll(hosts: int, budget: Budget, args: argparse.Namespace) -> tuple[float, World]:
    world = World.with_hosts(hosts, boot=args.boot, drain=args.drain, pods_per_host=args.pods)
    start = world.clock.now()
    fleet, parameters = fake_fleet(world), FakeParameters(world)
    quiet = UI(Console(file=io.StringIO()), ask=None, assume_yes=True)
    rolling = Rolling(drain_timeout_seconds=3600, ready_timeout_seconds=3600)
    roll = Roll(
        fleet,
        FakeKube(world),
        Journal(parameters, "/b"),
        RunLock(parameters, "/b"),
        quiet,
        world.clock,
        rolling,
        forget_hosts=lambda hosts: forget_hosts(parameters, "/b", hosts),
    )
    plan = outdated(fleet.snapshot(), operation="patch", include_protected=False, budget=budget)
    result = roll.run(plan, owner="bench")
    assert len(result.replaced) == hosts
    assert world.lowest_ready is not None and world.lowest_ready >= hosts - budget.unavailable
    return world.clock.now() - start, world


def lower_bound(hosts: int, budget: Budget, boot: float, drain: float) -> float:
    if budget.surge == 0:
        return math.ceil(hosts / budget.unavailable) * (boot + drain)
    waves = math.ceil(hosts / budget.surge)
    if not budget.overlap:
        return waves * (boot + drain)
    return max(waves * boot + drain, boot + waves * drain)


def per_host(calls: Counter[str], hosts: int) -> str:
    return ", ".join(f"{name} {count / hosts:.1f}" for name, count in calls.most_common())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boot", type=float, default=120.0, help="seconds from launch to a Ready node")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds from eviction to the pod gone")
    parser.add_argument("--pods", type=int, default=4, help="pods per host")
    args = parser.parse_args()
    print(f"boot {args.boot:.0f}s, drain {args.drain:.0f}s, {args.pods} pods per host\n")
    print("| hosts | surge, unavailable, overlap | time | lower bound | ratio | AWS calls/host "
          "| Kubernetes requests/host | hosts above size | lowest ready |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    details: list[str] = []
    for hosts in (3, 30, 300):
        for surge, unavailable, overlap in STRATEGIES:
            budget = Budget(surge, unavailable, overlap)
            took, world = engine_roll(hosts, budget, args)
            bound = lower_bound(hosts, budget, args.boot, args.drain)
            aws, kube = sum(world.calls.values()) / hosts, sum(world.kube_calls.values()) / hosts
            print(f"| {hosts} | {surge}, {unavailable}, {'yes' if overlap else 'no'} | {took:.0f} s | {bound:.0f} s "
                  f"| {took / bound:.3f} | {aws:.1f} | {kube:.1f} | up to {world.peak_hosts - hosts} "
                  f"| {world.lowest_ready} of {hosts} |")  # fmt: skip
            details.append(
                f"{hosts} hosts, surge {surge}, unavailable {unavailable}: AWS {per_host(world.calls, hosts)}"
            )
            details.append(f"{' ' * len(str(hosts))}        Kubernetes {per_host(world.kube_calls, hosts)}")
    print("\nper replaced host, by operation:")
    print("\n".join(details))


if __name__ == "__main__":
    main()
