"""Drain a node through the Eviction API the way `kubectl drain` does, and say exactly what blocks it when it cannot.

- DaemonSet and mirror pods are left alone; pods without a controller and pods with emptyDir data follow the policy
  (refused up front, before anything is evicted, unless the policy allows them).
- A 429 (a PodDisruptionBudget would be violated) is retried with backoff until the node's deadline; 404 is done.
- After the evictions are accepted, the drain waits for the pods to be gone.
- Several nodes drain at once (``drain_all``): all are cordoned before the first eviction, so no evicted pod lands on
  a node about to be drained, and they share one eviction loop and one deadline.
- At the deadline the policy decides: ``wait`` raises ``DrainBlocked`` naming pods, budgets and what they need;
  ``skip`` returns the blockers to the caller; ``force`` deletes the remaining pods, bypassing the budgets.
- A budget that refuses because pods of the same workload crash-loop elsewhere (where evicted pods went: a new host
  they cannot run on) will not allow more by waiting, and forcing would only take more of a broken workload down:
  ``DrainBlocked`` at once, whatever the policy, naming the crashing pods.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lightkube import ApiError

from provision.clock import Clock
from provision.errors import ClusterError, UsageError
from provision.kube.facade import Kube
from provision.kube.model import CRASHING, PodState
from provision.kube.selectors import label_selector_object

FIRST_BACKOFF = 1.0
FINISHED = {"Succeeded", "Failed"}
MAX_BACKOFF = 5.0  # kubectl drain retries every 5 s; longer only delays the roll once the budget allows
GONE_POLL = 2.0  # once the usual time for evicted pods to go has passed
MAX_GONE_BACKOFF = 8.0  # before this drainer has seen pods go: the grace period is often 30 s


@dataclass(frozen=True)
class DrainPolicy:
    timeout_seconds: float = 900
    on_blocked_budget: Literal["wait", "skip", "force"] = "wait"
    delete_emptydir_data: bool = True
    evict_unmanaged_pods: bool = False


@dataclass(frozen=True)
class Blocker:
    """A pod that could not be evicted, the budget that refused it, and what that budget needs."""

    pod: str
    reason: str
    budget: str = ""
    healthy: int = 0
    needed: int = 0
    pending: tuple[str, ...] = ()
    crashing: tuple[str, ...] = ()  # pods of the same workload crash-looping on other nodes

    def explain(self) -> str:
        if not self.budget:
            return f"{self.pod}: {self.reason}"
        text = (
            f"{self.pod}: PodDisruptionBudget {self.budget} needs {self.needed} healthy pod(s) and has {self.healthy}"
            f", so it allows no eviction until {self.needed - self.healthy + 1} more run elsewhere"
        )
        if self.pending:
            text += f"; pending: {'; '.join(self.pending)}"
        if self.crashing:
            text += f"; crash-looping where they run: {'; '.join(self.crashing)}"
        return text


@dataclass
class DrainReport:
    node: str
    evicted: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)
    blocked: list[Blocker] = field(default_factory=list)
    refused_evictions: int = 0

    @property
    def skipped(self) -> bool:
        """Left with pods the budgets kept, under the skip policy (under force the blockers were deleted)."""
        return bool(self.blocked) and not self.forced


class DrainBlocked(ClusterError):
    def __init__(self, reports: Sequence[DrainReport], seconds: float) -> None:
        self.reports = [report for report in reports if report.blocked]
        nodes = ("node " if len(self.reports) == 1 else "nodes ") + ", ".join(report.node for report in self.reports)
        reasons = " | ".join(blocker.explain() for report in self.reports for blocker in report.blocked)
        super().__init__(f"drain of {nodes} stopped after {seconds:.0f}s: {reasons}")


class Drainer:
    def __init__(self, kube: Kube, clock: Clock, policy: DrainPolicy) -> None:
        self.kube = kube
        self.clock = clock
        self.policy = policy
        self._gone: list[float] = []  # seconds from the last eviction to the pods gone, seen by this drainer

    def drain(self, node: str) -> DrainReport:
        [report] = self.drain_all([node])
        return report

    def drain_all(
        self, nodes: Sequence[str], *, pods: Mapping[str, Sequence[PodState]] | None = None
    ) -> list[DrainReport]:
        """Drain ``nodes`` together; one report each, in their order. Under the skip policy a node whose pods the
        budgets kept returns with its blockers, and the others are drained all the same. ``pods``: the caller has
        cordoned the nodes and listed their pods since, so neither is done again."""
        reports = {node: DrainReport(node) for node in nodes}
        if pods is None:
            for node in nodes:
                self.kube.cordon(node)
            pods = {node: self.kube.pods(node=node) for node in nodes}
        # Every node's pods are checked before the first eviction: a refusal leaves all of them as they were.
        remaining = {pod.ref: (node, pod) for node in nodes for pod in self._select(pods[node], reports[node])}
        started = self.clock.now()
        deadline = started + self.policy.timeout_seconds
        backoff = FIRST_BACKOFF
        while remaining:
            for report in reports.values():
                report.blocked = []
            for ref, (node, pod) in list(remaining.items()):
                blocker = self._evict(pod)
                if blocker is None:
                    reports[node].evicted.append(ref)
                    del remaining[ref]
                else:
                    reports[node].refused_evictions += 1
                    reports[node].blocked.append(blocker)
            if not remaining:
                break
            if any(blocker.crashing for report in reports.values() for blocker in report.blocked):
                raise DrainBlocked(list(reports.values()), self.clock.now() - started)
            if self.clock.now() >= deadline:
                self._at_deadline(list(reports.values()), [pod for _, pod in remaining.values()])
                deadline = self.clock.now() + self.policy.timeout_seconds  # for the forced pods to go
                break
            self.clock.sleep(min(backoff, max(deadline - self.clock.now(), 0.1)))
            backoff = min(backoff * 2, MAX_BACKOFF)
        # Under the skip policy a blocked node's evicted pods are not waited for: that node goes back in service.
        gone = {report.node: [*report.evicted, *report.forced] for report in reports.values() if not report.skipped}
        self._wait_gone(gone, deadline)
        return list(reports.values())

    def _select(self, pods: Sequence[PodState], report: DrainReport) -> list[PodState]:
        """The pods to evict; refuses up front (evicting nothing) when the policy forbids some of them."""
        to_evict: list[PodState] = []
        refused: list[str] = []
        for pod in pods:
            if pod.terminating:
                continue
            if pod.daemon or pod.mirror:
                report.left_alone.append(pod.ref)
            elif pod.owner is None and not self.policy.evict_unmanaged_pods and pod.phase not in FINISHED:
                refused.append(f"{pod.ref} has no controller, so nothing would recreate it "
                               "(set rolling.evict_unmanaged_pods = true to evict it anyway)")  # fmt: skip
            elif pod.emptydir and not self.policy.delete_emptydir_data:
                refused.append(f"{pod.ref} has emptyDir data that eviction deletes "
                               "(set rolling.delete_emptydir_data = true to allow it)")  # fmt: skip
            else:
                to_evict.append(pod)
        if refused:
            raise UsageError(f"not draining node {report.node}: {'; '.join(refused)}")
        return to_evict

    def _evict(self, pod: PodState) -> Blocker | None:
        try:
            self.kube.evict(pod)
        except ApiError as error:
            if error.status.code == 404:
                return None  # already gone
            if error.status.code == 429:
                return self._blocker(pod)
            return Blocker(pod.ref, f"eviction failed: {error.status.code} {error.status.message}")
        return None

    def _blocker(self, pod: PodState) -> Blocker:
        for budget in self.kube.budgets(pod.namespace):
            spec, status = budget.spec, budget.status
            selector = spec.selector.to_dict() if spec and spec.selector else None
            if selector is None or not label_selector_object(selector)(pod.labels):
                continue
            name = budget.metadata.name if budget.metadata and budget.metadata.name else "?"
            siblings = [other for other in self.kube.pods(namespace=pod.namespace) if other.owner == pod.owner]
            pending = tuple(
                f"{other.ref} ({other.unschedulable_reason or other.phase})"
                for other in siblings
                if other.phase == "Pending"
            )
            crashing = tuple(
                f"{other.ref} on {other.node}: {other.waiting_reason}"
                for other in siblings
                if other.waiting_reason in CRASHING and other.node != pod.node
            )
            return Blocker(
                pod.ref,
                "a PodDisruptionBudget allows no eviction now",
                budget=f"{pod.namespace}/{name}",
                healthy=(status.currentHealthy or 0) if status else 0,
                needed=(status.desiredHealthy or 0) if status else 0,
                pending=pending,
                crashing=crashing,
            )
        return Blocker(pod.ref, "the API refused the eviction (429) without a budget that covers the pod")

    def _at_deadline(self, reports: list[DrainReport], remaining: list[PodState]) -> None:
        """The policy's answer to the pods still refused at the deadline (their nodes' reports hold the blockers)."""
        if self.policy.on_blocked_budget == "skip":
            return
        if self.policy.on_blocked_budget == "wait":
            raise DrainBlocked(reports, self.policy.timeout_seconds)
        for pod in remaining:  # force: explicitly configured, so the budgets are overridden
            self.kube.delete_pod(pod)
            next(report for report in reports if report.node == pod.node).forced.append(pod.ref)

    def _wait_gone(self, refs: dict[str, list[str]], deadline: float) -> None:
        """Until the pods ``refs`` names on each node are gone from it: first for as long as pods took to go in
        this drainer's earlier drains, then in short polls; with nothing learnt yet, polls that back off."""
        wanted = {node: set(names) for node, names in refs.items() if names}
        if not wanted:
            return
        start = self.clock.now()
        if self._gone:  # a little less than usual, then short polls: the figure learnt stays close to the truth
            self.clock.sleep(min(0.9 * statistics.median(self._gone), max(deadline - start, 0.0)))
        pause = FIRST_BACKOFF
        while wanted:
            for node in list(wanted):
                wanted[node] &= {pod.ref for pod in self.kube.pods(node=node)}
                if not wanted[node]:
                    del wanted[node]
            if not wanted:
                self._gone.append(self.clock.now() - start)
                return
            if self.clock.now() >= deadline:
                still = ", ".join(sorted(ref for names in wanted.values() for ref in names))
                raise ClusterError(
                    f"node {', '.join(wanted)}: evicted pods still terminating after the deadline: {still}"
                )
            self.clock.sleep(pause)
            pause = min(pause * 2, GONE_POLL if self._gone else MAX_GONE_BACKOFF)
