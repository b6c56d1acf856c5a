"""Render the host boot script from ``userdata/bootstrap.sh.j2``.

Every ``{{ value }}`` in the templates passes through one function, ``shlex.quote``, installed as the jinja2
environment's ``finalize`` hook: a template cannot forget to quote. The schema already limits the characters of each
value; quoting is the second, independent guard.
"""

from __future__ import annotations

import shlex
from importlib.resources import files

import jinja2

from provision.config.schema import ClusterConfig, HostGroup, KubeadmControlPlane
from provision.errors import RenderError
from provision.render import names

# User-data above 16 KB is refused by EC2 (the limit applies before base64 encoding).
USERDATA_LIMIT = 16 * 1024
KUBELET_WAIT_SECONDS = 300


def shell_quote(value: object) -> str:
    return shlex.quote(str(value))


class _PackageLoader(jinja2.BaseLoader):
    """Loads templates from the ``provision.userdata`` package data, which works the same from a wheel or a checkout."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, None, None]:
        resource = files("provision.userdata").joinpath(template)
        if not resource.is_file():
            raise jinja2.TemplateNotFound(template)
        return resource.read_text(encoding="utf-8"), None, None


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
