"""Real OpenSSH servers for tests: Debian's sshd started as the current user on 127.0.0.1, each on a free port with a
generated host key, accepting one generated user key. Also a port that accepts connections and never answers, for
hosts that hang. Without /usr/sbin/sshd the tests skip locally; in CI (``CI`` set) they fail instead."""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.hostkeys import HostKeyEntry

from provision.remote.connect import SshSettings

SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT = 10.0


def write_key(path: Path) -> paramiko.Ed25519Key:
    """A new ed25519 key in OpenSSH's format at ``path`` (mode 0600), and ``path``.pub."""
    private = Ed25519PrivateKey.generate()
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    key = paramiko.Ed25519Key.from_private_key_file(str(path))
    path.with_suffix(".pub").write_text(f"{key.get_name()} {key.get_base64()} test\n")
    return key


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the port accepts a connection, or the deadline. No fixed sleep: a refused connection waits on the
    process for a moment instead, which also notices sshd exiting."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            try:
                process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}") from None
    raise RuntimeError(f"sshd did not listen on {port} within {START_TIMEOUT}s: {log.read_text()}")


@dataclass
class Sshd:
    port: int
    host_key: paramiko.Ed25519Key
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def known_hosts_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def known_hosts_line(self) -> str:
        return HostKeyEntry([self.known_hosts_name], self.host_key).to_line() or ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class SshLab:
    """Everything the tests need: sshd instances, the user's key, a HOME with ~/.ssh for the client side."""

    root: Path
    user: str
    user_key_file: Path
    authorized_keys: Path
    servers: list[Sshd] = field(default_factory=list)

    def start(self, *, forwarding: bool = True, certificate_authority: Path | None = None) -> Sshd:
        """A new sshd; with ``certificate_authority`` (a private key file), its host key is certified by that CA
        (ssh-keygen -s) and it offers the certificate, as a fleet with an SSH CA does."""
        index = len(self.servers)
        folder = self.root / f"sshd{index}"
        folder.mkdir()
        host_key_file = folder / "host_ed25519"
        host_key = write_key(host_key_file)
        port = free_port()
        certificate = []
        if certificate_authority is not None:
            subprocess.run(
                ["ssh-keygen", "-q", "-s", str(certificate_authority), "-I", f"sshd{index}", "-h", "-n", "127.0.0.1",
                 str(host_key_file.with_suffix(".pub"))],
                check=True, capture_output=True,
            )  # fmt: skip
            certificate = [f"HostCertificate {folder / 'host_ed25519-cert.pub'}"]
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {port}",
                    f"HostKey {host_key_file}",
                    f"PidFile {folder / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    f"AllowTcpForwarding {'yes' if forwarding else 'no'}",
                    "LogLevel DEBUG1",  # the bastion test reads the forwarding it did
                    *certificate,
                    "",
                ]
            )
        )
        log = folder / "sshd.log"
        # -E: the log goes to a file (with -e, debug lines would reach the sessions' stderr)
        process = subprocess.Popen([str(SSHD), "-D", "-E", str(log), "-f", str(config)], stdin=subprocess.DEVNULL)
        server = Sshd(port, host_key, log, process)
        self.servers.append(server)
        wait_for_port(port, process, log)
        return server

    def settings(self, home: Path, **changes: Any) -> SshSettings:
        """Client settings as a user's ~/.ssh would give them: this lab's key, known_hosts and config in ``home``."""
        usual = SshSettings(
            user=self.user,
            known_hosts=home / ".ssh" / "known_hosts",
            identity_file=self.user_key_file,
            config_file=home / ".ssh" / "config",
            connect_timeout=5.0,
        )
        return dataclasses.replace(usual, **changes)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def sshd_or_skip() -> None:
    if SSHD.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{SSHD} is missing; .ci/run installs openssh-server")
    pytest.skip(f"{SSHD} is not installed (apt-get install openssh-server)")


@pytest.fixture(scope="session")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    sshd_or_skip()
    if os.geteuid() == 0:  # sshd started by root insists on its privilege separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    root = tmp_path_factory.mktemp("ssh-lab")
    user_key_file = root / "id_ed25519"
    user_key = write_key(user_key_file)
    authorized_keys = root / "authorized_keys"
    authorized_keys.write_text(f"{user_key.get_name()} {user_key.get_base64()} test\n")
    lab = SshLab(root, getpass.getuser(), user_key_file, authorized_keys)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def hosts3(ssh_lab: SshLab) -> list[Sshd]:
    """Three ordinary hosts, shared by the tests that only run commands."""
    return [ssh_lab.start() for _ in range(3)]


@pytest.fixture
def ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own with an empty ~/.ssh, and no agent: the developer's keys and config stay out."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def trust(home: Path, *servers: Sshd) -> None:
    with (home / ".ssh" / "known_hosts").open("a") as known:
        for server in servers:
            known.write(server.known_hosts_line())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: a hung host."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
