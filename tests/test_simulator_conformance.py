"""The simulator, seen through the official Kubernetes client's typed calls, must answer as a real API server does.

Code tested against the simulator has to behave the same on a real cluster, so every workload here is created through
the official client (V1Deployment, V1PodDisruptionBudget, V1DaemonSet, V1StatefulSet, V1Pod); only nodes come from the
host simulator (``world.add_node``), as they come from kubelets on a real cluster. Time is virtual: the world moves
only in ``settle``.

Expected values are the real API server's (pkg/registry/core/pod/storage/eviction.go, the disruption controller,
apimachinery's Status errors). The last section holds the differences these tests once found in the simulator.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from kubernetes.client import (
    ApiException,
    AppsV1Api,
    CoreV1Api,
    PolicyV1Api,
    V1ConfigMap,
    V1Container,
    V1DaemonSet,
    V1DaemonSetSpec,
    V1Deployment,
    V1DeploymentSpec,
    V1Eviction,
    V1LabelSelector,
    V1Namespace,
    V1Node,
    V1ObjectMeta,
    V1OwnerReference,
    V1Pod,
    V1PodCondition,
    V1PodDisruptionBudget,
    V1PodDisruptionBudgetSpec,
    V1PodDisruptionBudgetStatus,
    V1PodSpec,
    V1PodTemplateSpec,
    V1ResourceRequirements,
    V1StatefulSet,
    V1StatefulSetSpec,
    V1Toleration,
)
from kubernetes.config import new_client_from_config
from lightkube import ApiError, Client, KubeConfig
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.models.policy_v1 import PodDisruptionBudgetSpec
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget

from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture, imported for pytest

MIRROR = "kubernetes.io/config.mirror"
REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."
TWO_BUDGETS = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."


# --- the official client on the simulator -----------------------------------------------------------------------


@dataclass
class Cluster:
    sim: Simulator
    core: CoreV1Api
    apps: AppsV1Api
    policy: PolicyV1Api
    _nodes: int = field(default=0)

    def settle(self, seconds: int = 10) -> None:
        self.sim.settle(seconds)

    def add_node(self, name: str, *, ready: bool = True) -> None:
        """A node as the host simulator registers it: an AWS providerID and an internal IP."""
        self._nodes += 1
        self.sim.world.add_node(
            name,
            provider_id=f"aws:///eu-west-1a/i-{self._nodes:017x}",
            internal_ip=f"10.0.0.{self._nodes}",
            ready=ready,
        )

    def create_deployment(self, name: str, replicas: int, *, namespace: str = "default", **options: Any) -> None:
        self.apps.create_namespaced_deployment(namespace, deployment(name, replicas, **options))

    def create_budget(
        self,
        name: str,
        app: str,
        *,
        min_available: int | str | None = None,
        max_unavailable: int | str | None = None,
        unhealthy_policy: str | None = None,
    ) -> None:
        self.policy.create_namespaced_pod_disruption_budget(
            "default", budget(name, app, min_available, max_unavailable, unhealthy_policy)
        )

    def budget_status(self, name: str) -> V1PodDisruptionBudgetStatus:
        status = self.policy.read_namespaced_pod_disruption_budget(name, "default").status
        assert status is not None
        return status

    def pods(self, app: str | None = None, *, namespace: str = "default", fields: str | None = None) -> list[V1Pod]:
        selector = f"app={app}" if app else None
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector, field_selector=fields).items)

    def evict(self, pod: str, namespace: str = "default") -> None:
        self.core.create_namespaced_pod_eviction(pod, namespace, eviction(pod, namespace))


@pytest.fixture
def cluster(simulator: Simulator) -> Iterator[Cluster]:
    api_client = new_client_from_config(config_file=str(simulator.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield Cluster(simulator, CoreV1Api(api_client), AppsV1Api(api_client), PolicyV1Api(api_client))
    finally:
        api_client.close()


# --- typed objects ------------------------------------------------------------------------------------------------


def template(
    labels: dict[str, str], *, cpu: str | None = None, tolerations: list[V1Toleration] | None = None
) -> V1PodTemplateSpec:
    resources = V1ResourceRequirements(requests={"cpu": cpu}) if cpu else None
    return V1PodTemplateSpec(
        metadata=V1ObjectMeta(labels=labels),
        spec=V1PodSpec(
            containers=[V1Container(name="main", image="nginx", resources=resources)], tolerations=tolerations
        ),
    )


def deployment(
    name: str, replicas: int, *, cpu: str | None = None, labels: dict[str, str] | None = None
) -> V1Deployment:
    selector = {"app": name}
    return V1Deployment(
        metadata=V1ObjectMeta(name=name),
        spec=V1DeploymentSpec(
            replicas=replicas,
            selector=V1LabelSelector(match_labels=selector),
            template=template({**selector, **(labels or {})}, cpu=cpu),
        ),
    )


def daemonset(name: str) -> V1DaemonSet:
    labels = {"app": name}
    return V1DaemonSet(
        metadata=V1ObjectMeta(name=name),
        spec=V1DaemonSetSpec(selector=V1LabelSelector(match_labels=labels), template=template(labels)),
    )


def statefulset(name: str, replicas: int) -> V1StatefulSet:
    labels = {"app": name}
    return V1StatefulSet(
        metadata=V1ObjectMeta(name=name),
        spec=V1StatefulSetSpec(
            replicas=replicas,
            service_name=name,
            selector=V1LabelSelector(match_labels=labels),
            template=template(labels),
        ),
    )


def budget(
    name: str,
    app: str,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    unhealthy_policy: str | None = None,
) -> V1PodDisruptionBudget:
    return V1PodDisruptionBudget(
        metadata=V1ObjectMeta(name=name),
        spec=V1PodDisruptionBudgetSpec(
            selector=V1LabelSelector(match_labels={"app": app}),
            min_available=min_available,
            max_unavailable=max_unavailable,
            unhealthy_pod_eviction_policy=unhealthy_policy,
        ),
    )


def bare_pod(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    node: str | None = None,
    cpu: str | None = None,
    tolerations: list[V1Toleration] | None = None,
    owners: list[V1OwnerReference] | None = None,
) -> V1Pod:
    spec = template({}, cpu=cpu, tolerations=tolerations).spec
    assert spec is not None
    spec.node_name = node
    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels=labels, annotations=annotations, owner_references=owners), spec=spec
    )


def eviction(pod: str, namespace: str = "default") -> V1Eviction:
    return V1Eviction(metadata=V1ObjectMeta(name=pod, namespace=namespace))


# --- reading typed answers ----------------------------------------------------------------------------------------


class _WithMeta(Protocol):
    @property
    def metadata(self) -> V1ObjectMeta | None: ...


def meta(obj: _WithMeta) -> V1ObjectMeta:
    assert obj.metadata is not None
    return obj.metadata


def name_of(obj: _WithMeta) -> str:
    name = meta(obj).name
    assert name is not None
    return name


def names(objs: Iterable[_WithMeta]) -> list[str]:
    return sorted(name_of(obj) for obj in objs)


def controller_of(obj: _WithMeta) -> V1OwnerReference | None:
    controllers = [ref for ref in meta(obj).owner_references or [] if ref.controller]
    assert len(controllers) <= 1
    return controllers[0] if controllers else None


def node_of(pod: V1Pod) -> str | None:
    return pod.spec.node_name if pod.spec else None


def phase(pod: V1Pod) -> str | None:
    return pod.status.phase if pod.status else None


def condition(pod: V1Pod, kind: str) -> V1PodCondition | None:
    return next((c for c in (pod.status.conditions if pod.status else None) or [] if c.type == kind), None)


def ready(pod: V1Pod) -> bool:
    found = condition(pod, "Ready")
    return found is not None and found.status == "True"


def node_ready(node: V1Node) -> str | None:
    conditions = (node.status.conditions if node.status else None) or []
    return next((c.status for c in conditions if c.type == "Ready"), None)


def api_error(call: Callable[[], object]) -> tuple[int, dict[str, Any]]:
    """The HTTP status of the ApiException ``call`` raises, and its body, which must be a failure Status."""
    with pytest.raises(ApiException) as caught:
        call()
    body = caught.value.body
    assert isinstance(body, str), "the error carries no body"
    status: dict[str, Any] = json.loads(body)
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1", "Failure")
    assert status["code"] == caught.value.status
    return int(caught.value.status), status


def budget_cause(name: str, needs: int, has: int) -> dict[str, str]:
    return {
        "reason": "DisruptionBudget",
        "message": f"The disruption budget {name} needs {needs} healthy pods and has {has} currently",
    }


# --- 1, 2: nodes --------------------------------------------------------------------------------------------------


def test_nodes_are_listed_and_read_with_conditions_provider_id_and_addresses(cluster: Cluster) -> None:
    world = cluster.sim.world
    world.add_node("node-a", provider_id="aws:///eu-west-1a/i-0a1b2c3d4e5f60718", internal_ip="10.0.1.10")
    world.add_node("node-b", provider_id="aws:///eu-west-1b/i-0f0e0d0c0b0a09080", internal_ip="10.0.2.20")

    listed = {name_of(node): node for node in cluster.core.list_node().items}
    assert set(listed) == {"node-a", "node-b"}
    node_a = listed["node-a"]
    assert node_a.spec is not None and node_a.spec.provider_id == "aws:///eu-west-1a/i-0a1b2c3d4e5f60718"
    assert node_a.status is not None
    addresses = {(address.type, address.address) for address in node_a.status.addresses or []}
    assert {("InternalIP", "10.0.1.10"), ("Hostname", "node-a")} <= addresses
    assert node_ready(node_a) == "True"
    assert node_ready(listed["node-b"]) == "True"

    world.set_node_ready("node-b", False)
    assert node_ready(cluster.core.read_node("node-b")) == "False"
    assert node_ready(cluster.core.read_node("node-a")) == "True"
    assert {name_of(n): node_ready(n) for n in cluster.core.list_node().items} == {"node-a": "True", "node-b": "False"}
    world.set_node_ready("node-b", True)
    assert node_ready(cluster.core.read_node("node-b")) == "True"

    read = cluster.core.read_node("node-b")
    assert read.spec is not None and read.spec.provider_id == "aws:///eu-west-1b/i-0f0e0d0c0b0a09080"

    code, status = api_error(lambda: cluster.core.read_node("node-z"))
    assert code == 404
    assert status["reason"] == "NotFound"
    assert status["message"] == 'nodes "node-z" not found'


def test_patch_node_merges_labels_and_annotations_replaces_taints_and_drops_null_keys(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    before = meta(cluster.core.read_node("node-a"))
    original_labels = dict(before.labels or {})
    assert original_labels["kubernetes.io/hostname"] == "node-a"

    # A dict body: the official client sends it as a strategic merge patch.
    cluster.core.patch_node("node-a", {"spec": {"unschedulable": True}})
    spec = cluster.core.read_node("node-a").spec
    assert spec is not None and spec.unschedulable is True

    cluster.core.patch_node(
        "node-a", {"metadata": {"labels": {"role": "worker", "zone": "a"}, "annotations": {"x": "1"}}}
    )
    cluster.core.patch_node("node-a", {"metadata": {"labels": {"zone": "b"}, "annotations": {"y": "2"}}})
    patched = meta(cluster.core.read_node("node-a"))
    assert patched.labels == {**original_labels, "role": "worker", "zone": "b"}
    assert {"x": "1", "y": "2"}.items() <= (patched.annotations or {}).items()

    cluster.core.patch_node("node-a", {"metadata": {"labels": {"role": None}, "annotations": {"x": None}}})
    patched = meta(cluster.core.read_node("node-a"))
    assert patched.labels == {**original_labels, "zone": "b"}
    assert "x" not in (patched.annotations or {})
    assert (patched.annotations or {}).get("y") == "2"

    taints = [{"key": "a", "value": "1", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]
    cluster.core.patch_node("node-a", {"spec": {"taints": taints}})
    spec = cluster.core.read_node("node-a").spec
    assert spec is not None
    assert [(t.key, t.value, t.effect) for t in spec.taints or []] == [
        ("a", "1", "NoSchedule"),
        ("b", None, "NoExecute"),
    ]
    cluster.core.patch_node("node-a", {"spec": {"taints": [{"key": "c", "value": "3", "effect": "PreferNoSchedule"}]}})
    spec = cluster.core.read_node("node-a").spec
    assert spec is not None
    assert [(t.key, t.value, t.effect) for t in spec.taints or []] == [("c", "3", "PreferNoSchedule")]

    cluster.core.patch_node("node-a", {"spec": {"unschedulable": None, "taints": None}})
    spec = cluster.core.read_node("node-a").spec
    assert spec is not None and not spec.unschedulable and not spec.taints


# --- 3: Deployment -> ReplicaSet -> Pods --------------------------------------------------------------------------


def test_deployment_owns_a_replicaset_owning_pods_that_are_ready_only_after_the_kubelet_delays(
    cluster: Cluster,
) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    created = cluster.apps.create_namespaced_deployment("default", deployment("web", 3))
    assert name_of(created) == "web"

    # Just created: nothing runs yet (start_delay 1s, ready_delay 1s in the fixture).
    assert not any(ready(pod) for pod in cluster.pods("web"))
    status = cluster.apps.read_namespaced_deployment("web", "default").status
    assert status is not None and not status.ready_replicas

    cluster.settle(1)
    pods = cluster.pods("web")
    assert len(pods) == 3
    assert [phase(pod) for pod in pods] == ["Running"] * 3
    assert not any(ready(pod) for pod in pods)

    cluster.settle(1)
    pods = cluster.pods("web")
    assert [(phase(pod), ready(pod)) for pod in pods] == [("Running", True)] * 3

    web = cluster.apps.read_namespaced_deployment("web", "default")
    assert web.status is not None
    assert (web.status.replicas, web.status.ready_replicas, web.status.available_replicas) == (3, 3, 3)

    replica_sets = cluster.apps.list_namespaced_replica_set("default").items
    assert len(replica_sets) == 1
    replica_set = replica_sets[0]
    owner = controller_of(replica_set)
    assert owner is not None
    assert (owner.kind, owner.name, owner.uid) == ("Deployment", "web", meta(web).uid)
    assert name_of(replica_set).startswith("web-")
    for pod in pods:
        pod_owner = controller_of(pod)
        assert pod_owner is not None
        assert (pod_owner.kind, pod_owner.name, pod_owner.uid) == (
            "ReplicaSet",
            name_of(replica_set),
            meta(replica_set).uid,
        )
        assert name_of(pod).startswith(name_of(replica_set) + "-")
        assert node_of(pod) in {"node-a", "node-b"}


# --- 4: list selectors ------------------------------------------------------------------------------------------


def test_list_pods_by_label_selectors_field_selectors_and_across_namespaces(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    cluster.create_deployment("a", 2)
    cluster.create_deployment("b", 2, labels={"tier": "backend"})
    cluster.create_deployment("c", 1)
    cluster.core.create_namespaced_pod("default", bare_pod("hungry", labels={"app": "hungry"}, cpu="64"))
    cluster.core.create_namespaced_pod("kube-system", bare_pod("agent", labels={"app": "agent"}))
    cluster.settle(3)

    everything = cluster.pods()
    by_name = {name_of(pod): pod for pod in everything}
    assert len(everything) == 6

    def listed(labels: str | None = None, fields: str | None = None) -> list[str]:
        return names(cluster.core.list_namespaced_pod("default", label_selector=labels, field_selector=fields).items)

    def of(*apps: str) -> list[str]:
        return sorted(n for n, pod in by_name.items() if (meta(pod).labels or {}).get("app") in apps)

    assert listed("app=a") == of("a") and len(of("a")) == 2
    assert listed("app==b") == of("b")
    assert listed("app!=a") == of("b", "c", "hungry")
    assert listed("app in (a,b)") == of("a", "b")
    assert listed("app in (a, c)") == of("a", "c")
    assert listed("app notin (a,b)") == of("c", "hungry")
    assert listed("tier") == of("b")
    assert listed("!tier") == of("a", "c", "hungry")
    assert listed("app=b,tier=backend") == of("b")
    assert listed("app=a,tier=backend") == []

    on_a = sorted(n for n, pod in by_name.items() if node_of(pod) == "node-a")
    assert on_a, "some pods run on node-a"
    assert listed(fields="spec.nodeName=node-a") == on_a
    assert listed(fields="spec.nodeName=") == ["hungry"]
    assert listed(fields="status.phase=Running") == sorted(set(by_name) - {"hungry"})
    assert listed(fields="status.phase=Pending") == ["hungry"]
    assert listed(fields="status.phase!=Running") == ["hungry"]
    one = of("a")[0]
    assert listed(fields=f"metadata.name={one}") == [one]
    assert listed(fields="metadata.name=nothing-like-it") == []
    assert listed("app=a", "spec.nodeName=node-a") == sorted(set(of("a")) & set(on_a))
    assert listed(fields="spec.nodeName=node-a,status.phase=Running") == on_a

    everywhere = cluster.core.list_pod_for_all_namespaces().items
    assert {(meta(pod).namespace, name_of(pod)) for pod in everywhere} == {
        ("kube-system", "agent"),
        *(("default", n) for n in by_name),
    }
    in_kube_system = cluster.core.list_pod_for_all_namespaces(field_selector="metadata.namespace=kube-system").items
    assert names(in_kube_system) == ["agent"]
    assert names(cluster.core.list_pod_for_all_namespaces(label_selector="app in (agent,c)").items) == sorted(
        ["agent", *of("c")]
    )


# --- 5: the scheduler ---------------------------------------------------------------------------------------------


def test_scheduler_spreads_pods_over_ready_schedulable_nodes_only(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    cluster.add_node("node-c")
    cluster.add_node("node-d", ready=False)
    cluster.core.patch_node("node-c", {"spec": {"unschedulable": True}})  # cordoned

    cluster.create_deployment("web", 6)
    cluster.settle(3)
    pods = cluster.pods("web")
    assert len(pods) == 6 and all(ready(pod) for pod in pods)
    placement = Counter(node_of(pod) for pod in pods)
    assert set(placement) == {"node-a", "node-b"}, placement

    cluster.core.patch_node("node-c", {"spec": {"unschedulable": None}})  # uncordoned
    cluster.apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 9}})
    cluster.settle(3)
    pods = cluster.pods("web")
    assert len(pods) == 9 and all(ready(pod) for pod in pods)
    placement = Counter(node_of(pod) for pod in pods)
    assert "node-c" in placement, placement
    assert "node-d" not in placement, placement


def test_pods_that_fit_on_no_node_stay_pending_with_podscheduled_false(cluster: Cluster) -> None:
    cluster.add_node("node-a")  # 2000m of CPU each
    cluster.add_node("node-b")
    cluster.create_deployment("hungry", 1, cpu="3")
    cluster.create_deployment("big", 3, cpu="1500m")  # room for one per node
    cluster.settle(5)

    [hungry] = cluster.pods("hungry")
    assert phase(hungry) == "Pending"
    assert node_of(hungry) is None
    scheduled = condition(hungry, "PodScheduled")
    assert scheduled is not None
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert not ready(hungry)

    big = cluster.pods("big")
    running = [pod for pod in big if phase(pod) == "Running"]
    pending = [pod for pod in big if phase(pod) == "Pending"]
    assert sorted(node_of(pod) or "" for pod in running) == ["node-a", "node-b"]
    assert len(pending) == 1
    scheduled = condition(pending[0], "PodScheduled")
    assert scheduled is not None and (scheduled.status, scheduled.reason) == ("False", "Unschedulable")


# --- 6: DaemonSet -------------------------------------------------------------------------------------------------


def test_daemonset_runs_one_pod_per_ready_node_and_follows_new_and_recovered_nodes(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    cluster.add_node("node-c", ready=False)
    cluster.add_node("node-d")
    cluster.core.patch_node("node-d", {"spec": {"unschedulable": True}})  # daemon pods tolerate a cordon

    # The raw answer: the typed one cannot be read back (see the xfail test on DaemonSet status below).
    raw: Any = cluster.apps.create_namespaced_daemon_set("kube-system", daemonset("agent"), _preload_content=False)
    assert raw.status == 201
    assert json.loads(raw.data)["metadata"]["name"] == "agent"
    cluster.settle(3)

    def placement() -> Counter[str | None]:
        pods = cluster.pods("agent", namespace="kube-system")
        for pod in pods:
            owner = controller_of(pod)
            assert owner is not None and (owner.kind, owner.name) == ("DaemonSet", "agent")
            assert ready(pod)
        return Counter(node_of(pod) for pod in pods)

    assert placement() == {"node-a": 1, "node-b": 1, "node-d": 1}

    cluster.add_node("node-e")
    cluster.settle(3)
    assert placement() == {"node-a": 1, "node-b": 1, "node-d": 1, "node-e": 1}

    cluster.sim.world.set_node_ready("node-c", True)
    cluster.settle(3)
    assert placement() == {"node-a": 1, "node-b": 1, "node-c": 1, "node-d": 1, "node-e": 1}


# --- 7: StatefulSet -----------------------------------------------------------------------------------------------


def test_statefulset_pods_have_ordinal_names_and_a_deleted_ordinal_comes_back(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    cluster.apps.create_namespaced_stateful_set("default", statefulset("db", 3))
    cluster.settle(10)  # enough for an OrderedReady start of three pods

    pods = cluster.pods("db")
    assert names(pods) == ["db-0", "db-1", "db-2"]
    assert all(ready(pod) for pod in pods)
    for pod in pods:
        owner = controller_of(pod)
        assert owner is not None and (owner.kind, owner.name) == ("StatefulSet", "db")
    status = cluster.apps.read_namespaced_stateful_set("db", "default").status
    assert status is not None and (status.replicas, status.ready_replicas) == (3, 3)

    old_uid = meta(cluster.core.read_namespaced_pod("db-1", "default")).uid
    cluster.core.delete_namespaced_pod("db-1", "default")
    assert meta(cluster.core.read_namespaced_pod("db-1", "default")).deletion_timestamp is not None

    cluster.settle(5)
    pods = cluster.pods("db")
    assert names(pods) == ["db-0", "db-1", "db-2"]
    reborn = cluster.core.read_namespaced_pod("db-1", "default")
    assert meta(reborn).uid != old_uid
    assert meta(reborn).deletion_timestamp is None
    assert ready(reborn)


# --- 8: PodDisruptionBudget status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_available", "max_unavailable", "expected"),
    [
        # (expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed) for 4 Ready replicas, by hand:
        (3, None, (4, 4, 3, 1)),  # desired = 3
        ("50%", None, (4, 4, 2, 2)),  # ceil(4 * 0.5) = 2
        ("60%", None, (4, 4, 3, 1)),  # ceil(2.4) = 3: minAvailable rounds up
        ("100%", None, (4, 4, 4, 0)),
        (None, 1, (4, 4, 3, 1)),  # 4 - 1
        (None, "30%", (4, 4, 2, 2)),  # 4 - ceil(1.2) = 2: maxUnavailable rounds up too
        (None, "50%", (4, 4, 2, 2)),  # 4 - 2
        (None, 0, (4, 4, 4, 0)),
    ],
    ids=["min-3", "min-50pct", "min-60pct", "min-100pct", "max-1", "max-30pct", "max-50pct", "max-0"],
)
def test_budget_status_arithmetic(
    cluster: Cluster,
    min_available: int | str | None,
    max_unavailable: int | str | None,
    expected: tuple[int, int, int, int],
) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    cluster.create_deployment("web", 4)
    cluster.settle(3)
    cluster.create_budget("web", "web", min_available=min_available, max_unavailable=max_unavailable)
    cluster.settle(1)  # the disruption controller's turn

    read = cluster.policy.read_namespaced_pod_disruption_budget("web", "default")
    assert read.spec is not None
    assert (read.spec.min_available, read.spec.max_unavailable) == (min_available, max_unavailable)
    status = read.status
    assert status is not None
    assert (
        status.expected_pods,
        status.current_healthy,
        status.desired_healthy,
        status.disruptions_allowed,
    ) == expected
    assert status.observed_generation == meta(read).generation
    allowed = next(c for c in status.conditions or [] if c.type == "DisruptionAllowed")
    assert allowed.status == ("True" if expected[3] > 0 else "False")
    listed = cluster.policy.list_namespaced_pod_disruption_budget("default").items
    assert [name_of(item) for item in listed] == ["web"]


# --- 9: the eviction subresource ----------------------------------------------------------------------------------


def test_allowed_eviction_terminates_the_pod_and_its_controller_replaces_it(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    cluster.create_deployment("web", 3)
    cluster.create_budget("web", "web", min_available=2)
    cluster.settle(3)
    assert cluster.budget_status("web").disruptions_allowed == 1
    victim = names(cluster.pods("web"))[0]

    cluster.evict(victim)  # no exception: allowed

    terminating = cluster.core.read_namespaced_pod(victim, "default")
    assert meta(terminating).deletion_timestamp is not None
    status = cluster.budget_status("web")
    assert (status.current_healthy, status.disruptions_allowed) == (2, 0)

    cluster.settle(3)
    code, _ = api_error(lambda: cluster.core.read_namespaced_pod(victim, "default"))
    assert code == 404
    pods = cluster.pods("web")
    assert len(pods) == 3 and victim not in names(pods)
    assert all(ready(pod) and meta(pod).deletion_timestamp is None for pod in pods)
    assert cluster.budget_status("web").disruptions_allowed == 1


def test_refused_eviction_is_a_429_status_naming_the_budget_and_its_numbers(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 3)
    cluster.create_budget("web-pdb", "web", min_available=3)
    cluster.settle(3)
    victim = names(cluster.pods("web"))[0]

    code, status = api_error(lambda: cluster.evict(victim))
    assert code == 429
    assert status["reason"] == "TooManyRequests"
    assert status["message"] == REFUSED
    assert status["details"]["causes"][0] == budget_cause("web-pdb", 3, 3)

    cluster.settle(3)
    untouched = cluster.core.read_namespaced_pod(victim, "default")
    assert meta(untouched).deletion_timestamp is None and ready(untouched)


def test_evicting_a_missing_pod_is_404(cluster: Cluster) -> None:
    code, status = api_error(lambda: cluster.evict("ghost"))
    assert code == 404
    assert status["reason"] == "NotFound"
    assert status["message"] == 'pods "ghost" not found'


def test_evicting_a_pod_covered_by_two_budgets_is_a_500(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 3)
    cluster.create_budget("web-a", "web", min_available=1)
    cluster.create_budget("web-b", "web", max_unavailable=2)
    cluster.settle(3)
    victim = names(cluster.pods("web"))[0]

    code, status = api_error(lambda: cluster.evict(victim))
    assert code == 500
    assert status["message"] == TWO_BUDGETS
    assert meta(cluster.core.read_namespaced_pod(victim, "default")).deletion_timestamp is None


def test_a_pending_pod_may_be_evicted_even_when_its_budget_allows_no_disruption(cluster: Cluster) -> None:
    cluster.add_node("node-a")  # 2000m: room for two of the three
    cluster.create_deployment("web", 3, cpu="800m")
    cluster.create_budget("web", "web", min_available=3)  # not met: even the unready-pod rule would refuse
    cluster.settle(3)
    pods = cluster.pods("web")
    [pending] = [pod for pod in pods if phase(pod) == "Pending"]
    running = [pod for pod in pods if phase(pod) == "Running"]
    assert len(running) == 2
    status = cluster.budget_status("web")
    assert (status.current_healthy, status.desired_healthy, status.disruptions_allowed) == (2, 3, 0)

    code, body = api_error(lambda: cluster.evict(name_of(running[0])))
    assert code == 429
    assert body["details"]["causes"][0] == budget_cause("web", 3, 2)
    cluster.evict(name_of(pending))  # allowed: a pod that does not run has no budget to protect it
    assert meta(cluster.core.read_namespaced_pod(name_of(pending), "default")).deletion_timestamp is not None


def _two_nodes_one_not_ready(cluster: Cluster, min_available: int, policy: str | None) -> tuple[list[str], list[str]]:
    """Four replicas over node-a and node-b, then node-b goes NotReady: the (ready, unready) pod names."""
    cluster.add_node("node-a")
    cluster.create_deployment("web", 2)
    cluster.settle(3)
    cluster.add_node("node-b")
    cluster.apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}})
    cluster.settle(3)
    cluster.create_budget("web", "web", min_available=min_available, unhealthy_policy=policy)
    cluster.sim.world.set_node_ready("node-b", False)
    cluster.settle(1)
    pods = cluster.pods("web")
    assert Counter(node_of(pod) for pod in pods) == {"node-a": 2, "node-b": 2}
    ready_pods = names([pod for pod in pods if ready(pod)])
    unready_pods = names([pod for pod in pods if not ready(pod)])
    assert [node_of(cluster.core.read_namespaced_pod(n, "default")) for n in unready_pods] == ["node-b", "node-b"]
    assert all(phase(cluster.core.read_namespaced_pod(n, "default")) == "Running" for n in unready_pods)
    return ready_pods, unready_pods


def test_unready_pod_is_evictable_under_always_allow_even_when_the_budget_is_not_met(cluster: Cluster) -> None:
    ready_pods, unready_pods = _two_nodes_one_not_ready(cluster, 3, "AlwaysAllow")
    status = cluster.budget_status("web")
    assert (status.current_healthy, status.desired_healthy, status.disruptions_allowed) == (2, 3, 0)

    cluster.evict(unready_pods[0])
    assert meta(cluster.core.read_namespaced_pod(unready_pods[0], "default")).deletion_timestamp is not None
    code, body = api_error(lambda: cluster.evict(ready_pods[0]))  # a ready pod is still protected
    assert code == 429
    assert body["details"]["causes"][0] == budget_cause("web", 3, 2)


@pytest.mark.parametrize("policy", [None, "IfHealthyBudget"], ids=["default", "IfHealthyBudget"])
def test_unready_pod_is_refused_under_if_healthy_budget_when_the_budget_is_not_met(
    cluster: Cluster, policy: str | None
) -> None:
    _, unready_pods = _two_nodes_one_not_ready(cluster, 3, policy)

    code, body = api_error(lambda: cluster.evict(unready_pods[0]))
    assert code == 429
    assert body["message"] == REFUSED
    assert body["details"]["causes"][0] == budget_cause("web", 3, 2)
    assert meta(cluster.core.read_namespaced_pod(unready_pods[0], "default")).deletion_timestamp is None


def test_unready_pod_is_evictable_under_if_healthy_budget_while_the_budget_is_met(cluster: Cluster) -> None:
    ready_pods, unready_pods = _two_nodes_one_not_ready(cluster, 2, None)
    status = cluster.budget_status("web")
    assert (status.current_healthy, status.desired_healthy, status.disruptions_allowed) == (2, 2, 0)

    code, _ = api_error(lambda: cluster.evict(ready_pods[0]))
    assert code == 429
    cluster.evict(unready_pods[0])  # the application is not disrupted further: allowed
    assert meta(cluster.core.read_namespaced_pod(unready_pods[0], "default")).deletion_timestamp is not None


# --- 10: a drain, one pod at a time -------------------------------------------------------------------------------


def test_drain_evicts_one_pod_at_a_time_under_min_available_replicas_minus_one(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 3)
    cluster.create_budget("web", "web", min_available=2)
    cluster.settle(3)
    cluster.add_node("node-b")
    cluster.core.patch_node("node-a", {"spec": {"unschedulable": True}})  # the drain's cordon

    first, second, third = names(cluster.pods("web", fields="spec.nodeName=node-a"))

    def attempt(pod: str) -> str:
        try:
            cluster.evict(pod)
        except ApiException as error:
            body = json.loads(error.body or "{}")
            assert body["details"]["causes"][0] == budget_cause("web", 2, 2)
            return f"refused {error.status}"
        return "allowed"

    outcomes = [attempt(first), attempt(second)]
    cluster.settle(3)  # the replacement starts on node-b and becomes Ready
    outcomes += [attempt(second), attempt(third)]
    cluster.settle(3)
    outcomes += [attempt(third)]
    cluster.settle(3)

    assert outcomes == ["allowed", "refused 429", "allowed", "refused 429", "allowed"]
    assert cluster.pods("web", fields="spec.nodeName=node-a") == []
    pods = cluster.pods("web")
    assert [(node_of(pod), ready(pod)) for pod in pods] == [("node-b", True)] * 3


# --- 11: deleting a node ------------------------------------------------------------------------------------------


def test_deleting_a_node_removes_its_pods_and_the_deployment_brings_them_back_elsewhere(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 4)
    cluster.settle(3)
    before = names(cluster.pods("web"))
    assert {node_of(pod) for pod in cluster.pods("web")} == {"node-a"}
    cluster.add_node("node-b")
    cluster.add_node("node-c")

    cluster.core.delete_node("node-a")
    code, _ = api_error(lambda: cluster.core.read_node("node-a"))
    assert code == 404
    assert names(cluster.core.list_node().items) == ["node-b", "node-c"]

    cluster.settle(5)
    pods = cluster.pods("web")
    assert len(pods) == 4
    assert not set(names(pods)) & set(before)
    assert {node_of(pod) for pod in pods} <= {"node-b", "node-c"}
    assert all(ready(pod) for pod in pods)
    status = cluster.apps.read_namespaced_deployment("web", "default").status
    assert status is not None and status.ready_replicas == 4


# --- 12, 13: namespaces and conflicts ----------------------------------------------------------------------------


def test_namespaces_are_created_and_listed_and_a_missing_one_is_404(cluster: Cluster) -> None:
    created = cluster.core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name="team-a")))
    assert name_of(created) == "team-a"
    listed = {name_of(ns) for ns in cluster.core.list_namespace().items}
    assert {"default", "kube-system", "team-a"} <= listed
    read = cluster.core.read_namespace("team-a")
    assert read.status is not None and read.status.phase == "Active"

    cluster.add_node("node-a")
    cluster.core.create_namespaced_pod("team-a", bare_pod("worker", labels={"app": "worker"}))
    assert names(cluster.pods(namespace="team-a")) == ["worker"]
    assert cluster.pods("worker") == []  # not in default

    code, status = api_error(lambda: cluster.core.create_namespaced_pod("missing", bare_pod("lost")))
    assert code == 404
    assert status["reason"] == "NotFound"
    assert status["message"] == 'namespaces "missing" not found'


def test_creating_what_exists_is_409_already_exists(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.core.create_namespaced_pod("default", bare_pod("solo"))
    code, status = api_error(lambda: cluster.core.create_namespaced_pod("default", bare_pod("solo")))
    assert code == 409
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'pods "solo" already exists'

    code, status = api_error(lambda: cluster.core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name="default"))))
    assert (code, status["reason"], status["message"]) == (409, "AlreadyExists", 'namespaces "default" already exists')

    cluster.create_budget("solo", "solo", min_available=1)
    code, status = api_error(lambda: cluster.create_budget("solo", "solo", min_available=1))
    assert (code, status["reason"]) == (409, "AlreadyExists")
    assert status["message"] == 'poddisruptionbudgets.policy "solo" already exists'

    cluster.create_deployment("web", 1)
    code, status = api_error(lambda: cluster.create_deployment("web", 1))
    assert (code, status["reason"]) == (409, "AlreadyExists")


# --- 14: mirror pods ----------------------------------------------------------------------------------------------


def test_mirror_pod_has_no_owner_stays_and_is_not_recreated_after_delete(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    mirror = bare_pod(
        "kube-proxy-node-a", labels={"k8s-app": "kube-proxy"}, annotations={MIRROR: "0f1e2d"}, node="node-a"
    )
    cluster.core.create_namespaced_pod("kube-system", mirror)
    cluster.settle(5)

    [pod] = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy").items
    assert name_of(pod) == "kube-proxy-node-a"
    assert not meta(pod).owner_references
    assert (meta(pod).annotations or {}).get(MIRROR) == "0f1e2d"
    assert meta(pod).deletion_timestamp is None
    assert node_of(pod) == "node-a"

    cluster.core.delete_namespaced_pod("kube-proxy-node-a", "kube-system")
    cluster.settle(5)
    assert cluster.pods(namespace="kube-system") == []


# --- the same scenario through lightkube and the official client -------------------------------------------------


def _official_scenario(cluster: Cluster) -> list[str]:
    cluster.create_deployment("via-official", 3)
    cluster.create_budget("via-official", "via-official", min_available=2)
    cluster.settle(3)
    outcomes = []
    for pod in names(cluster.pods("via-official"))[:2]:
        try:
            cluster.evict(pod)
        except ApiException as error:
            body = json.loads(error.body or "{}")
            cause = body["details"]["causes"][0]["message"].replace("via-official", "<budget>")
            outcomes.append(f"refused {error.status}: {body['reason']}: {cause}")
        else:
            outcomes.append("allowed")
    return outcomes


def _lightkube_scenario(cluster: Cluster) -> list[str]:
    client = Client(KubeConfig.from_file(str(cluster.sim.kubeconfig)), trust_env=False)
    labels = {"app": "via-lightkube"}
    client.create(
        Deployment(
            metadata=ObjectMeta(name="via-lightkube"),
            spec=DeploymentSpec(
                replicas=3,
                selector=LabelSelector(matchLabels=labels),
                template=PodTemplateSpec(
                    metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[Container(name="main", image="nginx")])
                ),
            ),
        ),
        namespace="default",
    )
    client.create(
        PodDisruptionBudget(
            metadata=ObjectMeta(name="via-lightkube"),
            spec=PodDisruptionBudgetSpec(minAvailable=2, selector=LabelSelector(matchLabels=labels)),
        ),
        namespace="default",
    )
    cluster.settle(3)
    listed = client.list(Pod, namespace="default", labels={"app": "via-lightkube"})
    pods = sorted(pod.metadata.name for pod in listed if pod.metadata and pod.metadata.name)
    outcomes = []
    for pod in pods[:2]:
        try:
            client.create(
                Pod.Eviction(metadata=ObjectMeta(name=pod, namespace="default")), name=pod, namespace="default"
            )
        except ApiError as error:
            details = error.status.details
            cause = ((details.causes or [])[0].message if details else None) or ""
            cause = cause.replace("via-lightkube", "<budget>")
            outcomes.append(f"refused {error.status.code}: {error.status.reason}: {cause}")
        else:
            outcomes.append("allowed")
    return outcomes


def test_lightkube_and_the_official_client_see_the_same_eviction_outcomes(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    official = _official_scenario(cluster)
    through_lightkube = _lightkube_scenario(cluster)
    assert official == [
        "allowed",
        "refused 429: TooManyRequests: The disruption budget <budget> needs 2 healthy pods and has 2 currently",
    ]
    assert through_lightkube == official


# --- where the simulator once differed from a real API server (each test failed before its fix) -------------


def test_daemonset_reads_back_through_the_official_client(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.apps.create_namespaced_daemon_set("default", daemonset("agent"))
    cluster.settle(3)
    status = cluster.apps.read_namespaced_daemon_set("agent", "default").status
    assert status is not None
    assert (status.desired_number_scheduled, status.current_number_scheduled, status.number_ready) == (1, 1, 1)
    assert status.number_misscheduled == 0
    assert [name_of(ds) for ds in cluster.apps.list_namespaced_daemon_set("default").items] == ["agent"]


def test_an_error_answer_leaves_the_connection_usable_for_the_next_request(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    with contextlib.suppress(ApiException):  # a real server creates it; the simulator does not serve ConfigMaps
        cluster.core.create_namespaced_config_map(
            "default", V1ConfigMap(metadata=V1ObjectMeta(name="settings"), data={"key": "value"})
        )
    assert name_of(cluster.core.read_node("node-a")) == "node-a"


def test_patch_node_with_a_json_patch_list_is_applied(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.core.patch_node("node-a", [{"op": "add", "path": "/spec/unschedulable", "value": True}])
    spec = cluster.core.read_node("node-a").spec
    assert spec is not None and spec.unschedulable is True


def test_patch_node_leaves_status_alone(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.core.patch_node("node-a", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert node_ready(cluster.core.read_node("node-a")) == "True"


def test_an_unsupported_pod_field_selector_is_a_bad_request(cluster: Cluster) -> None:
    code, status = api_error(lambda: cluster.core.list_namespaced_pod("default", field_selector="spec.hostname=x"))
    assert code == 400
    assert status["reason"] == "BadRequest"
    assert "field label not supported" in status["message"]


def test_eviction_whose_body_names_another_pod_is_a_bad_request(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 1)
    cluster.settle(3)
    [pod] = names(cluster.pods("web"))
    code, status = api_error(lambda: cluster.core.create_namespaced_pod_eviction(pod, "default", eviction("other")))
    assert code == 400
    assert status["message"] == "name in URL does not match name in Eviction object"


def test_unready_pod_is_refused_when_the_budget_desires_none_and_allows_none(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 2)
    cluster.create_budget("web", "web", min_available=0)
    cluster.settle(3)
    cluster.sim.world.set_node_ready("node-a", False)
    cluster.settle(1)
    status = cluster.budget_status("web")
    assert (status.current_healthy, status.desired_healthy, status.disruptions_allowed) == (0, 0, 0)
    victim = names(cluster.pods("web"))[0]
    code, body = api_error(lambda: cluster.evict(victim))
    assert code == 429
    assert body["details"]["causes"][0] == budget_cause("web", 0, 0)


def test_errors_about_apps_objects_name_the_group_qualified_resource(cluster: Cluster) -> None:
    cluster.create_deployment("web", 1)
    code, status = api_error(lambda: cluster.create_deployment("web", 1))
    assert (code, status["message"]) == (409, 'deployments.apps "web" already exists')
    code, status = api_error(lambda: cluster.apps.read_namespaced_deployment("nope", "default"))
    assert (code, status["message"]) == (404, 'deployments.apps "nope" not found')


def test_statefulset_starts_its_pods_one_at_a_time_in_order(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.apps.create_namespaced_stateful_set("default", statefulset("db", 3))
    assert set(names(cluster.pods("db"))) <= {"db-0"}
    cluster.settle(1)  # db-0 runs but is not Ready yet
    assert names(cluster.pods("db")) == ["db-0"]
    cluster.settle(10)
    assert names(cluster.pods("db")) == ["db-0", "db-1", "db-2"]


def test_daemonset_skips_a_node_with_a_noschedule_taint_it_does_not_tolerate(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.add_node("node-b")
    cluster.core.patch_node(
        "node-b", {"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}
    )
    raw: Any = cluster.apps.create_namespaced_daemon_set("default", daemonset("agent"), _preload_content=False)
    assert raw.status == 201
    cluster.settle(3)
    assert {node_of(pod) for pod in cluster.pods("agent")} == {"node-a"}


def test_a_pod_tolerating_a_taint_is_scheduled_on_the_tainted_node(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.core.patch_node(
        "node-a", {"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}
    )
    tolerant = V1Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoSchedule")
    cluster.core.create_namespaced_pod("default", bare_pod("intolerant"))
    cluster.core.create_namespaced_pod("default", bare_pod("tolerant", tolerations=[tolerant]))
    cluster.settle(3)
    assert phase(cluster.core.read_namespaced_pod("intolerant", "default")) == "Pending"
    placed = cluster.core.read_namespaced_pod("tolerant", "default")
    assert (node_of(placed), phase(placed)) == ("node-a", "Running")


def test_a_pod_created_bound_to_a_node_runs_there(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.core.create_namespaced_pod("default", bare_pod("pinned", node="node-a"))
    cluster.settle(3)
    pod = cluster.core.read_namespaced_pod("pinned", "default")
    assert (node_of(pod), phase(pod), ready(pod)) == ("node-a", "Running", True)


def test_mirror_pod_owned_by_its_node_is_not_garbage_collected(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    node_uid = meta(cluster.core.read_node("node-a")).uid
    assert node_uid is not None
    owner = V1OwnerReference(api_version="v1", kind="Node", name="node-a", uid=node_uid, controller=True)
    mirror = bare_pod("kube-proxy-node-a", annotations={MIRROR: "0f1e2d"}, node="node-a", owners=[owner])
    cluster.core.create_namespaced_pod("kube-system", mirror)
    cluster.settle(5)
    pod = cluster.core.read_namespaced_pod("kube-proxy-node-a", "kube-system")
    assert meta(pod).deletion_timestamp is None


def test_budget_with_integer_min_available_expects_every_matching_pod(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 4)
    cluster.create_budget("web", "web", min_available=2)
    cluster.settle(3)
    cluster.evict(names(cluster.pods("web"))[0])
    assert len(cluster.pods("web")) == 5  # the terminating pod and its replacement
    assert cluster.budget_status("web").expected_pods == 5


def test_an_evicted_pod_carries_the_disruption_target_condition(cluster: Cluster) -> None:
    cluster.add_node("node-a")
    cluster.create_deployment("web", 2)
    cluster.settle(3)
    victim = names(cluster.pods("web"))[0]
    cluster.evict(victim)
    target = condition(cluster.core.read_namespaced_pod(victim, "default"), "DisruptionTarget")
    assert target is not None
    assert (target.status, target.reason) == ("True", "EvictionByEvictionAPI")
