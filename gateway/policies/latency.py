"""The adaptive hedge delay (`delay_ms: p95`): a windowed quantile of one target's recent latency.

Hedging after the p95 of a target's latency adds about 5% extra load (Tail at Scale). The delay follows
the target as it speeds up or slows down, is clamped so a burst of very fast or very slow answers cannot
make it absurd, and falls back to a fixed value until enough samples exist to trust the quantile.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.clock import Clock, monotonic

if TYPE_CHECKING:
    from gateway.policies.sketch import SharedQuantiles

# delay_s() runs for every request, the quantile sorts up to max_samples values: reuse the last result
# until this much time has passed or this share of the samples is new (Finagle recomputes every 3 s).
_RECOMPUTE_AFTER_S = 1.0
_RECOMPUTE_NEW_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class AdaptiveDelayOptions:
    quantile: float  # 0 < q < 1, e.g. 0.95
    min_delay_ms: float = 50.0
    max_delay_ms: float = 10_000.0
    min_samples: int = 20  # fixed fallback until this many samples are in the window
    fallback_ms: float = 1_000.0
    window_s: float = 60.0  # samples older than this are forgotten
    max_samples: int = 2_000  # ring capacity

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be strictly between 0 and 1, got {self.quantile}")
        if not 0.0 <= self.min_delay_ms <= self.max_delay_ms < math.inf:
            raise ValueError(f"need 0 <= min_delay_ms <= max_delay_ms (finite), got "
                             f"{self.min_delay_ms} and {self.max_delay_ms}")
        if not 0.0 <= self.fallback_ms < math.inf:
            raise ValueError(f"fallback_ms must be finite and >= 0, got {self.fallback_ms}")
        if not 0.0 < self.window_s < math.inf:
            raise ValueError(f"window_s must be finite and > 0, got {self.window_s}")
        if not 1 <= self.min_samples <= self.max_samples:
            # min_samples above the ring capacity would keep the tracker on its fallback forever.
            raise ValueError(f"need 1 <= min_samples <= max_samples, got {self.min_samples} "
                             f"and {self.max_samples}")


class LatencyTracker:
    """Recent latencies of one (provider, model) target and the hedge delay derived from them.

    Quantile rule: the k-th smallest of the n samples with k = ceil(q * (n + 1)) (at most n). The delay's
    job is not to describe the past samples but to be passed by the *next* request with probability at
    most 1 - q, and for any latency distribution a new sample exceeds the k-th smallest of n with
    probability exactly (n + 1 - k) / (n + 1). The plain nearest rank, ceil(q * n), is biased low on a young
    window: at p95 with 20 samples it is the 19th, which 2/21 = 9.5% of requests pass (nearly twice the
    hedges asked for), still 5.9% at 100 samples. This rule gives at most 5% at every n >= 19 (at 20, the
    largest: 1/21 = 4.8%). It is always a latency that really happened; for 1..100 ms at q = 0.95 it is
    96 ms.
    """

    def __init__(self, options: AdaptiveDelayOptions, *, clock: Clock = monotonic,
                 shared: SharedQuantiles | None = None) -> None:
        """`shared`: the target's window shared with other replicas or workers (`gateway.policies.sketch`);
        while it answers, the delay is its quantile, else this window's."""
        self.options = options
        self._clock = clock
        self._shared = shared
        # (recorded at, latency_s), oldest first; the ring drops the oldest when full.
        self._samples: deque[tuple[float, float]] = deque(maxlen=options.max_samples)
        self._recorded = 0  # samples ever recorded, to tell how many are new since the last compute
        self._cached_delay_s = 0.0
        self._computed_at: float | None = None
        self._recorded_at_compute = 0
        self._count_at_compute = 0

    def record(self, latency_s: float) -> None:
        """Add one latency. Record successes and superseded (hedged-over) attempts only, never fast
        failures: an instant 500 says nothing about how long a good answer takes."""
        if not 0.0 <= latency_s < math.inf:
            return  # a broken measurement must neither fail the request nor poison the quantile
        self._samples.append((self._clock(), latency_s))
        self._recorded += 1

    def sample_count(self) -> int:
        """Samples currently in the window."""
        self._expire()
        return len(self._samples)

    def quantile_s(self) -> float | None:
        """The configured quantile of the window's samples, freshly computed; None below min_samples."""
        self._expire()
        n = len(self._samples)
        if n < self.options.min_samples:
            return None
        ordered = sorted(latency for _, latency in self._samples)
        return ordered[delay_rank(self.options.quantile, n) - 1]

    def delay_s(self) -> float:
        """Seconds to wait before hedging: the quantile clamped to [min_delay, max_delay], or the
        fallback below min_samples. Cached; see _RECOMPUTE_AFTER_S and _RECOMPUTE_NEW_SHARE."""
        if self._stale():
            self._cached_delay_s = self._compute_delay_s()
            self._computed_at = self._clock()
            self._recorded_at_compute = self._recorded
            self._count_at_compute = len(self._samples)
        return self._cached_delay_s

    def _stale(self) -> bool:
        if self._computed_at is None or self._clock() - self._computed_at >= _RECOMPUTE_AFTER_S:
            return True
        new = self._recorded - self._recorded_at_compute
        # max(1, ...) so that below min_samples every new sample is looked at: the switch from the
        # fallback to the quantile happens at the very sample that reaches min_samples.
        return new >= max(1.0, _RECOMPUTE_NEW_SHARE * self._count_at_compute)

    def shared_quantile_s(self) -> float | None:
        """The quantile of the shared window, if there is one, it is current and it has min_samples."""
        if self._shared is None:
            return None
        o = self.options
        return self._shared.quantile_s(o.quantile, min_samples=o.min_samples, window_s=o.window_s)

    def _compute_delay_s(self) -> float:
        q = self.shared_quantile_s()
        if q is None:
            q = self.quantile_s()
        if q is None:
            return self.options.fallback_ms / 1000.0
        low = self.options.min_delay_ms / 1000.0
        high = self.options.max_delay_ms / 1000.0
        return min(max(q, low), high)

    def _expire(self) -> None:
        # Samples arrive in clock order, so the expired ones are all at the left end.
        horizon = self._clock() - self.options.window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()


def delay_rank(quantile: float, n: int) -> int:
    """The 1-based rank among n sorted samples whose value a new sample passes with probability at most
    1 - quantile: ceil(quantile * (n + 1)), within 1..n (see LatencyTracker)."""
    # The epsilon keeps float noise (0.95 * 20 == 19.000000000000004) from skipping a rank.
    return min(n, max(1, math.ceil(quantile * (n + 1) - 1e-9)))


_QUANTILE_TEXT = re.compile(r"p(\d+(?:\.\d+)?)")


def parse_quantile(text: str) -> float:
    """"p95" -> 0.95, "p99.9" -> 0.999, "p50" -> 0.5. ValueError unless it is `p` + a percentile
    strictly between 0 and 100."""
    match = _QUANTILE_TEXT.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"invalid quantile {text!r}: expected 'p' followed by a percentile, e.g. 'p95' "
                         f"or 'p99.9'")
    # Decimal, because 99.9 / 100 in floats is 0.9990000000000001.
    value = float(Decimal(match.group(1)) / 100)
    if not 0.0 < value < 1.0:
        raise ValueError(f"invalid quantile {text!r}: the percentile must be strictly between 0 and 100")
    return value
