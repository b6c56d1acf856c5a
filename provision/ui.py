"""The one object through which verbs talk to the user: lines, stack events, tables, confirmations, a live status.

On a terminal it uses rich (colour, a spinner while waiting); otherwise every line is plain and timestamped, so logs
of CI jobs read well. Confirmations are never guessed: without a terminal to ask on, a change needs ``--yes``.

Much of what is shown was written by someone else (hosts' records, node conditions, stack events, command output):
every text goes through ``printable`` here, so no escape sequence or control character reaches the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm
from rich.table import Table

from provision.errors import ExitCode, UsageError
from provision.printable import printable

Ask = Callable[[str], bool]


class Declined(UsageError):
    exit_code = ExitCode.DECLINED


class UI:
    def __init__(self, console: Console, *, ask: Ask | None, assume_yes: bool) -> None:
        self.console = console
        self.ask = ask
        self.assume_yes = assume_yes

    @classmethod
    def for_terminal(cls, *, assume_yes: bool, to_stderr: bool = False) -> UI:
        """``to_stderr``: every line goes to stderr, leaving stdout to one machine-readable document."""
        interactive = sys.stdin.isatty()
        stream = sys.stderr if to_stderr else sys.stdout
        # Off a terminal rich would wrap at 80 columns; logs read better with whole lines.
        console = Console(highlight=False, width=None if stream.isatty() else 200, stderr=to_stderr)
        return cls(
            console,
            ask=(lambda question: Confirm.ask(escape(question), default=False, console=console))
            if interactive
            else None,
            assume_yes=assume_yes,
        )

    @property
    def fancy(self) -> bool:
        return self.console.is_terminal

    def say(self, text: str, *, style: str = "") -> None:
        """One line. Plain output gets a UTC timestamp; a terminal gets colour instead."""
        # soft_wrap: a line is never broken by rich; the terminal (or the log viewer) wraps it.
        shown = escape(printable(text, lines=True))
        if self.fancy:
            self.console.print(shown, style=style or None, soft_wrap=True)
        else:
            self.console.print(f"{datetime.now(UTC):%H:%M:%S} {shown}", soft_wrap=True)

    def line(self, text: str, *, style: str = "") -> None:
        """Text as it is, without a timestamp: for reports whose lines are the output (status, doctor)."""
        shown = printable(text, lines=True)
        self.console.print(shown, style=style if self.fancy and style else None, markup=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        self.say(f"WARNING: {text}", style="bold yellow")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> None:
        shown = escape(printable(title, lines=True)) if title else None
        table = Table(*columns, title=shown, box=None, pad_edge=False, title_justify="left")
        for row in rows:
            table.add_row(*(escape(printable(cell, lines=True)) for cell in row))
        self.console.print(table)

    def confirm(self, question: str, *, unasked: str) -> None:
        """Go on only with a yes. ``--yes`` answers for the user; with no terminal to ask on, stop with ``unasked``
        (what was not done, and how to do it without a question)."""
        if self.assume_yes:
            return
        if self.ask is None:
            raise UsageError(f"{unasked} (no terminal to ask for confirmation on)")
        if not self.ask(printable(question)):  # questions name hosts and nodes
            raise Declined("declined; nothing was changed")

    @contextmanager
    def progress(self) -> Iterator[Callable[[str], None]]:
        """A line kept up to date under the output on a terminal (the block calls what it gets with each new text);
        nothing otherwise: logs get the events' own lines."""
        if not self.fancy:
            yield lambda _text: None
            return
        with self.console.status("") as status:
            yield lambda text: status.update(escape(printable(text)))

    @contextmanager
    def waiting(self, text: str) -> Iterator[None]:
        """A spinner with ``text`` on a terminal while the block runs; nothing otherwise."""
        status = self.console.status(escape(printable(text))) if self.fancy else nullcontext()
        with status:
            yield
