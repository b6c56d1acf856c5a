"""The simulator's OpenAPI documents and the field validation they announce, over HTTP: every kind served has its
schema, generated from lightkube's models (their descriptions are lightkube's docstrings, word for word), tagged as
kubectl looks for it; PATCH operations declare the patch types and fieldValidation, and the server enforces
fieldValidation as the API server does. kubectl's own use of them (explain, apply) is in
tests/test_kubectl_on_simulator.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from lightkube.models.core_v1 import PodSpec

from provision.simulator.protobuf import OPENAPI_V2
from provision.simulator.resources import RESOURCES
from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture, imported for pytest


def get(simulator: Simulator, path: str, accept: str = "application/json") -> tuple[int, str, bytes]:
    sent = urllib.request.Request(simulator.server.url + path, headers={"Accept": accept})  # noqa: S310
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:  # noqa: S310 - the simulator's loopback URL
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def send(simulator: Simulator, method: str, path: str, body: Any, content_type: str) -> tuple[int, Any, list[str]]:
    """A write and its answer: status, JSON body and the Warning headers."""
    sent = urllib.request.Request(  # noqa: S310
        simulator.server.url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read()), answer.headers.get_all("Warning") or []
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers.get_all("Warning") or []


def test_the_v3_index_leads_to_a_document_per_group_version_with_every_kind_served(simulator: Simulator) -> None:
    code, _, index = get(simulator, "/openapi/v3")
    documents = {}
    for path, entry in json.loads(index)["paths"].items():
        doc_code, content_type, body = get(simulator, entry["serverRelativeURL"])
        assert (doc_code, content_type) == (200, "application/json")
        documents[path] = json.loads(body)

    assert code == 200
    assert set(documents) == {
        "api/v1",
        "apis/apps/v1",
        "apis/policy/v1",
        "apis/coordination.k8s.io/v1",
        "apis/authorization.k8s.io/v1",
    }
    for resource in RESOURCES:
        document = documents["apis/" + resource.api_version if resource.group else "api/v1"]
        tagged = [
            schema
            for schema in document["components"]["schemas"].values()
            if {"group": resource.group, "version": resource.version, "kind": resource.kind}
            in schema.get("x-kubernetes-group-version-kind", [])
        ]
        assert len(tagged) == 1, resource.kind
        if "patch" in resource.verbs:  # what kubectl apply looks for before it validates on the server
            [patch] = [
                operations["patch"]
                for operations in document["paths"].values()
                if operations.get("patch", {}).get("x-kubernetes-group-version-kind", {}).get("kind") == resource.kind
                and "/status" not in json.dumps(operations)  # the object's own path, not its status
            ][:1]
            assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
            assert "fieldValidation" in [parameter["name"] for parameter in patch["parameters"]]


def test_schemas_are_lightkubes_models_with_their_descriptions(simulator: Simulator) -> None:
    _, _, body = get(simulator, "/openapi/v3/api/v1")
    schemas = json.loads(body)["components"]["schemas"]

    pod_spec = schemas["io.k8s.api.core.v1.PodSpec"]
    containers = pod_spec["properties"]["containers"]
    described = (PodSpec.__doc__ or "").split("* **containers** ``List[Container]`` - ")[1].split("* **")[0]

    assert containers["type"] == "array"
    assert containers["items"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]
    assert containers["description"] == " ".join(described.split())
    assert "containers" in pod_spec["required"]
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"] == {"type": "string", "format": "date-time"}
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert pod_spec["properties"]["nodeSelector"]["additionalProperties"] == {"type": "string"}


def test_v2_is_served_as_json_and_as_the_protobuf_old_kubectls_ask_for(simulator: Simulator) -> None:
    json_code, json_type, document = get(simulator, "/openapi/v2")
    proto_code, proto_type, encoded = get(simulator, "/openapi/v2", accept=OPENAPI_V2.replace(".v1.0", "@v1.0"))
    refused, _, _ = get(simulator, "/openapi/v2", accept="application/vnd.kubernetes.protobuf")

    swagger = json.loads(document)
    assert (json_code, json_type, swagger["swagger"]) == (200, "application/json", "2.0")
    assert swagger["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}
    ]
    assert (proto_code, proto_type) == (200, OPENAPI_V2)
    assert encoded.startswith(b"\x0a\x032.0")  # field 1 (swagger), "2.0"
    assert b"io.k8s.api.apps.v1.Deployment" in encoded
    assert refused == 406


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "replica": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "nginx", "imagee": "typo"}]},
        },
    },
}


@pytest.mark.parametrize(
    ("directive", "code", "warnings"),
    [
        ("Strict", 400, []),
        (
            "Warn",
            201,
            [
                '299 - "unknown field \\"spec.replica\\""',
                '299 - "unknown field \\"spec.template.spec.containers[0].imagee\\""',
            ],
        ),
        ("Ignore", 201, []),
        (
            "",
            201,
            [
                '299 - "unknown field \\"spec.replica\\""',
                '299 - "unknown field \\"spec.template.spec.containers[0].imagee\\""',
            ],
        ),
    ],
)
def test_unknown_fields_are_refused_warned_about_or_dropped_as_the_request_asks(
    simulator: Simulator, directive: str, code: int, warnings: list[str]
) -> None:
    query = f"?fieldValidation={directive}" if directive else ""

    answer_code, answer, warned = send(
        simulator, "POST", f"/apis/apps/v1/namespaces/default/deployments{query}", DEPLOYMENT, "application/json"
    )

    assert answer_code == code
    assert warned == warnings
    if code == 400:
        assert answer["reason"] == "BadRequest"
        assert answer["message"] == (
            'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
            'unknown field "spec.replica", unknown field "spec.template.spec.containers[0].imagee"'
        )
        assert simulator.world.select("Deployment", "default") == []
    else:
        stored = simulator.world.get("Deployment", "default", "web")
        assert "replica" not in stored["spec"], "decoding drops what the schema does not know"
        assert stored["spec"]["template"]["spec"]["containers"] == [{"name": "main", "image": "nginx"}]


def test_a_patch_adding_an_unknown_field_is_refused_under_strict(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")

    code, answer, _ = send(
        simulator,
        "PATCH",
        "/api/v1/nodes/node-a?fieldValidation=Strict",
        {"spec": {"unschedulabel": True}},
        "application/strategic-merge-patch+json",
    )

    assert (code, answer["reason"]) == (400, "BadRequest")
    assert answer["message"].endswith('strict decoding error: unknown field "spec.unschedulabel"')
    assert "unschedulabel" not in simulator.world.get("Node", "", "node-a")["spec"]
