"""``cluster doctor``: find what needs attention and say what to do about it."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from provision.errors import ExitCode
from provision.verbs.options import Globals, config_option, load_config


@click.command("doctor")
@config_option
@click.option(
    "--output",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one screen for people; json: the same findings for scripts.",
)
@click.pass_context
def command(ctx: click.Context, config_path: Path | None, output: str) -> None:
    """Check the stack (and the root cause of a failure), launches the hosts abandoned and the step they failed at,
    Unhealthy hosts and NotReady nodes, lifecycle actions waiting, scaling processes left suspended, the roll lock
    (held or expired) and an interrupted roll, outdated hosts, nodes without a host and hosts without a node. Each
    finding names the host or resource, the cause when known, and one next step.

    Without the Kubernetes API the checks that need it are skipped, and said to be.

    Exit status: 0 when nothing needs attention, 1 when any problem or warning was found (also with --output json,
    for scripts); 2 for a bad configuration; 5 when AWS cannot be reached."""
    from datetime import UTC, datetime

    from provision.doctor.checks import diagnose
    from provision.doctor.observe import Invocation, gather
    from provision.doctor.show import show
    from provision.ui import UI
    from provision.verbs.aws import connected, sandboxed

    options: Globals = ctx.obj
    config = load_config(config_path, example_ok=options.sandbox)
    # Next steps name the same cluster, region, endpoint and kubeconfig as this run, so they can be pasted as they are.
    reached = sandboxed(options)
    invocation = Invocation(
        global_flags="--sandbox " if options.sandbox else "",
        config_flag=f" -c {shlex.quote(str(config_path))}" if config_path else "",
        aws_flags=f" --region {config.region}"
        + (f" --endpoint-url {shlex.quote(reached.endpoint_url)}" if reached.endpoint_url else ""),
        kubectl_flags="".join(
            f" {flag} {shlex.quote(value)}"
            for flag, value in (
                ("--kubeconfig", reached.kubeconfig or config.kubernetes.kubeconfig),
                ("--context", reached.context or config.kubernetes.context),
            )
            if value
        ),
    )
    with connected(config, options) as connection:
        kube, unavailable = connection.kube()
        observations = gather(
            config, connection.cloud, now=datetime.now(UTC), kube=kube, kube_note=unavailable, invocation=invocation
        )
    report = diagnose(observations)
    if output == "json":
        click.echo(report.to_json())
    else:
        snapshot = observations.snapshot
        group = f", group {snapshot.group}: {len(snapshot.hosts)} host(s)" if snapshot else ""
        nodes = f", {len(observations.nodes)} node(s) in the cluster" if observations.nodes is not None else ""
        header = f"cluster {config.name}: stack {config.stack_name} in {config.region}{group}{nodes}"
        show(report, UI.for_terminal(assume_yes=False), header=header)
    if report.needs_attention:
        ctx.exit(ExitCode.FAILED)
