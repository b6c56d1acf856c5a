"""What the facade reads from the API, as small frozen records: the rest of the tool never touches client models."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from lightkube.resources.core_v1 import Node, Pod

PROVIDER_ID = re.compile(r"^aws:///(?P<zone>[^/]*)/(?P<instance>i-[0-9a-f]+)$")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Container states that waiting does not cure: the pod's configuration or image is at fault.
CRASHING = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "RunContainerError")


@dataclass(frozen=True)
class NodeCondition:
    type: str  # "Ready", or one a node-problem-detector sets ("KernelDeadlock")
    status: str  # "True", "False" or "Unknown"
    since: datetime | None  # its lastTransitionTime


@dataclass(frozen=True)
class NodeState:
    name: str
    provider_id: str
    addresses: tuple[str, ...]
    ready: bool
    unschedulable: bool
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    taints: tuple[tuple[str, str, str], ...] = ()  # (key, value, effect)
    ready_since: datetime | None = None  # when its Ready condition last changed
    conditions: tuple[NodeCondition, ...] = ()

    @property
    def instance_id(self) -> str | None:
        match = PROVIDER_ID.match(self.provider_id)
        return match["instance"] if match else None

    @classmethod
    def of(cls, node: Node) -> NodeState:
        meta, spec, status = node.metadata, node.spec, node.status
        conditions = (status.conditions if status else None) or []
        ready = next((c for c in conditions if c.type == "Ready"), None)
        return cls(
            name=meta.name if meta and meta.name else "",
            provider_id=(spec.providerID if spec else None) or "",
            addresses=tuple(address.address for address in ((status.addresses if status else None) or [])),
            ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
            unschedulable=bool(spec.unschedulable) if spec else False,
            labels=dict((meta.labels if meta else None) or {}),
            annotations=dict((meta.annotations if meta else None) or {}),
            taints=tuple((t.key, t.value or "", t.effect) for t in ((spec.taints if spec else None) or [])),
            ready_since=ready.lastTransitionTime if ready is not None else None,
            conditions=tuple(NodeCondition(c.type, c.status, c.lastTransitionTime) for c in conditions),
        )

    def condition(self, kind: str) -> NodeCondition | None:
        return next((condition for condition in self.conditions if condition.type == kind), None)


@dataclass(frozen=True)
class Owner:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class PodState:
    namespace: str
    name: str
    node: str
    phase: str
    ready: bool
    terminating: bool
    owner: Owner | None
    labels: dict[str, str]
    mirror: bool
    emptydir: bool
    unschedulable_reason: str
    restarts: int = 0  # summed over its containers
    waiting_reason: str = ""  # a container's, e.g. CrashLoopBackOff

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def daemon(self) -> bool:
        return self.owner is not None and self.owner.kind == "DaemonSet"

    @classmethod
    def of(cls, pod: Pod) -> PodState:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        namespace = (meta.namespace if meta else None) or "default"
        controller = next((ref for ref in ((meta.ownerReferences if meta else None) or []) if ref.controller), None)
        conditions = (status.conditions if status else None) or []
        scheduled = next((c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None)
        containers = (status.containerStatuses if status else None) or []
        waiting = next((c.state.waiting.reason for c in containers if c.state and c.state.waiting), None)
        return cls(
            namespace=namespace,
            name=(meta.name if meta else None) or "",
            node=(spec.nodeName if spec else None) or "",
            phase=(status.phase if status else None) or "Unknown",
            ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
            terminating=bool(meta and meta.deletionTimestamp),
            owner=Owner(controller.kind, namespace, controller.name) if controller else None,
            labels=dict((meta.labels if meta else None) or {}),
            mirror=MIRROR_ANNOTATION in ((meta.annotations if meta else None) or {}),
            emptydir=any(volume.emptyDir is not None for volume in ((spec.volumes if spec else None) or [])),
            unschedulable_reason=(scheduled.message or scheduled.reason or "") if scheduled else "",
            restarts=sum(c.restartCount or 0 for c in containers),
            waiting_reason=waiting or "",
        )
