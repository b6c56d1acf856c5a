"""The roll's progress, written to SSM before each step that changes something, so that the same command run again
after a crash or Ctrl-C knows what it had done: the group's original size, the processes it suspended, the hosts in
flight with their phases, the hosts it launched, and where its canary stands. This is the only code that turns the
record into JSON and back; the format carries a version, and a record of a version this code does not know is
refused rather than guessed at."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from provision import names
from provision.aws.parameters import Parameters
from provision.errors import ClusterError
from provision.kube.model import Owner
from provision.roll.state import Canary, Flight, Kind, Phase, RollRecord

FORMAT = 2  # 1: the untyped record of earlier releases


class Journal:
    def __init__(self, parameters: Parameters, parameter_path: str) -> None:
        self.parameters = parameters
        self.name = names.roll_state_parameter(parameter_path)

    def load(self) -> RollRecord | None:
        return self.parse(self.parameters.value(self.name))

    def parse(self, raw: str | None) -> RollRecord | None:
        """The record from the parameter's value as read (None: there is none)."""
        return decode(raw, self.name) if raw else None

    def save(self, record: RollRecord) -> None:
        # Intelligent-Tiering: a record past 4 KB (a node with many workloads) becomes an advanced parameter.
        self.parameters.put(self.name, encode(record), tier="Intelligent-Tiering")

    def clear(self) -> None:
        self.parameters.remove(self.name)


def encode(record: RollRecord) -> str:
    return json.dumps(
        {
            "format": FORMAT,
            "operation": record.operation,
            "group": record.group,
            "original_desired": record.original_desired,
            "original_max": record.original_max,
            "started": record.started.isoformat(),
            "suspended": record.suspended,
            "replacements": record.replacements,
            "recent": record.recent,
            "waves": record.waves,
            "canary": record.canary.value,
            "flights": [_flight(flight) for flight in record.flights],
        },
        sort_keys=True,
    )


def decode(raw: str, where: str) -> RollRecord:
    try:
        data = json.loads(raw)
        version = data.get("format", 1) if isinstance(data, dict) else None
    except json.JSONDecodeError:
        version = None
    if version != FORMAT:
        raise ClusterError(
            f"{where}: the roll journal is in format {version or 'unknown'}, which this release of cluster does not "
            f"read (it writes format {FORMAT}); finish that roll with the release that started it, or remove the "
            "parameter once no roll is in progress"
        )
    try:
        return RollRecord(
            operation=data["operation"],
            group=data["group"],
            original_desired=data["original_desired"],
            original_max=data["original_max"],
            started=datetime.fromisoformat(data["started"]),
            suspended=list(data["suspended"]),
            flights=[_unflight(entry) for entry in data["flights"]],
            replacements=list(data["replacements"]),
            recent=list(data["recent"]),
            waves=data["waves"],
            canary=Canary(data["canary"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ClusterError(f"{where}: the roll journal is damaged ({type(error).__name__}: {error})") from None


def _flight(flight: Flight) -> dict[str, Any]:
    return {
        "old": flight.old,
        "kind": flight.kind.value,
        "wave": flight.wave,
        "zone": flight.zone,
        "reason": flight.reason,
        "dead": flight.dead,
        "phase": flight.phase.value if flight.phase else None,
        "new": flight.new,
        "node": flight.node,
        "owners": [[owner.kind, owner.namespace, owner.name, count] for owner, count in flight.owners.items()],
    }


def _unflight(entry: dict[str, Any]) -> Flight:
    return Flight(
        old=entry["old"],
        kind=Kind(entry["kind"]),
        wave=entry["wave"],
        zone=entry["zone"],
        reason=entry["reason"],
        dead=entry["dead"],
        phase=Phase(entry["phase"]) if entry["phase"] else None,
        new=entry["new"],
        node=entry["node"],
        owners={Owner(kind, namespace, name): count for kind, namespace, name, count in entry["owners"]},
    )
