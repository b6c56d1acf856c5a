"""The storm guard: at most ``health_agent.max_unhealthy`` hosts of the group under repair at once, whoever reports
them (the health agent on the host, userdata/health-agent.sh, or `cluster heal` from the cluster side). The agents
of many hosts may find the same fault in the same minute; without the guard the group would replace them all at once.

A host may be reported Unhealthy only while it holds one of ``limit`` slots, SSM parameters below the cluster's
repair path (``names.repair_path``). The one thing that settles a race is SSM's PutParameter without Overwrite, which
creates a parameter only if it does not exist: of any number of callers naming the same parameter, exactly one wins,
on AWS as on the sandbox. Nothing is ever deleted to free a slot, because a delete racing a claim could erase the
claim of the one who just won (a "free" slot would then be taken twice):

- ``slots/<k>`` holds its first claim, ``<instance-id> <epoch seconds> <agent|heal>``, created once;
- a slot whose holder is no longer under repair (the host has left the group; or it is InService and Healthy
  ``CLAIM_GRACE_SECONDS`` after its claim: the report never took) is taken over by creating
  ``handovers/<k>/<holder>``, whose name only the takeover of that one holder uses (instance ids are never reused),
  so again exactly one caller wins. The winner then writes its claim into ``slots/<k>`` too, as a shortcut: a reader
  follows the handovers from whatever the slot says, so a late or stale write there changes nothing.

A host already named by a slot holds it (it won, then failed to report: it reports on its next try). Handovers the
chain has moved past are removed by heal after ``HANDOVER_KEPT_SECONDS`` (``Slots.tidy``), far longer than anyone's
read can be stale; the slots themselves are never removed while the stack lives.

The agent runs the same steps in bash with the AWS CLI; the two must stay in step (tests run both against moto).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from provision import names
from provision.fleet.model import Host

CLAIM_GRACE_SECONDS = names.REPAIR_CLAIM_GRACE_SECONDS  # the agent's CLAIM_GRACE
HANDOVER_KEPT_SECONDS = 3600  # a handover the chain has moved past is removed after this long

Reporter = Literal["agent", "heal"]


class Store(Protocol):
    """``provision.aws.parameters.Parameters``."""

    def values_under(self, path: str) -> dict[str, str]: ...

    def create(self, name: str, value: str) -> bool: ...

    def put(self, name: str, value: str) -> None: ...

    def delete(self, names: list[str]) -> None: ...


@dataclass(frozen=True)
class Claim:
    instance_id: str
    at: int  # epoch seconds
    by: str

    @classmethod
    def parse(cls, value: str) -> Claim | None:
        parts = value.split()
        if len(parts) < 2 or not parts[0].startswith("i-") or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "")

    def __str__(self) -> str:
        return f"{self.instance_id} {self.at} {self.by}"


@dataclass(frozen=True)
class Slot:
    index: int
    stored: Claim  # what ``slots/<k>`` says
    holder: Claim  # who holds it: ``stored`` followed through the handovers
    chain: tuple[str, ...]  # the instances the handovers lead through from ``stored`` to ``holder``, in order


@dataclass(frozen=True)
class Board:
    slots: dict[int, Slot]
    handovers: dict[tuple[int, str], Claim]  # (slot, the holder taken over from) -> the claim that took over

    def held_by(self, instance_id: str) -> int | None:
        return next((slot.index for slot in self.slots.values() if slot.holder.instance_id == instance_id), None)


def in_repair(claim: Claim, host: Host | None, now: int) -> bool:
    """Whether the holder of a slot is still under repair: a member of the group, reported Unhealthy or on its way
    out (or just claimed: its report may be on its way)."""
    if host is None:
        return False
    return host.health != "Healthy" or host.lifecycle_state != "InService" or now - claim.at < CLAIM_GRACE_SECONDS


@dataclass(frozen=True)
class Admission:
    """The guard's answer for one host: the slot it holds, or None when its repair is held."""

    slot: int | None
    limit: int
    in_repair: tuple[str, ...]  # the hosts holding a slot and under repair, as seen when asking


class Slots:
    def __init__(self, store: Store, parameter_path: str) -> None:
        self.store = store
        self.path = names.repair_path(parameter_path)

    def read(self) -> Board:
        """One GetParametersByPath (paged): every slot with its holder, and the handovers."""
        slots: dict[int, Claim] = {}
        handovers: dict[tuple[int, str], Claim] = {}
        for name, value in self.store.values_under(self.path).items():
            claim = Claim.parse(value)
            parts = name.removeprefix(self.path + "/").split("/")
            if claim is None or not parts[1:2] or not parts[1].isdigit():
                continue  # not the guard's (or damaged): never counted, never taken over
            if parts[0] == "slots" and len(parts) == 2:
                slots[int(parts[1])] = claim
            elif parts[0] == "handovers" and len(parts) == 3:
                handovers[(int(parts[1]), parts[2])] = claim
        return Board({index: _follow(index, stored, handovers) for index, stored in slots.items()}, handovers)

    def admit(self, instance_id: str, *, by: Reporter, limit: int, members: Mapping[str, Host], now: int) -> Admission:
        """A slot for ``instance_id`` if it holds one or one is free within ``limit``; otherwise its repair is held.
        ``members``: the group's hosts as just observed, to tell which holders are still under repair."""
        board = self.read()
        live = {
            index: slot.holder.instance_id
            for index, slot in board.slots.items()
            if in_repair(slot.holder, members.get(slot.holder.instance_id), now)
        }
        held = board.held_by(instance_id)
        if held is not None and held in live:  # it won before and has not reported yet (unless the claim lapsed)
            return Admission(held, limit, tuple(live.values()))
        # Slots beyond the limit are held by hosts admitted when the group was larger: they count, and while they
        # last, only the first ``limit - high`` slots may be claimed, so racing claimers cannot exceed the limit.
        high = sum(1 for index in live if index >= limit)
        mine = Claim(instance_id, now, by)
        if len(live) < limit:
            for index in range(limit - high):
                if index in live:
                    continue
                slot = board.slots.get(index)
                if slot is None:
                    won = self.store.create(self._slot(index), str(mine))
                else:
                    won = self.store.create(self._handover(index, slot.holder.instance_id), str(mine))
                    if won:
                        self.store.put(self._slot(index), str(mine))
                if won:
                    return Admission(index, limit, (*live.values(), instance_id))
        return Admission(None, limit, tuple(live.values()))

    def tidy(self, board: Board, now: int) -> int:
        """Shorten each slot's chain of handovers: the slot is rewritten with its holder, and at a later tidy the
        handovers it has moved past are removed once ``HANDOVER_KEPT_SECONDS`` old (a reader that saw the slot's old
        value may still be following them now). Returns how many were removed."""
        rewritten = set()
        for slot in board.slots.values():
            if slot.chain:
                self.store.put(self._slot(slot.index), str(slot.holder))
                rewritten.add(slot.index)
        doomed = [
            self._handover(index, previous)
            for (index, previous), claim in board.handovers.items()
            if index not in rewritten and now - claim.at >= HANDOVER_KEPT_SECONDS
        ]
        self.store.delete(doomed)
        return len(doomed)

    def _slot(self, index: int) -> str:
        return f"{self.path}/slots/{index}"

    def _handover(self, index: int, previous: str) -> str:
        return f"{self.path}/handovers/{index}/{previous}"


def _follow(index: int, stored: Claim, handovers: Mapping[tuple[int, str], Claim]) -> Slot:
    holder, chain = stored, list[str]()
    while (index, holder.instance_id) in handovers and len(chain) <= len(handovers):
        holder = handovers[(index, holder.instance_id)]
        chain.append(holder.instance_id)
    return Slot(index, stored, holder, tuple(chain))
