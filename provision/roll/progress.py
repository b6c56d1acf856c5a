"""The one line a terminal shows while a roll runs: hosts done of all, each flight's phase, and the time left as the
roll's pace so far predicts it."""

from __future__ import annotations

from collections.abc import Sequence

from provision.roll.state import Flight


def progress_line(done: int, total: int, flights: Sequence[Flight], elapsed: float) -> str:
    """``done`` of ``total`` hosts replaced in ``elapsed`` seconds, ``flights`` under way. The time left is the pace
    so far (waves in parallel included) times the hosts left; none before the first host is done."""
    doing = ", ".join(f"{flight.old} {flight.phase.value if flight.phase else 'starting'}" for flight in flights)
    line = f"{done}/{total} replaced" + (f" · {doing}" if doing else "")
    if 0 < done < total:
        line += f" · about {_duration(elapsed / done * (total - done))} left"
    elif done == 0 and total:
        line += " · time left known after the first host"
    return line


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h"
