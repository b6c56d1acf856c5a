"""Virtual time for tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """Virtual time for tests: ``sleep`` advances ``now`` at once. ``on_sleep`` lets a test change the world while
    the code under test waits."""

    current: float = 0.0
    slept: list[float] = field(default_factory=list)
    on_sleep: Callable[[float], None] | None = None

    def now(self) -> float:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += seconds
        if self.on_sleep is not None:
            self.on_sleep(self.current)
