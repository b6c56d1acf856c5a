"""The one clock and the one wait loop. Everything that waits takes a ``Clock``, so tests run in virtual time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from provision.errors import ClusterError, ExitCode

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since some fixed moment (monotonic)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class WaitTimeout(ClusterError):
    exit_code = ExitCode.TIMEOUT


def wait_until(
    check: Callable[[], T | None],
    *,
    clock: Clock,
    timeout: float,
    interval: float,
    what: str,
    next_step: str,
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something other than None, and return that.
    After ``timeout`` seconds raise ``WaitTimeout`` naming what was awaited and what the user can do next."""
    deadline = clock.now() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if clock.now() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; {next_step}")
        clock.sleep(min(interval, deadline - clock.now()))  # never past the deadline; it is still ahead here
