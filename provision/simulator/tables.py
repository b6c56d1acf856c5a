"""The server-side printing kubectl asks for (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``): a
meta.k8s.io Table whose columns and cells are those of the API server's printers
(kubernetes pkg/printers/internalversion/printers.go) for the kinds the simulator serves. kubectl prints these cells as
they come, so "Ready,SchedulingDisabled", "1/1" and "5m" are computed here, as a real server computes them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Obj = dict[str, Any]
NONE = "<none>"
UNKNOWN = "<unknown>"


def wants_table(accept: str) -> str | None:
    """The Table version the client asks for first (v1, or v1beta1 from old clients), or None for plain JSON."""
    for media_type in accept.split(","):
        params = {part.strip() for part in media_type.split(";")[1:]}
        if {"as=Table", "g=meta.k8s.io"} <= params:
            for version in ("v1", "v1beta1"):
                if f"v={version}" in params:
                    return version
    return None


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    priority: int = 0  # 1: shown by `-o wide` only
    format: str = ""

    def definition(self) -> Obj:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME = Column("Name", "string", "Name must be unique within a namespace.", format="name")
AGE = Column("Age", "string", "CreationTimestamp is when the object was created.")
CONTAINERS = Column("Containers", "string", "Names of each container in the template.", 1)
IMAGES = Column("Images", "string", "Images referenced by each container in the template.", 1)
SELECTOR = Column("Selector", "string", "Label selector of the pods.", 1)

Row = Callable[[Obj, datetime], list[Any]]


def human_duration(seconds: float) -> str:  # noqa: PLR0911 (one return per range, as in the Go original)
    """apimachinery's duration.HumanDuration: "45s", "3m20s", "15m", "5h10m", "2d3h", "300d", "2y15d"."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, hours // 24 % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: str | None, now: datetime) -> str:
    if not timestamp:
        return UNKNOWN
    return human_duration((now - datetime.fromisoformat(timestamp)).total_seconds())


def _age(obj: Obj, now: datetime) -> str:
    return since(obj["metadata"].get("creationTimestamp"), now)


def _template_columns(obj: Obj) -> list[str]:
    containers = ((obj["spec"].get("template") or {}).get("spec") or {}).get("containers") or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def format_selector(selector: Obj | None) -> str:
    """metav1.FormatLabelSelector: requirements sorted by key, "<none>" when empty."""
    if not selector:
        return NONE
    requirements = [(key, f"{key}={value}") for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], sorted(expression.get("values") or [])
        text = {
            "In": f"{key} in ({','.join(values)})",
            "NotIn": f"{key} notin ({','.join(values)})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }[operator]
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements)) or NONE


def _node(node: Obj, now: datetime) -> list[Any]:
    ready = [c for c in node["status"].get("conditions") or [] if c["type"] == "Ready"]
    status = ["Ready" if c["status"] == "True" else "NotReady" for c in ready] or ["Unknown"]
    if node["spec"].get("unschedulable"):
        status.append("SchedulingDisabled")
    labels = node["metadata"].get("labels") or {}
    role_prefix = "node-role.kubernetes.io/"
    roles = {key.removeprefix(role_prefix) for key in labels if key.startswith(role_prefix)}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    info = node["status"].get("nodeInfo") or {}
    addresses = {a["type"]: a["address"] for a in node["status"].get("addresses") or []}
    return [
        node["metadata"]["name"],
        ",".join(status),
        ",".join(sorted(roles)) or NONE,
        _age(node, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", NONE),
        addresses.get("ExternalIP", NONE),
        info.get("osImage") or UNKNOWN,
        info.get("kernelVersion") or UNKNOWN,
        info.get("containerRuntimeVersion") or UNKNOWN,
    ]


def _pod(pod: Obj, now: datetime) -> list[Any]:
    status = pod["status"]
    reason = status.get("reason") or status.get("phase", "")
    statuses = status.get("containerStatuses") or []
    ready = restarts = 0
    for container in reversed(statuses):
        restarts += container.get("restartCount", 0)
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif container.get("ready") and "running" in state:
            ready += 1
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(pod['spec'].get('containers') or [])}",
        reason,
        str(restarts),
        _age(pod, now),
        status.get("podIP") or NONE,
        pod["spec"].get("nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        NONE,  # readiness gates: none modelled
    ]


def _deployment(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj["spec"], obj["status"]
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj, now),
        *_template_columns(obj),
        format_selector(spec.get("selector")),
    ]


def _replica_set(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj["spec"], obj["status"]
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(obj, now),
        *_template_columns(obj),
        format_selector(spec.get("selector")),
    ]


def _daemon_set(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj["spec"], obj["status"]
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [
        obj["metadata"]["name"],
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{key}={value}" for key, value in sorted(node_selector.items())) or NONE,
        _age(obj, now),
        *_template_columns(obj),
        format_selector(spec.get("selector")),
    ]


def _stateful_set(obj: Obj, now: datetime) -> list[Any]:
    return [
        obj["metadata"]["name"],
        f"{obj['status'].get('readyReplicas', 0)}/{obj['spec'].get('replicas', 1)}",
        _age(obj, now),
        *_template_columns(obj),
    ]


def _budget(obj: Obj, now: datetime) -> list[Any]:
    spec = obj["spec"]
    return [
        obj["metadata"]["name"],
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        obj["status"].get("disruptionsAllowed", 0),
        _age(obj, now),
    ]


def _namespace(obj: Obj, now: datetime) -> list[Any]:
    return [obj["metadata"]["name"], obj["status"].get("phase", ""), _age(obj, now)]


def _event(event: Obj, now: datetime) -> list[Any]:
    first = since(event.get("firstTimestamp") or event.get("eventTime"), now)
    last = since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    involved = event.get("involvedObject") or {}
    source = event.get("source") or {}
    origin = ", ".join(part for part in (source.get("component"), source.get("host")) if part)
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        f"{involved.get('kind', '').lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        origin,
        (event.get("message") or "").strip(),
        first,
        event.get("count", 1),
        event["metadata"]["name"],
    ]


def _secret(obj: Obj, now: datetime) -> list[Any]:
    return [obj["metadata"]["name"], obj.get("type", ""), len(obj.get("data") or {}), _age(obj, now)]


def _lease(obj: Obj, now: datetime) -> list[Any]:
    return [obj["metadata"]["name"], obj["spec"].get("holderIdentity") or "", _age(obj, now)]


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    row: Row


PRINTERS: dict[str, Printer] = {
    "Node": Printer(
        (
            NAME,
            Column("Status", "string", "The status of the node"),
            Column("Roles", "string", "The roles of the node"),
            AGE,
            Column("Version", "string", "Kubelet Version reported by the node."),
            Column("Internal-IP", "string", "List of addresses reachable to the node.", 1),
            Column("External-IP", "string", "List of addresses reachable to the node.", 1),
            Column("OS-Image", "string", "OS Image reported by the node.", 1),
            Column("Kernel-Version", "string", "Kernel Version reported by the node.", 1),
            Column("Container-Runtime", "string", "ContainerRuntime Version reported by the node.", 1),
        ),
        _node,
    ),
    "Pod": Printer(
        (
            NAME,
            Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            Column("Status", "string", "The aggregate status of the containers in this pod."),
            Column("Restarts", "string", "The number of times the containers in this pod have been restarted."),
            AGE,
            Column("IP", "string", "IP address allocated to the pod.", 1),
            Column("Node", "string", "NodeName is the node the pod is scheduled onto.", 1),
            Column("Nominated Node", "string", "nominatedNodeName of the pod.", 1),
            Column("Readiness Gates", "string", "Readiness gates of the pod.", 1),
        ),
        _pod,
    ),
    "Deployment": Printer(
        (
            NAME,
            Column("Ready", "string", "Number of the pod with ready state"),
            Column("Up-to-date", "string", "Total number of non-terminated pods with the desired template."),
            Column("Available", "string", "Total number of available pods."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        _deployment,
    ),
    "ReplicaSet": Printer(
        (
            NAME,
            Column("Desired", "integer", "Replicas is the number of desired replicas."),
            Column("Current", "integer", "Replicas is the most recently observed number of replicas."),
            Column("Ready", "integer", "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        _replica_set,
    ),
    "DaemonSet": Printer(
        (
            NAME,
            Column("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
            Column("Current", "integer", "The number of nodes running at least one daemon pod."),
            Column("Ready", "integer", "The number of nodes running the daemon pod with a Ready condition."),
            Column("Up-to-date", "integer", "The number of nodes running the updated daemon pod."),
            Column("Available", "integer", "The number of nodes running an available daemon pod."),
            Column("Node Selector", "string", "NodeSelector of the pod template."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        _daemon_set,
    ),
    "StatefulSet": Printer(
        (NAME, Column("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES),
        _stateful_set,
    ),
    "PodDisruptionBudget": Printer(
        (
            NAME,
            Column("Min Available", "string", "The minimum number of pods that must be available."),
            Column("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
            Column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
            AGE,
        ),
        _budget,
    ),
    "Namespace": Printer((NAME, Column("Status", "string", "The status of the namespace"), AGE), _namespace),
    "Secret": Printer(
        (
            NAME,
            Column("Type", "string", "The type of the secret"),
            Column("Data", "string", "The number of entries in the secret"),
            AGE,
        ),
        _secret,
    ),
    "Lease": Printer((NAME, Column("Holder", "string", "The holder of the lease"), AGE), _lease),
    "Event": Printer(
        (
            Column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            Column("Type", "string", "Type of this event (Normal, Warning)."),
            Column("Reason", "string", "A short, machine understandable string that gives the reason for the event."),
            Column("Object", "string", "The object that this event is about."),
            Column("Subobject", "string", "The field of the object the event is about.", 1),
            Column("Source", "string", "The component reporting this event.", 1),
            Column("Message", "string", "A human-readable description of the status of this operation."),
            Column("First Seen", "string", "The time at which the event was first recorded.", 1),
            Column("Count", "string", "The number of times this event has occurred.", 1),
            Column("Name", "string", "Name must be unique within a namespace.", 1, "name"),
        ),
        _event,
    ),
}


def table(
    kind: str, objects: list[Obj], now: datetime, *, version: str, resource_version: str, include: str, headers: bool
) -> Obj:
    """A Table of ``objects`` (all of ``kind``) as the API server prints them at ``now``. ``include`` is the
    request's includeObject (None, Metadata — the default — or Object); ``headers`` False leaves out the column
    definitions, as in every watch event after the first."""
    printer = PRINTERS[kind]
    rows = []
    for obj in objects:
        row: Obj = {"cells": printer.row(obj, now)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{version}",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [column.definition() for column in printer.columns] if headers else [],
        "rows": rows,
    }
