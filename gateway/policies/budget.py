"""The hedge budget: caps the extra load hedging adds, so hedges cannot amplify an outage.

Like Finagle's RetryBudget and Linkerd's retryRatio: over a sliding window, hedges may be at most
`percent` of requests, plus a small floor so a quiet gateway can still hedge. A hedge the budget refuses
is skipped, never queued: a late hedge is worth nothing and queued ones would arrive as a burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.clock import Clock, monotonic

# The window is kept as this many time buckets, so each call costs O(1) whatever the traffic, and a
# count leaves the window one bucket (window_s / 10) at a time: the window spans between 90% and 100%
# of window_s. failsafe-go's time-based breaker slices its window the same way.
_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class BudgetOptions:
    percent: float = 10.0  # hedges may be at most this share of requests over the window
    window_s: float = 10.0
    min_per_window: int = 3  # floor, so a quiet gateway can still hedge

    def __post_init__(self) -> None:
        if not 0.0 <= self.percent < math.inf:
            raise ValueError(f"percent must be finite and >= 0, got {self.percent}")
        if not 0.0 < self.window_s < math.inf:
            raise ValueError(f"window_s must be finite and > 0, got {self.window_s}")
        if self.min_per_window < 0:
            raise ValueError(f"min_per_window must be >= 0, got {self.min_per_window}")


class HedgeBudget:
    """One alias's hedge budget. Call from the event loop thread; every call is O(1) and never blocks."""

    def __init__(self, options: BudgetOptions, *, clock: Clock = monotonic) -> None:
        self.options = options
        self._clock = clock
        self._bucket_s = options.window_s / _BUCKETS
        self._requests = [0] * _BUCKETS
        self._hedges = [0] * _BUCKETS
        self._request_total = 0
        self._hedge_total = 0
        self._tick = self._tick_of(clock())  # absolute bucket number of the newest bucket

    def record_request(self) -> None:
        """Count one client request. Call once per request, not per attempt."""
        slot = self._rotate()
        self._requests[slot] += 1
        self._request_total += 1

    def try_spend(self) -> bool:
        """A delay-launched hedge wants to go. True (and counted) if the window has room for it,
        else False: skip the hedge."""
        slot = self._rotate()
        if not self._has_room():
            return False
        self._hedges[slot] += 1
        self._hedge_total += 1
        return True

    def has_room(self) -> bool:
        """Whether `try_spend` would succeed now (nothing is counted)."""
        self._rotate()
        return self._has_room()

    def _has_room(self) -> bool:
        return self._hedge_total < self.options.min_per_window + self.options.percent * self._request_total / 100.0

    def snapshot(self) -> tuple[int, int]:
        """(requests, hedges) in the current window, for metrics and tests."""
        self._rotate()
        return self._request_total, self._hedge_total

    def _tick_of(self, now: float) -> int:
        return math.floor(now / self._bucket_s)

    def _rotate(self) -> int:
        """Empty the buckets time has moved past and return the slot of the current one."""
        tick = self._tick_of(self._clock())
        # At most _BUCKETS buckets to empty, however long the gateway was idle. A clock that went
        # backwards (it should not: it is monotonic) just keeps using the newest bucket.
        for stale in range(self._tick + 1, min(tick, self._tick + _BUCKETS) + 1):
            slot = stale % _BUCKETS
            self._request_total -= self._requests[slot]
            self._hedge_total -= self._hedges[slot]
            self._requests[slot] = 0
            self._hedges[slot] = 0
        self._tick = max(self._tick, tick)
        return self._tick % _BUCKETS
