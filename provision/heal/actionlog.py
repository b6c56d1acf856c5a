"""One structured line per action `cluster heal` takes, in logfmt (``key=value``), to stderr: easy to read in
`kubectl logs`, easy to parse. Only ids, names and counts go in; never a token or a credential."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

Write = Callable[[str], None]
Now = Callable[[], datetime]


class ActionLog:
    def __init__(self, write: Write, *, now: Now | None = None) -> None:
        self.write = write
        self.now = now or (lambda: datetime.now(UTC))

    def __call__(self, action: str, **fields: object) -> None:
        parts = [f"time={self.now():%Y-%m-%dT%H:%M:%SZ}", f"action={action}"]
        parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
        self.write(" ".join(parts))


def _value(value: object) -> str:
    text = str(value)
    if not text or any(char in text for char in ' "=\n\t'):
        return json.dumps(text)  # quoted, with quotes and newlines escaped: one line whatever the text
    return text


def parse_line(line: str) -> dict[str, str]:
    """The fields of one line, for tests and for tools that read the log."""
    fields: dict[str, str] = {}
    decoder = json.JSONDecoder()
    rest = line.strip()
    while rest:
        key, _, rest = rest.partition("=")
        if rest.startswith('"'):
            value, end = decoder.raw_decode(rest)
            rest = rest[end:].lstrip()
        else:
            value, _, rest = rest.partition(" ")
        fields[key] = str(value)
    return fields
