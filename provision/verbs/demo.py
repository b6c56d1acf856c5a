"""``cluster demo``: the whole story on a fresh sandbox."""

from __future__ import annotations

import click

from provision.errors import ClusterError
from provision.verbs.options import budget_options, seconds


@click.command("demo")
@click.option("--boot-seconds", type=seconds(0, 3600), default=2.0, show_default=True,
              help="How long a new host takes to boot and join.")  # fmt: skip
@budget_options
def command(boot_seconds: float, max_surge: int | str | None, max_unavailable: int | str | None) -> None:
    """Run the whole story on a fresh sandbox: up, status, replace one host, patch every host, status, down, and a
    summary that ends with the number of budget violations (0)."""
    from provision.demo import run_demo
    from provision.ui import UI

    summary = run_demo(
        UI.for_terminal(assume_yes=True),
        boot_seconds=boot_seconds,
        max_surge=max_surge,
        max_unavailable=max_unavailable,
    )
    floor = summary.desired - summary.unavailable
    if summary.lowest_ready is not None and summary.lowest_ready < floor:
        raise ClusterError(
            f"ready capacity fell to {summary.lowest_ready}, below the {floor} the budget allows (desired "
            f"{summary.desired}, max_unavailable {summary.unavailable})"
        )
    if summary.budget_violations is None:
        raise ClusterError("the API simulator did not report its budget violations, so none can be ruled out")
    if summary.budget_violations:
        raise ClusterError(f"{summary.budget_violations} pod(s) were removed against their disruption budget")
