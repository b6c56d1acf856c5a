"""Answers to the authorization reviews a client creates about itself (``kubectl auth can-i`` and ``--list``).

The sandbox has one user, an administrator: every review is allowed, answered in the shape the API server's RBAC
authorizer gives a member of system:masters. Reviews are answered and never stored, as on a real server.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

ALLOWED_BY = (
    'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters"'
)
EVERYTHING: Obj = {
    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    "incomplete": False,
}


class Invalid(Exception):
    """A review the API server refuses as invalid (422)."""


def review(kind: str, body: Obj) -> Obj:
    """The review ``body`` with its status filled in."""
    answer = copy.deepcopy(body)
    answer["apiVersion"], answer["kind"] = "authorization.k8s.io/v1", kind
    answer.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    spec = answer.setdefault("spec", {})
    if kind == "SelfSubjectAccessReview":
        attributes = [name for name in ("resourceAttributes", "nonResourceAttributes") if spec.get(name)]
        if len(attributes) != 1:
            raise Invalid(
                "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: Invalid value: "
                '"null": exactly one of nonResourceAttributes or resourceAttributes must be specified'
            )
        answer["status"] = {"allowed": True, "reason": ALLOWED_BY}
    else:
        answer["status"] = copy.deepcopy(EVERYTHING)
    return answer
