"""The Kubernetes objects that run `cluster heal --watch` inside the cluster (`cluster render --heal-manifest`).

One replica with the Recreate strategy (two consumers would be safe, since every action is idempotent, but would
drain the same host twice), a non-root container on a read-only root filesystem, the configuration in a ConfigMap,
and RBAC limited to what a drain does: read, cordon and delete nodes, list and delete pods, evict them, read their
budgets. AWS credentials come from the pod's identity (EKS Pod Identity or IRSA on the service account, or the
node's role) with the stack's ``HealHandlerPolicyArn`` attached. Rendered from plain dicts, so it is deterministic.
"""

from __future__ import annotations

from typing import Any

import yaml

from provision import __version__
from provision.config.schema import ClusterConfig

NAME = "cluster-heal"
NAMESPACE = "kube-system"  # beside the other node-lifecycle components; allows the system-cluster-critical class
CONFIG_DIR = "/etc/cluster"
CONFIG_FILE = "cluster.toml"
DEFAULT_IMAGE = f"cluster-heal:{__version__}"  # `docker build -t cluster-heal:<version> .` from the repository
USER_ID = 10001  # the Dockerfile's user
# What drain needs, and no more: nodes (find by providerID, cordon, delete a dead one), pods (list per node and
# namespace, delete a dead node's or a forced one), the eviction subresource, budgets (to name what blocks).
RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list"]},
]
# The stop's grace for the message in flight (20 s) plus one long poll (20 s), with room to spare.
TERMINATION_GRACE_SECONDS = 60


def heal_manifest(config: ClusterConfig, config_text: str, *, image: str = DEFAULT_IMAGE) -> str:
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": f"cluster-{config.name}"}
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
    documents: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": labels},
            "rules": RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {CONFIG_FILE: config_text}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                "template": {"metadata": {"labels": labels}, "spec": _pod(config, image)},
            },
        },
    ]
    return yaml.safe_dump_all(documents, sort_keys=False, width=120)


def _pod(config: ClusterConfig, image: str) -> dict[str, Any]:
    return {
        "serviceAccountName": NAME,
        "priorityClassName": "system-cluster-critical",  # it is what drains hosts before they go
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "heal",
                "image": image,
                "args": ["-c", f"{CONFIG_DIR}/{CONFIG_FILE}"],
                "env": [{"name": "AWS_REGION", "value": config.region}],
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir, for libraries that want one
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": NAME}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
        ],
    }
