"""known_hosts as OpenSSH reads it, for the host key checks paramiko does not make itself.

paramiko's own reader knows plain lines only: a ``@revoked`` or ``@cert-authority`` line made it fail outright, and a
wildcard pattern (``10.0.*``) or a negation (``!10.0.0.9``) never matched. Here every line is read as sshd(8)
documents it: host patterns with ``*``, ``?`` and ``!``, hashed names (``|1|salt|hash``), ``[host]:port``, and the
two markers:

- ``@revoked``: that key must never be accepted for the hosts the line names, even where a plain line lists it;
- ``@cert-authority``: hosts whose certificate that CA signed are trusted. paramiko neither asks for a host
  certificate nor checks one, so such hosts cannot be trusted through the CA here: ``connect`` refuses them by name
  and says why, unless their plain key is listed too (or is recorded with ``--accept-new-host-key``).

A plain line that cannot be read is skipped, as OpenSSH skips it: at worst a host is unknown and refused. A
``@revoked`` line that cannot be read is an error: skipping it could let the key it revokes through.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType

from provision.errors import ConfigError


class Marker(Enum):
    NONE = ""
    REVOKED = "@revoked"
    CERT_AUTHORITY = "@cert-authority"


@dataclass(frozen=True)
class Entry:
    marker: Marker
    patterns: tuple[str, ...]  # the host field, split at commas
    key: paramiko.PKey
    line: int

    def matches(self, name: str) -> bool:
        return matches(self.patterns, name)

    @property
    def where(self) -> str:
        return f"line {self.line}"


class KnownHosts:
    """The entries of one known_hosts file, and those recorded since it was read (``add``)."""

    def __init__(self, path: Path, entries: list[Entry]) -> None:
        self.path = path
        self.entries = entries

    @classmethod
    def parse(cls, path: Path, text: str) -> KnownHosts:
        """The entries in ``text``, the content of ``path`` (read by the caller, through provision.textfile)."""
        entries = [entry for number, line in enumerate(text.splitlines(), 1) if (entry := _entry(path, number, line))]
        return cls(path, entries)

    def add(self, name: str, key: paramiko.PKey) -> None:
        """A key recorded for ``name`` (with --accept-new-host-key) after the file was read."""
        self.entries.append(Entry(Marker.NONE, (name,), key, line=0))  # no line of the file as it was read

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        """The plain keys listed for ``name`` that no ``@revoked`` line revokes."""
        return [
            entry.key
            for entry in self.entries
            if entry.marker is Marker.NONE and entry.matches(name) and self.revoked(name, entry.key) is None
        ]

    def revoked(self, name: str, key: paramiko.PKey) -> Entry | None:
        """The ``@revoked`` line that revokes ``key`` for ``name``, if any."""
        return next(
            (e for e in self.entries if e.marker is Marker.REVOKED and e.key == key and e.matches(name)),
            None,
        )

    def authorities_for(self, name: str) -> list[Entry]:
        """The ``@cert-authority`` lines whose patterns take in ``name``."""
        return [e for e in self.entries if e.marker is Marker.CERT_AUTHORITY and e.matches(name)]


def matches(patterns: tuple[str, ...], name: str) -> bool:
    """OpenSSH's rule: no negated pattern may match, and at least one other must. Names compare without case."""
    name = name.lower()
    found = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if _one(body, name):
            if negated:
                return False
            found = True
    return found


def _one(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        parts = pattern.split("|")  # "", "1", salt, digest
        if len(parts) != 4:
            return False
        salt, digest = parts[2:]
        try:
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, base64.b64decode(digest))
        except (binascii.Error, ValueError):
            return False
    wildcard = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern.lower())
    return re.fullmatch(wildcard, name, flags=re.DOTALL) is not None


def _entry(path: Path, number: int, line: str) -> Entry | None:
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = Marker.NONE
    if fields[0].startswith("@"):
        known = {m.value: m for m in Marker if m is not Marker.NONE}
        if fields[0] not in known:
            return None  # as OpenSSH: a marker it does not know makes the line no key of anyone's
        marker = known[fields[0]]
        fields = fields[1:]
    if len(fields) < 3:
        _unreadable(path, number, marker, "too few fields")
        return None
    hosts, kind, blob = fields[:3]
    try:
        key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob, validate=True))
    except UnknownKeyType:
        # A key type paramiko cannot negotiate can never be the key a host offers it: nothing to accept or refuse.
        return None
    except Exception as error:  # each key type's parser raises what its own format library raises
        _unreadable(path, number, marker, f"its {kind} key cannot be read ({error or type(error).__name__})")
        return None
    return Entry(marker, tuple(hosts.split(",")), key, number)


def _unreadable(path: Path, number: int, marker: Marker, why: str) -> None:
    """A line that cannot be read is skipped, unless it revokes a key."""
    if marker is Marker.REVOKED:
        raise ConfigError(str(path), f"line {number}", f"a @revoked line that cannot be read: {why}; fix or remove it")
