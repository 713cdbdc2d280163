"""Latency windows that replicas and workers share: time-bucketed DDSketches (the `ddsketch` library).

A replica's own window (`gateway.policies.latency`) is a ring of exact samples: fine for one process, but
samples cannot be merged across processes without shipping them all. A DDSketch can: it counts values in
logarithmic bins (the library's `LogarithmicMapping`, relative accuracy `RELATIVE_ACCURACY`), so any
quantile read from it is within 1% of the exact one, and two sketches merge by adding their bins' counts.
That is what makes sharing cheap: in Redis each bin is a hash field and a replica's new samples are added
with HINCRBY, so Redis holds the merge of every replica and a read costs the same with 2 replicas or 50.

Forgetting: samples go to wall-clock buckets of `BUCKET_S` (replicas share no monotonic clock, and the
bucket ids must mean the same on all of them). A window of `window_s` reads the buckets that overlap the
last `window_s` seconds, so it forgets in steps of `BUCKET_S`: never earlier than the local window, at most
one bucket later.

Bounds: values are clamped to [`MIN_LATENCY_S`, `MAX_LATENCY_S`], so a sketch has at most `MAX_BINS` bins
(the clamp only moves values no hedge delay could use); buckets are kept for at most `MAX_WINDOW_S`
(a longer window shares its last `MAX_WINDOW_S`).

Quantile rule: the local window's (`gateway.policies.latency.delay_rank`): the bin holding the k-th smallest
sample, k = ceil(q (n + 1)) within 1..n, read as the library's estimate for that bin, so within
`RELATIVE_ACCURACY` of the exact k-th smallest value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

from gateway.clock import Clock
from gateway.policies.latency import delay_rank

RELATIVE_ACCURACY = 0.01
MIN_LATENCY_S = 0.001
MAX_LATENCY_S = 3600.0
BUCKET_S = 10.0
MAX_WINDOW_S = 600.0
# A bin's count past this is not a count this gateway wrote (a day of 10^6 requests per second is 10^11).
MAX_COUNT = 10**12

_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
MIN_BIN: int = _MAPPING.key(MIN_LATENCY_S)
MAX_BIN: int = _MAPPING.key(MAX_LATENCY_S)
MAX_BINS = MAX_BIN - MIN_BIN + 1

Bins = dict[int, int]  # bin key -> count: a sketch as it travels (the library's mapping gives the keys)
TargetKey = tuple[str, str, bool]  # (provider, model, stream)


def bin_of(latency_s: float) -> int:
    return int(_MAPPING.key(min(max(latency_s, MIN_LATENCY_S), MAX_LATENCY_S)))


def bucket_of(wall_s: float) -> int:
    return math.floor(wall_s / BUCKET_S)


def first_bucket(wall_s: float, window_s: float) -> int:
    """The oldest bucket that overlaps the last `window_s` seconds (capped at `MAX_WINDOW_S`)."""
    return math.floor((wall_s - min(window_s, MAX_WINDOW_S)) / BUCKET_S)


def checked_bins(pairs: Iterable[tuple[object, object]]) -> Bins:
    """Bins read from another process (Redis, the hub): keys outside the clamp range and counts that are not
    positive integers are dropped, so nothing read can grow a sketch past `MAX_BINS` or poison a quantile."""
    bins: Bins = {}
    for raw_key, raw_count in pairs:
        try:
            key, count = int(raw_key), int(raw_count)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            continue
        if MIN_BIN <= key <= MAX_BIN and 0 < count <= MAX_COUNT:
            bins[key] = min(bins.get(key, 0) + count, MAX_COUNT)
    return bins


def flat(bins: Mapping[int, int]) -> list[int]:
    """[key, count, key, count, ...]: the compact form for the hub's frames and Redis's HINCRBY arguments."""
    return [n for item in bins.items() for n in item]


def unflat(values: Sequence[object]) -> Bins:
    return checked_bins(zip(values[0::2], values[1::2], strict=False))


class LatencySketch:
    """A DDSketch of latencies (positive values only: the clamp keeps them above zero), built from bins."""

    __slots__ = ("_sketch", "_store")

    def __init__(self, bins: Mapping[int, int] | None = None) -> None:
        self._store = DenseStore()
        for key, count in (bins or {}).items():
            self._store.add(key, float(count))
        # Built after the store is filled: the sketch takes its count from its stores.
        self._sketch = BaseDDSketch(_MAPPING, self._store, DenseStore(), 0.0)

    @property
    def count(self) -> int:
        return int(self._sketch.count)

    def merge(self, other: LatencySketch) -> None:
        self._sketch.merge(other._sketch)  # the library's merge: bin-wise addition

    def quantile_s(self, q: float) -> float | None:
        """The delay's rank, ceil(q (n + 1)) within 1..n, as `LatencyTracker` (gateway.policies.latency.delay_rank);
        None when empty."""
        n = self.count
        if n <= 0:
            return None
        return float(_MAPPING.value(self._store.key_at_rank(delay_rank(q, n) - 1)))


class SharedQuantiles(Protocol):
    """What a `LatencyTracker` reads from its target's shared window (see `SharedWindow.quantile_s`)."""

    def quantile_s(self, q: float, *, min_samples: int, window_s: float) -> float | None: ...


class SharedWindow:
    """One target's latency as every process sharing it knows it.

    The *view* is the merge of every process's published samples, this one's included, as of the last
    exchange (`install`); `pending` holds what this process recorded since and has not published yet.
    The delay reads the view alone: the exchange publishes the pending samples and reads the merge in the
    same round trip, so the view lacks at most one exchange interval of this process's samples (under 2%
    of a 60 s window at one exchange a second), and it stays fixed between exchanges, so each quantile is
    computed once per exchange rather than once per request. While the view is not current (never fetched,
    or the last exchange failed) it answers None and the tracker uses its local window.
    """

    def __init__(self, *, wall: Clock = time.time) -> None:
        self._wall = wall
        self.pending: dict[int, Bins] = {}
        self.current = False
        self._view: dict[int, LatencySketch] = {}
        # (q, window_s, first bucket) -> (quantile, samples in the window): cleared by each install.
        self._quantiles: dict[tuple[float, float, int], tuple[float | None, int]] = {}

    def record(self, latency_s: float) -> None:
        if not 0.0 <= latency_s < math.inf:
            return
        bucket = bucket_of(self._wall())
        bins = self.pending.get(bucket)
        if bins is None:
            self._forget_pending(bucket)
            bins = self.pending[bucket] = {}
        key = bin_of(latency_s)
        bins[key] = bins.get(key, 0) + 1

    def take_pending(self) -> dict[int, Bins]:
        """The samples to publish now (those of buckets still inside `MAX_WINDOW_S`); pending starts anew."""
        self._forget_pending(bucket_of(self._wall()))
        pending, self.pending = self.pending, {}
        return pending

    def give_back(self, taken: Mapping[int, Bins]) -> None:
        """An exchange failed: what it took is published by the next one (the others learn it late, not never)."""
        for bucket, bins in taken.items():
            mine = self.pending.setdefault(bucket, {})
            for key, count in bins.items():
                mine[key] = mine.get(key, 0) + count
        self._forget_pending(bucket_of(self._wall()))

    def install(self, view: Mapping[int, LatencySketch]) -> None:
        """The merge just read: bucket -> sketch. The view is current from now on."""
        self._view = {bucket: sketch for bucket, sketch in view.items() if sketch.count > 0}
        self._quantiles.clear()
        self.current = True

    def lose(self) -> None:
        """The exchange failed: the view is no longer current, the local window takes over."""
        self.current = False

    def samples(self, window_s: float) -> int:
        return self._window(window_s)[1]

    def quantile_s(self, q: float, *, min_samples: int, window_s: float) -> float | None:
        """The view's quantile over the last `window_s`; None if not current or below `min_samples`."""
        if not self.current:
            return None
        value, count = self._window(window_s, q)
        return value if count >= min_samples else None

    def _window(self, window_s: float, q: float = 0.5) -> tuple[float | None, int]:
        first = first_bucket(self._wall(), window_s)
        key = (q, window_s, first)
        cached = self._quantiles.get(key)
        if cached is None:
            merged = LatencySketch()
            for bucket, sketch in self._view.items():
                if bucket >= first:
                    merged.merge(sketch)
            if len(self._quantiles) >= 64:  # a handful of (quantile, window) pairs per target in practice
                self._quantiles.clear()
            cached = self._quantiles[key] = (merged.quantile_s(q), merged.count)
        return cached

    def _forget_pending(self, now_bucket: int) -> None:
        oldest = now_bucket - int(MAX_WINDOW_S / BUCKET_S)
        for bucket in [b for b in self.pending if b < oldest]:
            del self.pending[bucket]


class LatencyShare(Protocol):
    """The latency windows this process shares (`gateway.state.latency.SharedLatency`), as the runtime sees it."""

    def watch(self, windows: Mapping[TargetKey, float]) -> None:
        """Targets to keep current, each with the longest window any alias reads it over."""
        ...

    def window(self, key: TargetKey) -> SharedWindow | None:
        """The target's shared window; None past the bound on shared targets (it stays local)."""
        ...
