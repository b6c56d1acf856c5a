"""The run lock: one SSM parameter per cluster, created with Overwrite=False so that exactly one of two racing rolls
gets it (on AWS and on moto alike). It names its owner, the operation and since when, and expires; an expired lock is
only taken over when the user says so (``--break-lock``), or when it is provably abandoned: taken on this machine
by a process that no longer exists (a roll killed with SIGKILL), so that running the same command again continues."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from provision import names
from provision.aws.parameters import Parameters
from provision.errors import ClusterError, ExitCode

Now = Callable[[], datetime]


class Locked(ClusterError):
    exit_code = ExitCode.LOCKED


@dataclass(frozen=True)
class Lock:
    owner: str  # user@host
    operation: str  # "patch", "replace i-…"
    since: str  # ISO 8601, UTC
    expires: str
    token: str  # tells our own lock from a successor's
    process: str = ""  # "<boot id>/<pid namespace>/<pid>" of the taker, on Linux: lets a rerun see the taker died

    def abandoned(self) -> bool:
        """Taken by a process of this very machine and pid namespace that is gone."""
        place, _, pid = self.process.rpartition("/")
        if not place or place != process_place() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False

    def expired(self, now: datetime) -> bool:
        return now >= datetime.fromisoformat(self.expires)

    def describe(self) -> str:
        return f"{self.operation} by {self.owner} since {self.since} (lock expires {self.expires})"


class RunLock:
    def __init__(self, parameters: Parameters, parameter_path: str, *, now: Now | None = None) -> None:
        self.parameters = parameters
        self.name = names.roll_lock_parameter(parameter_path)
        self.now = now or (lambda: datetime.now(UTC))

    def holder(self) -> Lock | None:
        return self.parse(self.parameters.value(self.name))

    def parse(self, raw: str | None) -> Lock | None:
        """The lock from the parameter's value as read (None: nobody holds it)."""
        if raw is None:
            return None
        try:
            return Lock(**json.loads(raw))
        except (ValueError, TypeError):  # unreadable: treat as expired, so only --break-lock removes it
            return Lock("unknown", "unknown", "unknown", "1970-01-01T00:00:00+00:00", "")

    def acquire(self, operation: str, owner: str, *, ttl: timedelta, break_expired: bool = False) -> Lock:
        now = self.now()
        place = process_place()
        process = f"{place}/{os.getpid()}" if place else ""
        mine = Lock(owner, operation, _iso(now), _iso(now + ttl), secrets.token_hex(8), process)
        if self.parameters.create(self.name, json.dumps(asdict(mine))):
            return mine
        held = self.holder()
        if held is None:
            return self.acquire(operation, owner, ttl=ttl, break_expired=break_expired)  # released meanwhile
        abandoned = held.abandoned()
        if not held.expired(now) and not abandoned:
            raise Locked(f"another roll holds the cluster: {held.describe()}; wait for it to finish")
        if not break_expired and not abandoned:
            raise Locked(
                f"a roll's lock has expired without being released: {held.describe()}; if that roll is gone, "
                "run again with --break-lock (the new roll continues from its recorded progress)"
            )
        self.parameters.remove(self.name)
        if self.parameters.create(self.name, json.dumps(asdict(mine))):
            return mine
        winner = self.holder()
        raise Locked(f"another roll took the lock first: {winner.describe() if winner else 'and released it'}")

    def refresh(self, lock: Lock, *, ttl: timedelta) -> Lock:
        """Extend our lock while a long roll runs; refuses if the lock is no longer ours."""
        self._check_ours(lock)
        renewed = Lock(lock.owner, lock.operation, lock.since, _iso(self.now() + ttl), lock.token, lock.process)
        self.parameters.put(self.name, json.dumps(asdict(renewed)))
        return renewed

    def release(self, lock: Lock) -> None:
        held = self.holder()
        if held is not None and held.token == lock.token:
            self.parameters.remove(self.name)

    def _check_ours(self, lock: Lock) -> None:
        held = self.holder()
        if held is None or held.token != lock.token:
            raise Locked(f"the roll lock was taken over ({held.describe() if held else 'released'}); stopping")


def process_place() -> str:
    """This machine's boot and pid namespace, where a pid means one process; empty where that cannot be known."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()
