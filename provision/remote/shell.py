"""A shell or one command on a host, wired to the local terminal (raw mode, window size followed) or, without a
terminal, to the local stdin and stdout as pipes (as ``ssh host < script`` does)."""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from typing import BinaryIO

import paramiko

from provision.remote.connect import Session, SshError, failures_named


def _channel(session: Session) -> paramiko.Channel:
    transport = session.client.get_transport()
    if transport is None or not transport.is_active():
        raise SshError(session.label, "the connection was closed")
    return transport.open_session()


def piped(session: Session, command: str, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO) -> int:
    """Run ``command`` (empty: the login shell, reading its commands from stdin) with stdin fed to it until its end,
    its output copied as it comes. Returns the remote exit status (255 when the host gave none)."""
    with failures_named(session.label, "the SSH session failed"):
        return _piped(session, command, stdin, stdout, stderr)


def _piped(session: Session, command: str, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO) -> int:
    channel = _channel(session)
    if command:
        channel.exec_command(command)
    else:
        channel.invoke_shell()  # no pty was asked for: the shell reads stdin like a script

    def feed() -> None:
        try:
            while chunk := stdin.read(65536):
                channel.sendall(chunk)
        except OSError:
            pass  # the remote side went away; its exit status says what happened
        finally:
            channel.shutdown_write()

    threading.Thread(target=feed, name="ssh-stdin", daemon=True).start()
    _copy_output(channel, stdout, stderr)
    status = channel.recv_exit_status()
    channel.close()
    return status if status >= 0 else 255


def _copy_output(channel: paramiko.Channel, stdout: BinaryIO, stderr: BinaryIO) -> None:
    """Until the host ends its output. A paramiko channel is selectable: ready on data and on its end."""
    while True:
        select.select([channel], [], [])
        if channel.recv_stderr_ready():
            stderr.write(channel.recv_stderr(65536))
            stderr.flush()
        elif channel.recv_ready():
            stdout.write(channel.recv(65536))
            stdout.flush()
        elif channel.eof_received or channel.closed:
            return


def interactive(session: Session, command: str) -> int:
    """A pty on the host sized like this terminal, this terminal in raw mode until the remote side ends."""
    with failures_named(session.label, "the SSH session failed"):
        return _interactive(session, command)


def _interactive(session: Session, command: str) -> int:
    channel = _channel(session)
    size = shutil.get_terminal_size()
    channel.get_pty(term=os.environ.get("TERM", "vt100"), width=size.columns, height=size.lines)
    if command:
        channel.exec_command(command)
    else:
        channel.invoke_shell()

    def resize(_signum: int, _frame: object) -> None:
        now = shutil.get_terminal_size()
        channel.resize_pty(width=now.columns, height=now.lines)

    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin_fd)
    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        tty.setraw(stdin_fd, termios.TCSADRAIN)  # as OpenSSH: keep what the user typed ahead
        channel.settimeout(0.0)
        while True:
            readable, _, _ = select.select([channel, stdin_fd], [], [])
            if channel in readable:
                try:
                    data = channel.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                os.write(stdout_fd, data)
            if stdin_fd in readable:
                typed = os.read(stdin_fd, 1024)
                if not typed:
                    break
                channel.sendall(typed)
    finally:
        termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
    status = channel.recv_exit_status()
    channel.close()
    return status if status >= 0 else 255
