"""``cluster ssh HOST [-- COMMAND]``: a shell (or one command) on a host, host keys verified."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from provision.verbs.options import Globals, HostName, config_option, load_config
from provision.verbs.remote_access import OptionalDashDash, accept_new_option, remote_command


@click.command("ssh", cls=OptionalDashDash)
@click.argument("host", type=HostName())
@config_option
@accept_new_option
@click.pass_context
def command(ctx: click.Context, host: str, config_path: Path | None, accept_new_host_key: bool) -> int:
    """Open a shell on HOST (an instance id, node name, private DNS name or IP), through ssh.bastion or the
    ProxyJump of ~/.ssh/config when there is one; or run the COMMAND given after --. Without a terminal, stdin is
    passed to the host and the command's (or the shell's) exit status is this command's."""
    from provision.remote.shell import interactive, piped
    from provision.remote.targets import named_hosts
    from provision.verbs.remote_access import reach

    options: Globals = ctx.obj
    config = load_config(config_path, example_ok=options.sandbox)
    source = str(config_path or "cluster.toml")
    with reach(config, options, accept_new_host_key=accept_new_host_key, source=source) as reached:
        [target] = named_hosts([host], reached.snapshot, reached.kube)
        with reached.connector.session(target.address, label=target.label) as session:
            if sys.stdin.isatty() and sys.stdout.isatty():
                return interactive(session, remote_command(ctx))
            return piped(session, remote_command(ctx), sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer)
