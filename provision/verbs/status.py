"""``cluster status``: the stack and one row per host."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from provision.verbs.options import Globals, config_option, load_config


@click.command("status")
@config_option
@click.option("--output", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def command(options: Globals, config_path: Path | None, output: str) -> None:
    """Show the stack, its group's size and suspended processes, and one row per host: lifecycle, health, whether
    its configuration is current, node and age."""
    from provision.deploy.status import collect, show
    from provision.ui import UI
    from provision.verbs.aws import connected

    config = load_config(config_path, example_ok=options.sandbox)
    with connected(config, options) as connection:
        kube, unavailable = connection.kube()
        report = collect(config, connection.cloud, now=datetime.now(UTC), kube=kube)
    if output == "json":
        click.echo(report.to_json())
    else:
        show(report, UI.for_terminal(assume_yes=False), kubernetes_note=unavailable)
