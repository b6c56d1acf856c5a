"""``cluster up``: create or update the stack through a change set you see first, then wait for the hosts."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from provision.verbs.options import FileArgument, Globals, config_option, join_token, load_config, whole, yes_option


@click.command("up")
@config_option
@yes_option
@click.option("--dry-run", is_flag=True, help="Show the changes and stop; nothing is changed.")
@click.option(
    "--join-token-file",
    type=FileArgument(),
    help="kubeadm mode: file holding the bootstrap token (default: $CLUSTER_JOIN_TOKEN; kept if already stored).",
)
@click.option("--timeout", type=whole(60, 86_400), default=3600, show_default=True, help="Seconds to wait.")
@click.pass_obj
def command(
    options: Globals,
    config_path: Path | None,
    assume_yes: bool,
    dry_run: bool,
    join_token_file: Path | None,
    timeout: int,
) -> None:
    """Create or update the cluster's stack and wait until its hosts are InService.

    Shows the change set (added, modified and replaced resources) and asks before applying it. Running it again with
    nothing changed says so and changes nothing.
    """
    from provision.config.schema import KubeadmControlPlane
    from provision.deploy.up import Up
    from provision.names import join_token_parameter
    from provision.ui import UI
    from provision.verbs.aws import connected

    config = load_config(config_path, example_ok=options.sandbox)
    token = join_token(join_token_file)
    ui = UI.for_terminal(assume_yes=assume_yes)
    with connected(config, options) as connection:
        if options.sandbox and token is None and isinstance(config.control_plane, KubeadmControlPlane):
            parameter = join_token_parameter(config.parameter_path)
            if not connection.cloud.parameters.exists(parameter):
                token = f"{secrets.token_hex(3)}.{secrets.token_hex(8)}"  # the sandbox's hosts never use it
                ui.say("sandbox: made up a join token")
        up = Up(config, connection.cloud, ui, timeout=timeout, kube=connection.kube)
        up.run(dry_run=dry_run, join_token=token)
