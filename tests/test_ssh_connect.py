"""SSH over paramiko against real OpenSSH servers on 127.0.0.1: commands on one and several hosts, host keys
refused when unknown or changed, a bastion hop, ~/.ssh/config honoured, and hosts that hang held to their timeouts;
and, with sessions that hold their command until the test lets it end, how many hosts `exec` runs at once."""

from __future__ import annotations

import dataclasses
import getpass
import socket
import subprocess
import sys
import threading
from _thread import LockType
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import paramiko
import pytest

from provision.errors import ConfigError
from provision.remote.connect import CommandResult, Connector, HostKeyRefused, Session, SshError, SshSettings
from provision.remote.run import run_everywhere
from provision.remote.targets import Target
from tests.sshkit import Sshd, SshLab, hosts3, silent_port, ssh_home, ssh_lab, trust, write_key

__all__ = ["hosts3", "silent_port", "ssh_home", "ssh_lab"]  # fixtures

ADDRESS = "127.0.0.1"


def connector(lab: SshLab, home: Path, server: Sshd | None = None, **changes: object) -> Connector:
    """A connector whose ~/.ssh/config sends ADDRESS to ``server``'s port, as a user's config would."""
    if server is not None:
        (home / ".ssh" / "config").write_text(f"Host {ADDRESS}\n  Port {server.port}\n")
    return Connector(lab.settings(home, **changes))


def test_a_command_runs_and_its_output_and_status_come_back(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server = hosts3[0]
    trust(ssh_home, server)
    with connector(ssh_lab, ssh_home, server) as ssh, ssh.session(ADDRESS) as session:
        ok = session.run("echo hello; echo oops >&2", timeout=10)
        failed = session.run("exit 3", timeout=10)
    assert ok.status == 0 and ok.text.split() == ["hello", "oops"]
    assert failed.status == 3


def test_an_unknown_host_key_is_refused_and_accepted_only_when_asked(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server = hosts3[1]
    known_hosts = ssh_home / ".ssh" / "known_hosts"

    with connector(ssh_lab, ssh_home, server) as ssh, pytest.raises(HostKeyRefused) as refused:
        ssh.open(ADDRESS, label="i-0abc")
    message = str(refused.value)
    assert message.startswith(f"i-0abc: unknown host key for [127.0.0.1]:{server.port} (ssh-ed25519 SHA256:")
    assert "--accept-new-host-key" in message
    assert server.host_key.get_base64() not in message, "a fingerprint, never the key itself"
    assert not known_hosts.exists(), "nothing recorded without the flag"

    with connector(ssh_lab, ssh_home, server, accept_new_host_key=True) as ssh, ssh.session(ADDRESS) as session:
        assert session.run("true", timeout=10).status == 0
    assert known_hosts.read_text() == server.known_hosts_line(), "the new key is recorded"

    with connector(ssh_lab, ssh_home, server) as ssh, ssh.session(ADDRESS) as session:
        assert session.run("true", timeout=10).status == 0, "and trusted from then on without the flag"


def test_known_hosts_lines_paramiko_cannot_read_are_skipped_as_openssh_skips_them(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server = hosts3[0]
    (ssh_home / ".ssh").mkdir(exist_ok=True)
    (ssh_home / ".ssh" / "known_hosts").write_text(
        "# a comment\n"
        "\n"
        "broken.example.com ssh-ed25519 not*base64\n"  # paramiko's own HostKeys.load raised InvalidHostKey here
        "odd.example.com ssh-unknown-type AAAA\n"
        "too-few-fields\n" + server.known_hosts_line()
    )
    with connector(ssh_lab, ssh_home, server) as ssh, ssh.session(ADDRESS) as session:
        assert session.run("true", timeout=10).status == 0


def test_a_key_accepted_once_is_known_to_the_next_login_of_the_same_run(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server = hosts3[2]
    with connector(ssh_lab, ssh_home, server, accept_new_host_key=True) as ssh:
        for _ in range(2):
            with ssh.session(ADDRESS) as session:
                assert session.run("true", timeout=10).status == 0
    assert (ssh_home / ".ssh" / "known_hosts").read_text() == server.known_hosts_line(), "recorded once"


def test_a_changed_host_key_is_refused_even_with_accept_new(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server, other = hosts3[0], hosts3[2]
    # known_hosts holds another host's key for this address: what a man in the middle, or a rebuilt host, looks like
    impostor = dataclasses.replace(other, port=server.port)
    trust(ssh_home, impostor)

    with (
        connector(ssh_lab, ssh_home, server, accept_new_host_key=True) as ssh,
        pytest.raises(HostKeyRefused) as refused,
    ):
        ssh.open(ADDRESS, label="i-0abc")

    message = str(refused.value)
    assert f"HOST KEY CHANGED for [127.0.0.1]:{server.port}" in message
    assert other.host_key.fingerprint in message and server.host_key.fingerprint in message
    assert f"ssh-keygen -R '[127.0.0.1]:{server.port}'" in message
    assert (ssh_home / ".ssh" / "known_hosts").read_text() == impostor.known_hosts_line(), "known_hosts untouched"


def key_line(names: str, key: paramiko.PKey, marker: str = "") -> str:
    return f"{marker + ' ' if marker else ''}{names} {key.get_name()} {key.get_base64()}\n"


def test_a_revoked_host_key_is_refused_by_name_even_where_a_plain_line_lists_it(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server = hosts3[0]
    known_hosts = ssh_home / ".ssh" / "known_hosts"
    trust(ssh_home, server)
    with known_hosts.open("a") as known:
        known.write(key_line("*", server.host_key, "@revoked"))
    before = known_hosts.read_text()

    for accept_new in (False, True):
        with (
            connector(ssh_lab, ssh_home, server, accept_new_host_key=accept_new) as ssh,
            pytest.raises(HostKeyRefused) as refused,
        ):
            ssh.open(ADDRESS, label="i-0abc")
        assert str(refused.value) == (
            f"i-0abc: the host key of [127.0.0.1]:{server.port} (ssh-ed25519 {server.host_key.fingerprint}) is REVOKED "
            f"in {known_hosts} (line 2); refusing to connect: the host must get a new key"
        )
    assert known_hosts.read_text() == before, "nothing recorded, even with --accept-new-host-key"


def test_a_key_revoked_for_other_hosts_only_does_not_stop_this_one(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server = hosts3[1]
    trust(ssh_home, server)
    with (ssh_home / ".ssh" / "known_hosts").open("a") as known:
        known.write(key_line("10.0.0.*,!10.0.0.9", server.host_key, "@revoked"))
    with connector(ssh_lab, ssh_home, server) as ssh, ssh.session(ADDRESS) as session:
        assert session.run("true", timeout=10).status == 0


def test_hashed_names_wildcards_and_unreadable_lines_are_read_as_openssh_reads_them(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    server, other = hosts3[1], hosts3[2]
    name = f"[127.0.0.1]:{server.port}"
    (ssh_home / ".ssh" / "known_hosts").write_text(
        "# a comment, a marker OpenSSH does not know, and lines that cannot be read: all skipped\n"
        + key_line("*", other.host_key, "@unknown-marker")
        + "broken ssh-ed25519 AAAA$$$$\n"
        + "short ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB\n"
        + f"{name} ssh-ed25519\n"
        + key_line(f"!{name},[127.0.0.*]:*", other.host_key)  # another key, for every port but this one's
        + key_line(paramiko.HostKeys.hash_host(name), server.host_key)  # as `ssh-keygen -H` leaves it
    )
    with connector(ssh_lab, ssh_home, server) as ssh, ssh.session(ADDRESS) as session:
        assert session.run("true", timeout=10).status == 0

    (ssh_home / ".ssh" / "known_hosts").write_text(key_line("[127.0.0.*]:*", other.host_key))
    with connector(ssh_lab, ssh_home, server) as ssh, pytest.raises(HostKeyRefused) as refused:
        ssh.open(ADDRESS, label="i-0abc")
    assert f"HOST KEY CHANGED for {name}" in str(refused.value), "a wildcard line counts as the host's"


def test_a_revoked_line_that_cannot_be_read_is_refused_with_the_file_and_line(ssh_lab: SshLab, ssh_home: Path) -> None:
    known_hosts = ssh_home / ".ssh" / "known_hosts"
    known_hosts.write_text("# ours\n@revoked * ssh-ed25519 AAAA$$$$\n")

    with pytest.raises(ConfigError) as refused:
        Connector(ssh_lab.settings(ssh_home))

    assert str(refused.value) == (
        f"{known_hosts}: line 2: a @revoked line that cannot be read: its ssh-ed25519 key cannot be read "
        "(Only base64 data is allowed); fix or remove it"
    )
    assert refused.value.exit_code == 2


def test_a_host_trusted_only_through_a_certificate_authority_is_refused_by_name(
    ssh_lab: SshLab, ssh_home: Path, tmp_path: Path
) -> None:
    authority_file = tmp_path / "host_ca"
    authority = write_key(authority_file)
    server = ssh_lab.start(certificate_authority=authority_file)
    known_hosts = ssh_home / ".ssh" / "known_hosts"
    known_hosts.write_text(key_line("[127.0.0.1]:*", authority, "@cert-authority"))

    with connector(ssh_lab, ssh_home, server) as ssh, pytest.raises(HostKeyRefused) as refused:
        ssh.open(ADDRESS, label="i-0abc")

    assert str(refused.value) == (
        f"i-0abc: [127.0.0.1]:{server.port} is trusted through @cert-authority in {known_hosts} (line 1), but host "
        "certificates cannot be checked here (paramiko neither asks for nor verifies them), and its own key "
        f"(ssh-ed25519 {server.host_key.fingerprint}) is not listed; check that fingerprint and add the key to "
        f"{known_hosts}, or rerun with --accept-new-host-key to record it"
    )
    assert known_hosts.read_text() == key_line("[127.0.0.1]:*", authority, "@cert-authority"), "nothing recorded"

    trust(ssh_home, server)  # its own key beside the CA: trusted as any listed key
    with connector(ssh_lab, ssh_home, server) as ssh, ssh.session(ADDRESS) as session:
        assert session.run("true", timeout=10).status == 0


def test_an_identity_file_paramiko_cannot_decode_is_one_line_naming_the_host(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path, tmp_path: Path
) -> None:
    server = hosts3[0]
    trust(ssh_home, server)
    garbage = tmp_path / "id_garbage"
    garbage.write_bytes(bytes(range(256)) * 4)  # paramiko's key loaders raise UnicodeDecodeError on it

    with connector(ssh_lab, ssh_home, server, identity_file=garbage) as ssh, pytest.raises(SshError) as failed:
        ssh.open(ADDRESS, label="i-0abc")

    assert str(failed.value).startswith(f"i-0abc: [127.0.0.1]:{server.port}: SSH failed: UnicodeDecodeError: ")
    assert "\n" not in str(failed.value)


def test_a_bastion_carries_the_connection_to_the_host(ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path) -> None:
    bastion = ssh_lab.start()
    server = hosts3[2]
    trust(ssh_home, bastion, server)
    settings = {"bastion": f"{getpass.getuser()}@{ADDRESS}:{bastion.port}"}
    with connector(ssh_lab, ssh_home, server, **settings) as ssh:
        for _ in range(2):  # the second session reuses the bastion's login
            with ssh.session(ADDRESS) as session:
                assert session.run("echo through", timeout=10).text == "through\n"
    log = bastion.log.read_text()
    assert f"to 127.0.0.1 port {server.port}" in log, "the bastion opened the forwarding"
    assert log.count("Accepted publickey") == 1, "one login to the bastion for both sessions"


def test_a_chain_of_jump_hosts_in_ssh_config_is_followed_hop_by_hop(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    outer, inner = ssh_lab.start(), ssh_lab.start()
    server = hosts3[1]
    trust(ssh_home, outer, inner, server)
    (ssh_home / ".ssh" / "config").write_text(
        f"Host outer\n  HostName {ADDRESS}\n  Port {outer.port}\n\n"
        f"Host inner\n  HostName {ADDRESS}\n  Port {inner.port}\n\n"
        f"Host {ADDRESS}\n  Port {server.port}\n  ProxyJump outer,inner\n"
    )
    with Connector(ssh_lab.settings(ssh_home)) as ssh, ssh.session(ADDRESS) as session:
        assert session.run("echo two hops", timeout=10).text == "two hops\n"
    assert f"to 127.0.0.1 port {inner.port}" in outer.log.read_text(), "the outer hop carried the inner one"
    assert f"to 127.0.0.1 port {server.port}" in inner.log.read_text(), "the inner hop carried the host"


def test_proxyjump_in_ssh_config_wins_and_a_bastion_without_forwarding_says_so(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path
) -> None:
    closed = ssh_lab.start(forwarding=False)
    server = hosts3[0]
    trust(ssh_home, closed, server)
    (ssh_home / ".ssh" / "config").write_text(
        f"Host jump\n  HostName {ADDRESS}\n  Port {closed.port}\n\nHost {ADDRESS}\n  Port {server.port}\n"
        "  ProxyJump jump\n"
    )
    with Connector(ssh_lab.settings(ssh_home)) as ssh, pytest.raises(SshError) as error:
        ssh.open(ADDRESS, label="i-0abc")
    assert str(error.value).startswith(f"i-0abc: the jump host jump cannot reach 127.0.0.1:{server.port}")


def test_a_host_that_never_answers_is_given_up_after_the_connect_timeout(
    ssh_lab: SshLab, ssh_home: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ssh_home / ".ssh" / "config").write_text(f"Host {ADDRESS}\n  Port {silent_port}\n")
    waits: list[dict[str, object]] = []
    connect = paramiko.SSHClient.connect

    def spy(client: paramiko.SSHClient, *args: Any, **kwargs: Any) -> None:
        waits.append({name: kwargs.get(name) for name in ("timeout", "banner_timeout", "auth_timeout")})
        connect(client, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, "connect", spy)

    with Connector(ssh_lab.settings(ssh_home, connect_timeout=0.5)) as ssh, pytest.raises(SshError) as error:
        ssh.open(ADDRESS, label="i-0hung")

    assert str(error.value) == f"i-0hung: [127.0.0.1]:{silent_port}: the SSH handshake did not finish within 0.5s"
    # The TCP connect succeeds here; the banner and login waits are what a hung host runs into (paramiko's own
    # defaults would be 15 s and 30 s).
    assert waits == [{"timeout": 0.5, "banner_timeout": 0.5, "auth_timeout": 0.5}]


def test_a_command_that_hangs_is_cut_at_its_timeout(ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path) -> None:
    server = hosts3[1]
    trust(ssh_home, server)
    with connector(ssh_lab, ssh_home, server) as ssh, ssh.session(ADDRESS) as session:
        # The bound covers starting the shell too: 2 s leaves room for a loaded machine (0.5 s did not, now and then).
        result = session.run("echo started; sleep 30", timeout=2)
    assert result.status is None and result.text == "started\n"


def test_several_hosts_at_once_one_outcome_each(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path, silent_port: int
) -> None:
    trust(ssh_home, *hosts3)
    lines = [f"Host 10.0.0.{index}\n  HostName {ADDRESS}\n  Port {s.port}\n" for index, s in enumerate(hosts3)]
    lines.append(f"Host 10.0.0.9\n  HostName {ADDRESS}\n  Port {silent_port}\n")
    (ssh_home / ".ssh" / "config").write_text("\n".join(lines))
    targets = [Target(f"i-{index}", f"10.0.0.{index}", "") for index in (0, 1, 2, 9)]
    ssh = Connector(ssh_lab.settings(ssh_home, connect_timeout=0.5))

    outcomes = run_everywhere(
        targets, 'echo "port $(echo $SSH_CONNECTION | cut -d" " -f4)"', ssh, parallel=2, timeout=10
    )

    assert [o.target.instance_id for o in outcomes] == ["i-0", "i-1", "i-2", "i-9"]
    assert [o.output for o in outcomes[:3]] == [f"port {s.port}\n" for s in hosts3]
    assert [o.state for o in outcomes] == ["exit 0", "exit 0", "exit 0", "unreachable"]
    assert "the SSH handshake did not finish" in outcomes[3].error


def test_a_key_in_the_agent_logs_in_without_any_identity_file(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = hosts3[0]
    trust(ssh_home, server)
    with running_agent(ssh_home / "agent.sock") as socket_path:
        subprocess.run(["ssh-add", "-q", str(ssh_lab.user_key_file)], env={"SSH_AUTH_SOCK": socket_path}, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", socket_path)
        with (
            connector(ssh_lab, ssh_home, server, identity_file=None) as ssh,
            ssh.session(ADDRESS) as session,
        ):
            assert session.run("echo agent", timeout=10).text == "agent\n"
    with connector(ssh_lab, ssh_home, server, identity_file=None) as ssh, pytest.raises(SshError) as refused:
        ssh.open(ADDRESS, label="i-0abc")  # the agent is gone, and ~/.ssh has no key
    assert str(refused.value).startswith(f"i-0abc: [127.0.0.1]:{server.port}: no key to log in as {ssh_lab.user} with")


@contextmanager
def running_agent(socket_path: Path) -> Iterator[str]:
    """OpenSSH's agent in the foreground on ``socket_path``, until the block ends."""
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        with socket.socket(socket.AF_UNIX) as probe:  # ready once it accepts, within a deadline
            for _ in range(100):
                try:
                    probe.connect(str(socket_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    try:
                        agent.wait(timeout=0.05)
                    except subprocess.TimeoutExpired:
                        continue
                    raise RuntimeError(f"ssh-agent exited with {agent.returncode}") from None
        yield str(socket_path)
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_a_key_the_host_does_not_know_is_named_in_the_refusal(
    ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path, tmp_path: Path
) -> None:
    server = hosts3[1]
    trust(ssh_home, server)
    stranger = tmp_path / "stranger"
    write_key(stranger)
    with connector(ssh_lab, ssh_home, server, identity_file=stranger) as ssh, pytest.raises(SshError) as refused:
        ssh.open(ADDRESS, label="i-0abc")
    assert str(refused.value).startswith(
        f"i-0abc: {ssh_lab.user}@[127.0.0.1]:{server.port} refused every key (tried the agent, {stranger} and"
    )


# --- how many hosts at once: sessions that hold their command until the test lets one end ---------------------------

SAFETY = 10.0  # seconds: only a broken run_everywhere ever waits this long


class Gate(Connector):
    """A connector to nowhere whose sessions' commands each wait, counted, until the test lets one end."""

    def __init__(self) -> None:
        super().__init__(SshSettings(config_file=None))
        self.changed = threading.Condition()
        self.started: list[str] = []
        self.running = 0
        self.peak = 0
        self.allowed = 0  # how many commands may have ended so far
        self.ended = 0
        self.timeouts: list[float] = []
        self.threads: set[threading.Thread] = set()  # those that ran the commands

    @contextmanager
    def session(self, address: str, *, label: str = "") -> Iterator[Session]:
        yield Held(self, address)

    def hold(self, address: str, timeout: float) -> CommandResult:
        with self.changed:
            self.started.append(address)
            self.timeouts.append(timeout)
            self.threads.add(threading.current_thread())
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.changed.notify_all()
            if not self.changed.wait_for(lambda: self.ended < self.allowed, timeout=SAFETY):
                raise AssertionError(f"{address} was never let go: the test is stuck")
            self.ended += 1
            self.running -= 1
            self.changed.notify_all()
        return CommandResult(0, address.encode())

    def wait_until(self, *, running: int, ended: int) -> None:
        with self.changed:
            reached = self.changed.wait_for(lambda: (self.running, self.ended) == (running, ended), timeout=SAFETY)
            assert reached, f"wanted {running} running, {ended} ended; {self.running}, {self.ended} of {self.started}"

    def let_go(self, count: int = 1) -> None:
        with self.changed:
            self.allowed += count
            self.changed.notify_all()


class Held(Session):
    """A session without a connection: its command is the gate's to hold."""

    def __init__(self, gate: Gate, address: str) -> None:  # no client, so no Session.__init__
        self.gate = gate
        self.address = address

    def run(self, command: str, *, timeout: float) -> CommandResult:
        return self.gate.hold(self.address, timeout)

    def close(self) -> None:
        pass


def test_exec_runs_parallel_hosts_at_once_and_never_more() -> None:
    gate = Gate()
    targets = [Target(f"i-{index}", f"10.0.0.{index}", "") for index in range(5)]

    with ThreadPoolExecutor(1) as caller:
        done = caller.submit(run_everywhere, targets, "uptime", gate, parallel=2, timeout=7)
        for ended in range(len(targets)):
            # Two at a time while two are left: one more starts only when one ends, and none waits on a free slot.
            gate.wait_until(running=min(2, len(targets) - ended), ended=ended)
            gate.let_go()
        outcomes = done.result(timeout=SAFETY)

    assert gate.peak == 2
    assert [o.output for o in outcomes] == [t.address for t in targets], "each host's outcome, in the order given"
    assert gate.timeouts == [7] * 5, "every command held to --timeout"


def test_ctrl_c_starts_no_further_host_and_lets_those_in_flight_end() -> None:
    gate = Gate()
    targets = [Target(f"i-{index}", f"10.0.0.{index}", "") for index in range(5)]

    def ctrl_c(frame: FrameType, event: str, arg: object) -> None:
        """Ctrl-C as Python delivers it: KeyboardInterrupt out of the main thread's wait for the first outcome, once
        two hosts are in flight. (A real SIGINT sent from another thread can land just before that wait blocks, and
        is then acted on only when the wait ends: this makes the moment certain.)"""
        waiter = getattr(arg, "__self__", None)
        in_result = event == "c_call" and frame.f_back is not None and frame.f_back.f_code is Future.result.__code__
        if in_result and isinstance(waiter, LockType) and waiter.locked():  # the acquire that blocks
            gate.wait_until(running=2, ended=0)
            raise KeyboardInterrupt

    sys.setprofile(ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_everywhere(targets, "uptime", gate, parallel=2, timeout=7)
    finally:
        sys.setprofile(None)
    gate.let_go(len(targets))
    for thread in gate.threads:  # once they are done, nothing more can start
        thread.join(SAFETY)

    assert gate.started == ["10.0.0.0", "10.0.0.1"], "the hosts not started yet were not started"
    assert gate.ended == 2, "the two in flight ran to their end"
