"""The Kubernetes facade (lightkube) over HTTP against the API simulator, in virtual time."""

from __future__ import annotations

import dataclasses

import pytest

from provision.errors import UsageError
from provision.kube.drain import DrainBlocked, Drainer, DrainPolicy
from provision.kube.facade import Kube, connect
from provision.kube.migration import migration, owners_of
from provision.kube.model import PodState
from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture


def kube_for(sim: Simulator) -> Kube:
    return Kube(connect(kubeconfig=str(sim.kubeconfig)))


def nodes(sim: Simulator, *names: str) -> None:
    for index, name in enumerate(names):
        sim.world.add_node(name, provider_id=f"aws:///eu-west-1a/i-{index:017x}", internal_ip=f"10.0.0.{index + 10}")


def pods_on(kube: Kube, node: str, prefix: str = "") -> list[str]:
    return sorted(p.name for p in kube.pods(node=node) if p.name.startswith(prefix) and not p.terminating)


def drainer(sim: Simulator, kube: Kube, **policy: object) -> Drainer:
    return Drainer(kube, sim.clock, dataclasses.replace(DrainPolicy(timeout_seconds=120), **policy))  # type: ignore[arg-type]


def crowd_onto_first_node(sim: Simulator, app: str, replicas: int, *others: str) -> None:
    """All replicas land on node-a (the only node at first); then the other nodes join."""
    sim.deployment(app, replicas)
    sim.settle(5)
    nodes_after = list(others)
    for index, name in enumerate(nodes_after, start=1):
        sim.world.add_node(name, provider_id=f"aws:///eu-west-1b/i-{index:017x}")
    sim.settle(3)


def test_hosts_map_to_nodes_by_provider_id_then_by_private_name(simulator: Simulator) -> None:
    simulator.world.add_node("ip-10-0-0-1.ec2.internal", provider_id="aws:///eu-west-1a/i-0aaaaaaaaaaaaaaaa")
    simulator.world.add_node("ip-10-0-0-2.ec2.internal", internal_ip="10.0.0.2")
    kube = kube_for(simulator)

    matched = kube.match_hosts(
        kube.nodes(),
        {
            "i-0aaaaaaaaaaaaaaaa": ["ip-10-0-0-9.ec2.internal"],
            "i-0bbbbbbbbbbbbbbbb": ["ip-10-0-0-2.ec2.internal", "10.0.0.2"],
            "i-0cccccccccccccccc": ["ip-10-0-0-3.ec2.internal"],
        },
    )

    assert {instance: node.name for instance, node in matched.items()} == {
        "i-0aaaaaaaaaaaaaaaa": "ip-10-0-0-1.ec2.internal",
        "i-0bbbbbbbbbbbbbbbb": "ip-10-0-0-2.ec2.internal",
    }


def test_cordon_uncordon_labels_annotations_taints(simulator: Simulator) -> None:
    nodes(simulator, "node-a")
    kube = kube_for(simulator)

    kube.cordon("node-a")
    kube.label("node-a", {"cluster/roll": "surge"})
    kube.annotate("node-a", {"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"})
    kube.taint("node-a", "cluster/draining", "yes", "NoSchedule")
    cordoned = kube.node("node-a")
    kube.uncordon("node-a")
    kube.label("node-a", {"cluster/roll": None})
    kube.untaint("node-a", "cluster/draining")
    after = kube.node("node-a")

    assert cordoned is not None and after is not None
    assert cordoned.unschedulable and not after.unschedulable
    assert cordoned.labels["cluster/roll"] == "surge" and "cluster/roll" not in after.labels
    assert after.labels["kubernetes.io/hostname"] == "node-a", "other labels are kept"
    assert cordoned.annotations["cluster-autoscaler.kubernetes.io/scale-down-disabled"] == "true"
    assert cordoned.taints == (("cluster/draining", "yes", "NoSchedule"),) and after.taints == ()
    assert kube.node("missing") is None


def test_drain_evicts_workloads_leaves_daemonsets_and_the_pods_come_back_elsewhere(simulator: Simulator) -> None:
    nodes(simulator, "node-a", "node-b", "node-c")
    simulator.world.create(
        "DaemonSet",
        "kube-system",
        {
            "metadata": {"name": "proxy"},
            "spec": {
                "selector": {"matchLabels": {"app": "proxy"}},
                "template": {"metadata": {"labels": {"app": "proxy"}}, "spec": {"containers": [{"name": "p"}]}},
            },
        },
    )
    simulator.deployment("web", 6)
    simulator.settle(5)
    kube = kube_for(simulator)
    before = [p for p in kube.pods(node="node-a") if p.name.startswith("web")]
    assert before

    report = drainer(simulator, kube).drain("node-a")

    assert sorted(report.evicted) == sorted(p.ref for p in before)
    assert [ref.split("/")[1][:5] for ref in report.left_alone] == ["proxy"]
    assert pods_on(kube, "node-a", "web") == []
    assert pods_on(kube, "node-a", "proxy"), "the DaemonSet pod stays"
    simulator.settle(5)
    status = migration(kube, dict.fromkeys(owners_of(before)), away_from="node-a")
    assert status.done, status
    assert simulator.world.counters.budget_violations == 0


def test_nodes_drained_together_are_all_cordoned_first_so_each_pod_is_evicted_once(simulator: Simulator) -> None:
    nodes(simulator, "node-a", "node-b", "node-c")
    simulator.deployment("web", 6)
    simulator.settle(5)
    kube = kube_for(simulator)
    leaving = {node: pods_on(kube, node, "web") for node in ("node-a", "node-b")}
    assert all(leaving.values())

    reports = drainer(simulator, kube).drain_all(["node-a", "node-b"])

    assert [report.node for report in reports] == ["node-a", "node-b"]
    assert [sorted(ref.split("/")[1] for ref in report.evicted) for report in reports] == list(leaving.values())
    assert simulator.world.counters.evictions == sum(map(len, leaving.values())), "no pod moved onto b from a"
    simulator.settle(5)
    assert pods_on(kube, "node-a", "web") == pods_on(kube, "node-b", "web") == []
    assert len(pods_on(kube, "node-c", "web")) == 6


def test_under_skip_a_node_the_budgets_keep_goes_back_and_the_other_is_drained(simulator: Simulator) -> None:
    nodes(simulator, "node-a")
    crowd_onto_first_node(simulator, "web", 2, "node-b")
    simulator.budget("web", "web", minAvailable=2)
    simulator.deployment("api", 4)  # spread over both nodes; no budget
    simulator.settle(5)
    kube = kube_for(simulator)
    assert pods_on(kube, "node-b", "api") and not pods_on(kube, "node-b", "web")
    simulator.world.add_node("node-c", provider_id="aws:///eu-west-1c/i-00000000000000009")

    kept, drained = drainer(simulator, kube, on_blocked_budget="skip").drain_all(["node-a", "node-b"])

    assert kept.skipped and [blocker.budget for blocker in kept.blocked] == ["default/web", "default/web"]
    assert not drained.skipped and drained.evicted and pods_on(kube, "node-b", "api") == []
    assert pods_on(kube, "node-a", "web"), "the budget kept them"
    assert simulator.world.counters.budget_violations == 0


def test_a_budget_that_lets_one_pod_go_at_a_time_takes_several_rounds(simulator: Simulator) -> None:
    nodes(simulator, "node-a")
    crowd_onto_first_node(simulator, "web", 3, "node-b", "node-c")
    simulator.budget("web", "web", minAvailable=2)
    kube = kube_for(simulator)

    report = drainer(simulator, kube).drain("node-a")

    assert len(report.evicted) == 3
    assert report.refused_evictions >= 2, "the budget refused while replacements started"
    assert simulator.world.counters.budget_violations == 0
    assert simulator.world.counters.evictions_refused == report.refused_evictions


def test_a_budget_that_never_allows_eviction_stops_the_drain_at_its_deadline_and_names_it(
    simulator: Simulator,
) -> None:
    nodes(simulator, "node-a")
    crowd_onto_first_node(simulator, "web", 3, "node-b")
    simulator.budget("web", "web", minAvailable=3)
    kube = kube_for(simulator)
    start = simulator.clock.now()

    with pytest.raises(DrainBlocked) as blocked:
        drainer(simulator, kube).drain("node-a")

    message = str(blocked.value)
    assert message.startswith("drain of node node-a stopped after 120s: default/web-")
    assert "PodDisruptionBudget default/web needs 3 healthy pod(s) and has 3" in message
    assert "until 1 more run elsewhere" in message
    assert simulator.clock.now() - start >= 120
    assert len(pods_on(kube, "node-a", "web")) == 3, "nothing was evicted against the budget"
    assert simulator.world.counters.budget_violations == 0


def test_a_blocked_drain_names_the_replacements_that_cannot_be_scheduled(simulator: Simulator) -> None:
    simulator.world.timings.node_pods = 3
    nodes(simulator, "node-a")
    crowd_onto_first_node(simulator, "web", 3, "node-b")
    simulator.deployment("filler", 3)  # fills node-b
    simulator.settle(3)
    simulator.budget("web", "web", minAvailable=3)
    simulator.world.patch("PodDisruptionBudget", "default", "web", {"spec": {"minAvailable": 2}})
    kube = kube_for(simulator)

    with pytest.raises(DrainBlocked) as blocked:
        drainer(simulator, kube).drain("node-a")

    assert "pending: default/web-" in str(blocked.value)
    # the scheduler's own words: node-a is cordoned by the drain, node-b is full
    assert "0/2 nodes are available: 1 Too many pods, 1 node(s) were unschedulable." in str(blocked.value)


def test_skip_returns_the_blockers_and_force_overrides_the_budget(simulator: Simulator) -> None:
    nodes(simulator, "node-a")
    crowd_onto_first_node(simulator, "web", 2, "node-b")
    simulator.budget("web", "web", minAvailable=2)
    kube = kube_for(simulator)

    skipped = drainer(simulator, kube, on_blocked_budget="skip").drain("node-a")
    forced = drainer(simulator, kube, on_blocked_budget="force").drain("node-a")

    assert [blocker.budget for blocker in skipped.blocked] == ["default/web", "default/web"]
    assert skipped.evicted == []
    assert len(forced.forced) == 2
    assert pods_on(kube, "node-a", "web") == []
    assert simulator.world.counters.budget_violations == 2, "force is a counted violation, never a silent one"


def test_pods_without_a_controller_are_refused_up_front_unless_allowed(simulator: Simulator) -> None:
    nodes(simulator, "node-a", "node-b")
    simulator.deployment("web", 2)
    simulator.world.create(
        "Pod",
        "default",
        {"metadata": {"name": "lonely"}, "spec": {"nodeName": "node-a", "containers": [{"name": "c"}]}},
    )
    simulator.settle(3)
    kube = kube_for(simulator)

    with pytest.raises(UsageError, match="default/lonely has no controller"):
        drainer(simulator, kube).drain("node-a")
    assert pods_on(kube, "node-a", "web"), "nothing was evicted"

    report = drainer(simulator, kube, evict_unmanaged_pods=True).drain("node-a")
    assert "default/lonely" in report.evicted


def test_emptydir_pods_follow_the_policy(simulator: Simulator) -> None:
    nodes(simulator, "node-a", "node-b")
    simulator.deployment("cache", 2, volumes=[{"name": "scratch", "emptyDir": {}}])
    simulator.settle(3)
    kube = kube_for(simulator)

    with pytest.raises(UsageError, match="has emptyDir data"):
        drainer(simulator, kube, delete_emptydir_data=False).drain("node-a")
    assert drainer(simulator, kube, delete_emptydir_data=True).drain("node-a").evicted


def test_a_node_already_not_ready_drains_its_unready_pods(simulator: Simulator) -> None:
    nodes(simulator, "node-a", "node-b", "node-c")
    simulator.deployment("web", 3)
    simulator.budget("web", "web", minAvailable=2)
    simulator.settle(3)
    simulator.world.set_node_ready("node-a", False)
    simulator.settle(1)
    kube = kube_for(simulator)
    on_a = pods_on(kube, "node-a", "web")
    assert on_a

    report = drainer(simulator, kube).drain("node-a")

    assert sorted(ref.split("/")[1] for ref in report.evicted) == on_a
    assert simulator.world.counters.budget_violations == 0


class StaleListing(Kube):
    """The first listing of a node's pods still shows a pod that is already gone, as a real list can."""

    listed_once = False

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[PodState]:
        found = super().pods(node=node, namespace=namespace)
        if node and not self.listed_once:
            self.listed_once = True
            return [*found, dataclasses.replace(found[0], name="web-gone")]
        return found


def test_a_pod_gone_before_its_eviction_counts_as_done(simulator: Simulator) -> None:
    nodes(simulator, "node-a", "node-b")
    simulator.deployment("web", 2)
    simulator.settle(3)
    kube = StaleListing(connect(kubeconfig=str(simulator.kubeconfig)))

    report = drainer(simulator, kube).drain("node-a")

    assert "default/web-gone" in report.evicted
    assert pods_on(kube, "node-a", "web") == []
