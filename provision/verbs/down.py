"""``cluster down``: delete the stack and report anything left behind."""

from __future__ import annotations

from pathlib import Path

import click

from provision.verbs.options import Globals, config_option, load_config, whole, yes_option


@click.command("down")
@config_option
@yes_option
@click.option("--purge", is_flag=True, help="Also remove the cluster's SSM parameters (join token, host records).")
@click.option("--timeout", type=whole(60, 86_400), default=3600, show_default=True, help="Seconds to wait.")
@click.pass_obj
def command(options: Globals, config_path: Path | None, assume_yes: bool, purge: bool, timeout: int) -> None:
    """Delete the cluster's stack (after a confirmation naming it and its hosts) and report what is left."""
    from provision.deploy.down import down
    from provision.ui import UI
    from provision.verbs.aws import connected

    config = load_config(config_path, example_ok=options.sandbox)
    with connected(config, options) as connection:
        down(config, connection.cloud, UI.for_terminal(assume_yes=assume_yes), purge=purge, timeout=timeout)
