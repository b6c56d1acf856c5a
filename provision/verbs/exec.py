"""``cluster exec [--all | HOST…] -- COMMAND``: one command on many hosts at once, a row per host."""

from __future__ import annotations

import json
from pathlib import Path

import click

from provision.verbs.options import Globals, HostName, config_option, load_config, seconds, whole
from provision.verbs.remote_access import DashDash, accept_new_option, remote_command

SHOWN_LINES = 20  # per host in the table; --output json has everything


@click.command("exec", cls=DashDash)
@click.argument("hosts", nargs=-1, type=HostName())
@click.option("--all", "every", is_flag=True, help="Every host of the cluster's group.")
@config_option
@click.option("--parallel", type=whole(1, 200), default=10, show_default=True, help="Hosts at a time.")
@click.option(
    "--timeout",
    type=seconds(0.1, 86_400),
    default=60.0,
    show_default=True,
    help="Seconds per host, once connected.",
)
@click.option("--output", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@accept_new_option
@click.pass_context
def command(
    ctx: click.Context,
    hosts: tuple[str, ...],
    every: bool,
    config_path: Path | None,
    parallel: int,
    timeout: float,
    output: str,
    accept_new_host_key: bool,
) -> None:
    """Run COMMAND (everything after --) on every host (--all) or on the HOSTs named (instance id, node name,
    private DNS name or IP), PARALLEL at a time, and show each host's exit status and output. Exits 1 when any host
    failed or could not be reached. Example: cluster exec --all -- uptime"""
    from provision.errors import ClusterError, UsageError
    from provision.remote.run import run_everywhere
    from provision.remote.targets import every_host, named_hosts
    from provision.ui import UI
    from provision.verbs.remote_access import reach

    options: Globals = ctx.obj
    line = remote_command(ctx)
    if not line:
        raise UsageError("give the command after --, e.g. cluster exec --all -- uptime")
    if every == bool(hosts):
        raise UsageError("name the hosts, or give --all (not both)")
    config = load_config(config_path, example_ok=options.sandbox)
    source = str(config_path or "cluster.toml")
    with reach(config, options, accept_new_host_key=accept_new_host_key, source=source) as reached:
        targets = (
            every_host(reached.snapshot, reached.kube) if every else named_hosts(hosts, reached.snapshot, reached.kube)
        )
        if not targets:
            raise UsageError(f"the group {reached.snapshot.group} has no hosts")
        outcomes = run_everywhere(targets, line, reached.connector, parallel=parallel, timeout=timeout)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if output == "json":
        rows = [
            {
                "instance_id": o.target.instance_id,
                "node": o.target.node or None,
                "address": o.target.address,
                "status": o.status,
                "state": o.state,
                "output": o.output,
                "error": o.error or None,
            }
            for o in outcomes
        ]
        click.echo(json.dumps({"command": line, "hosts": rows, "failed": len(failed)}, indent=2))
    else:
        ui = UI.for_terminal(assume_yes=False)
        ui.table(
            ["host", "node", "address", "status", "output"],
            [
                [o.target.instance_id, o.target.node or "-", o.target.address, o.state, _shown(o.output, o.error)]
                for o in outcomes
            ],
            title=f"{line}  ({len(outcomes)} host(s), {len(failed)} failed)",
        )
    if failed:
        names = ", ".join(f"{o.target.instance_id} ({o.state})" for o in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise ClusterError(f"{len(failed)} of {len(outcomes)} host(s) failed: {names}{more}")


def _shown(output: str, error: str) -> str:
    lines = output.rstrip("\n").splitlines()
    if len(lines) > SHOWN_LINES:
        lines = [f"({len(lines) - SHOWN_LINES} earlier lines; --output json shows them)", *lines[-SHOWN_LINES:]]
    if error:
        lines.append(error)
    return "\n".join(lines)
