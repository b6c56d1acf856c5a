"""Write or merge the kubeconfig entry of an EKS cluster, the way `aws eks update-kubeconfig` does: the user's
other clusters, contexts and users are kept, and the current context is only set when the file has none."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from provision.errors import UsageError
from provision.textfile import MIB, UnreadableFile, read_text_file

KUBECONFIG_LIMIT = 16 * MIB  # kubeconfigs embed certificates, a few KB each


def default_path(configured: str | None) -> Path:
    if configured:
        return Path(configured).expanduser()
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def read_kubeconfig(path: Path) -> dict[str, Any] | None:
    """The kubeconfig at ``path`` as YAML data, or None when there is no such file."""
    try:
        text = read_text_file(path, limit=KUBECONFIG_LIMIT)
    except UnreadableFile as error:
        if error.missing:
            return None
        raise UsageError(f"kubeconfig {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise UsageError(f"kubeconfig {path}: not YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"kubeconfig {path}: not a kubeconfig (a YAML mapping with clusters, users, contexts)")
    return data


def eks_entry(name: str, region: str, endpoint: str, certificate_authority: str) -> dict[str, Any]:
    """The cluster, user and context, all called ``name``. The user runs `aws eks get-token` for a fresh token."""
    return {
        "cluster": {"name": name, "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority}},
        "user": {
            "name": name,
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": "aws",
                    "args": ["--region", region, "eks", "get-token", "--cluster-name", name, "--output", "json"],
                    "interactiveMode": "Never",
                }
            },
        },
        "context": {"name": name, "context": {"cluster": name, "user": name}},
    }


def merge(existing: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    merged = dict(existing) or {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    for section, item in (("clusters", entry["cluster"]), ("users", entry["user"]), ("contexts", entry["context"])):
        kept = [other for other in merged.get(section) or [] if other.get("name") != item["name"]]
        merged[section] = [*kept, item]
    if not merged.get("current-context"):
        merged["current-context"] = entry["context"]["name"]
    return merged


def write_entry(path: Path, entry: dict[str, Any]) -> bool:
    """Merge ``entry`` into the kubeconfig at ``path`` (atomically, mode 0600). True when it became the current
    context."""
    merged = merge(read_kubeconfig(path) or {}, entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            yaml.safe_dump(merged, stream, default_flow_style=False, sort_keys=False)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return bool(merged.get("current-context") == entry["context"]["name"])
