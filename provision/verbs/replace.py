"""``cluster replace HOST``: replace one host, even when the rest of the cluster is unhealthy."""

from __future__ import annotations

from pathlib import Path

import click

from provision.verbs.options import (
    Globals,
    HostName,
    break_lock_option,
    config_option,
    load_config,
    output_option,
    yes_option,
)


@click.command("replace")
@click.argument("host", type=HostName())
@config_option
@yes_option
@click.option("--dead", is_flag=True, help="The host is dead: do not wait for evictions; delete its pods and node.")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@break_lock_option
@click.option("--no-diagnostics", is_flag=True, help="Do not save the host's logs and state (./diagnostics/) first.")
@output_option
@click.pass_obj
def command(
    options: Globals,
    host: str,
    config_path: Path | None,
    assume_yes: bool,
    dead: bool,
    dry_run: bool,
    break_lock: bool,
    no_diagnostics: bool,
    output: str,
) -> None:
    """Replace HOST (an instance id, node name, private DNS name or private IP): a new host first, then cordon,
    drain under the PodDisruptionBudgets, terminate. Only what the replacement needs is waited for. A host whose node
    is NotReady is treated as dead. First its diagnostics are saved (see `cluster diagnose`), within a short bound."""
    from provision.fleet.model import find_host
    from provision.roll.plan import one_host
    from provision.ui import UI
    from provision.verbs.aws import connected
    from provision.verbs.rolling import engine, finish, holding_lock, owner, reporting, show_plan

    config = load_config(config_path, example_ok=options.sandbox)
    ui = UI.for_terminal(assume_yes=assume_yes, to_stderr=output == "json")
    with reporting(output, ui, "replace") as document, connected(config, options) as connection:
        roll = engine(config, connection, ui, verb="replace")
        document.run = roll.result
        snapshot = roll.fleet.snapshot()
        instance_id, node = find_host(host, snapshot)
        if not dead and node is not None and not node.ready:
            ui.say(f"the node {node.name} of {instance_id} is NotReady: replacing it as a dead host")
            dead = True
        plan = one_host(snapshot, instance_id, operation=f"replace {instance_id}", dead=dead)
        document.plan, document.dry_run = show_plan(plan, roll, ui), dry_run
        if dry_run:
            ui.say("dry run: nothing was changed")
            return
        # Locked before asking: a replace that another roll would refuse is refused before questions and diagnostics.
        with holding_lock(roll, plan.operation, break_lock=break_lock) as held:
            ui.confirm(
                f"Replace {instance_id}{f' (node {node.name})' if node else ''}?",
                unasked=f"did not replace {instance_id}: rerun with --yes",
            )
            if not no_diagnostics:
                from provision.verbs.remote_access import diagnose_before_replace

                diagnose_before_replace(config, connection, snapshot, roll.kube, instance_id, ui)
            result = roll.run(plan, owner=owner(), held=held)
        finish(result, ui, document)
