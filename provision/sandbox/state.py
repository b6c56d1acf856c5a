"""The sandbox's state file, `.cluster/sandbox.json` in the working folder: what `start` started and where."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR = Path(".cluster")
STATE_FILE = "sandbox.json"
DAEMON_MODULE = "provision.sandbox.daemon"


@dataclass(frozen=True)
class SandboxState:
    pid: int
    aws_endpoint: str
    kube_url: str
    kubeconfig: str
    log: str

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".sandbox.")
        with os.fdopen(handle, "w") as stream:
            json.dump(asdict(self), stream, indent=2)
        os.replace(temporary, folder / STATE_FILE)

    @classmethod
    def load(cls, folder: Path) -> SandboxState | None:
        try:
            return cls(**json.loads((folder / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def is_ours(pid: int) -> bool:
    """Whether ``pid`` is a live sandbox daemon (not a zombie, not a recycled pid of something else)."""
    proc = Path(f"/proc/{pid}")
    try:
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        status = (proc / "status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return DAEMON_MODULE in command and state not in {"Z", "X"}
