"""Render the host boot script from ``userdata/bootstrap.sh.j2``.

Every ``{{ value }}`` in the templates passes through one function, ``shlex.quote``, installed as the jinja2
environment's ``finalize`` hook: a template cannot forget to quote. The schema already limits the characters of each
value; quoting is the second, independent guard.
"""

from __future__ import annotations

import base64
import gzip
import shlex
import textwrap
from importlib.resources import files

import jinja2

from provision import names
from provision.config.schema import ClusterConfig, HostGroup, KubeadmControlPlane
from provision.errors import RenderError

# User-data above 16 KB is refused by EC2 (the limit applies before base64 encoding).
USERDATA_LIMIT = 16 * 1024
KUBELET_WAIT_SECONDS = 300
PAYLOAD = ".payload"  # included as "<script>.payload": the script packed to be installed on the host


def shell_quote(value: object) -> str:
    return shlex.quote(str(value))


class _PackageLoader(jinja2.BaseLoader):
    """Loads templates from the ``provision.userdata`` package data, which works the same from a wheel or a checkout.
    ``<script>.payload`` is what the boot script installs as ``<script>``: the script without its comment lines,
    gzipped, in base64 lines (see ``payload``)."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, None, None]:
        script = template.removesuffix(PAYLOAD)
        resource = files("provision.userdata").joinpath(script)
        if not resource.is_file():
            raise jinja2.TemplateNotFound(template)
        text = resource.read_text(encoding="utf-8")
        return (payload(text) if template.endswith(PAYLOAD) else text), None, None


def payload(script: str) -> str:
    """A script the boot script installs on the host, made small: user-data has 16 KB, and the health agent alone
    would take a third of it. Its comments are for the reader of the repository (userdata/), so the lines that are
    only a comment go; the rest is gzipped (no timestamp: the same script gives the same user-data, and so the same
    fingerprint) and base64-encoded, 76 characters a line, for `base64 -d | gunzip` on the host."""
    packed = base64.b64encode(gzip.compress(without_comment_lines(script).encode(), compresslevel=9, mtime=0))
    return "\n".join(textwrap.wrap(packed.decode(), 76))


def without_comment_lines(script: str) -> str:
    """A bash script without its whole-line comments (the ``#!`` line stays). Only for scripts with no here-document
    or multi-line string, where a line starting with ``#`` can only be a comment."""
    lines = script.splitlines(keepends=True)
    return "".join(line for index, line in enumerate(lines) if index == 0 or not line.lstrip().startswith("#"))


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=_PackageLoader(),
        undefined=jinja2.StrictUndefined,
        finalize=shell_quote,
        autoescape=False,  # noqa: S701 - shell, not HTML: quoting is the finalize hook's job
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_userdata(config: ClusterConfig, group: HostGroup | None = None) -> str:
    """The boot script of ``group``'s hosts (default: the first group, the only one of a config without [groups])."""
    hosts = group or next(iter(config.groups.values()))
    plane = config.control_plane
    agent = hosts.health_agent
    context: dict[str, object] = {
        "cluster": config.name,
        "region": config.region,
        "stack": config.stack_name,
        "group_resource": hosts.names.group,
        "launch_hook": names.LAUNCH_HOOK,
        "records_path": names.host_records_path(config.parameter_path),
        "kubernetes_version": plane.kubernetes_version,
        "node_labels": ",".join(f"{key}={value}" for key, value in sorted(hosts.labels.items())),
        "node_taints": ",".join(hosts.taints),
        "kubelet_wait_attempts": KUBELET_WAIT_SECONDS // 5,
        "mode": plane.mode,
        "security_updates": config.patching.security_updates_at_boot,
        "release": config.patching.release,
        "reboot_if_needed": config.patching.reboot_if_needed,
        "health_agent": agent.enabled,
        "health_tag": names.HEALTH_TAG,
        "repair_tag": names.REPAIR_TAG,
        "repair_path": names.repair_path(config.parameter_path),
        "max_unhealthy": agent.max_unhealthy,
        "claim_grace": names.REPAIR_CLAIM_GRACE_SECONDS,
        "checks": " ".join(agent.checks),
        "failures": agent.failures_before_unhealthy,
        "interval": agent.interval_seconds,
        "disk_min_free": agent.disk_min_free_percent,
    }
    if isinstance(plane, KubeadmControlPlane):
        context |= {
            "api_endpoint": plane.api_endpoint,
            "ca_cert_hash": plane.ca_cert_hash,
            "token_parameter": names.join_token_parameter(config.parameter_path),
        }
    else:
        context["eks_cluster"] = config.name
    text = _environment().get_template("bootstrap.sh.j2").render(context)
    size = len(text.encode())
    if size > USERDATA_LIMIT:
        raise RenderError(
            f"{config.group_key(hosts, 'labels')}: the rendered user-data of group {hosts.name} is {size} bytes, over "
            f"EC2's limit of {USERDATA_LIMIT}; use fewer or shorter labels or taints"
        )
    return text
