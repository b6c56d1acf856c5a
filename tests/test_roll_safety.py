"""The safety parts of a roll, on moto: the run lock, the suspension of processes that fight a roll, the journal."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from provision.aws.cloud import Cloud
from provision.kube.model import Owner
from provision.roll.journal import Journal, encode
from provision.roll.lock import Locked, RunLock, process_place
from provision.roll.state import Flight, Kind, Phase, RollRecord
from provision.roll.suspension import FIGHTING_PROCESSES, processes_suspended

STARTED = datetime(2026, 1, 1, tzinfo=UTC)  # when the roll began

PATH = "/cluster/demo"
HOUR = timedelta(hours=1)


class Wall:
    """A settable wall clock for lock expiry."""

    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def wall() -> Wall:
    return Wall()


def test_a_second_roll_is_refused_with_the_owner_and_since_when(cloud: Cloud, wall: Wall) -> None:
    lock = RunLock(cloud.parameters, PATH, now=wall)
    lock.acquire("patch", "alice@ops-1", ttl=HOUR)

    with pytest.raises(Locked) as refused:
        lock.acquire("replace i-0abc", "bob@ops-2", ttl=HOUR)

    assert str(refused.value) == (
        "another roll holds the cluster: patch by alice@ops-1 since 2026-11-27T16:00:00+00:00 "
        "(lock expires 2026-11-27T17:00:00+00:00); wait for it to finish"
    )
    assert refused.value.exit_code == 6


def test_an_expired_lock_is_taken_over_only_with_break_lock(cloud: Cloud, wall: Wall) -> None:
    lock = RunLock(cloud.parameters, PATH, now=wall)
    lock.acquire("patch", "alice@ops-1", ttl=HOUR)
    wall.moment += 2 * HOUR

    with pytest.raises(Locked, match=r"has expired without being released: patch by alice@ops-1.*--break-lock"):
        lock.acquire("patch", "bob@ops-2", ttl=HOUR)
    taken = lock.acquire("patch", "bob@ops-2", ttl=HOUR, break_expired=True)

    holder = lock.holder()
    assert holder is not None and holder.owner == "bob@ops-2" and holder.token == taken.token


def place_lock(cloud: Cloud, lock: RunLock, process: str) -> None:
    held = {"owner": "alice@ops-1", "operation": "patch", "since": "2026-11-27T16:00:00+00:00",
            "expires": "2026-11-27T18:00:00+00:00", "token": "t", "process": process}  # fmt: skip
    assert cloud.parameters.create(lock.name, json.dumps(held))


def test_a_lock_left_by_a_killed_roll_on_this_machine_is_taken_over(cloud: Cloud, wall: Wall) -> None:
    lock = RunLock(cloud.parameters, PATH, now=wall)
    child = subprocess.Popen(["true"])
    child.wait()  # a roll that was killed: its process is gone, its lock is still there
    place_lock(cloud, lock, f"{process_place()}/{child.pid}")

    taken = lock.acquire("patch", "alice@ops-1", ttl=HOUR)

    assert lock.holder() == taken


@pytest.mark.parametrize("where", ["alive here", "another machine"])
def test_a_lock_of_a_live_or_faraway_process_is_not_taken_over(cloud: Cloud, wall: Wall, where: str) -> None:
    lock = RunLock(cloud.parameters, PATH, now=wall)
    place_lock(
        cloud, lock, f"{process_place()}/{os.getpid()}" if where == "alive here" else "other-boot/pid:[1]/99999999"
    )

    with pytest.raises(Locked, match="another roll holds the cluster: patch by alice@ops-1"):
        lock.acquire("patch", "alice@ops-1", ttl=HOUR, break_expired=True)


def test_break_lock_does_not_take_a_live_lock(cloud: Cloud, wall: Wall) -> None:
    lock = RunLock(cloud.parameters, PATH, now=wall)
    lock.acquire("patch", "alice@ops-1", ttl=HOUR)

    with pytest.raises(Locked, match="another roll holds the cluster"):
        lock.acquire("patch", "bob@ops-2", ttl=HOUR, break_expired=True)


def test_release_removes_only_our_own_lock(cloud: Cloud, wall: Wall) -> None:
    lock = RunLock(cloud.parameters, PATH, now=wall)
    old = lock.acquire("patch", "alice@ops-1", ttl=HOUR)
    wall.moment += 2 * HOUR
    lock.acquire("patch", "bob@ops-2", ttl=HOUR, break_expired=True)

    lock.release(old)  # alice's roll comes back late: it must not free bob's lock

    holder = lock.holder()
    assert holder is not None and holder.owner == "bob@ops-2"
    with pytest.raises(Locked, match="was taken over"):
        lock.refresh(old, ttl=HOUR)


def test_refresh_extends_our_lock(cloud: Cloud, wall: Wall) -> None:
    lock = RunLock(cloud.parameters, PATH, now=wall)
    mine = lock.acquire("patch", "alice@ops-1", ttl=HOUR)
    wall.moment += HOUR / 2

    renewed = lock.refresh(mine, ttl=HOUR)

    assert renewed.expires == "2026-11-27T17:30:00+00:00" and renewed.since == mine.since


def test_racing_rolls_get_exactly_one_lock(cloud: Cloud, wall: Wall) -> None:
    winners: list[str] = []
    losers: list[str] = []
    start = threading.Barrier(8)

    def roll(index: int) -> None:
        start.wait()
        try:
            RunLock(cloud.parameters, PATH, now=wall).acquire("patch", f"op{index}", ttl=HOUR)
            winners.append(f"op{index}")
        except Locked:
            losers.append(f"op{index}")

    threads = [threading.Thread(target=roll, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(winners) == 1 and len(losers) == 7


@pytest.fixture
def group(cloud: Cloud) -> Iterator[str]:
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="hosts", LaunchTemplateData={"ImageId": image})
    boto3.client("autoscaling", region_name="eu-west-1").create_auto_scaling_group(
        AutoScalingGroupName="hosts",
        LaunchTemplate={"LaunchTemplateName": "hosts"},
        MinSize=1,
        MaxSize=3,
        DesiredCapacity=2,
        AvailabilityZones=["eu-west-1a"],
    )
    yield "hosts"


def suspended(cloud: Cloud, name: str) -> list[str]:
    found = cloud.groups.find(name)
    assert found is not None
    return found.suspended_processes


def test_processes_are_suspended_during_the_roll_and_restored_after_a_failure(cloud: Cloud, group: str) -> None:
    journal = Journal(cloud.parameters, PATH)
    record = RollRecord("patch", group, 2, 3, STARTED)

    with pytest.raises(RuntimeError), processes_suspended(cloud.groups, journal, record):
        assert sorted(suspended(cloud, group)) == sorted(FIGHTING_PROCESSES)
        assert sorted(journal.load().suspended) == sorted(FIGHTING_PROCESSES)  # type: ignore[union-attr]
        raise RuntimeError("the roll failed half-way")

    assert suspended(cloud, group) == []
    assert journal.load().suspended == []  # type: ignore[union-attr]


def test_an_interrupt_restores_them_too(cloud: Cloud, group: str) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        processes_suspended(cloud.groups, Journal(cloud.parameters, PATH), RollRecord("patch", group, 2, 3, STARTED)),
    ):
        raise KeyboardInterrupt

    assert suspended(cloud, group) == []


def test_processes_suspended_by_someone_else_stay_suspended(cloud: Cloud, group: str) -> None:
    cloud.groups.suspend(group, ["AZRebalance", "Launch"])

    with processes_suspended(
        cloud.groups, Journal(cloud.parameters, PATH), RollRecord("patch", group, 2, 3, STARTED)
    ) as ours:
        assert "AZRebalance" not in ours

    assert suspended(cloud, group) == ["AZRebalance", "Launch"]


def test_a_crashed_rolls_suspensions_are_undone_by_the_next_run(cloud: Cloud, group: str) -> None:
    journal = Journal(cloud.parameters, PATH)
    crashed = RollRecord("patch", group, 2, 3, STARTED, suspended=["AZRebalance", "ReplaceUnhealthy"])
    cloud.groups.suspend(group, crashed.suspended)
    journal.save(crashed)  # ... and the process was killed here

    resumed = journal.load()
    assert resumed is not None
    with processes_suspended(cloud.groups, journal, resumed):
        pass

    assert suspended(cloud, group) == []


def test_the_journal_round_trips_and_clears(cloud: Cloud) -> None:
    journal = Journal(cloud.parameters, PATH)
    owners = {Owner("ReplicaSet", f"team-{index}", f"service-{index}-7d9f8c6b5"): index % 7 for index in range(120)}
    flight = Flight("i-1", Kind.SURGE, 1, phase=Phase.DRAINED, owners=owners)
    record = RollRecord("patch", "hosts", 3, 6, STARTED, ["AZRebalance"], [flight])
    assert len(encode(record)) > 4096, "past the standard tier's limit"

    journal.save(record)
    loaded = journal.load()
    journal.clear()

    assert loaded == record
    assert journal.load() is None
