"""What the simulated control plane records and keeps besides workloads, checked over HTTP as clients see it: the
events the scheduler, kubelets and controllers record; node leases and Lease CRUD with optimistic concurrency;
Secrets as the API server stores them (and the bootstrap token cleaner); access reviews; request bodies in types the
server does not read. Time is virtual (``settle``), so each test is deterministic.

Expected values are the real components' (kube-scheduler's FitError, the kubelet's and the node lifecycle
controller's event reasons, apiserver's Conflict and UnsupportedMediaType Status errors).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from lightkube import ApiError, Client, KubeConfig
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from provision.simulator.world import CRASH_LOOP, FAULT_LABEL
from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture, imported for pytest


@pytest.fixture
def client(simulator: Simulator) -> Iterator[Client]:
    yield Client(KubeConfig.from_file(str(simulator.kubeconfig)))


def request(
    simulator: Simulator, method: str, path: str, body: bytes | None = None, *, content_type: str = "application/json"
) -> tuple[int, Any]:
    """A raw request and its answer: the status code and the JSON body."""
    sent = urllib.request.Request(  # noqa: S310 - the simulator's loopback URL
        simulator.server.url + path, data=body, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def events(simulator: Simulator, **involved: str) -> list[dict[str, Any]]:
    """The events about an object, found as `kubectl describe` finds them: by the involvedObject fields."""
    fields = ",".join(f"involvedObject.{key}={value}" for key, value in involved.items())
    found = simulator.world.select("Event", None, fields=fields)
    return sorted(found, key=lambda event: event["metadata"]["name"])


def reasons(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["type"], event["reason"]) for event in found]


# --- events ---------------------------------------------------------------------------------------------------


def test_a_node_selector_places_the_pod_and_a_selector_no_node_matches_is_the_reason(simulator: Simulator) -> None:
    world = simulator.world
    world.add_node("node-a")
    world.add_node("node-b")
    simulator.deployment("pinned", 2, nodeSelector={"kubernetes.io/hostname": "node-b"})
    simulator.deployment("nowhere", 1, nodeSelector={"disk": "ssd"})
    simulator.settle(3)

    pinned = {pod["spec"].get("nodeName") for pod in world.select("Pod", "default", labels="app=pinned")}
    [stuck] = world.select("Pod", "default", labels="app=nowhere")

    assert pinned == {"node-b"}
    assert stuck["status"]["conditions"][0]["message"].startswith(
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )


def test_scheduling_records_scheduled_per_pod_and_the_schedulers_reasons_once_when_nothing_fits(
    simulator: Simulator,
) -> None:
    world = simulator.world
    world.timings.node_pods = 2
    world.add_node("node-a")
    world.add_node("node-b")
    world.patch(
        "Node", "", "node-b", {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}
    )
    simulator.deployment("web", 3)
    simulator.settle(3)

    pods = world.select("Pod", "default", labels="app=web")
    placed = [pod for pod in pods if pod["spec"].get("nodeName")]
    [pending] = [pod for pod in pods if not pod["spec"].get("nodeName")]
    for pod in placed:
        [scheduled] = events(simulator, name=pod["metadata"]["name"], uid=pod["metadata"]["uid"])
        assert (scheduled["type"], scheduled["reason"], scheduled["source"]) == (
            "Normal",
            "Scheduled",
            {"component": "default-scheduler"},
        )
        assert scheduled["message"] == f"Successfully assigned default/{pod['metadata']['name']} to node-a"
        assert scheduled["metadata"]["namespace"] == "default"
    failed = events(simulator, name=pending["metadata"]["name"])
    expected = (
        "0/2 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {dedicated: db}. preemption: "
        "0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for "
        "scheduling."
    )
    assert [(event["type"], event["reason"], event["message"]) for event in failed] == [
        ("Warning", "FailedScheduling", expected)
    ], "recorded once, though the scheduler tried at every tick"
    [condition] = world.get("Pod", "default", pending["metadata"]["name"])["status"]["conditions"]
    assert (condition["reason"], condition["message"]) == ("Unschedulable", expected)


def test_an_eviction_records_killing_for_each_container_and_the_controller_its_replacement(
    simulator: Simulator,
) -> None:
    world = simulator.world
    world.add_node("node-a")
    simulator.deployment("web", 1)
    simulator.settle(3)
    [pod] = world.select("Pod", "default", labels="app=web")
    name = pod["metadata"]["name"]

    world.evict("default", name)
    simulator.settle(2)

    killing = [event for event in events(simulator, name=name) if event["reason"] == "Killing"]
    assert [(e["type"], e["message"], e["involvedObject"]["fieldPath"]) for e in killing] == [
        ("Normal", "Stopping container main", "spec.containers{main}")
    ]
    assert killing[0]["source"] == {"component": "kubelet", "host": "node-a"}
    [replica_set] = world.select("ReplicaSet", "default")
    created = [e["message"] for e in events(simulator, kind="ReplicaSet") if e["reason"] == "SuccessfulCreate"]
    [replacement] = world.select("Pod", "default", labels="app=web")
    assert created == [f"Created pod: {name}", f"Created pod: {replacement['metadata']['name']}"]
    assert {e["involvedObject"]["uid"] for e in events(simulator, kind="ReplicaSet")} == {
        replica_set["metadata"]["uid"]
    }


def test_a_crash_looping_pod_gets_the_kubelets_back_off_warning_once(simulator: Simulator) -> None:
    world = simulator.world
    world.add_node("node-a", labels={FAULT_LABEL: CRASH_LOOP})
    simulator.deployment("web", 1)
    simulator.settle(12)  # two restarts
    [pod] = world.select("Pod", "default", labels="app=web")

    back_off = [event for event in events(simulator, name=pod["metadata"]["name"]) if event["reason"] == "BackOff"]

    assert pod["status"]["containerStatuses"][0]["restartCount"] >= 2
    assert [(event["type"], event["message"]) for event in back_off] == [
        (
            "Warning",
            f"Back-off restarting failed container main in pod {pod['metadata']['name']}_default"
            f"({pod['metadata']['uid']})",
        )
    ]


def test_node_readiness_and_cordons_are_recorded_by_the_component_that_sees_them(simulator: Simulator) -> None:
    world = simulator.world
    node = world.add_node("node-a")
    world.patch("Node", "", "node-a", {"spec": {"unschedulable": True}})
    world.patch("Node", "", "node-a", {"spec": {"unschedulable": False}})
    world.set_node_ready("node-a", False)
    world.set_node_ready("node-a", True)
    world.delete("Node", "", "node-a")

    # `kubectl describe node` asks twice: by the node's uid (the controller's events), by its name (the kubelet's)
    by_controller = events(simulator, kind="Node", name="node-a", uid=node["metadata"]["uid"])
    by_kubelet = events(simulator, kind="Node", name="node-a", uid="node-a")

    assert reasons(by_controller) == [
        ("Normal", "RegisteredNode"),
        ("Normal", "NodeNotReady"),
        ("Normal", "RemovingNode"),
    ]
    assert reasons(by_kubelet) == [
        ("Normal", "NodeReady"),
        ("Normal", "NodeNotSchedulable"),
        ("Normal", "NodeSchedulable"),
        ("Normal", "NodeReady"),
    ]
    assert by_kubelet[1]["message"] == "Node node-a status is now: NodeNotSchedulable"
    assert by_controller[0]["message"] == "Node node-a event: Registered Node node-a in Controller"
    assert {event["metadata"]["namespace"] for event in by_controller + by_kubelet} == {"default"}


def test_events_expire_after_the_api_servers_hour(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    assert events(simulator, name="node-a")

    simulator.settle(3600 + 20)

    assert events(simulator, name="node-a") == []


# --- leases ---------------------------------------------------------------------------------------------------


def test_each_live_node_renews_its_lease_and_a_node_that_stopped_does_not(simulator: Simulator) -> None:
    world = simulator.world
    node = world.add_node("node-a")
    world.add_node("node-b")
    first = world.get("Lease", "kube-node-lease", "node-a")

    world.set_node_ready("node-b", False)
    stopped = world.get("Lease", "kube-node-lease", "node-b")["spec"]["renewTime"]
    simulator.settle(11)
    renewed = world.get("Lease", "kube-node-lease", "node-a")

    assert first["spec"]["holderIdentity"] == "node-a" and first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": node["metadata"]["uid"]}
    ]
    renew_times = [datetime.fromisoformat(lease["spec"]["renewTime"]) for lease in (first, renewed)]
    assert timedelta(seconds=10) <= renew_times[1] - renew_times[0] <= timedelta(seconds=11)
    assert world.get("Lease", "kube-node-lease", "node-b")["spec"]["renewTime"] == stopped
    world.delete("Node", "", "node-a")
    assert [lease["metadata"]["name"] for lease in world.select("Lease", "kube-node-lease")] == ["node-b"]


def test_lease_updates_from_a_stale_version_conflict_as_leader_election_expects(client: Client) -> None:
    made = client.create(
        Lease(
            metadata=ObjectMeta(name="controller", namespace="default"),
            spec=LeaseSpec(holderIdentity="replica-1", leaseDurationSeconds=15),
        )
    )
    assert made.metadata is not None and made.spec is not None
    made.spec.holderIdentity = "replica-2"
    taken = client.replace(made)  # from the version it read: accepted
    made.spec.holderIdentity = "replica-3"

    with pytest.raises(ApiError) as stale:
        client.replace(made)  # from the version before replica-2 took it
    with pytest.raises(ApiError) as again:
        client.create(Lease(metadata=ObjectMeta(name="controller", namespace="default"), spec=LeaseSpec()))

    assert stale.value.status.code == 409 and stale.value.status.reason == "Conflict"
    assert stale.value.status.message == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io "controller": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert again.value.status.code == 409 and again.value.status.reason == "AlreadyExists"
    held = client.get(Lease, "controller", namespace="default")
    assert held.spec is not None and held.spec.holderIdentity == "replica-2"
    assert taken.metadata is not None and held.metadata is not None
    assert held.metadata.resourceVersion == taken.metadata.resourceVersion
    client.delete(Lease, "controller", namespace="default")
    assert list(client.list(Lease, namespace="default")) == []


# --- secrets --------------------------------------------------------------------------------------------------


def test_secrets_are_stored_as_the_api_server_stores_them(simulator: Simulator) -> None:
    code, made = request(
        simulator,
        "POST",
        "/api/v1/namespaces/default/secrets",
        json.dumps({"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}}).encode(),
    )
    bad_code, bad = request(
        simulator,
        "POST",
        "/api/v1/namespaces/default/secrets",
        json.dumps({"metadata": {"name": "bad"}, "data": {"key": "not base64!"}}).encode(),
    )
    retype_code, retyped = request(
        simulator,
        "PATCH",
        "/api/v1/namespaces/default/secrets/db",
        json.dumps({"type": "kubernetes.io/tls"}).encode(),
        content_type="application/merge-patch+json",
    )

    assert code == 201
    assert (made["type"], made["data"], "stringData" in made) == ("Opaque", {"password": "aHVudGVyMg=="}, False)
    assert "spec" not in made and "status" not in made
    assert (bad_code, bad["reason"]) == (400, "BadRequest")
    assert (retype_code, retyped["reason"]) == (422, "Invalid")
    assert retyped["message"].endswith('type: Invalid value: "kubernetes.io/tls": field is immutable')
    assert [secret["metadata"]["name"] for secret in simulator.world.select("Secret", None)] == ["db"]


def bootstrap_token(token_id: str, expiration: datetime) -> dict[str, Any]:
    """A bootstrap token Secret as `kubeadm token create` makes it."""
    data = {
        "token-id": token_id,
        "token-secret": "0123456789abcdef",
        "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
    }
    return {
        "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def test_the_token_cleaner_deletes_bootstrap_tokens_once_they_expire(simulator: Simulator) -> None:
    world = simulator.world
    now = world.now()
    world.create("Secret", "kube-system", bootstrap_token("abcdef", now + timedelta(seconds=30)))
    world.create("Secret", "kube-system", bootstrap_token("ghijkl", now + timedelta(hours=24)))

    simulator.settle(15)
    before = [secret["metadata"]["name"] for secret in world.select("Secret", "kube-system")]
    simulator.settle(30)
    after = [secret["metadata"]["name"] for secret in world.select("Secret", "kube-system")]

    assert before == ["bootstrap-token-abcdef", "bootstrap-token-ghijkl"]
    assert after == ["bootstrap-token-ghijkl"]
    kept = world.get("Secret", "kube-system", "bootstrap-token-ghijkl")
    assert kept["type"] == "bootstrap.kubernetes.io/token"
    assert base64.b64decode(kept["data"]["token-id"]) == b"ghijkl"


# --- access reviews -------------------------------------------------------------------------------------------


def test_access_reviews_allow_the_sandbox_user_and_are_not_stored(simulator: Simulator) -> None:
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    asked = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "subresource": "eviction"}},
    }

    code, answer = request(simulator, "POST", path, json.dumps(asked).encode())
    invalid_code, invalid = request(simulator, "POST", path, json.dumps({"spec": {}}).encode())
    get_code, got = request(simulator, "GET", path)
    rules_code, rules = request(
        simulator, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", b'{"spec": {"namespace": "a"}}'
    )

    assert code == 201
    assert answer["spec"] == asked["spec"] and answer["status"]["allowed"] is True
    assert answer["status"]["reason"].startswith("RBAC: allowed by ClusterRoleBinding")
    assert (invalid_code, invalid["reason"]) == (422, "Invalid")
    assert (get_code, got["reason"]) == (405, "MethodNotAllowed")
    assert rules_code == 201 and rules["status"]["incomplete"] is False
    assert {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]} in rules["status"]["resourceRules"]


# --- bodies the server cannot read ----------------------------------------------------------------------------

UNSUPPORTED = "the body of the request was in an unknown format - accepted media types include: "


@pytest.mark.parametrize(
    ("method", "path", "content_type", "accepted"),
    [
        ("POST", "/api/v1/namespaces/default/pods", "application/vnd.kubernetes.protobuf", "application/json"),
        ("POST", "/api/v1/namespaces", "text/plain", "application/json"),
        ("PATCH", "/api/v1/nodes/node-a", "application/json", "application/merge-patch+json"),
    ],
)
def test_a_body_in_a_type_the_server_does_not_read_is_415(
    simulator: Simulator, method: str, path: str, content_type: str, accepted: str
) -> None:
    simulator.world.add_node("node-a")

    code, answer = request(simulator, method, path, b"k8s\x00\x0a\x02\xff\xfe", content_type=content_type)

    assert (code, answer["kind"], answer["reason"]) == (415, "Status", "UnsupportedMediaType")
    assert answer["message"].startswith(UNSUPPORTED) and accepted in answer["message"]


def test_what_the_simulator_does_not_do_is_refused_not_half_done(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    body = json.dumps({"metadata": {"name": "team-a"}}).encode()

    dry_code, dry = request(simulator, "POST", "/api/v1/namespaces?dryRun=All", body)
    apply_code, applied = request(
        simulator, "PATCH", "/api/v1/nodes/node-a", b"metadata: {}", content_type="application/apply-patch+yaml"
    )
    collection_code, collection = request(simulator, "DELETE", "/api/v1/namespaces/default/pods")

    assert (dry_code, dry["reason"]) == (400, "BadRequest")
    assert ("", "team-a") not in {(n["metadata"].get("namespace", ""), n["metadata"]["name"]) for n in
                                  simulator.world.select("Namespace", None)}, "a dry run changes nothing"  # fmt: skip
    assert (apply_code, applied["reason"]) == (415, "UnsupportedMediaType")  # server-side apply
    assert (collection_code, collection["reason"]) == (405, "MethodNotAllowed")  # deletecollection


def test_malformed_json_is_a_bad_request_and_yaml_is_read(simulator: Simulator) -> None:
    broken_code, broken = request(simulator, "POST", "/api/v1/namespaces", b'{"metadata": ')
    yaml_code, made = request(
        simulator, "POST", "/api/v1/namespaces", b"metadata:\n  name: team-a\n", content_type="application/yaml"
    )

    assert (broken_code, broken["reason"]) == (400, "BadRequest")
    assert (yaml_code, made["metadata"]["name"]) == (201, "team-a")


# --- a Deployment's rollout ---------------------------------------------------------------------------------------


def rollout_steps(
    simulator: Simulator, name: str, image: str, *, terminating: bool = False
) -> list[tuple[int, int, int]]:
    """Change the Deployment's image, then tick until it has rolled out: (old pods, new pods, available pods)
    from the change on, at every second; terminating pods count only with ``terminating`` (they no longer serve,
    and the controller does not count them against the surge)."""
    world = simulator.world
    world.patch(
        "Deployment",
        "default",
        name,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}},
    )
    steps = []
    for second in range(60):
        if second:
            simulator.settle(1)
        pods = [
            pod
            for pod in world.select("Pod", "default", labels=f"app={name}")
            if terminating or not pod["metadata"].get("deletionTimestamp")
        ]
        new = [pod for pod in pods if pod["spec"]["containers"][0]["image"] == image]
        available = sum(
            1
            for pod in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
        )
        steps.append((len(pods) - len(new), len(new), available))
        deployment = world.get("Deployment", "default", name)
        wanted, status = deployment["spec"]["replicas"], deployment["status"]
        if steps[-1] == (0, wanted, wanted) and status["updatedReplicas"] == status["availableReplicas"] == wanted:
            return steps
    raise AssertionError(f"the rollout never finished: {steps}")


@pytest.mark.parametrize(("surge", "unavailable", "most", "least"), [(1, 0, 5, 4), ("25%", "25%", 5, 3), (0, 2, 4, 2)])
def test_a_template_change_rolls_the_pods_within_the_strategys_surge_and_unavailability(
    simulator: Simulator, surge: int | str, unavailable: int | str, most: int, least: int
) -> None:
    world = simulator.world
    world.add_node("node-a")
    simulator.deployment("web", 4)
    world.patch(
        "Deployment",
        "default",
        "web",
        {"spec": {"strategy": {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}},
    )
    simulator.settle(4)
    [first] = world.select("ReplicaSet", "default")

    steps = rollout_steps(simulator, "web", "nginx:1.28")

    assert max(old + new for old, new, _ in steps) == most, steps  # the surge is used, never exceeded
    assert min(available for _, _, available in steps) == least, steps  # availability never below the budget
    assert any(old and new for old, new, _ in steps), "old and new pods served side by side"
    sets = {rs["metadata"]["name"]: rs for rs in world.select("ReplicaSet", "default")}
    assert sets[first["metadata"]["name"]]["spec"]["replicas"] == 0
    [second] = [rs for name, rs in sets.items() if name != first["metadata"]["name"]]
    assert second["spec"]["replicas"] == 4
    assert second["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    scaled = [e["message"] for e in world.select("Event", "default", fields="reason=ScalingReplicaSet")]
    first_step = (
        f"Scaled up replica set {second['metadata']['name']} from 0 to {most - 4}"
        if most > 4
        else f"Scaled down replica set {first['metadata']['name']} from 4 to {least}"
    )
    assert scaled[:2] == [f"Scaled up replica set {first['metadata']['name']} from 0 to 4", first_step], scaled
    status = world.get("Deployment", "default", "web")["status"]
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }


def test_a_recreate_deployment_removes_every_old_pod_before_starting_new_ones(simulator: Simulator) -> None:
    world = simulator.world
    world.add_node("node-a")
    simulator.deployment("web", 3)
    world.patch("Deployment", "default", "web", {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}})
    simulator.settle(4)

    steps = rollout_steps(simulator, "web", "nginx:1.28", terminating=True)

    assert all(not (old and new) for old, new, _ in steps), steps
    assert steps[0] == (3, 0, 0), "every old pod terminating, no new one yet"


def test_a_paused_deployment_starts_no_rollout_until_resumed(simulator: Simulator) -> None:
    world = simulator.world
    world.add_node("node-a")
    simulator.deployment("web", 2)
    simulator.settle(4)
    world.patch("Deployment", "default", "web", {"spec": {"paused": True}})

    steps = []
    for paused in (True, False):
        world.patch("Deployment", "default", "web", {"spec": {"paused": paused}})
        if paused:
            world.patch(
                "Deployment",
                "default",
                "web",
                {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "b"}]}}}},
            )
        simulator.settle(8)
        images = {pod["spec"]["containers"][0]["image"] for pod in world.select("Pod", "default")}
        steps.append((len(world.select("ReplicaSet", "default")), images))

    assert steps == [(1, {"nginx"}), (2, {"b"})]


def test_a_budget_counts_a_rolling_deployment_once(simulator: Simulator) -> None:
    world = simulator.world
    world.add_node("node-a")
    simulator.deployment("web", 4)
    simulator.budget("web", "web", maxUnavailable="25%")
    simulator.settle(4)
    world.patch(
        "Deployment",
        "default",
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "b"}]}}}},
    )
    simulator.settle(1)

    assert len(world.select("ReplicaSet", "default")) == 2
    assert world.get("PodDisruptionBudget", "default", "web")["status"]["expectedPods"] == 4


# --- strategic merge patches ----------------------------------------------------------------------------------


def test_a_strategic_merge_patch_merges_lists_on_the_key_its_directives_name(simulator: Simulator) -> None:
    world = simulator.world
    containers = [
        {"name": "main", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
        {"name": "side", "image": "agent:1"},
    ]
    world.create(
        "Pod", "default", {"metadata": {"name": "web", "finalizers": ["a"]}, "spec": {"containers": containers}}
    )
    # what `kubectl set image pod/web main=nginx:1.28` sends, plus a deletion and a finalizer
    patch = {
        "metadata": {"finalizers": ["b"], "$setElementOrder/finalizers": ["a", "b"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "main"}],
            "containers": [{"image": "nginx:1.28", "name": "main"}, {"name": "side", "$patch": "delete"}],
        },
    }

    code, patched = request(
        simulator,
        "PATCH",
        "/api/v1/namespaces/default/pods/web",
        json.dumps(patch).encode(),
        content_type="application/strategic-merge-patch+json",
    )
    merge_code, merged = request(
        simulator,
        "PATCH",
        "/api/v1/namespaces/default/pods/web",
        json.dumps({"spec": {"containers": [{"name": "main", "image": "nginx:1.29"}]}}).encode(),
        content_type="application/merge-patch+json",
    )

    assert code == 200
    assert patched["spec"]["containers"] == [{"name": "main", "image": "nginx:1.28", "ports": [{"containerPort": 80}]}]
    assert patched["metadata"]["finalizers"] == ["a", "b"]
    assert merge_code == 200, "a merge patch replaces the list whole"
    assert merged["spec"]["containers"] == [{"name": "main", "image": "nginx:1.29"}]
