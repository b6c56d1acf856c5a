"""One command on many hosts at once: a bounded number of sessions in flight, one outcome per host whatever happens
to the others (a host that is unreachable, refuses its key or hangs is an outcome too, not an exception)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from provision.remote.connect import Connector, SshError
from provision.remote.targets import Target


@dataclass(frozen=True)
class Outcome:
    target: Target
    status: int | None  # the command's exit status; None when it did not run to its end
    output: str
    error: str = ""  # why it did not run to its end: unreachable, host key refused, timed out
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def state(self) -> str:
        if self.status is not None:
            return f"exit {self.status}"
        return "timed out" if self.timed_out else "unreachable"


def run_everywhere(
    targets: Sequence[Target], command: str, connector: Connector, *, parallel: int, timeout: float
) -> list[Outcome]:
    """Run ``command`` on every target, at most ``parallel`` at a time, each for at most ``timeout`` seconds once
    connected. Outcomes come back in the order of ``targets``."""

    def one(target: Target) -> Outcome:
        try:
            with connector.session(target.address, label=target.label) as session:
                result = session.run(command, timeout=timeout)
        except SshError as error:
            return Outcome(target, None, "", error.reason)
        if result.status is None:
            return Outcome(target, None, result.text, f"timed out after {timeout:g}s", timed_out=True)
        return Outcome(target, result.status, result.text)

    if not targets:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets))), thread_name_prefix="exec")
    try:
        return list(pool.map(one, targets))
    finally:
        # On Ctrl-C, hosts not started yet are not started; those in flight end within their timeout.
        pool.shutdown(wait=False, cancel_futures=True)
