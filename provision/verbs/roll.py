"""``cluster roll``: replace every host, current or not, with the engine `patch` uses, without a stack update."""

from __future__ import annotations

from pathlib import Path

import click

from provision.verbs.options import (
    Globals,
    config_option,
    load_config,
    many_hosts_options,
    output_option,
    yes_option,
)


@click.command("roll")
@config_option
@yes_option
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@many_hosts_options
@output_option
@click.pass_obj
def command(
    options: Globals,
    config_path: Path | None,
    assume_yes: bool,
    dry_run: bool,
    break_lock: bool,
    include_protected: bool,
    max_surge: int | str | None,
    max_unavailable: int | str | None,
    output: str,
) -> None:
    """Replace every host of the group, current or not: a new host first, then cordon, drain under the budgets,
    terminate, as `patch` does, but without changing the stack. For hosts that must all start afresh (a kernel
    setting, hardware marked for retirement, a suspicion). Run again after a crash, it continues: hosts this roll
    already launched are not replaced again."""
    from provision.roll.plan import Strategy, every_host
    from provision.ui import UI
    from provision.verbs.aws import connected
    from provision.verbs.rolling import budget, engine, finish, holding_lock, owner, reporting, show_plan

    config = load_config(config_path, example_ok=options.sandbox)
    ui = UI.for_terminal(assume_yes=assume_yes, to_stderr=output == "json")
    with reporting(output, ui, "roll") as document, connected(config, options) as connection:
        roll = engine(config, connection, ui, verb="roll")
        document.run = roll.result
        snapshot = roll.fleet.snapshot()
        plan = every_host(
            snapshot,
            operation="roll",
            reason="roll of every host",
            include_protected=include_protected,
            budget=budget(config, snapshot, max_surge, max_unavailable),
            strategy=Strategy.of(config.rolling),
        )
        document.plan, document.dry_run = show_plan(plan, roll, ui), dry_run
        if dry_run:
            ui.say("dry run: nothing was changed")
            return
        with holding_lock(roll, plan.operation, break_lock=break_lock) as held:
            ui.confirm(f"Replace every host of {plan.group}?", unasked=f"did not roll {plan.group}: rerun with --yes")
            result = roll.run(plan, owner=owner(), held=held)
        finish(result, ui, document)
