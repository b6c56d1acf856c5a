"""Start, stop and inspect the sandbox daemon, which runs detached from the terminal that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from provision.clock import SystemClock, WaitTimeout, wait_until
from provision.errors import ClusterError, UsageError
from provision.sandbox.state import DAEMON_MODULE, STATE_FILE, SandboxState, is_ours

START_SECONDS = 30.0
STOP_SECONDS = 15.0


def start(folder: Path, *, boot_seconds: float) -> SandboxState:
    running = SandboxState.load(folder)
    if running is not None and is_ours(running.pid):
        raise UsageError(f"a sandbox is already running here (pid {running.pid}); stop it with `cluster sandbox stop`")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_FILE).unlink(missing_ok=True)
    log = folder / "sandbox.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", DAEMON_MODULE, "--dir", str(folder), "--boot-seconds", str(boot_seconds)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal; `stop` ends it
        )

    def ready() -> SandboxState | None:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise ClusterError(f"the sandbox exited at start (code {process.returncode}): {tail[0]}; see {log}")
        state = SandboxState.load(folder)
        return state if state is not None and state.pid == process.pid else None

    try:
        return wait_until(
            ready,
            clock=SystemClock(),
            timeout=START_SECONDS,
            interval=0.1,
            what="the sandbox to start",
            next_step=f"see {log}",
        )
    except WaitTimeout:
        process.kill()
        raise


def stop(folder: Path) -> SandboxState | None:
    """Stop the daemon that `start` started here, and only that. Returns its state, or None when none ran."""
    state = SandboxState.load(folder)
    if state is None:
        return None
    if is_ours(state.pid):
        os.kill(state.pid, signal.SIGTERM)
        try:
            wait_until(
                lambda: True if not is_ours(state.pid) else None,
                clock=SystemClock(),
                timeout=STOP_SECONDS,
                interval=0.1,
                what=f"the sandbox (pid {state.pid}) to stop",
                next_step="it was killed",
            )
        except WaitTimeout:
            os.kill(state.pid, signal.SIGKILL)
    (folder / STATE_FILE).unlink(missing_ok=True)
    return state


def probe(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (an error status is still an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback endpoints from our own state file
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
