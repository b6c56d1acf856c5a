"""A sick host's evidence, saved before it is replaced: its kubelet and container runtime journals, the boot logs,
the health agent's verdict, the kernel's last words, disk and memory use (over SSH), its node's Kubernetes events
and its records in SSM (over the APIs). When SSH fails, EC2's console output stands in for the host's own logs.

Each command has its own time limit and the whole collection a short one, so a hung host cannot hold up its
replacement: what was collected by then is kept, and the rest is named as missing.

Host logs can hold secrets (a command line, a token a service printed): every folder made here is 0700 and every file
0600, whatever the umask.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provision.remote.connect import Connector, Session, SshError
from provision.remote.targets import Target

# journalctl and dmesg need root on most hosts: use sudo when it works without a password, else try as the user.
_SUDO = 'S="$(sudo -n true 2>/dev/null && echo sudo -n)"; '
# file -> command, in the order they are collected (the most telling first, in case time runs out)
COMMANDS: tuple[tuple[str, str], ...] = (
    ("kubelet.log", "$S journalctl -u kubelet --no-pager -n 2000"),
    ("containerd.log", "$S journalctl -u containerd --no-pager -n 1000"),
    ("cluster-bootstrap.log", "$S tail -n 2000 /var/log/cluster-bootstrap.log"),
    ("cloud-init-output.log", "$S tail -n 2000 /var/log/cloud-init-output.log"),
    ("health-agent.txt", "$S cat /var/lib/cluster-health/last"),
    ("dmesg.txt", "$S dmesg | tail -n 300"),
    ("disk.txt", "df -h"),
    ("memory.txt", "free -m"),
)
SUMMARY = "summary.txt"
PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


@dataclass(frozen=True)
class Limits:
    command_seconds: float = 15.0  # each command on the host
    total_seconds: float = 45.0  # SSH, all commands and the console output fallback together


@dataclass
class Evidence:
    """What was collected, for the summary file and the one line the verb prints."""

    folder: Path
    lines: list[str] = field(default_factory=list)  # one per item: what, and how it went
    ssh_error: str = ""
    console: bool = False

    def note(self, line: str) -> None:
        self.lines.append(line)


@dataclass(frozen=True)
class Sources:
    """Where the evidence comes from besides the host itself; each may raise, which is recorded, not fatal."""

    console_output: Callable[[str], str]  # instance id -> EC2 console output as the API returns it
    node_events: Callable[[str], list[str]] | None = None  # node name -> one line per event
    host_records: Callable[[str], dict[str, str]] | None = None  # instance id -> its boot record, health verdict tag


def collect(target: Target, folder: Path, connector: Connector, sources: Sources, limits: Limits) -> Evidence:
    private_folder(folder)
    evidence = Evidence(folder)
    evidence.note(f"host {target.label}, address {target.address or '(none)'}")
    _from_apis(target, folder, sources, evidence)

    stop = threading.Event()
    worker = threading.Thread(
        target=_from_host, args=(target, folder, connector, limits, evidence, stop), name="diagnose", daemon=True
    )
    worker.start()
    # The whole collection over SSH is bounded here, whatever paramiko does with its own timeouts.
    worker.join(limits.total_seconds)
    if worker.is_alive():
        stop.set()
        evidence.ssh_error = evidence.ssh_error or f"the host did not finish within {limits.total_seconds:g}s"
        evidence.note(f"stopped after {limits.total_seconds:g}s: the rest was not collected")
    if evidence.ssh_error:
        _console_output(target, folder, sources, evidence)
    write_private(folder / SUMMARY, "\n".join(evidence.lines) + "\n")
    return evidence


def private_folder(folder: Path) -> None:
    """Make ``folder`` and each of its missing parents, mode 0700 whatever the umask. Parents that exist already are
    left as they are (``--output`` may name a shared folder); ``folder`` itself, the host's own, is always 0700."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:  # made meanwhile by a run beside this one
            continue
        path.chmod(PRIVATE_FOLDER)  # mkdir's mode goes through the umask
    folder.chmod(PRIVATE_FOLDER)


def write_private(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path``, mode 0600 whatever the umask; a symbolic link there is refused, not followed."""
    data = content.encode() if isinstance(content, str) else content
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    with os.fdopen(handle, "wb") as stream:
        os.fchmod(stream.fileno(), PRIVATE_FILE)  # the mode above went through the umask, and an old file kept its own
        stream.write(data)


def _from_apis(target: Target, folder: Path, sources: Sources, evidence: Evidence) -> None:
    if sources.host_records is not None:
        try:
            records = sources.host_records(target.instance_id)
        except Exception as error:  # evidence is best effort; the replacement must not wait on it
            evidence.note(f"host-records.txt: not collected ({type(error).__name__}: {error})")
        else:
            text = "".join(f"== {name}\n{value}\n" for name, value in sorted(records.items()))
            write_private(folder / "host-records.txt", text or "(no records in SSM)\n")
            evidence.note(f"host-records.txt: {len(records)} record(s) from SSM")
    if sources.node_events is None or not target.node:
        evidence.note("node-events.txt: not collected (no node, or the Kubernetes API is not reachable)")
        return
    try:
        events = sources.node_events(target.node)
    except Exception as error:
        evidence.note(f"node-events.txt: not collected ({type(error).__name__}: {error})")
        return
    write_private(folder / "node-events.txt", "".join(f"{line}\n" for line in events) or "(no events)\n")
    evidence.note(f"node-events.txt: {len(events)} event(s) of node {target.node}")


def _from_host(
    target: Target, folder: Path, connector: Connector, limits: Limits, evidence: Evidence, stop: threading.Event
) -> None:
    try:
        session = connector.open(target.address, label=target.label)
    except SshError as error:
        evidence.ssh_error = str(error)
        evidence.note(f"ssh: {error}")
        return
    try:
        for name, command in COMMANDS:
            if stop.is_set():
                return
            _one(session, name, command, folder, limits, evidence, stop)
    except SshError as error:
        evidence.ssh_error = str(error)
        evidence.note(f"ssh: {error}")
    finally:
        session.close()


def _one(
    session: Session, name: str, command: str, folder: Path, limits: Limits, evidence: Evidence, stop: threading.Event
) -> None:
    result = session.run(_SUDO + command, timeout=limits.command_seconds)
    if stop.is_set():
        return
    write_private(folder / name, result.output)
    if result.status is None:
        outcome = f"timed out after {limits.command_seconds:g}s (what came before is kept)"
    elif result.status == 127:
        outcome = "not available on the host (exit 127)"
    else:
        outcome = f"exit {result.status}"
    evidence.note(f"{name}: {outcome}: {command.removeprefix('$S ')}")


def _console_output(target: Target, folder: Path, sources: Sources, evidence: Evidence) -> None:
    try:
        text = decode_console_output(sources.console_output(target.instance_id))
    except Exception as error:
        evidence.note(f"console-output.txt: not collected ({type(error).__name__}: {error})")
        return
    write_private(folder / "console-output.txt", text or "(EC2 has no console output for this host yet)\n")
    evidence.console = True
    evidence.note("console-output.txt: EC2 console output, in place of the host's own logs")


def decode_console_output(output: str) -> str:
    """EC2 answers with base64 (boto3 does not decode it); some endpoints answer with the text itself."""
    try:
        return base64.b64decode(output, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return output
