"""``cluster diagnose HOST``: save a host's logs and state to a local folder."""

from __future__ import annotations

from pathlib import Path

import click

from provision.verbs.options import FolderPath, Globals, HostName, config_option, load_config, seconds
from provision.verbs.remote_access import DIAGNOSTICS, accept_new_option


def output_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--output",
        "output",
        type=FolderPath(),
        default=DIAGNOSTICS,
        show_default=True,
        help="Folder in which a <instance-id>-<UTC time> folder is made.",
    )(function)


@click.command("diagnose")
@click.argument("host", type=HostName())
@config_option
@output_option
@click.option(
    "--timeout", type=seconds(1, 3600), default=45.0, show_default=True, help="Seconds for the whole collection."
)
@accept_new_option
@click.pass_obj
def command(
    options: Globals, host: str, config_path: Path | None, output: Path, timeout: float, accept_new_host_key: bool
) -> None:
    """Save HOST's evidence into a timestamped folder: kubelet and container runtime journals, boot and
    cloud-init logs, the health agent's verdict, dmesg, disk and memory use, its node's events and its SSM records.
    When SSH fails, EC2's console output is saved instead."""
    from provision.remote.diagnostics import Limits
    from provision.remote.targets import named_hosts
    from provision.ui import UI
    from provision.verbs.remote_access import diagnose, evidence_line, reach

    config = load_config(config_path, example_ok=options.sandbox)
    source = str(config_path or "cluster.toml")
    with reach(config, options, accept_new_host_key=accept_new_host_key, source=source) as reached:
        [target] = named_hosts([host], reached.snapshot, reached.kube)
        evidence = diagnose(config, reached, target, output, Limits(min(Limits.command_seconds, timeout), timeout))
    UI.for_terminal(assume_yes=False).say(evidence_line(evidence))
