"""The core/v1 Events the control plane records, in the shapes and words of the components that record them: the
scheduler (Scheduled, FailedScheduling with the filter plugins' reasons), the kubelet (Killing, NodeReady,
NodeSchedulable), the node lifecycle controller (RegisteredNode, NodeNotReady, RemovingNode) and the workload
controllers (SuccessfulCreate, SuccessfulDelete, ScalingReplicaSet).

The world stores what these functions return; nothing here touches the store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# How long the API server keeps an event (kube-apiserver --event-ttl's default).
EVENT_TTL_SECONDS = 3600.0

SCHEDULER = "default-scheduler"
KUBELET = "kubelet"
NODE_CONTROLLER = "node-controller"


@dataclass(frozen=True)
class Source:
    component: str
    host: str = ""


def reference(obj: Obj, *, field_path: str = "") -> Obj:
    """An ObjectReference to ``obj`` as client-go's recorder makes it (kind, namespace, name, uid, apiVersion and
    the resourceVersion seen)."""
    meta = obj["metadata"]
    ref: Obj = {
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "apiVersion": obj["apiVersion"],
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def node_reference(node: Obj, source: Source) -> Obj:
    """A node as its recorders name it: the node lifecycle controller by the node's uid, the kubelet by its name
    (which is why `kubectl describe node` asks for both)."""
    name = node["metadata"]["name"]
    uid = name if source.component == KUBELET else node["metadata"].get("uid", "")
    return {"kind": "Node", "name": name, "uid": uid}


def event(
    name: str, involved: Obj, reason: str, message: str, source: Source, *, when: str, warning: bool = False
) -> Obj:
    """An Event about ``involved`` (an ObjectReference), kept in its namespace (a cluster-scoped object's in
    "default", as the API server keeps them)."""
    body: Obj = {
        "metadata": {"name": name, "namespace": involved.get("namespace") or "default"},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": source.component, **({"host": source.host} if source.host else {})},
        "reportingComponent": source.component,
        "reportingInstance": source.host,
        "count": 1,
        "firstTimestamp": when,
        "lastTimestamp": when,
        "eventTime": None,
    }
    return body


def node_status_message(node_name: str, status: str) -> str:
    return f"Node {node_name} status is now: {status}"


# --- why a pod fits no node, in the scheduler's words -----------------------------------------------------------

UNSCHEDULABLE = "node(s) were unschedulable"
NODE_SELECTOR = "node(s) didn't match Pod's node affinity/selector"
TOO_MANY_PODS = "Too many pods"
INSUFFICIENT_CPU = "Insufficient cpu"
# Reasons preemption cannot help with (the node would not take the pod even if it were empty).
UNRESOLVABLE_PREFIXES = (UNSCHEDULABLE, NODE_SELECTOR, "node(s) had untolerated taint")


def untolerated_taint(taint: Obj) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


def failed_scheduling(reasons_by_node: list[list[str]]) -> str:
    """The scheduler's FitError message: how many nodes fail for each reason (sorted, as the scheduler sorts the
    histogram), then what preemption found."""
    total = len(reasons_by_node)
    if total == 0:
        return "no nodes available to schedule pods"
    filtered = Counter(reason for reasons in reasons_by_node for reason in reasons)
    preemption = Counter(
        "Preemption is not helpful for scheduling"
        if any(reason.startswith(UNRESOLVABLE_PREFIXES) for reason in reasons)
        else "No preemption victims found for incoming pod"
        for reasons in reasons_by_node
    )
    return (
        f"0/{total} nodes are available: {_histogram(filtered)}. "
        f"preemption: 0/{total} nodes are available: {_histogram(preemption)}."
    )


def _histogram(counts: Counter[str]) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items()))
