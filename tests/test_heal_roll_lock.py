"""Heal leaves a live roll's hosts to the roll: the hosts come from the roll's journal while its lock is held (SSM on
moto in-process); an expired lock is a roll that died, and its hosts are heal's again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provision.aws.cloud import Cloud
from provision.heal.handler import roll_in_progress
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from provision.roll.state import Flight, Kind, Phase, RollRecord

STARTED = datetime(2026, 1, 1, tzinfo=UTC)  # when the roll began

PATH = "/cluster/demo"


def test_the_roll_owns_its_hosts_in_flight_only_while_it_holds_a_live_lock(cloud: Cloud) -> None:
    moment = [datetime(2026, 11, 25, 6, tzinfo=UTC)]
    lock = RunLock(cloud.parameters, PATH, now=lambda: moment[0])
    journal = Journal(cloud.parameters, PATH)
    owned = roll_in_progress(lock, journal)
    record = RollRecord(
        "patch", "group", 3, 6, STARTED, flights=[Flight("i-old", Kind.SURGE, 1, new="i-new", phase=Phase.CORDONED)]
    )
    journal.save(record)

    assert owned() == set(), "a journal without a lock: no roll runs"
    held = lock.acquire("patch", "alice@ops", ttl=timedelta(hours=2))
    assert owned() == {"i-old", "i-new"}
    moment[0] += timedelta(hours=3)
    assert owned() == set(), "the lock expired: the roll is gone"
    moment[0] -= timedelta(hours=3)
    lock.release(held)
    assert owned() == set()
