"""The one way to read a text file the user names (the configuration, a join token, known_hosts, the SSH client
configuration, a kubeconfig): a regular file of bounded size, UTF-8 text without NUL bytes.

A FIFO would block the read until something writes to it, a device such as /dev/zero never ends, and a huge file
exhausts memory; each of these, and bytes that are not text, is refused with one line that names the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from provision.errors import ClusterError, ExitCode

KIB = 1024
MIB = 1024 * KIB

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class UnreadableFile(ClusterError):
    """The file cannot be read as text. ``problem`` says why, without the path, for messages that name the file
    their own way; ``missing`` tells a file that does not exist from one that cannot be used."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, path: Path, problem: str, *, missing: bool = False) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.missing = missing


def read_text_file(path: Path, *, limit: int) -> str:
    """The text of the regular file at ``path`` (symbolic links followed), at most ``limit`` bytes of UTF-8."""
    try:
        # Looked at before it is opened: opening some devices has effects of its own.
        kind = _kind(os.stat(path).st_mode)
        if kind:
            raise UnreadableFile(path, f"is {kind}, not a regular file")
        # O_NONBLOCK: should a FIFO replace the file between the two looks, the open still returns at once.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnreadableFile(path, "no such file", missing=True) from None
    except OSError as error:
        raise UnreadableFile(path, f"cannot read: {error.strerror or error}") from None
    try:
        kind = _kind(os.fstat(descriptor).st_mode)
        if kind:
            raise UnreadableFile(path, f"is {kind}, not a regular file")
        data = _read_at_most(descriptor, limit + 1)
    except OSError as error:
        raise UnreadableFile(path, f"cannot read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise UnreadableFile(path, f"is larger than {_size(limit)}, the most read from such a file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableFile(path, f"is not UTF-8 text (byte {error.start})") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise UnreadableFile(path, f"is binary, not text (a NUL byte at byte {nul})")
    return text


def _kind(mode: int) -> str:
    """What the file is when it is not a regular file; "" for a regular file."""
    return "" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "a special file")


def _read_at_most(descriptor: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = os.read(descriptor, min(left, MIB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _size(limit: int) -> str:
    return (
        f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit // KIB} KiB" if limit % KIB == 0 else f"{limit} bytes"
    )
