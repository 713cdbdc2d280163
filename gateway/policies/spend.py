"""The dollar ceiling of an alias's hedges (`hedge.budget_usd_per_hour`): a sliding hour of expected hedge cost.

A hedge is paid for before it is sent, at its expected cost (the backup's prices, the prompt's size, the output
the alias usually produces), so the ceiling holds however the hedge ends. Like the request-share budget: over
the window, never queued, O(1) per call.
"""

from __future__ import annotations

import math

from gateway.clock import Clock, monotonic

_WINDOW_S = 3600.0
_BUCKETS = 60  # one a minute: spend leaves the window a minute at a time


class SpendCeiling:
    def __init__(self, usd_per_hour: float, *, clock: Clock = monotonic) -> None:
        if not 0.0 <= usd_per_hour < math.inf:
            raise ValueError(f"usd_per_hour must be finite and >= 0, got {usd_per_hour}")
        self.usd_per_hour = usd_per_hour
        self._clock = clock
        self._bucket_s = _WINDOW_S / _BUCKETS
        self._spent = [0.0] * _BUCKETS
        self._total = 0.0
        self._tick = math.floor(clock() / self._bucket_s)

    def allows(self, usd: float) -> bool:
        """Whether spending `usd` more keeps the last hour within the ceiling (nothing is counted)."""
        self._rotate()
        return self._total + max(0.0, usd) <= self.usd_per_hour

    def spend(self, usd: float) -> None:
        slot = self._rotate()
        self._spent[slot] += max(0.0, usd)
        self._total += max(0.0, usd)

    def spent_usd(self) -> float:
        """Expected hedge spend of the last hour, for metrics and tests."""
        self._rotate()
        return max(0.0, self._total)

    def _rotate(self) -> int:
        tick = math.floor(self._clock() / self._bucket_s)
        for stale in range(self._tick + 1, min(tick, self._tick + _BUCKETS) + 1):
            slot = stale % _BUCKETS
            self._total -= self._spent[slot]
            self._spent[slot] = 0.0
        self._tick = max(self._tick, tick)
        return self._tick % _BUCKETS
