"""Running `cluster heal` in the cluster: the manifest `cluster render --heal-manifest` prints (valid Kubernetes
objects, least-privilege RBAC, a locked-down pod) and the Dockerfile it runs (no Docker engine here: what can be
checked without one is checked)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes.client import ApiClient

from provision.config.loader import parse_config
from provision.heal import manifest
from tests.conftest import EXAMPLE, REPO, Outcome

Run = Callable[..., Outcome]
KINDS = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment"]
MODELS = {
    "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
    "ConfigMap": "V1ConfigMap",
    "Deployment": "V1Deployment",
}


def documents(run_main: Run, *args: str) -> tuple[str, list[dict[str, Any]]]:
    outcome = run_main("render", "--heal-manifest", "-c", str(EXAMPLE), *args)
    assert outcome.code == 0, outcome.err
    return outcome.out, list(yaml.safe_load_all(outcome.out))


def test_the_manifest_is_deterministic_and_each_object_is_a_valid_kubernetes_object(run_main: Run) -> None:
    text, docs = documents(run_main)

    assert [doc["kind"] for doc in docs] == KINDS
    assert documents(run_main)[0] == text, "the same config renders the same manifest"
    client = ApiClient()
    for doc in docs:
        model = client.deserialize(json.dumps(doc), MODELS[doc["kind"]], "application/json")
        # The official client's models keep only the fields the API knows: a misspelt field would not come back.
        assert client.sanitize_for_serialization(model) == doc  # type: ignore[no-untyped-call]


def test_rbac_allows_what_drain_needs_and_nothing_more(run_main: Run) -> None:
    _, docs = documents(run_main)
    role, binding = docs[1], docs[2]

    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "patch"), ("", "nodes", "delete"),
        ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "delete"),
        ("", "pods/eviction", "create"),
        ("policy", "poddisruptionbudgets", "list"),
    }  # fmt: skip
    assert not any("*" in entry for entry in granted)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cluster-heal", "namespace": "kube-system"}]


def test_one_locked_down_replica_reads_the_configuration_from_its_config_map(run_main: Run) -> None:
    _, docs = documents(run_main, "--image", "registry.example.com/cluster-heal:1.2")
    config_map, deployment = docs[3], docs[4]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]

    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == docs[0]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["image"] == "registry.example.com/cluster-heal:1.2"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["terminationGracePeriodSeconds"] >= 45, "the message in flight gets its grace, plus one long poll"
    [config_mount] = [mount for mount in container["volumeMounts"] if mount["name"] == "config"]
    _, path = container["args"]
    assert path == f"{config_mount['mountPath']}/cluster.toml" and config_mount["readOnly"] is True
    shipped = config_map["data"]["cluster.toml"]
    assert shipped == EXAMPLE.read_text()
    assert parse_config(tomllib.loads(shipped), source="configmap").name == "demo"


def test_heal_manifest_goes_alone(run_main: Run) -> None:
    assert run_main("render", "--heal-manifest", "--userdata").code == 2
    outcome = run_main("render", "--image", "x:1")
    assert outcome.code == 2 and "--heal-manifest" in outcome.err


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of each instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]


def test_the_dockerfile_installs_the_package_and_runs_heal_watch_as_the_manifests_non_root_user() -> None:
    steps = dockerfile()
    values = dict(steps)

    assert steps[0] == ("FROM", "python:3.11-slim")
    for instruction, arguments in steps:
        if instruction == "COPY":
            *sources, _ = arguments.split()
            assert all((REPO / source).exists() for source in sources), arguments
    assert any("pip install ." in arguments for instruction, arguments in steps if instruction == "RUN")
    user = [arguments for instruction, arguments in steps if instruction == "USER"][-1]
    assert user.isdigit() and int(user) == manifest.USER_ID != 0
    assert json.loads(values["ENTRYPOINT"]) == ["cluster", "heal", "--watch"]
    assert json.loads(values["CMD"]) == ["-c", f"{manifest.CONFIG_DIR}/{manifest.CONFIG_FILE}"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["cluster"] == "provision.cli:main"


def test_pip_install_dot_carries_every_package_heal_needs() -> None:
    """The Dockerfile's `pip install .` installs the packages pyproject lists: every folder of the code must be one."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "provision").rglob("__init__.py")}
    assert folders <= listed, sorted(folders - listed)
