"""`cluster exec` and `cluster ssh` as a user runs them: hosts of a cluster deployed on moto (in-process), reached
over real sshd instances through the user's ~/.ssh/config, which maps each host's private IP to one of them."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import pty
import select
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision.aws.cloud import Cloud
from provision.deploy.up import Up
from provision.fleet.observe import Fleet
from tests.conftest import EXAMPLE, Outcome
from tests.deploykit import TOKEN, config, recording_ui
from tests.sshkit import Sshd, SshLab, hosts3, silent_port, ssh_home, ssh_lab, trust, write_key

__all__ = ["hosts3", "silent_port", "ssh_home", "ssh_lab"]  # fixtures

Run = Callable[..., Outcome]


def deployed(cloud: Cloud) -> list[tuple[str, str]]:
    """The example cluster on moto: (instance id, private IP) of its three hosts."""
    cfg = config()
    Up(cfg, cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)
    return [(host.instance_id, host.names[1]) for host in Fleet.of_stack(cloud, cfg.stack_name).snapshot().hosts]


# Room for a real sshd's handshake on a loaded machine (four test workers on two cores; 1 s failed now and then).
CONNECT_TIMEOUT = 5


def map_hosts(
    home: Path, lab: SshLab, ips: list[str], ports: list[int], *, connect_timeout: int = CONNECT_TIMEOUT
) -> None:
    """~/.ssh/config as a user would write it for a lab: each private IP to a local port, user and key given."""
    entries = [
        f"Host {ip}\n  HostName 127.0.0.1\n  Port {port}\n  User {lab.user}\n  IdentityFile {lab.user_key_file}\n"
        f"  ConnectTimeout {connect_timeout}\n"
        for ip, port in zip(ips, ports, strict=True)
    ]
    (home / ".ssh" / "config").write_text("\n".join(entries))


@pytest.fixture
def cluster(cloud: Cloud, ssh_lab: SshLab, hosts3: list[Sshd], ssh_home: Path) -> list[tuple[str, str]]:
    hosts = deployed(cloud)
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in hosts], [server.port for server in hosts3])
    trust(ssh_home, *hosts3)
    return hosts


def test_exec_all_prints_a_row_per_host(run_main: Run, cluster: list[tuple[str, str]]) -> None:
    outcome = run_main("exec", "-c", str(EXAMPLE), "--all", "--", "echo", "up", "since", "boot")

    assert outcome.code == 0, outcome.err
    assert "echo up since boot  (3 host(s), 0 failed)" in outcome.out
    rows = [line.split() for line in outcome.out.splitlines()]
    for instance_id, ip in cluster:
        # The row's output column starts with the host's first line: root's login shell on this machine may print
        # pyenv's complaint first when three sessions start at once (the lab's hosts are this machine's sshd).
        assert [row[:5] for row in rows if row[:1] == [instance_id]] == [[instance_id, "-", ip, "exit", "0"]]
    assert outcome.out.count("up since boot") == 4  # the title and once per host


def test_exec_shows_what_hosts_print_without_their_escape_sequences(
    run_main: Run, cluster: list[tuple[str, str]]
) -> None:
    # A window title, a screen clear and colour, as a compromised host's command could print them.
    outcome = run_main("exec", "-c", str(EXAMPLE), "--all", "--", r"printf '\033]0;owned\007\033[2J\033[31mclean\n'")

    assert outcome.code == 0, outcome.err
    assert "\x1b" not in outcome.out and "\x07" not in outcome.out
    assert sum(line.split()[-1:] == ["clean"] for line in outcome.out.splitlines()) == 3, "each host's output shown"
    json_outcome = run_main("exec", "-c", str(EXAMPLE), "--all", "--output", "json", "--", r"printf '\033[31mx'")
    assert {host["output"] for host in json.loads(json_outcome.out)["hosts"]} == {"\x1b[31mx"}, "json keeps it all"


def test_exec_on_named_hosts_that_fail_exits_1_and_says_which(run_main: Run, cluster: list[tuple[str, str]]) -> None:
    (first, first_ip), (second, _), _ = cluster

    outcome = run_main("exec", "-c", str(EXAMPLE), first_ip, second, "--output", "json", "--", "echo no; exit 4")

    assert outcome.code == 1
    report = json.loads(outcome.out)
    assert [(row["instance_id"], row["status"], row["output"]) for row in report["hosts"]] == [
        (first, 4, "no\n"),
        (second, 4, "no\n"),
    ]
    assert outcome.err == f"error: 2 of 2 host(s) failed: {first} (exit 4), {second} (exit 4)\n"


def test_a_host_that_hangs_or_cannot_be_reached_is_a_row_too(
    run_main: Run, cluster: list[tuple[str, str]], ssh_home: Path, ssh_lab: SshLab, hosts3: list[Sshd], silent_port: int
) -> None:
    map_hosts(ssh_home, ssh_lab, [ip for _, ip in cluster], [hosts3[0].port, hosts3[1].port, silent_port])

    outcome = run_main(
        "exec", "-c", str(EXAMPLE), "--all", "--timeout", "3", "--output", "json", "--", "echo hi; sleep 60"
    )

    assert outcome.code == 1
    rows = json.loads(outcome.out)["hosts"]
    assert [row["state"] for row in rows] == ["timed out", "timed out", "unreachable"]
    # The bound covers starting the shell too: 3 s leaves room for a loaded machine (0.5 s did not, now and then).
    assert rows[0]["output"] == "hi\n" and rows[0]["error"] == "timed out after 3s"
    assert rows[2]["error"] == f"[127.0.0.1]:{silent_port}: the SSH handshake did not finish within {CONNECT_TIMEOUT}s"


def secrets_of(key_file: Path) -> list[str]:
    """Every form in which a private key could leak: the file, each base64 line of its body and the whole body,
    and the raw private key in base64 and hex."""
    text = key_file.read_text()
    body = [line for line in text.splitlines() if line and not line.startswith("-----")]
    private = serialization.load_ssh_private_key(text.encode(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return [text, *body, "".join(body), base64.b64encode(raw).decode(), raw.hex()]


def test_debug_output_and_paramikos_debug_log_never_show_a_private_key(
    run_main: Run,
    cluster: list[tuple[str, str]],
    ssh_lab: SshLab,
    ssh_home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="paramiko")  # an earlier run without --debug may have quietened it
    ok = run_main("--debug", "exec", "-c", str(EXAMPLE), "--all", "--", "true")
    # Then the first host is offered a key it does not know: the failure, its traceback and paramiko's retries.
    stranger = tmp_path / "stranger"
    write_key(stranger)
    config = ssh_home / ".ssh" / "config"
    config.write_text(
        config.read_text().replace(f"IdentityFile {ssh_lab.user_key_file}", f"IdentityFile {stranger}", 1)
    )
    refused = run_main("--debug", "exec", "-c", str(EXAMPLE), "--all", "--", "true")

    assert ok.code == 0, ok.err
    assert refused.code == 1 and "refused every key" in refused.out
    assert "Traceback" in refused.err, "--debug showed the traceback"
    logged = caplog.text
    assert "Authentication (publickey) successful!" in logged, "paramiko's debug log was on and captured"
    assert "Authentication (publickey) failed." in logged
    shown = {"stdout": ok.out + refused.out, "stderr": ok.err + refused.err, "the log": logged}
    for secret in secrets_of(ssh_lab.user_key_file) + secrets_of(stranger):
        for where, text in shown.items():
            assert secret not in text, f"key material in {where}"


def test_an_unknown_host_key_is_refused_per_host_and_accepted_with_the_flag(
    run_main: Run, cluster: list[tuple[str, str]], ssh_home: Path
) -> None:
    (ssh_home / ".ssh" / "known_hosts").unlink()

    refused = run_main("exec", "-c", str(EXAMPLE), "--all", "--", "true")
    accepted = run_main("exec", "-c", str(EXAMPLE), "--all", "--accept-new-host-key", "--", "true")
    again = run_main("exec", "-c", str(EXAMPLE), "--all", "--", "true")

    assert refused.code == 1 and refused.out.count("unknown host key for [127.0.0.1]:") == 3
    assert accepted.code == 0, accepted.err
    assert again.code == 0, again.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all"], "error: give the command after --, e.g. cluster exec --all -- uptime\n"),
        (["--", "uptime"], "error: name the hosts, or give --all (not both)\n"),
    ],
)
def test_exec_without_a_command_or_hosts_is_refused(run_main: Run, args: list[str], message: str) -> None:
    outcome = run_main("exec", "-c", str(EXAMPLE), *args)
    assert (outcome.code, outcome.err) == (2, message)


def test_an_unknown_host_name_is_refused(run_main: Run, cluster: list[tuple[str, str]]) -> None:
    outcome = run_main("exec", "-c", str(EXAMPLE), "i-nothere", "--", "true")
    assert outcome.code == 2
    assert outcome.err.startswith("error: no host 'i-nothere' in ")


def test_ssh_without_a_terminal_runs_stdin_and_exits_with_the_remote_status(
    run_main: Run, cluster: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (instance_id, _), _, _ = cluster
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"echo from stdin\necho to stderr >&2\nexit 7\n")))

    outcome = run_main("ssh", "-c", str(EXAMPLE), instance_id)

    assert (outcome.code, outcome.out, outcome.err) == (7, "from stdin\n", "to stderr\n")


def test_ssh_with_a_command_passes_stdin_to_it(
    run_main: Run, cluster: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, (_, second_ip), _ = cluster
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n")))

    outcome = run_main("ssh", "-c", str(EXAMPLE), second_ip, "--", "wc", "-l")

    assert (outcome.code, outcome.out.strip()) == (0, "2")


def test_ssh_on_a_terminal_opens_a_shell_in_raw_mode_and_restores_the_terminal(
    run_main: Run, cluster: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (instance_id, _), _, _ = cluster
    controller, terminal = pty.openpty()
    before = termios.tcgetattr(terminal)
    # What the user types, waiting in the terminal before the shell starts.
    os.write(controller, b"echo typed-$((6 * 7)); exit 5\n")
    with open(terminal, "r+b", buffering=0, closefd=False) as raw:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw))
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw))

        outcome = run_main("ssh", "-c", str(EXAMPLE), instance_id)

    seen = b""
    while select.select([controller], [], [], 0)[0]:
        seen += os.read(controller, 65536)
    assert outcome.code == 5
    assert b"typed-42" in seen, "the shell ran what was typed and its output reached the terminal"
    assert termios.tcgetattr(terminal) == before, "the terminal is back in the mode it was in"
    os.close(controller)
    os.close(terminal)
