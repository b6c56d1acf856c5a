"""What `patch`, `replace` and `roll` share: finding a host by any of its names, building the roll engine, and the
closing table. Imported only by those verbs (it loads boto3 and lightkube)."""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from provision.aws.alarms import Alarms
from provision.clock import SystemClock
from provision.config.schema import ClusterConfig
from provision.deploy.host_records import forget_hosts
from provision.errors import ClusterError, ExitCode, UsageError
from provision.fleet.model import Snapshot
from provision.fleet.observe import Fleet
from provision.kube.facade import Kube
from provision.roll import report
from provision.roll.document import Document, plan_document, result_document
from provision.roll.engine import LOCK_TTL, Roll, RollResult
from provision.roll.journal import Journal
from provision.roll.lock import Lock, RunLock
from provision.roll.plan import Budget, Plan
from provision.roll.state import Flight
from provision.ui import UI
from provision.verbs.aws import Connection

REPORTS = Path("reports")  # in the working folder, beside diagnostics/


def kube_or_refuse(connection: Connection, verb: str) -> Kube:
    kube, unavailable = connection.kube()
    if kube is None:
        raise UsageError(f"`cluster {verb}` drains hosts, so it needs the Kubernetes API: {unavailable}")
    return kube


def engine(config: ClusterConfig, connection: Connection, ui: UI, *, verb: str) -> Roll:
    """The roll engine on this cluster's group and nodes; ``verb`` names what needs the Kubernetes API."""
    parameters = connection.cloud.parameters
    kube = kube_or_refuse(connection, verb)
    alarms = connection.cloud.alarms
    return Roll(
        Fleet.of_stack(connection.cloud, config.stack_name, kube=kube),
        kube,
        Journal(parameters, config.parameter_path),
        RunLock(parameters, config.parameter_path),
        ui,
        SystemClock(),
        config.rolling,
        alarms=AlarmsInAlarm(alarms),
        forget_hosts=lambda hosts: forget_hosts(parameters, config.parameter_path, hosts),
    )


class AlarmsInAlarm:
    """The roll's view of CloudWatch: the named alarms in ALARM. A name that does not exist stops the roll before
    it starts: a misspelt alarm must not quietly switch the safety off."""

    def __init__(self, alarms: Alarms) -> None:
        self.alarms = alarms

    def firing(self, names: Sequence[str]) -> tuple[str, ...]:
        states = self.alarms.states(names)
        if states.missing:
            raise UsageError(f"rolling.halt_on_alarms: no CloudWatch alarm named {', '.join(states.missing)}")
        return tuple(f"{alarm.name}: {alarm.reason}" for alarm in states.firing)


def budget(
    config: ClusterConfig, snapshot: Snapshot, max_surge: int | str | None, max_unavailable: int | str | None
) -> Budget:
    """The roll's budget from the configuration, the command line's flags over it, for the group's size now."""
    return Budget.resolve(config.rolling, snapshot.desired, max_surge=max_surge, max_unavailable=max_unavailable)


def owner() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@contextmanager
def holding_lock(roll: Roll, operation: str, *, break_lock: bool) -> Iterator[Lock]:
    """The run lock, taken before the verb asks or changes anything, so a roll that would be refused is refused
    before a confirmation, a diagnosis or a stack update; ``Roll.run`` releases it, and so does leaving this block
    (a declined confirmation), whichever comes first."""
    held = roll.lock.acquire(operation, owner(), ttl=LOCK_TTL, break_expired=break_lock)
    try:
        yield held
    finally:
        roll.lock.release(held)


def show_plan(plan: Plan, roll: Roll, ui: UI) -> dict[str, Any]:
    """The plan as the executor will carry it out, after the hosts an interrupted roll left in flight; returns it as
    data, for `--output json`."""
    interrupted = roll.journal.load()
    continuing: tuple[Flight, ...] = ()
    if interrupted is not None and interrupted.group == plan.group:
        continuing = tuple(interrupted.flights)
        if continuing:
            doing = ", ".join(
                f"{flight.old} (at {flight.phase.value if flight.phase else 'start'})" for flight in continuing
            )
            ui.say(f"first, the interrupted {interrupted.operation} is continued: {doing}")
        plan = plan.excluding(interrupted.not_to_plan())
    for line in plan.describe(roll.rolling.drain_timeout_seconds):
        ui.say(line)
    if plan.replacements or interrupted is not None:
        ui.say("what the roll does first, on what the group shows now:")
        for line in roll.preview(plan):
            ui.say(f"  - {line}")
    return plan_document(plan, continuing=continuing)


@contextmanager
def reporting(output: str, ui: UI, verb: str) -> Iterator[Document]:
    """The end of every run that rolled: the roll report (``reports/``: its page's path is printed), and with
    `--output json` the run's one JSON document on stdout, however it ends (the error's line and exit code in it
    too); the human progress has gone to stderr meanwhile."""
    document = Document()
    try:
        yield document
    except ClusterError as error:
        document.error = {"message": str(error), "exit_code": int(error.exit_code)}
        raise
    except KeyboardInterrupt:
        document.error = {"message": "interrupted", "exit_code": int(ExitCode.INTERRUPTED)}
        raise
    finally:
        run = document.run
        if run is not None and run.timeline is not None:
            document.result = document.result or result_document(run)  # how far it got, when it did not finish
            try:
                document.report = str(report.write(REPORTS, verb, document.as_json(), run.timeline))
                ui.say(f"roll report: {document.report}")
            except OSError as error:  # the roll's own outcome matters more than its report
                ui.warn(f"no roll report written: {error}")
        if output == "json":
            click.echo(json.dumps(document.as_json(), indent=2))


def finish(result: RollResult, ui: UI, document: Document) -> None:
    """The closing table; a host that was skipped (its drain blocked under the skip policy) makes the verb fail."""
    document.result = result_document(result)
    rows = [[item.old, item.new, item.old_image, item.new_image, f"{item.seconds:.0f}s"] for item in result.replaced]
    ui.table(["replaced", "by", "old image", "new image", "took"], rows, title="Replaced hosts")
    for old, why in result.skipped:
        ui.warn(f"skipped {old}: {why}")
    if result.lowest_ready is not None:
        ui.say(f"lowest ready capacity seen: {result.lowest_ready}")
    if result.skipped:
        skipped = ", ".join(old for old, _ in result.skipped)
        raise ClusterError(
            f"{len(result.skipped)} host(s) skipped and not replaced ({skipped}): see the warnings above"
        )
