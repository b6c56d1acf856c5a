"""``cluster sandbox start|stop|status``: the local stand-ins for AWS and Kubernetes, in the background."""

from __future__ import annotations

import click

from provision.errors import ClusterError
from provision.sandbox.state import STATE_DIR
from provision.verbs.options import seconds


@click.group("sandbox")
def command() -> None:
    """Start, stop or show the local sandbox: moto's server as AWS, a Kubernetes API simulator with a sample
    workload, and simulated hosts that join it. Its state lives in ./.cluster/; use it with `cluster --sandbox`."""


@command.command("start")
@click.option("--boot-seconds", type=seconds(0, 3600), default=5.0, show_default=True,
              help="How long a new host takes to boot and join.")  # fmt: skip
def start_command(boot_seconds: float) -> None:
    """Start the sandbox in the background."""
    from provision.sandbox.control import start

    state = start(STATE_DIR, boot_seconds=boot_seconds)
    click.echo(f"sandbox running (pid {state.pid})")
    click.echo(f"  AWS (moto):      {state.aws_endpoint}")
    click.echo(f"  Kubernetes API:  {state.kube_url}   kubeconfig: {state.kubeconfig}")
    click.echo(f"  log:             {state.log}")
    click.echo("next: cluster --sandbox up --yes; cluster --sandbox status; cluster sandbox stop")


@command.command("stop")
def stop_command() -> None:
    """Stop the sandbox that `cluster sandbox start` started here."""
    from provision.sandbox.control import stop

    state = stop(STATE_DIR)
    click.echo("no sandbox was running here" if state is None else f"sandbox stopped (pid {state.pid})")


@command.command("status")
def status_command() -> None:
    """Say whether the sandbox runs and answers."""
    from provision.sandbox.control import probe
    from provision.sandbox.state import SandboxState, is_ours

    state = SandboxState.load(STATE_DIR)
    if state is None or not is_ours(state.pid):
        raise ClusterError("no sandbox is running here; start one with `cluster sandbox start`")
    aws, kube = probe(state.aws_endpoint), probe(f"{state.kube_url}/healthz")
    click.echo(f"sandbox running (pid {state.pid})")
    click.echo(f"  AWS (moto):      {state.aws_endpoint} {'answers' if aws else 'DOES NOT ANSWER'}")
    click.echo(f"  Kubernetes API:  {state.kube_url} {'answers' if kube else 'DOES NOT ANSWER'}")
    if not (aws and kube):
        raise ClusterError(f"the sandbox does not answer; see {state.log}, then stop it and start it again")
