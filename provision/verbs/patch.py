"""``cluster patch``: every host replaced by a freshly patched one, replacement first, without losing capacity."""

from __future__ import annotations

from pathlib import Path

import click

from provision.verbs.options import (
    Globals,
    config_option,
    load_config,
    many_hosts_options,
    output_option,
    whole,
    yes_option,
)


@click.command("patch")
@config_option
@yes_option
@click.option("--dry-run", is_flag=True, help="Show the stack change and the roll plan, and stop.")
@many_hosts_options
@click.option("--timeout", type=whole(60, 86_400), default=3600, show_default=True, help="Seconds for the stack.")
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
    timeout: int,
    output: str,
) -> None:
    """Patch every host: resolve the newest image (an `ssm:` AMI is resolved again), raise the patch generation so
    every host boots with the latest security updates, update the stack (diff and confirmation as in `up`), then
    roll every outdated host: a patched replacement first, cordon, drain under the budgets, terminate."""
    from contextlib import nullcontext
    from functools import partial

    from provision.deploy.up import Up
    from provision.roll.plan import Strategy, every_host, outdated
    from provision.ui import UI
    from provision.verbs.aws import connected
    from provision.verbs.rolling import budget, engine, finish, holding_lock, owner, reporting, show_plan

    config = load_config(config_path, example_ok=options.sandbox)
    ui = UI.for_terminal(assume_yes=assume_yes, to_stderr=output == "json")
    with reporting(output, ui, "patch") as document, connected(config, options) as connection:
        roll = engine(config, connection, ui, verb="patch")
        document.run = roll.result
        before = roll.fleet.snapshot()
        hosts, resolved = len(before.hosts), budget(config, before, max_surge, max_unavailable)
        interrupted = roll.journal.load()
        continuing = interrupted is not None and interrupted.operation == "patch"
        # The lock is held from before the stack update: a second patch must not raise the generation mid-roll.
        with nullcontext() if dry_run else holding_lock(roll, "patch", break_lock=break_lock) as held:
            if continuing:
                # Its patch generation stays; a configuration fixed since (the cause of a halt, often) reaches the
                # stack first, so the hosts the roll still replaces get it, as do the ones it already replaced.
                ui.say("an interrupted patch left its progress: continuing it, with the stack updated to the "
                       "configuration as it is now (the same patch generation)")  # fmt: skip
            Up(config, connection.cloud, ui, timeout=timeout, kube=connection.kube).run(
                dry_run=dry_run,
                join_token=None,
                next_patch_generation=not continuing,
                then=f", then replace its {hosts} host(s) ({resolved.surge} launched first, {resolved.unavailable} "
                "taken out first at a time)",
            )
            roll.fleet.template_changed()  # the stack update made a new launch template version
            # A dry run has not put the new patch generation in the stack; once it is there, every host is outdated.
            fresh = dry_run and not continuing
            select = partial(every_host, reason="outdated by the new patch generation") if fresh else outdated
            plan = select(
                roll.fleet.snapshot(),
                operation="patch",
                include_protected=include_protected,
                budget=resolved,
                strategy=Strategy.of(config.rolling),
            )
            document.plan, document.dry_run = show_plan(plan, roll, ui), dry_run
            if dry_run:
                ui.say("dry run: nothing was changed")
                return
            result = roll.run(plan, owner=owner(), held=held)
        finish(result, ui, document)
