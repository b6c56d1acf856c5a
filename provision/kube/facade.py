"""The Kubernetes facade: nodes and pods as the roll sees them, over one lightkube client."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import Event, Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from provision.errors import UsageError
from provision.kube.model import NodeState, Owner, PodState
from provision.kubeconfig import read_kubeconfig

FIELD_MANAGER = "cluster"
SCALABLE = {"ReplicaSet", "StatefulSet"}


def connect(kubeconfig: str | None = None, context: str | None = None) -> Client:
    """A client for the configured kubeconfig and context (default: $KUBECONFIG, then ~/.kube/config)."""
    path = Path(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config").expanduser()
    data = read_kubeconfig(path)
    if data is None:
        raise UsageError(f"no kubeconfig at {path}: set kubernetes.kubeconfig in the configuration or KUBECONFIG")
    try:
        single = KubeConfig.from_dict(data, fname=path).get(context_name=context)
    except Exception as error:  # lightkube raises a bare ConfigError subclass per problem
        raise UsageError(f"{path}: cannot use context {context or '(current)'}: {error}") from None
    return Client(config=single, field_manager=FIELD_MANAGER, trust_env=False)


class Kube:
    def __init__(self, client: Client) -> None:
        self.client = client

    # --- nodes ---

    def nodes(self) -> list[NodeState]:
        return [NodeState.of(node) for node in self.client.list(Node)]

    def node(self, name: str) -> NodeState | None:
        try:
            return NodeState.of(self.client.get(Node, name))
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    @staticmethod
    def match_hosts(nodes: Iterable[NodeState], hosts: Mapping[str, Iterable[str]]) -> dict[str, NodeState]:
        """instance id -> node, by providerID (aws:///<zone>/<instance-id>), else by the host's private DNS name or
        IP among the node's name and addresses. ``hosts`` maps each instance id to its names."""
        by_instance = {node.instance_id: node for node in nodes if node.instance_id}
        by_name: dict[str, NodeState] = {}
        for node in nodes:
            for name in (node.name, *node.addresses):
                by_name.setdefault(name, node)
        matched: dict[str, NodeState] = {}
        for instance, names in hosts.items():
            found = by_instance.get(instance) or next((by_name[n] for n in names if n and n in by_name), None)
            if found is not None:
                matched[instance] = found
        return matched

    def cordon(self, name: str) -> None:
        self.client.patch(Node, name, {"spec": {"unschedulable": True}}, patch_type=PatchType.MERGE)

    def uncordon(self, name: str) -> None:
        self.client.patch(Node, name, {"spec": {"unschedulable": None}}, patch_type=PatchType.MERGE)

    def label(self, name: str, labels: dict[str, str | None]) -> None:
        """Set labels (None removes one)."""
        self.client.patch(Node, name, {"metadata": {"labels": labels}}, patch_type=PatchType.MERGE)

    def annotate(self, name: str, annotations: dict[str, str | None]) -> None:
        self.client.patch(Node, name, {"metadata": {"annotations": annotations}}, patch_type=PatchType.MERGE)

    def taint(self, name: str, key: str, value: str, effect: str) -> None:
        node = self.node(name)
        kept = [t for t in (node.taints if node else ()) if t[0] != key]
        self._set_taints(name, [*kept, (key, value, effect)])

    def untaint(self, name: str, key: str) -> None:
        node = self.node(name)
        self._set_taints(name, [t for t in (node.taints if node else ()) if t[0] != key])

    def _set_taints(self, name: str, taints: list[tuple[str, str, str]]) -> None:
        body: dict[str, Any] = {"spec": {"taints": [{"key": k, "value": v, "effect": e} for k, v, e in taints] or None}}
        self.client.patch(Node, name, body, patch_type=PatchType.MERGE)

    def delete_node(self, name: str) -> None:
        try:
            self.client.delete(Node, name)
        except ApiError as error:
            if error.status.code != 404:
                raise

    def events(self, node: str) -> list[Event]:
        """The events recorded about a node (kubelet, node controller), oldest first."""
        fields: dict[str, Any] = {"involvedObject.kind": "Node", "involvedObject.name": node}
        listed = list(self.client.list(Event, namespace="*", fields=fields))
        return sorted(listed, key=lambda event: str(event.lastTimestamp or event.eventTime or ""))

    # --- pods ---

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[PodState]:
        fields: dict[str, Any] | None = {"spec.nodeName": node} if node else None
        listed = self.client.list(Pod, namespace=namespace or "*", fields=fields)
        return [PodState.of(pod) for pod in listed]

    def evict(self, pod: PodState) -> None:
        """Ask the Eviction API to evict ``pod``; raises lightkube's ApiError as the API answered (429, 404, …)."""
        eviction = Pod.Eviction(metadata=ObjectMeta(name=pod.name, namespace=pod.namespace))
        self.client.create(eviction, pod.name, namespace=pod.namespace)

    def delete_pod(self, pod: PodState, *, grace_seconds: int | None = None) -> None:
        try:
            self.client.delete(Pod, pod.name, namespace=pod.namespace, grace_period=grace_seconds)
        except ApiError as error:
            if error.status.code != 404:
                raise

    def budgets(self, namespace: str) -> list[PodDisruptionBudget]:
        return list(self.client.list(PodDisruptionBudget, namespace=namespace))

    def wanted_replicas(self, owner: Owner) -> int | None:
        """How many pods the owner wants (spec.replicas), or None for owners without a scale (Jobs, custom)."""
        if owner.kind not in SCALABLE:
            return None
        try:
            if owner.kind == "StatefulSet":
                spec = self.client.get(StatefulSet, owner.name, namespace=owner.namespace).spec
                replicas = spec.replicas if spec else None
            else:
                replica_set = self.client.get(ReplicaSet, owner.name, namespace=owner.namespace).spec
                replicas = replica_set.replicas if replica_set else None
        except ApiError as error:
            if error.status.code == 404:
                return 0
            raise
        return 1 if replicas is None else int(replicas)
