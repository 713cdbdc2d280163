"""Time as a dependency: policies take a `Clock` so tests can drive time exactly."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Monotonic seconds."""
        ...


monotonic: Clock = time.monotonic


class FakeClock:
    """A clock that moves only when told to. For tests."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
