"""What the simulator serves, said once: each resource's kind, group, version, scope, verbs, short names and
subresources. The routes, the discovery documents (legacy and aggregated) and the object store all read this table,
so discovery lists exactly what the server answers.

Field names and shapes are the API server's: ``APIResourceList``/``APIGroupList``/``APIVersions`` (meta/v1) for the
legacy discovery endpoints, ``APIGroupDiscoveryList`` (apidiscovery.k8s.io/v2) for the aggregated one that kubectl
1.30+ asks for first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What a stored kind answers: list/watch/create on the collection, get/update/patch/delete on one object.
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
# A review (SelfSubjectAccessReview, ...) is only created: answered at once, never stored.
REVIEW_VERBS = ("create",)

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""  # set when the subresource answers with another group's kind (pods/eviction: policy/v1)
    version: str = ""


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = VERBS

    @property
    def stored(self) -> bool:
        """Whether objects of the kind are kept (reviews are answered and forgotten)."""
        return "get" in self.verbs

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path_prefix(self) -> str:
        """Where the resource's group-version lives: "api/v1" or "apis/<group>/<version>"."""
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    def serves(self, subresource: str) -> bool:
        return any(sub.name == subresource for sub in self.subresources)


def _status(kind: str) -> Subresource:
    return Subresource("status", kind, STATUS_VERBS)


# The replica count of a workload as an autoscaling/v1 Scale (`kubectl scale`, autoscalers).
SCALE = Subresource("scale", "Scale", STATUS_VERBS, "autoscaling", "v1")


RESOURCES: tuple[Resource, ...] = (
    Resource("namespaces", "Namespace", "", "v1", False, ("ns",), subresources=(_status("Namespace"),)),
    Resource("nodes", "Node", "", "v1", False, ("no",), subresources=(_status("Node"),)),
    Resource(
        "pods",
        "Pod",
        "",
        "v1",
        True,
        ("po",),
        ("all",),
        (Subresource("eviction", "Eviction", ("create",), "policy", "v1"), _status("Pod")),
    ),
    # core/v1 events, as kubelets and controllers record them
    Resource("events", "Event", "", "v1", True, ("ev",)),
    Resource("secrets", "Secret", "", "v1", True),
    Resource("daemonsets", "DaemonSet", "apps", "v1", True, ("ds",), ("all",), (_status("DaemonSet"),)),
    Resource("deployments", "Deployment", "apps", "v1", True, ("deploy",), ("all",), (_status("Deployment"), SCALE)),
    Resource("replicasets", "ReplicaSet", "apps", "v1", True, ("rs",), ("all",), (_status("ReplicaSet"), SCALE)),
    Resource("statefulsets", "StatefulSet", "apps", "v1", True, ("sts",), ("all",), (_status("StatefulSet"), SCALE)),
    # What `kubectl auth can-i` asks (and `--list`); the sandbox has one user, allowed everything.
    Resource(
        "selfsubjectaccessreviews", "SelfSubjectAccessReview", "authorization.k8s.io", "v1", False, verbs=REVIEW_VERBS
    ),
    Resource(
        "selfsubjectrulesreviews", "SelfSubjectRulesReview", "authorization.k8s.io", "v1", False, verbs=REVIEW_VERBS
    ),
    Resource(
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        "policy",
        "v1",
        True,
        ("pdb",),
        subresources=(_status("PodDisruptionBudget"),),
    ),
    # Node heartbeats (kube-node-lease) and leader election.
    Resource("leases", "Lease", "coordination.k8s.io", "v1", True),
)

BY_KIND = {resource.kind: resource for resource in RESOURCES}
BY_PATH = {(resource.path_prefix, resource.plural): resource for resource in RESOURCES}
# Named groups in the order a real server lists them (apps before policy); the core group is served under /api.
GROUPS = tuple(dict.fromkeys(resource.group for resource in RESOURCES if resource.group))


def _versions(group: str) -> list[str]:
    return list(dict.fromkeys(resource.version for resource in RESOURCES if resource.group == group))


# --- legacy discovery: /api, /apis, /apis/<group>, /api/v1, /apis/<group>/<version> -------------------------------


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": _versions(""),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{version}", "version": version} for version in _versions(group)]
    preferred = versions[0]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred}


def api_group_list() -> dict[str, Any]:
    groups = [api_group(group) for group in GROUPS]
    for group in groups:  # inside a list the groups carry no kind/apiVersion, as the real server sends them
        del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of one group-version, subresources included as "pods/eviction"; None if not served."""
    served = [resource for resource in RESOURCES if resource.group == group and resource.version == version]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for resource in served:
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.kind.lower(),
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(resource.verbs),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entries.append(entry)
        for sub in resource.subresources:
            # kubectl drain looks for exactly this entry (name, kind Eviction, group and version set) to evict
            sub_entry: dict[str, Any] = {
                "name": f"{resource.plural}/{sub.name}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group:
                sub_entry.update(group=sub.group, version=sub.version)
            entries.append(sub_entry)
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}


# --- aggregated discovery (apidiscovery.k8s.io/v2): /api and /apis in one document each ------------------------


def wants_aggregated(accept: str) -> bool:
    """Whether the client accepts apidiscovery.k8s.io/v2. Like a 1.33+ server, v2beta1 alone is not served: such a
    client (kubectl up to 1.29) gets the legacy documents it falls back to."""
    for media_type in accept.split(","):
        params = {part.strip() for part in media_type.split(";")[1:]}
        if {"g=apidiscovery.k8s.io", "v=v2", "as=APIGroupDiscoveryList"} <= params:
            return True
    return False


def aggregated(core: bool) -> dict[str, Any]:
    """The APIGroupDiscoveryList of /api (the core group, unnamed) or of /apis (every named group)."""
    groups = [""] if core else list(GROUPS)
    items = []
    for group in groups:
        versions = [
            {"version": version, "resources": _discovered(group, version), "freshness": "Current"}
            for version in _versions(group)
        ]
        metadata: dict[str, Any] = {"name": group, "creationTimestamp": None} if group else {"creationTimestamp": None}
        items.append({"metadata": metadata, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def _discovered(group: str, version: str) -> list[dict[str, Any]]:
    found = []
    for resource in RESOURCES:
        if resource.group != group or resource.version != version:
            continue
        entry: dict[str, Any] = {
            "resource": resource.plural,
            "responseKind": {"group": group, "version": version, "kind": resource.kind},
            "scope": "Namespaced" if resource.namespaced else "Cluster",
            "singularResource": resource.kind.lower(),
            "verbs": list(resource.verbs),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        if resource.subresources:
            entry["subresources"] = [
                {
                    "subresource": sub.name,
                    "responseKind": {
                        "group": sub.group if sub.group else group,
                        "version": sub.version or version,
                        "kind": sub.kind,
                    },
                    "verbs": list(sub.verbs),
                }
                for sub in resource.subresources
            ]
        found.append(entry)
    return found
