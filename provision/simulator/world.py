"""The simulated cluster behind the API: an object store, and the controllers that act on it at each ``tick``.

- scheduler: binds pending pods to Ready, schedulable nodes with room (pods per node and CPU requests);
- kubelet: a bound pod runs after ``start_delay`` and is Ready ``ready_delay`` later, while its node is Ready;
- controllers: Deployments own one ReplicaSet, ReplicaSets and StatefulSets keep their replica count, DaemonSets one
  pod per node; deleted or evicted pods are recreated;
- garbage collection: pods of a deleted node or owner go; a deleted pod goes after ``termination_delay``;
- disruption budgets: status kept current; eviction refused exactly when the API server would refuse it.

All access goes through one lock, so HTTP handler threads and the ticking thread never see half an update.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import itertools
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from provision.clock import Clock
from provision.kube.selectors import field_paths, label_selector_object, parse_field_selector, parse_label_selector
from provision.simulator import events, patches, rollout, secrets
from provision.simulator.budgets import BudgetStatus, Refusal, budget_status, eviction_refusal
from provision.simulator.events import Source
from provision.simulator.resources import RESOURCES

Obj = dict[str, Any]
# What the API layer checks an object with before it is stored (field validation); raises ApiError to refuse.
Admit = Callable[[Obj], None]
# How many changes a watch can resume from; older resourceVersions answer 410 Gone, as etcd's compaction makes them.
CHANGE_LOG_LENGTH = 20_000
# A fault to inject on purpose: the workload's pods (not a DaemonSet's) on a node with this label and value crash-loop,
# as pods that cannot run on a new configuration do; a host's label comes from `hosts.labels` in cluster.toml.
FAULT_LABEL, CRASH_LOOP = "sandbox.cluster/fault", "crash-loop"
CRASH_PERIOD = 5.0  # seconds between restarts of a crash-looping container

# The fields each kind can be selected by, as the API server registers them (others answer 400).
BASE_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
SELECTABLE_FIELDS = {
    "Pod": BASE_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "Node": BASE_FIELDS | {"spec.unschedulable"},
    "Namespace": BASE_FIELDS | {"status.phase"},
    "Event": BASE_FIELDS
    | {f"involvedObject.{name}" for name in ("kind", "name", "namespace", "uid")}
    | {"reason", "type"},
    "Secret": BASE_FIELDS | {"type"},
}

# The kinds that have no spec or status, or a spec only (the rest have both).
PARTS: dict[str, tuple[str, ...]] = {"Event": (), "Secret": (), "Lease": ("spec",)}

# The namespaces every cluster starts with.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Node heartbeats: each kubelet holds a Lease named after its node, renewed every quarter of its duration.
NODE_LEASE_NAMESPACE = "kube-node-lease"
NODE_LEASE_SECONDS = 40
# How often the control plane's housekeeping runs (event expiry, the bootstrap token cleaner).
HOUSEKEEPING_SECONDS = 10.0

# The label that tells a Deployment's ReplicaSets (and their pods) apart, and the annotation numbering its revisions.
TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"

# What a simulated host's kubelet reports: the project's default image (Amazon Linux 2023) and Kubernetes version.
NODE_INFO = {
    "kubeletVersion": "v1.34.0",
    "kubeProxyVersion": "",
    "osImage": "Amazon Linux 2023.7.20250623",
    "kernelVersion": "6.1.141-155.222.amzn2023.x86_64",
    "containerRuntimeVersion": "containerd://1.7.27",
    "operatingSystem": "linux",
    "architecture": "amd64",
}

# An m4.large's memory and a 20 GiB root volume: without them `kubectl describe node` divides by zero and prints
# negative percentages. Pods are scheduled by count and CPU only.
NODE_STORAGE = {"memory": "8039352Ki", "ephemeral-storage": "20959212Ki"}

# The spec fields the API server fills in when a workload leaves them out (pkg/apis/apps/v1/defaults.go).
WORKLOAD_DEFAULTS: dict[str, Obj] = {
    "Deployment": {
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    },
    "DaemonSet": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "revisionHistoryLimit": 10,
    },
    "StatefulSet": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "podManagementPolicy": "OrderedReady",
        "revisionHistoryLimit": 10,
    },
}

# kind -> (apiVersion, namespaced)
KINDS: dict[str, tuple[str, bool]] = {r.kind: (r.api_version, r.namespaced) for r in RESOURCES}


class ApiError(Exception):
    """An error the API answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, *, causes: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []


@dataclass
class Timings:
    start_delay: float = 1.0  # bound -> Running
    ready_delay: float = 2.0  # Running -> Ready
    termination_delay: float = 1.0  # deleted -> gone
    node_pods: int = 110
    node_cpu_millis: int = 2000


@dataclass
class Counters:
    evictions: int = 0
    evictions_refused: int = 0
    budget_violations: int = 0  # healthy pods removed while their budget allowed no disruption
    pod_deletions: int = 0  # pods deleted through the API (a drain that evicts deletes none)


class ChangeType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Change:
    """One entry of the store's history: the object as it became at ``version`` (as it was last, for DELETED)."""

    version: int
    type: ChangeType
    kind: str
    obj: Obj
    before: Obj | None  # the object just before, so a selective watch sees it enter or leave its selection


@dataclass(frozen=True)
class WatchFilter:
    kind: str
    namespace: str | None = None
    labels: str = ""
    fields: str = ""


@dataclass
class _PodClock:
    bound_at: float | None = None
    running_at: float | None = None
    deleted_at: float | None = None
    unschedulable_because: str = ""  # the last FailedScheduling message recorded, so it is recorded once
    backing_off: bool = False  # crash-looping, and the kubelet's BackOff event recorded


@dataclass
class _NodeSeen:
    """What the kubelet and the node lifecycle controller last saw of a node (its events are the changes)."""

    uid: str
    ready: bool
    unschedulable: bool
    lease_renewed: float


@dataclass
class World:
    """``started`` is the wall-clock time at which ``clock`` reads what it reads at construction: timestamps are
    wall-clock times moving with the injected clock (real in the sandbox, virtual in tests), so kubectl's ages are
    the time since the object was made."""

    clock: Clock
    timings: Timings = field(default_factory=Timings)
    counters: Counters = field(default_factory=Counters)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    history: int = CHANGE_LOG_LENGTH  # changes kept for watches to resume from

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._origin = self.clock.now()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {kind: {} for kind in KINDS}
        self._pods: dict[tuple[str, str], _PodClock] = {}
        # Controllers change objects in place; _publish compares the store with what was last published, gives each
        # changed object the next resourceVersion and logs the change for watches.
        self._version = 0
        self._published: dict[str, dict[tuple[str, str], Obj]] = {kind: {} for kind in KINDS}
        self._log: deque[Change] = deque(maxlen=self.history)
        self._deferred = 0
        self._names = itertools.count(1)
        self._ips = itertools.count(0)
        self._nodes_seen: dict[str, _NodeSeen] = {}
        self._last_event_nanos = 0
        self._housekept = float("-inf")
        for namespace in SYSTEM_NAMESPACES:
            self.create("Namespace", "", {"metadata": {"name": namespace}})

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several changes seen by the controllers as one: e.g. hosts that join in the same moment, so the scheduler
        spreads pending pods over all of them instead of filling the first."""
        with self._lock:
            self._deferred += 1
            try:
                yield
            finally:
                self._deferred -= 1
                self._reconcile()

    # --- the API's verbs -------------------------------------------------------------------------------------

    def create(self, kind: str, namespace: str, body: Obj, *, admit: Admit | None = None) -> Obj:
        """Create; ``admit`` sees (and may refuse or trim) the object as the client sent it, as the API server's
        decoding and field validation do."""
        with self._lock:
            obj = copy.deepcopy(body)
            if admit is not None:
                admit(obj)
            api_version, namespaced = KINDS[kind]
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + self._suffix()
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", f'{kind} "" is invalid: metadata.name: Required value')
            if namespaced:
                namespace = namespace or meta.get("namespace") or "default"
                if ("", namespace) not in self._objects["Namespace"]:
                    raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
                meta["namespace"] = namespace
            key = (namespace if namespaced else "", name)
            if key in self._objects[kind]:
                raise ApiError(409, "AlreadyExists", f'{_plural(kind)} "{name}" already exists')
            obj["apiVersion"], obj["kind"] = api_version, kind
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=self._timestamp(), generation=1)
            meta.setdefault("labels", {})
            meta.setdefault("annotations", {})
            for part in PARTS.get(kind, ("spec", "status")):
                obj.setdefault(part, {})
            self._defaults(kind, obj)
            self._validate(kind, obj, None)
            self._objects[kind][key] = obj
            if kind == "Pod":
                bound = obj["spec"].get("nodeName")  # a pod created bound (as kubelets make mirror pods) just runs
                self._pods[key] = _PodClock(bound_at=self.clock.now() if bound else None)
            self._reconcile()
            return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        with self._lock:
            return copy.deepcopy(self._get(kind, namespace, name))

    def select(self, kind: str, namespace: str | None, *, labels: str = "", fields: str = "") -> list[Obj]:
        return self.listing(WatchFilter(kind, namespace, labels, fields))[0]

    def listing(self, what: WatchFilter) -> tuple[list[Obj], int]:
        """The objects selected and the resourceVersion they were read at (a watch from it misses nothing)."""
        matches = self._matcher(what)
        with self._lock:
            found = [copy.deepcopy(obj) for _, obj in sorted(self._objects[what.kind].items()) if matches(obj)]
            return found, self._version

    def changes(self, what: WatchFilter, after: int, *, timeout: float) -> tuple[list[tuple[ChangeType, Obj]], int]:
        """The watch events after resourceVersion ``after`` for the objects ``what`` selects, waiting up to
        ``timeout`` seconds for the first; and the version to ask from next time. An object that enters the
        selection is ADDED, one that leaves it DELETED, as the API server's watch cache reports them. 410 Gone when
        ``after`` is older than the history kept."""
        matches = self._matcher(what)
        with self._changed:
            if self._log and after < self._log[0].version - 1:
                raise ApiError(410, "Expired", f"too old resource version: {after} ({self._log[0].version - 1})")
            if self._version <= after:
                self._changed.wait(timeout)
            events: list[tuple[ChangeType, Obj]] = []
            start = max(0, after + 1 - self._log[0].version) if self._log else 0  # versions in the log are consecutive
            for change in itertools.islice(self._log, start, None):
                if change.kind != what.kind:
                    continue
                if change.type is ChangeType.DELETED:
                    if matches(change.obj):
                        events.append((ChangeType.DELETED, copy.deepcopy(change.obj)))
                    continue
                was_in = change.before is not None and matches(change.before)
                if matches(change.obj):
                    events.append((ChangeType.MODIFIED if was_in else ChangeType.ADDED, copy.deepcopy(change.obj)))
                elif was_in:
                    events.append((ChangeType.DELETED, copy.deepcopy(change.obj)))
            return events, max(after, self._version)

    def wake_watchers(self) -> None:
        """Let every waiting watch look again at once (the server is stopping)."""
        with self._changed:
            self._changed.notify_all()

    def _matcher(self, what: WatchFilter) -> Callable[[Obj], bool]:
        fields, selectable = what.fields, SELECTABLE_FIELDS.get(what.kind, BASE_FIELDS)
        unsupported = [path for path in field_paths(fields) if path not in selectable]
        if unsupported:
            raise ApiError(400, "BadRequest", f"field label not supported: {unsupported[0]}")
        label_match, field_match = parse_label_selector(what.labels), parse_field_selector(fields)

        def matches(obj: Obj) -> bool:
            namespace = obj["metadata"].get("namespace", "")
            return (
                (what.namespace is None or namespace == what.namespace)
                and label_match(obj["metadata"].get("labels") or {})
                and field_match(obj)
            )

        return matches

    def replace(
        self, kind: str, namespace: str, name: str, body: Obj, *, status: bool = False, admit: Admit | None = None
    ) -> Obj:
        """PUT: of the object (its status kept) or, with ``status``, of its status subresource (only status taken).
        A resourceVersion in the body is a precondition, as on the API server."""
        with self._lock:
            current = self._get(kind, namespace, name)
            updated = copy.deepcopy(current) if status else copy.deepcopy(body)
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if status:
                updated["status"] = copy.deepcopy(body.get("status", {}))
                if sent:
                    updated["metadata"]["resourceVersion"] = sent
            else:
                updated["metadata"] = {**current["metadata"], **updated.get("metadata", {})}
                if "status" in current:
                    updated["status"] = current["status"]
            return self._store(kind, namespace, name, current, updated, admit)

    def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Obj | list[Obj],
        *,
        status: bool = False,
        strategic: bool = False,
        admit: Admit | None = None,
    ) -> Obj:
        """A JSON patch (a list of operations), a JSON merge patch or, with ``strategic``, a strategic merge patch
        (see ``patches``). The object's patch leaves its status alone and the status subresource's patch touches
        only the status, as the API server does."""
        with self._lock:
            current = self._get(kind, namespace, name)
            try:
                patched = patches.apply(current, patch, strategic=strategic)
            except patches.PatchError as error:
                raise ApiError(422, "Invalid", str(error)) from error
            if status:
                updated = {**copy.deepcopy(current), "status": patched.get("status", {})}
                updated["metadata"]["resourceVersion"] = patched["metadata"].get("resourceVersion")
            else:
                updated = {**patched, **({"status": copy.deepcopy(current["status"])} if "status" in current else {})}
            return self._store(kind, namespace, name, current, updated, admit)

    def delete(self, kind: str, namespace: str, name: str, *, grace_seconds: int | None = None) -> Obj:
        """Delete; a pod terminates over ``termination_delay`` unless deleted with a grace period of 0 (forced)."""
        with self._lock:
            obj = self._get(kind, namespace, name)
            key = (namespace if KINDS[kind][1] else "", name)
            if kind == "Pod":
                self.counters.pod_deletions += 1
                self._note_disruption(obj, evicted=False)
                self._terminate(key)
                if grace_seconds == 0:
                    del self._objects["Pod"][key]
                    del self._pods[key]
            else:
                del self._objects[kind][key]
            self._reconcile()
            return copy.deepcopy(obj)

    def evict(self, namespace: str, name: str) -> None:
        with self._lock:
            pod = self._get("Pod", namespace, name)
            key = (namespace, name)
            if self._pods[key].deleted_at is not None:
                return
            refusal = self._eviction_refusal(pod)
            if refusal is not None:
                self.counters.evictions_refused += 1
                raise ApiError(refusal.code, refusal.reason, refusal.message, causes=refusal.causes)
            self.counters.evictions += 1
            pod["status"]["conditions"] = [
                *(pod["status"].get("conditions") or []),
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API: evicting",
                    "lastTransitionTime": self._timestamp(),
                },
            ]
            self._terminate(key)
            self._reconcile()

    # --- what the host simulator and tests use ---------------------------------------------------------------

    def add_node(
        self,
        name: str,
        *,
        provider_id: str = "",
        internal_ip: str = "",
        ready: bool = True,
        labels: dict[str, str] | None = None,
    ) -> Obj:
        body: Obj = {
            "metadata": {"name": name, "labels": {**(labels or {}), "kubernetes.io/hostname": name}},
            "spec": {"providerID": provider_id} if provider_id else {},
            "status": {
                "capacity": {
                    "pods": str(self.timings.node_pods),
                    "cpu": f"{self.timings.node_cpu_millis}m",
                    **NODE_STORAGE,
                },
                "allocatable": {
                    "pods": str(self.timings.node_pods),
                    "cpu": f"{self.timings.node_cpu_millis}m",
                    **NODE_STORAGE,
                },
                "addresses": [{"type": "Hostname", "address": name}]
                + ([{"type": "InternalIP", "address": internal_ip}] if internal_ip else []),
                "conditions": [_ready_condition(ready, self._timestamp())],
                "nodeInfo": {
                    **NODE_INFO,
                    "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                    "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                    "bootID": str(uuid.uuid4()),
                },
            },
        }
        return self.create("Node", "", body)

    def set_node_ready(self, name: str, ready: bool) -> None:
        """The kubelet posts Ready (or stops posting: NotReady); the change is recorded as an event."""
        with self._lock:
            node = self._get("Node", "", name)
            node["status"]["conditions"] = [_ready_condition(ready, self._timestamp())]
            self._reconcile()

    def tick(self) -> None:
        with self._lock:
            self._reconcile()

    # --- internals -------------------------------------------------------------------------------------------

    def _get(self, kind: str, namespace: str, name: str) -> Obj:
        key = (namespace if KINDS[kind][1] else "", name)
        obj = self._objects[kind].get(key)
        if obj is None:
            raise ApiError(404, "NotFound", f'{_plural(kind)} "{name}" not found')
        return obj

    def _store(
        self, kind: str, namespace: str, name: str, current: Obj, updated: Obj, admit: Admit | None = None
    ) -> Obj:
        """Write an update, unless it was made from a version that is no longer the current one (409 Conflict: the
        optimistic concurrency every controller and leader election rely on)."""
        key = (namespace if KINDS[kind][1] else "", name)
        if admit is not None:
            admit(updated)
        sent = updated["metadata"].get("resourceVersion")
        if sent and sent != current["metadata"].get("resourceVersion"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_plural(kind)} "{name}": the object has been modified; please '
                "apply your changes to the latest version and try again",
            )
        if updated.get("spec") != current.get("spec"):
            updated["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        updated["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion", "")
        for fixed in ("uid", "creationTimestamp", "name", "namespace"):  # the server keeps these, whatever is sent
            if fixed in current["metadata"]:
                updated["metadata"][fixed] = current["metadata"][fixed]
        updated["apiVersion"], updated["kind"] = KINDS[kind][0], kind
        self._validate(kind, updated, current)
        self._objects[kind][key] = updated
        self._reconcile()
        return copy.deepcopy(updated)

    def _validate(self, kind: str, obj: Obj, previous: Obj | None) -> None:
        if kind == "Secret":
            try:
                secrets.normalize(obj, previous)
            except secrets.Invalid as error:
                raise ApiError(error.code, "BadRequest" if error.code == 400 else "Invalid", str(error)) from error

    def now(self) -> datetime:
        """The world's wall-clock time (whole seconds, as the API's timestamps have)."""
        return (self.started + timedelta(seconds=self.clock.now() - self._origin)).replace(microsecond=0)

    def _timestamp(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _micro_timestamp(self) -> str:
        """A MicroTime (lease renewals): the world's time to the microsecond."""
        moment = self.started + timedelta(seconds=self.clock.now() - self._origin)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _record(self, involved: Obj, reason: str, message: str, source: Source, *, warning: bool = False) -> None:
        """Store an Event as its recorder would create it. Named as client-go names them, the object's name and the
        time in hex nanoseconds, so a listing shows each object's events in order."""
        nanos = int((self.started + timedelta(seconds=self.clock.now() - self._origin)).timestamp() * 1e9)
        self._last_event_nanos = max(nanos, self._last_event_nanos + 1)
        name = f"{involved['name']}.{self._last_event_nanos:x}"
        event = events.event(name, involved, reason, message, source, when=self._timestamp(), warning=warning)
        namespace = event["metadata"]["namespace"]
        if ("", namespace) not in self._objects["Namespace"]:
            return  # no namespace to keep it in (the recorder's create would fail)
        event["apiVersion"], event["kind"] = KINDS["Event"][0], "Event"
        event["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=self._timestamp(), labels={}, annotations={})
        self._objects["Event"][(namespace, name)] = event

    def _pod_ip(self) -> str:
        """The next address of the pod network (10.244.0.0/16, as kubeadm's default), skipping .0 and .255."""
        number = next(self._ips)
        return f"10.244.{number // 254 % 256}.{number % 254 + 1}"

    def _suffix(self) -> str:
        return hashlib.sha256(str(next(self._names)).encode()).hexdigest()[:5]

    def _defaults(self, kind: str, obj: Obj) -> None:
        if kind == "Pod":
            obj["status"] = {"phase": "Pending", "conditions": []}
        elif kind == "Node":
            obj["spec"].setdefault("unschedulable", False)
        elif kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        elif kind in WORKLOAD_DEFAULTS:
            # As the API server defaults them; `kubectl rollout status` refuses a workload without a RollingUpdate
            # strategy.
            for name, value in WORKLOAD_DEFAULTS[kind].items():
                obj["spec"].setdefault(name, copy.deepcopy(value))

    def _terminate(self, key: tuple[str, str]) -> None:
        pod = self._objects["Pod"][key]
        timer = self._pods[key]
        if timer.deleted_at is None:
            timer.deleted_at = self.clock.now()
            pod["metadata"]["deletionTimestamp"] = self._timestamp()
            pod["metadata"]["deletionGracePeriodSeconds"] = int(self.timings.termination_delay)
            _set_ready(pod, False)
            node = pod["spec"].get("nodeName") or ""
            if timer.running_at is not None and ("", node) in self._objects["Node"]:
                for container in pod["spec"].get("containers") or []:  # the kubelet stops each container
                    self._record(
                        events.reference(pod, field_path=f"spec.containers{{{container['name']}}}"),
                        "Killing",
                        f"Stopping container {container['name']}",
                        Source(events.KUBELET, node),
                    )

    # --- disruption budgets ---

    def _budgets_for(self, pod: Obj) -> list[Obj]:
        labels = pod["metadata"].get("labels") or {}
        return [
            budget
            for (namespace, _), budget in sorted(self._objects["PodDisruptionBudget"].items())
            if namespace == pod["metadata"]["namespace"]
            and budget["spec"].get("selector") is not None
            and label_selector_object(budget["spec"]["selector"])(labels)
        ]

    def _deployment_status(self, deployment: Obj, namespace: str, name: str) -> None:
        """What `kubectl rollout status` and `get deployment` read: pods of every set, of the current template's
        set (updated), available ones, and the Available and Progressing conditions."""
        owned = [
            rs
            for (rs_namespace, _), rs in self._objects["ReplicaSet"].items()
            if rs_namespace == namespace and _controller(rs) == ("Deployment", namespace, name)
        ]
        revision = deployment["metadata"]["annotations"].get(REVISION)
        new = next((rs for rs in owned if rs["metadata"]["annotations"].get(REVISION) == revision), None)
        status = deployment["status"]
        wanted = int(deployment["spec"].get("replicas", 1))
        available = sum(rs["status"].get("availableReplicas", 0) for rs in owned)
        updated = new["status"].get("replicas", 0) if new else 0
        replicas = sum(rs["status"].get("replicas", 0) for rs in owned)
        status.update(
            replicas=replicas,
            readyReplicas=sum(rs["status"].get("readyReplicas", 0) for rs in owned),
            availableReplicas=available,
            updatedReplicas=updated,
            unavailableReplicas=max(0, wanted - available),
            observedGeneration=deployment["metadata"].get("generation", 1),
        )
        _, unavailable = rollout.surge_and_unavailable(deployment["spec"], wanted)
        new_name = new["metadata"]["name"] if new else ""
        done = updated == wanted and replicas == updated and available >= updated
        previous, now = status.get("conditions") or [], self._timestamp()
        status["conditions"] = [
            _condition(
                "Available",
                available >= wanted - unavailable,
                "MinimumReplicasAvailable" if available >= wanted - unavailable else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available >= wanted - unavailable
                else "Deployment does not have minimum availability.",
                previous,
                now,
            ),
            _condition(
                "Progressing",
                True,
                "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                f'ReplicaSet "{new_name}" has successfully progressed.'
                if done
                else f'ReplicaSet "{new_name}" is progressing.',
                previous,
                now,
            ),
        ]

    def _budget_status(self, budget: Obj) -> BudgetStatus:
        namespace = budget["metadata"]["namespace"]
        matches = label_selector_object(budget["spec"].get("selector"))
        pods = [
            pod
            for (pod_namespace, _), pod in self._objects["Pod"].items()
            if pod_namespace == namespace and matches(pod["metadata"].get("labels") or {})
        ]
        if isinstance(budget["spec"].get("minAvailable"), int):
            expected = len(pods)  # the disruption controller counts every matching pod for an integer minAvailable
        else:
            # Counted once per controller at the top: a Deployment's sets during a rollout count as the Deployment.
            owners = {self._scaling_owner(owner) for pod in pods if (owner := _controller(pod)) is not None}
            expected = sum(self._scale(owner) for owner in owners) + sum(1 for pod in pods if _controller(pod) is None)
        healthy = sum(1 for pod in pods if self._healthy(pod))
        return budget_status(budget["spec"], expected=expected, healthy=healthy)

    def _scaling_owner(self, owner: tuple[str, str, str]) -> tuple[str, str, str]:
        """The controller whose scale the disruption controller reads: a ReplicaSet's Deployment when it has one."""
        kind, namespace, name = owner
        replica_set = self._objects["ReplicaSet"].get((namespace, name)) if kind == "ReplicaSet" else None
        parent = _controller(replica_set) if replica_set is not None else None
        if parent is not None and parent[0] == "Deployment" and (namespace, parent[2]) in self._objects["Deployment"]:
            return parent
        return owner

    def _scale(self, owner: tuple[str, str, str]) -> int:
        kind, namespace, name = owner
        obj = self._objects.get(kind, {}).get((namespace, name))
        if obj is None:
            return 0
        if kind == "DaemonSet":
            return int(obj["status"].get("desiredNumberScheduled", 0))
        return int(obj["spec"].get("replicas", 1))

    def _healthy(self, pod: Obj) -> bool:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        return self._pods[key].deleted_at is None and _is_ready(pod)

    def _eviction_refusal(self, pod: Obj) -> Refusal | None:
        budgets = [(budget, self._budget_status(budget)) for budget in self._budgets_for(pod)]
        return eviction_refusal(pod, budgets, pod_healthy=self._healthy(pod))

    def _note_disruption(self, pod: Obj, *, evicted: bool) -> None:
        """A delete bypasses the budgets; count it when the budget had no disruption to give."""
        if evicted or not self._healthy(pod):
            return
        if any(self._budget_status(budget).disruptions_allowed <= 0 for budget in self._budgets_for(pod)):
            self.counters.budget_violations += 1

    # --- the control loop ---

    def _reconcile(self) -> None:
        if self._deferred:
            return
        now = self.clock.now()
        self._run_nodes(now)
        self._collect_garbage(now)
        self._run_deployments()
        self._run_replica_owners()
        self._run_daemonsets()
        self._schedule()
        self._run_kubelets(now)
        self._update_statuses()
        self._publish()

    def _publish(self) -> None:
        """Give every object added or changed since the last publish the next resourceVersion, log the change for
        watches and wake them. A write that changes nothing changes no version, as on a real API server."""
        changes: list[Change] = []
        for kind, objects in self._objects.items():
            published = self._published[kind]
            for key, obj in objects.items():
                before = published.get(key)
                if before is not None and _same_but_version(before, obj):
                    continue
                self._version += 1
                obj["metadata"]["resourceVersion"] = str(self._version)
                published[key] = copy.deepcopy(obj)
                change_type = ChangeType.ADDED if before is None else ChangeType.MODIFIED
                changes.append(Change(self._version, change_type, kind, published[key], before))
            for key in [key for key in published if key not in objects]:
                self._version += 1
                last = published.pop(key)  # also held by the change that published it: copied, not changed
                gone = {**last, "metadata": {**last["metadata"], "resourceVersion": str(self._version)}}
                changes.append(Change(self._version, ChangeType.DELETED, kind, gone, None))
        if changes:
            self._log.extend(changes)
            self._changed.notify_all()

    def _run_nodes(self, now: float) -> None:
        """What each kubelet and the node lifecycle controller do about their nodes: record a node's registration,
        its Ready and schedulable changes and its removal, and keep each live node's lease renewed."""
        for (_, name), node in self._objects["Node"].items():
            ready, unschedulable = _is_node_ready(node), bool(node["spec"].get("unschedulable"))
            seen = self._nodes_seen.get(name)
            if seen is None:
                self._record_node(node, "RegisteredNode", f"Node {name} event: Registered Node {name} in Controller")
                seen = self._nodes_seen[name] = _NodeSeen(node["metadata"]["uid"], False, False, float("-inf"))
            if ready != seen.ready:
                self._record_node(node, "NodeReady" if ready else "NodeNotReady")
            if unschedulable != seen.unschedulable:
                self._record_node(node, "NodeNotSchedulable" if unschedulable else "NodeSchedulable")
            seen.ready, seen.unschedulable = ready, unschedulable
            lease = self._objects["Lease"].get((NODE_LEASE_NAMESPACE, name))
            if lease is None or (ready and now - seen.lease_renewed >= NODE_LEASE_SECONDS / 4):
                self._renew_node_lease(node, lease)
                seen.lease_renewed = now
        for name in [name for name in self._nodes_seen if ("", name) not in self._objects["Node"]]:
            gone = {"kind": "Node", "name": name, "uid": self._nodes_seen.pop(name).uid}
            message = f"Node {name} event: Removing Node {name} from Controller"
            self._record(gone, "RemovingNode", message, Source(events.NODE_CONTROLLER))

    def _record_node(self, node: Obj, status: str, message: str = "") -> None:
        """A node event: NotReady and registrations from the node lifecycle controller, the rest from the kubelet."""
        name = node["metadata"]["name"]
        source = (
            Source(events.NODE_CONTROLLER)
            if status in {"NodeNotReady", "RegisteredNode"}
            else Source(events.KUBELET, name)
        )
        self._record(
            events.node_reference(node, source), status, message or events.node_status_message(name, status), source
        )

    def _renew_node_lease(self, node: Obj, lease: Obj | None) -> None:
        """The kubelet's heartbeat: its node's Lease, made when missing and renewed while the node is live."""
        name = node["metadata"]["name"]
        if lease is None:
            lease = {
                "apiVersion": KINDS["Lease"][0],
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": NODE_LEASE_NAMESPACE,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": self._timestamp(),
                    "labels": {},
                    "annotations": {},
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
                    ],
                },
                "spec": {"holderIdentity": name, "leaseDurationSeconds": NODE_LEASE_SECONDS},
            }
            self._objects["Lease"][(NODE_LEASE_NAMESPACE, name)] = lease
        lease["spec"]["renewTime"] = self._micro_timestamp()

    def _housekeeping(self) -> None:
        """Every few seconds, as the API server and kube-controller-manager do it: events past their time to live
        go, and so do bootstrap tokens past their expiration (the token cleaner)."""
        now = self.now()
        oldest = (now - timedelta(seconds=events.EVENT_TTL_SECONDS)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for key, event in list(self._objects["Event"].items()):
            if (event.get("lastTimestamp") or event["metadata"]["creationTimestamp"]) < oldest:
                del self._objects["Event"][key]
        for key, secret in list(self._objects["Secret"].items()):
            if secrets.expired_bootstrap_token(secret, now):
                del self._objects["Secret"][key]

    def _collect_garbage(self, now: float) -> None:
        if now - self._housekept >= HOUSEKEEPING_SECONDS:
            self._housekept = now
            self._housekeeping()
        nodes = {name for _, name in self._objects["Node"]}
        for key, pod in list(self._objects["Pod"].items()):
            timer = self._pods[key]
            node = pod["spec"].get("nodeName")
            orphan = self._orphan(pod)
            if (node and node not in nodes) or orphan:
                self._terminate(key)
            if timer.deleted_at is not None and now - timer.deleted_at >= self.timings.termination_delay:
                del self._objects["Pod"][key]
                del self._pods[key]
        for kind, objects in self._objects.items():  # pods terminate above; other dependents go with their owners
            if kind != "Pod":
                for key in [key for key, obj in objects.items() if self._owners_gone(obj)]:
                    del objects[key]

    def _owners_gone(self, obj: Obj) -> bool:
        """Whether every owner of the object, of a kind modelled here, is gone (as the garbage collector finds it:
        an owner of the same name but another uid is another object)."""
        owners = [ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("kind") in KINDS]
        if not owners:
            return False
        for ref in owners:
            namespace = obj["metadata"].get("namespace", "") if KINDS[ref["kind"]][1] else ""
            owner = self._objects[ref["kind"]].get((namespace, ref.get("name", "")))
            if owner is not None and (not ref.get("uid") or ref["uid"] == owner["metadata"].get("uid")):
                return False
        return True

    def _orphan(self, obj: Obj) -> bool:
        """Whether the object's controller, of a kind modelled here, is gone (other kinds are assumed alive)."""
        owner = _controller(obj)
        if owner is None or owner[0] not in KINDS:
            return False
        namespace = owner[1] if KINDS[owner[0]][1] else ""
        return (namespace, owner[2]) not in self._objects[owner[0]]

    def _run_deployments(self) -> None:
        """Each Deployment owns a ReplicaSet per pod template (named and labelled by the template's hash); when the
        template changes, the pods move to the new set by the Deployment's strategy (``rollout.sync``), unless the
        Deployment is paused (`kubectl rollout pause`)."""
        for (namespace, name), deployment in self._objects["Deployment"].items():
            digest = _template_hash(deployment["spec"].get("template") or {})
            owned = sorted(
                (
                    rs
                    for (rs_namespace, _), rs in self._objects["ReplicaSet"].items()
                    if rs_namespace == namespace and _controller(rs) == ("Deployment", namespace, name)
                ),
                key=lambda rs: (rs["metadata"]["creationTimestamp"], rs["metadata"]["name"]),
            )
            new = next((rs for rs in owned if rs["metadata"]["name"] == f"{name}-{digest}"), None)
            if new is None and deployment["spec"].get("paused") and owned:
                continue  # a paused Deployment starts no rollout
            if new is None:
                new = self._new_replica_set(deployment, digest)
            old = [rs for rs in owned if rs is not new]
            self._set_revision(deployment, new, old)
            wanted = rollout.sync(
                deployment["spec"], self._replica_set_state(new), [self._replica_set_state(rs) for rs in old]
            )
            for rs in [new, *old]:
                before, after = rs["spec"]["replicas"], wanted[rs["metadata"]["name"]]
                if after != before:
                    rs["spec"]["replicas"] = after
                    direction = "up" if after > before else "down"
                    message = f"Scaled {direction} replica set {rs['metadata']['name']} from {before} to {after}"
                    self._record(
                        events.reference(deployment), "ScalingReplicaSet", message, Source("deployment-controller")
                    )

    def _new_replica_set(self, deployment: Obj, digest: str) -> Obj:
        """A Deployment's ReplicaSet for its current template, with no replicas yet (the next sync scales it)."""
        namespace, name = deployment["metadata"]["namespace"], f"{deployment['metadata']['name']}-{digest}"
        template = copy.deepcopy(deployment["spec"].get("template") or {})
        template.setdefault("metadata", {})
        template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), TEMPLATE_HASH: digest}
        selector = copy.deepcopy(deployment["spec"].get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), TEMPLATE_HASH: digest}
        replica_set: Obj = {
            "apiVersion": KINDS["ReplicaSet"][0],
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {},
                "creationTimestamp": self._timestamp(),
                "generation": 1,
                "ownerReferences": [_owner_reference(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {},
        }
        self._objects["ReplicaSet"][(namespace, name)] = replica_set
        return replica_set

    def _set_revision(self, deployment: Obj, new: Obj, old: list[Obj]) -> None:
        """The revision annotations `kubectl rollout history` reads: the current template's set is the newest (a
        rollback to an old template makes its set newest again), and the Deployment carries its number."""
        newest = max((int(rs["metadata"]["annotations"].get(REVISION, "0")) for rs in old), default=0)
        if int(new["metadata"]["annotations"].get(REVISION, "0")) <= newest:
            new["metadata"]["annotations"][REVISION] = str(newest + 1)
        deployment["metadata"]["annotations"][REVISION] = new["metadata"]["annotations"][REVISION]

    def _replica_set_state(self, replica_set: Obj) -> rollout.ReplicaSetState:
        meta = replica_set["metadata"]
        return rollout.ReplicaSetState(
            meta["name"],
            int(replica_set["spec"].get("replicas", 0)),
            int(replica_set["status"].get("availableReplicas", 0)),
            len(self._owned_pods("ReplicaSet", meta["namespace"], meta["name"])),
        )

    def _run_replica_owners(self) -> None:
        for kind in ("ReplicaSet", "StatefulSet"):
            for (namespace, name), owner in self._objects[kind].items():
                wanted = int(owner["spec"].get("replicas", 1))
                pods = self._owned_pods(kind, namespace, name)
                live = [pod for pod in pods if pod["metadata"].get("deletionTimestamp") is None]
                if kind == "StatefulSet":
                    existing = {pod["metadata"]["name"]: pod for pod in pods}
                    ordered = owner["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady"
                    for ordinal in range(wanted):
                        pod_name = f"{name}-{ordinal}"
                        if pod_name not in existing:
                            self._new_pod(owner, pod_name)
                            if ordered:
                                break  # OrderedReady: the next one only once this one is Ready
                        elif ordered and not _is_ready(existing[pod_name]):
                            break
                    for pod in live:
                        if int(pod["metadata"]["name"].rsplit("-", 1)[1]) >= wanted:
                            self._terminate((namespace, pod["metadata"]["name"]))
                            self._record_controller(owner, "SuccessfulDelete", pod["metadata"]["name"])
                    continue
                for _ in range(wanted - len(live)):
                    self._new_pod(owner, f"{name}-{self._suffix()}")
                for pod in self._deletion_order(live)[: max(0, len(live) - wanted)]:
                    self._terminate((namespace, pod["metadata"]["name"]))
                    self._record_controller(owner, "SuccessfulDelete", pod["metadata"]["name"])

    def _deletion_order(self, pods: list[Obj]) -> list[Obj]:
        """Which pods a ReplicaSet removes first when it has too many, as its controller ranks them: unscheduled
        before scheduled, pending before running, not Ready before Ready, then the newest first."""
        newest_first = sorted(
            sorted(pods, key=lambda pod: pod["metadata"]["name"]),
            key=lambda pod: pod["metadata"]["creationTimestamp"],
            reverse=True,
        )

        def rank(pod: Obj) -> tuple[bool, bool, bool]:
            timer = self._pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])]
            return timer.bound_at is not None, timer.running_at is not None, _is_ready(pod)

        return sorted(newest_first, key=rank)

    def _run_daemonsets(self) -> None:
        ready_nodes = [node for node in self._objects["Node"].values() if _is_node_ready(node)]
        for (namespace, name), daemon_set in self._objects["DaemonSet"].items():
            template_spec = (daemon_set["spec"].get("template") or {}).get("spec") or {}
            # Daemon pods tolerate cordons and node conditions, not the taints they were not given.
            nodes = [node for node in ready_nodes if _tolerated(template_spec, node, DAEMON_TOLERATIONS)]
            pods = self._owned_pods("DaemonSet", namespace, name)
            covered = {pod["spec"].get("nodeName") for pod in pods}
            for node in nodes:
                node_name = node["metadata"]["name"]
                if node_name not in covered:
                    self._new_pod(daemon_set, f"{name}-{self._suffix()}", node_name=node_name)
            daemon_set["status"]["desiredNumberScheduled"] = len(nodes)

    def _owned_pods(self, kind: str, namespace: str, name: str) -> list[Obj]:
        return [
            pod
            for (pod_namespace, _), pod in self._objects["Pod"].items()
            if pod_namespace == namespace and _controller(pod) == (kind, namespace, name)
        ]

    def _new_pod(self, owner: Obj, name: str, *, node_name: str = "") -> None:
        template = copy.deepcopy(owner["spec"].get("template") or {})
        meta = template.get("metadata") or {}
        namespace = owner["metadata"]["namespace"]
        spec = template.get("spec") or {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": dict(meta.get("labels") or {}),
                "annotations": dict(meta.get("annotations") or {}),
                "creationTimestamp": self._timestamp(),
                "ownerReferences": [_owner_reference(owner)],
            },
            "spec": spec,
            "status": {"phase": "Pending", "conditions": []},
        }
        self._objects["Pod"][(namespace, name)] = pod
        self._pods[(namespace, name)] = _PodClock()
        self._record_controller(owner, "SuccessfulCreate", name)
        if node_name:  # a daemon pod, placed on its node by the scheduler at once
            self._bind(pod, node_name)

    def _record_controller(self, owner: Obj, reason: str, pod_name: str) -> None:
        """A workload controller's event about a pod it made or removed, in its own words."""
        kind, name = owner["kind"], owner["metadata"]["name"]
        if kind == "StatefulSet":
            verb = "create" if reason == "SuccessfulCreate" else "delete"
            message = f"{verb} Pod {pod_name} in StatefulSet {name} successful"
        else:
            message = f"{'Created' if reason == 'SuccessfulCreate' else 'Deleted'} pod: {pod_name}"
        self._record(events.reference(owner), reason, message, Source(f"{kind.lower()}-controller"))

    def _schedule(self) -> None:
        """Bind each pending pod to the least loaded node it fits on, as the scheduler's filters judge a fit (cordon,
        taints, the node's pod count and CPU); a pod that fits nowhere says why, once per reason, in its
        PodScheduled condition and a FailedScheduling event."""
        nodes = {name: node for (_, name), node in self._objects["Node"].items()}
        load = {name: [0, 0] for name in nodes}
        for pod in self._objects["Pod"].values():
            node_name = pod["spec"].get("nodeName")
            if node_name in load and pod["metadata"].get("deletionTimestamp") is None:
                load[node_name][0] += 1
                load[node_name][1] += _cpu_request(pod)
        for key, pod in sorted(self._objects["Pod"].items()):
            if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            unfit = {name: _unfit(pod, node, load[name]) for name, node in nodes.items()}
            fitting = [name for name, reasons in unfit.items() if not reasons]
            timer = self._pods[key]
            if not fitting:
                message = events.failed_scheduling(list(unfit.values()))
                pod["status"]["conditions"] = [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
                ]
                if timer.unschedulable_because != message:
                    timer.unschedulable_because = message
                    scheduler = Source(events.SCHEDULER)
                    self._record(events.reference(pod), "FailedScheduling", message, scheduler, warning=True)
                continue
            chosen = min(fitting, key=lambda name: (load[name][0], name))
            load[chosen][0] += 1
            load[chosen][1] += _cpu_request(pod)
            self._bind(pod, chosen)

    def _bind(self, pod: Obj, node_name: str) -> None:
        pod["spec"]["nodeName"] = node_name
        self._pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])].bound_at = self.clock.now()
        meta = pod["metadata"]
        message = f"Successfully assigned {meta['namespace']}/{meta['name']} to {node_name}"
        self._record(events.reference(pod), "Scheduled", message, Source(events.SCHEDULER))

    def _run_kubelets(self, now: float) -> None:
        nodes = self._objects["Node"]
        for key, pod in self._objects["Pod"].items():
            timer = self._pods[key]
            node = nodes.get(("", pod["spec"].get("nodeName") or ""))
            if timer.deleted_at is not None or timer.bound_at is None or node is None:
                continue
            if timer.running_at is None and now - timer.bound_at >= self.timings.start_delay:
                timer.running_at = now
                pod["status"].update(
                    phase="Running", startTime=self._timestamp(), podIP=self._pod_ip(), hostIP=_internal_ip(node)
                )
                pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
            ready = timer.running_at is not None and now - timer.running_at >= self.timings.ready_delay
            crashing = (
                timer.running_at is not None
                and node["metadata"].get("labels", {}).get(FAULT_LABEL) == CRASH_LOOP
                and (_controller(pod) or ("",))[0] != "DaemonSet"
            )
            restarts = int((now - timer.running_at) // CRASH_PERIOD) + 1 if crashing and timer.running_at else 0
            if crashing and not timer.backing_off:
                timer.backing_off = True
                for container in pod["spec"].get("containers") or []:  # the kubelet's words, once per container
                    meta = pod["metadata"]
                    self._record(
                        events.reference(pod, field_path=f"spec.containers{{{container['name']}}}"),
                        "BackOff",
                        f"Back-off restarting failed container {container['name']} in pod "
                        f"{meta['name']}_{meta['namespace']}({meta['uid']})",
                        Source(events.KUBELET, node["metadata"]["name"]),
                        warning=True,
                    )
            _set_ready(pod, ready and _is_node_ready(node) and not crashing)
            pod["status"]["containerStatuses"] = _container_statuses(
                pod, ready and _is_node_ready(node) and not crashing, restarts=restarts
            )

    def _update_statuses(self) -> None:
        for kind in ("ReplicaSet", "StatefulSet", "DaemonSet"):
            for (namespace, name), owner in self._objects[kind].items():
                pods = [
                    p for p in self._owned_pods(kind, namespace, name) if not p["metadata"].get("deletionTimestamp")
                ]
                ready = sum(1 for pod in pods if _is_ready(pod))
                if kind == "DaemonSet":
                    desired = owner["status"].get("desiredNumberScheduled", 0)
                    owner["status"].update(
                        currentNumberScheduled=len(pods),
                        numberReady=ready,
                        numberAvailable=ready,
                        numberUnavailable=max(0, desired - ready),
                        numberMisscheduled=0,
                        updatedNumberScheduled=len(pods),
                        observedGeneration=owner["metadata"].get("generation", 1),
                    )
                else:
                    owner["status"].update(replicas=len(pods), readyReplicas=ready, availableReplicas=ready)
        for (namespace, name), deployment in self._objects["Deployment"].items():
            self._deployment_status(deployment, namespace, name)
        for budget in self._objects["PodDisruptionBudget"].values():
            status = self._budget_status(budget)
            allowed = "True" if status.disruptions_allowed > 0 else "False"
            previous: Obj = next(iter(budget["status"].get("conditions") or []), {})
            since = previous["lastTransitionTime"] if previous.get("status") == allowed else self._timestamp()
            budget["status"] = status.as_status(budget["metadata"].get("generation", 1), since=since)


def _template_hash(template: Obj) -> str:
    """The pod template's hash, as the controller hashes the typed template: fields left empty (null, {} or [], as
    `kubectl rollout undo` writes them back) hash as absent, so a template rolled back to is the same set's."""

    def pruned(value: Any) -> Any:
        if isinstance(value, dict):
            kept = {key: pruned(item) for key, item in value.items()}
            return {key: item for key, item in kept.items() if item not in (None, {}, [])}
        if isinstance(value, list):
            return [pruned(item) for item in value]
        return value

    return hashlib.sha256(json.dumps(pruned(template), sort_keys=True).encode()).hexdigest()[:10]


def _condition(kind: str, status: bool, reason: str, message: str, previous: list[Obj], when: str) -> Obj:
    """A status condition, its lastTransitionTime kept while its status stays."""
    before = next((c for c in previous if c.get("type") == kind), {})
    value = "True" if status else "False"
    flipped = before.get("status") != value
    return {
        "type": kind,
        "status": value,
        "lastUpdateTime": when if flipped or before.get("reason") != reason else before["lastUpdateTime"],
        "lastTransitionTime": when if flipped else before["lastTransitionTime"],
        "reason": reason,
        "message": message,
    }


def _same_but_version(published: Obj, obj: Obj) -> bool:
    """Equal apart from metadata.resourceVersion (which writes carry over from what they replace)."""
    if published.keys() != obj.keys():
        return False
    for name, value in obj.items():
        if name != "metadata" and published[name] != value:
            return False
    meta, before = obj["metadata"], published["metadata"]
    return {k: v for k, v in meta.items() if k != "resourceVersion"} == {
        k: v for k, v in before.items() if k != "resourceVersion"
    }


def _plural(kind: str) -> str:
    """The resource as API errors name it: group-qualified outside the core group ("deployments.apps")."""
    group = KINDS[kind][0].rpartition("/")[0]
    return f"{kind.lower()}s" + (f".{group}" if group else "")


def _controller(obj: Obj) -> tuple[str, str, str] | None:
    for reference in obj["metadata"].get("ownerReferences") or []:
        if reference.get("controller"):
            return reference["kind"], obj["metadata"].get("namespace", ""), reference["name"]
    return None


def _owner_reference(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _ready_condition(ready: bool, when: str) -> Obj:
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "NodeStatusUnknown",
        "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
        "lastHeartbeatTime": when,
        "lastTransitionTime": when,
    }


def _is_node_ready(node: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or [])


# What the DaemonSet controller adds to every daemon pod (it runs on cordoned and troubled nodes).
DAEMON_TOLERATIONS = [
    {"key": key, "operator": "Exists"}
    for key in (
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
    )
]


# What the node lifecycle controller taints a NotReady node with, and the taint a cordon stands for.
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def _unfit(pod: Obj, node: Obj, load: list[int]) -> list[str]:
    """Why the pod does not fit on the node, in the words of the first scheduler filter that rejects it (cordon,
    taints, the node selector, then resources); empty when it fits."""
    tolerations = pod["spec"].get("tolerations") or []
    if node["spec"].get("unschedulable") and not any(_tolerates(t, UNSCHEDULABLE_TAINT) for t in tolerations):
        return [events.UNSCHEDULABLE]
    taints = [NOT_READY_TAINT] if not _is_node_ready(node) else []
    taints += [t for t in node["spec"].get("taints") or [] if t.get("effect") in {"NoSchedule", "NoExecute"}]
    for taint in taints:
        if not any(_tolerates(toleration, taint) for toleration in tolerations):
            return [events.untolerated_taint(taint)]
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(key) != value for key, value in (pod["spec"].get("nodeSelector") or {}).items()):
        return [events.NODE_SELECTOR]
    allocatable = node["status"].get("allocatable") or {}
    reasons = []
    if load[0] >= int(allocatable.get("pods", 0)):
        reasons.append(events.TOO_MANY_PODS)
    if load[1] + _cpu_request(pod) > _millis(allocatable.get("cpu", "0")):
        reasons.append(events.INSUFFICIENT_CPU)
    return reasons


def _tolerated(pod_spec: Obj, node: Obj, extra: list[Obj] | None = None) -> bool:
    """Whether the pod tolerates every NoSchedule and NoExecute taint of the node."""
    tolerations = [*(pod_spec.get("tolerations") or []), *(extra or [])]
    for taint in node["spec"].get("taints") or []:
        if taint.get("effect") not in {"NoSchedule", "NoExecute"}:
            continue
        if not any(_tolerates(toleration, taint) for toleration in tolerations):
            return False
    return True


def _tolerates(toleration: Obj, taint: Obj) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def _internal_ip(node: Obj) -> str:
    return next((a["address"] for a in node["status"].get("addresses") or [] if a["type"] == "InternalIP"), "")


def _container_statuses(pod: Obj, ready: bool, *, restarts: int = 0) -> list[Obj]:
    """What the kubelet reports of each container: running since the pod started, still being created, or (with
    ``restarts``) crash-looping; kubectl's READY and STATUS columns are computed from these."""
    started = pod["status"].get("startTime")
    uid = pod["metadata"].get("uid", "")
    state: Obj = {"running": {"startedAt": started}} if started else {"waiting": {"reason": "ContainerCreating"}}
    if restarts:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}
    return [
        {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": f"containerd://{hashlib.sha256((uid + container['name']).encode()).hexdigest()}",
            "ready": ready,
            "started": started is not None and not restarts,
            "restartCount": restarts,
            "state": state,
        }
        for container in pod["spec"].get("containers") or []
    ]


def _is_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def _set_ready(pod: Obj, ready: bool) -> None:
    conditions = [c for c in pod["status"].get("conditions") or [] if c["type"] not in {"Ready", "PodScheduled"}]
    conditions.append({"type": "PodScheduled", "status": "True"})
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    pod["status"]["conditions"] = conditions


def _millis(quantity: str) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def _cpu_request(pod: Obj) -> int:
    total = 0
    for container in pod["spec"].get("containers") or []:
        request = ((container.get("resources") or {}).get("requests") or {}).get("cpu")
        total += _millis(request) if request else 0
    return total
