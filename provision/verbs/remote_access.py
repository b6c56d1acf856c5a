"""What `ssh`, `exec`, `diagnose` and `replace` share to reach hosts: the cluster's hosts and nodes, the SSH settings
from cluster.toml and the command line, and the evidence sources for diagnostics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from provision import names

if TYPE_CHECKING:
    from provision.config.schema import ClusterConfig
    from provision.fleet.model import Snapshot
    from provision.kube.facade import Kube
    from provision.remote.connect import Connector
    from provision.remote.diagnostics import Evidence, Limits
    from provision.remote.targets import Target
    from provision.ui import UI
    from provision.verbs.aws import Connection
    from provision.verbs.options import Globals

F = TypeVar("F", bound=Callable[..., object])
DIAGNOSTICS = Path("diagnostics")
REPLACE_LIMITS_SECONDS = (10.0, 30.0)  # per command, in all: a sick host must not hold up its own replacement


def accept_new_option(function: F) -> F:
    return click.option(
        "--accept-new-host-key",
        is_flag=True,
        help="Record the key of a host not yet in known_hosts (a changed key is always refused).",
    )(function)


@dataclass
class Reach:
    connection: Connection
    snapshot: Snapshot
    kube: Kube | None  # None when the Kubernetes API cannot be reached: hosts are still found by id, DNS name, IP
    connector: Connector


@contextmanager
def reach(config: ClusterConfig, options: Globals, *, accept_new_host_key: bool, source: str) -> Iterator[Reach]:
    from provision.fleet.observe import Fleet
    from provision.remote.connect import Connector, SshSettings
    from provision.verbs.aws import connected

    _quiet_paramiko(options.debug)
    settings = SshSettings.of(config.ssh, accept_new_host_key=accept_new_host_key, source=source)
    # The connector reads known_hosts and ~/.ssh/config: a problem with either is found before any AWS call.
    with Connector(settings) as connector, connected(config, options) as connection:
        kube, _unreachable = connection.kube()
        snapshot = Fleet.of_stack(connection.cloud, config.stack_name, kube=kube).snapshot()
        yield Reach(connection, snapshot, kube, connector)


def _quiet_paramiko(debug: bool) -> None:
    if not debug:  # paramiko logs a failed handshake as an ERROR; the one-line outcome says it better
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def diagnostics_folder(parent: Path, target: Target) -> Path:
    return parent / f"{target.instance_id}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def diagnose(config: ClusterConfig, reached: Reach, target: Target, parent: Path, limits: Limits) -> Evidence:
    from provision.remote.diagnostics import Sources, collect

    cloud = reached.connection.cloud
    kube = reached.kube

    def node_events(node: str) -> list[str]:
        assert kube is not None
        return [
            f"{event.lastTimestamp or event.eventTime or ''} {event.type} {event.reason}: {event.message}"
            f"{f' (x{event.count})' if event.count and event.count > 1 else ''}"
            for event in kube.events(node)
        ]

    def host_records(instance_id: str) -> dict[str, str]:
        records = cloud.parameters.values_under(f"{names.host_records_path(config.parameter_path)}/{instance_id}")
        instance = cloud.instances.of_ids([instance_id]).get(instance_id)
        verdict = instance.tags.get(names.HEALTH_TAG) if instance else None
        return records | ({f"tag {names.HEALTH_TAG}": verdict} if verdict else {})

    sources = Sources(cloud.instances.console_output, node_events if kube is not None else None, host_records)
    return collect(target, diagnostics_folder(parent, target), reached.connector, sources, limits)


def diagnose_before_replace(
    config: ClusterConfig, connection: Connection, snapshot: Snapshot, kube: Kube | None, instance_id: str, ui: UI
) -> None:
    """Save the host's evidence before it goes, within a short bound. Evidence is a courtesy: whatever goes wrong
    here is said, and the replacement goes on."""
    from provision.remote.connect import Connector, SshSettings
    from provision.remote.diagnostics import Limits
    from provision.remote.targets import named_hosts

    _quiet_paramiko(connection.options.debug)
    per_command, total = REPLACE_LIMITS_SECONDS
    ui.say(f"saving the diagnostics of {instance_id} first (at most {total:g}s; --no-diagnostics skips this)")
    try:
        with Connector(SshSettings.of(config.ssh)) as connector:
            [target] = named_hosts([instance_id], snapshot, kube)
            reached = Reach(connection, snapshot, kube, connector)
            evidence = diagnose(config, reached, target, DIAGNOSTICS, Limits(per_command, total))
    except Exception as error:  # see above: never a reason not to replace a sick host
        ui.warn(f"the diagnostics of {instance_id} were not saved ({error}); replacing it anyway")
    else:
        ui.say(evidence_line(evidence))


def evidence_line(evidence: Evidence) -> str:
    how = f" (SSH failed: {evidence.ssh_error})" if evidence.ssh_error else ""
    if evidence.console:
        how += "; the EC2 console output is saved in its place"
    return f"diagnostics saved in {evidence.folder}/{how}"


class DashDash(click.Command):
    """A command whose words after ``--`` are the remote command, kept out of click's own arguments (click would
    mix them with the HOST arguments before it)."""

    usage = "-- COMMAND..."

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), self.usage]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["remote_command"] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


class OptionalDashDash(DashDash):
    usage = "[-- COMMAND...]"


def remote_command(ctx: click.Context) -> str:
    """The words after ``--`` as one command line, joined with spaces as OpenSSH joins them."""
    words: list[str] = ctx.meta.get("remote_command", [])
    return " ".join(words)
