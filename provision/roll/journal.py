"""The roll's progress, written to SSM before each step that changes something, so that the same command run again
after a crash or Ctrl-C knows what it had done: the group's original size, the processes it suspended, and the hosts
in flight, each with its phase. Hosts already replaced need no record: they are gone, and their replacements are
current, so a new plan does not list them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from provision.aws.parameters import Parameters
from provision.render import names


@dataclass
class RollRecord:
    operation: str
    group: str
    original_desired: int
    original_max: int
    suspended: list[str] = field(default_factory=list)  # processes this roll suspended and must resume
    # One entry per host being replaced, oldest first: {"old": id, "new": id, "phase": …, "before": …, "owners": …}
    flights: list[dict[str, str]] = field(default_factory=list)
    replacements: list[str] = field(default_factory=list)  # hosts this roll launched and put in service

    def olds(self) -> set[str]:
        """The old hosts in flight: being replaced."""
        return {flight["old"] for flight in self.flights}

    def launched(self) -> set[str]:
        """The hosts this roll launched, in service or still coming: never hosts for it to replace."""
        return set(self.replacements) | {flight["new"] for flight in self.flights if flight.get("new")}

    def not_to_plan(self) -> set[str]:
        """What a plan continuing this roll leaves out: the hosts in flight (finished first, from the journal) and
        the hosts it launched."""
        return self.olds() | self.launched()

    def hosts_in_flight(self) -> set[str]:
        """The instances this roll is working on (old hosts and their replacements): other tools leave them be."""
        return {flight[key] for flight in self.flights for key in ("old", "new") if flight.get(key)}


class Journal:
    def __init__(self, parameters: Parameters, parameter_path: str) -> None:
        self.parameters = parameters
        self.name = names.roll_state_parameter(parameter_path)

    def load(self) -> RollRecord | None:
        raw = self.parameters.value(self.name)
        return RollRecord(**json.loads(raw)) if raw else None

    def save(self, record: RollRecord) -> None:
        # Intelligent-Tiering: a record past 4 KB (a node with many workloads) becomes an advanced parameter.
        self.parameters.put(self.name, json.dumps(asdict(record), sort_keys=True), tier="Intelligent-Tiering")

    def clear(self) -> None:
        self.parameters.remove(self.name)
