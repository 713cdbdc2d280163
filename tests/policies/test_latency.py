from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.policies.latency import AdaptiveDelayOptions, LatencyTracker, parse_quantile


def tracker(clock: FakeClock | None = None, **overrides: Any) -> LatencyTracker:
    options: dict[str, Any] = {"quantile": 0.95, "min_delay_ms": 50.0, "max_delay_ms": 10_000.0,
                               "min_samples": 20, "fallback_ms": 1_000.0, "window_s": 60.0,
                               "max_samples": 2_000}
    options.update(overrides)
    return LatencyTracker(AdaptiveDelayOptions(**options), clock=clock or FakeClock())


def record_ms(t: LatencyTracker, values_ms: list[float]) -> None:
    for value in values_ms:
        t.record(value / 1000.0)


def test_fallback_until_min_samples_then_quantile_at_once() -> None:
    t = tracker()
    assert t.delay_s() == 1.0
    record_ms(t, [200.0] * 19)
    assert t.quantile_s() is None
    assert t.delay_s() == 1.0
    t.record(0.2)  # the 20th sample: no time passes, yet the delay switches
    assert t.quantile_s() == pytest.approx(0.2)
    assert t.delay_s() == pytest.approx(0.2)


def test_quantile_rank_of_a_known_distribution() -> None:
    values = [float(ms) for ms in range(1, 101)]
    random.Random(7).shuffle(values)
    # rank ceil(q * 101): p95 of 1..100 ms is 96 ms (the plain nearest rank would say 95)
    for q, expected_ms in [(0.95, 96), (0.5, 51), (0.99, 100), (0.01, 2), (0.951, 97)]:
        t = tracker(quantile=q)
        record_ms(t, values)
        assert t.quantile_s() == pytest.approx(expected_ms / 1000.0)
        assert t.delay_s() == pytest.approx(max(expected_ms, 50) / 1000.0)


def test_p99_9_of_a_thousand() -> None:
    t = tracker(quantile=parse_quantile("p99.9"))
    record_ms(t, [float(ms) for ms in range(1000, 0, -1)])
    assert t.quantile_s() == pytest.approx(1.0)  # rank ceil(0.999 * 1001) = 1000: the largest


def test_a_young_window_is_passed_by_at_most_the_share_asked_for() -> None:
    """What the delay is for: the next request passes it with probability <= 1 - q, at any window size.
    The plain nearest rank (the 19th of 20 at p95) was passed by 9.5% of requests: twice the hedges."""
    rng = random.Random(11)
    for n, most in [(20, 0.055), (50, 0.055), (200, 0.055)]:
        passed = 0
        trials = 4000
        for _ in range(trials):
            t = tracker(min_samples=1, min_delay_ms=0.0)
            record_ms(t, [400.0 * rng.lognormvariate(0.0, 0.3) for _ in range(n)])
            q = t.quantile_s()
            assert q is not None
            passed += 400.0 * rng.lognormvariate(0.0, 0.3) / 1000.0 > q
        share = passed / trials
        assert 0.035 < share <= most, (n, share)  # exactly (n + 1 - k) / (n + 1): 4.8%, 3.9%... 5.0%


@given(st.lists(st.floats(min_value=0.0, max_value=600.0), min_size=1, max_size=300),
       st.floats(min_value=0.001, max_value=0.999))
def test_quantile_is_the_rank_q_times_n_plus_one(values: list[float], q: float) -> None:
    t = tracker(quantile=q, min_samples=1)
    for value in values:
        t.record(value)
    v = t.quantile_s()
    assert v is not None and v in values
    n = len(values)
    k = min(n, max(1, math.ceil(q * (n + 1) - 1e-9)))
    assert sum(x <= v for x in values) >= k  # at least k samples are <= v ...
    assert sum(x < v for x in values) < k  # ... and v is the smallest such value


def test_clamped_to_min_and_max() -> None:
    fast = tracker()
    record_ms(fast, [1.0] * 50)
    assert fast.quantile_s() == pytest.approx(0.001)
    assert fast.delay_s() == pytest.approx(0.05)
    slow = tracker()
    record_ms(slow, [60_000.0] * 50)
    assert slow.delay_s() == pytest.approx(10.0)


def test_old_samples_expire_after_window() -> None:
    clock = FakeClock()
    t = tracker(clock)
    record_ms(t, [300.0] * 30)
    assert t.delay_s() == pytest.approx(0.3)
    clock.advance(60.0)
    assert t.sample_count() == 30  # exactly window_s old is still inside
    clock.advance(0.001)
    assert t.sample_count() == 0
    assert t.quantile_s() is None
    assert t.delay_s() == 1.0  # back to the fallback


def test_expiry_keeps_the_recent_part() -> None:
    clock = FakeClock()
    t = tracker(clock, min_samples=5)
    record_ms(t, [5_000.0] * 30)  # a slow spell ...
    clock.advance(45)
    record_ms(t, [100.0] * 30)  # ... then the target recovers
    assert t.quantile_s() == pytest.approx(5.0)
    clock.advance(20)  # the slow spell leaves the window
    assert t.sample_count() == 30
    assert t.quantile_s() == pytest.approx(0.1)
    assert t.delay_s() == pytest.approx(0.1)


def test_ring_capacity_bound_keeps_newest() -> None:
    t = tracker(max_samples=50, quantile=0.5)
    record_ms(t, [float(ms) for ms in range(1, 121)])
    assert t.sample_count() == 50
    assert t.quantile_s() == pytest.approx(0.096)  # median of 71..120: rank ceil(0.5 * 51) = 26th = 96


def test_delay_is_cached_until_a_second_passes() -> None:
    clock = FakeClock()
    t = tracker(clock)
    # p95 of these 100 is 100 ms (rank 96); one more sample moves the rank to the 97th, a 200 ms one.
    record_ms(t, [100.0] * 96 + [200.0] * 4)
    assert t.delay_s() == pytest.approx(0.1)
    t.record(5.0)  # an extreme sample, 1% new: below the 5% rule
    assert t.quantile_s() == pytest.approx(0.2)  # the fresh quantile has moved ...
    assert t.delay_s() == pytest.approx(0.1)  # ... the cached delay has not
    clock.advance(0.999)
    assert t.delay_s() == pytest.approx(0.1)
    clock.advance(0.001)
    assert t.delay_s() == pytest.approx(0.2)


def test_delay_is_recomputed_when_five_percent_of_samples_are_new() -> None:
    t = tracker()
    record_ms(t, [100.0] * 96 + [200.0] * 4)
    assert t.delay_s() == pytest.approx(0.1)
    record_ms(t, [9_000.0] * 3)  # 3% new: the fresh p95 is already 200 ms, the cached delay stays
    assert t.quantile_s() == pytest.approx(0.2)
    assert t.delay_s() == pytest.approx(0.1)
    record_ms(t, [100.0] * 2)  # 5% new: recomputed without any time passing
    assert t.delay_s() == pytest.approx(0.2)


def test_bad_measurements_are_dropped() -> None:
    t = tracker(min_samples=1)
    for bad in (-0.001, float("nan"), float("inf")):
        t.record(bad)
    assert t.sample_count() == 0
    t.record(0.0)
    assert t.sample_count() == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("p95", 0.95), ("p99.9", 0.999), ("p50", 0.5), ("p99", 0.99), ("p1", 0.01), ("p99.99", 0.9999),
    ("P90", 0.9), (" p75 ", 0.75), ("p0.1", 0.001),
])
def test_parse_quantile(text: str, expected: float) -> None:
    assert parse_quantile(text) == expected


@pytest.mark.parametrize("text", ["p0", "p100", "x95", "p", "", "95", "p-5", "p1e2", "p95%", "p 95", "p100.5",
                                  "p0.0", "p.5"])
def test_parse_quantile_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid quantile"):
        parse_quantile(text)


@pytest.mark.parametrize("overrides", [
    {"quantile": 0.0}, {"quantile": 1.0}, {"min_delay_ms": -1.0},
    {"min_delay_ms": 500.0, "max_delay_ms": 100.0}, {"fallback_ms": -1.0}, {"window_s": 0.0},
    {"min_samples": 0}, {"min_samples": 30, "max_samples": 20},
])
def test_options_validation(overrides: dict[str, Any]) -> None:
    options: dict[str, Any] = {"quantile": 0.95, **overrides}
    with pytest.raises(ValueError):
        AdaptiveDelayOptions(**options)


class FixedShared:
    """A shared window that answers `value` from `samples` samples on (or None while `current` is off)."""

    def __init__(self, value: float, samples: int) -> None:
        self.value, self.samples, self.current = value, samples, True
        self.asked: list[tuple[float, int, float]] = []

    def quantile_s(self, q: float, *, min_samples: int, window_s: float) -> float | None:
        self.asked.append((q, min_samples, window_s))
        return self.value if self.current and self.samples >= min_samples else None


def test_a_shared_window_gives_the_delay_from_the_first_request_clamped_like_the_local_one() -> None:
    clock = FakeClock()
    shared = FixedShared(0.7, samples=500)
    t = LatencyTracker(AdaptiveDelayOptions(quantile=0.99, min_samples=20, fallback_ms=1000.0, window_s=30.0,
                                            max_delay_ms=600.0), clock=clock, shared=shared)
    assert t.delay_s() == pytest.approx(0.6)  # no local sample yet; the shared p99, clamped to max_delay_ms
    assert shared.asked == [(0.99, 20, 30.0)]  # the alias's own quantile, min_samples and window


def test_the_local_window_serves_while_the_shared_one_does_not_answer() -> None:
    clock = FakeClock()
    shared = FixedShared(0.7, samples=500)
    t = LatencyTracker(AdaptiveDelayOptions(quantile=0.95, min_samples=20), clock=clock, shared=shared)
    record_ms(t, [200.0] * 20)
    assert t.delay_s() == pytest.approx(0.7)  # shared while it answers, whatever the local window says
    shared.current = False  # Redis or the hub away
    clock.advance(1.0)
    assert t.delay_s() == pytest.approx(0.2)
    shared.current, shared.samples = True, 10  # back, but below min_samples (e.g. a fresh shared window)
    clock.advance(1.0)
    assert t.delay_s() == pytest.approx(0.2)
    assert t.shared_quantile_s() is None
