"""The shared latency window: DDSketch accuracy against the exact nearest rank, merging, forgetting by
wall-clock buckets, and the bounds on bins and buckets. Time from a fake clock."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.policies.latency import delay_rank
from gateway.policies.sketch import (
    BUCKET_S,
    MAX_BIN,
    MAX_BINS,
    MAX_COUNT,
    MAX_LATENCY_S,
    MAX_WINDOW_S,
    MIN_BIN,
    MIN_LATENCY_S,
    RELATIVE_ACCURACY,
    Bins,
    LatencySketch,
    SharedWindow,
    bin_of,
    bucket_of,
    checked_bins,
    first_bucket,
    flat,
    unflat,
)

START = 1_700_000_000.0  # a wall-clock time on a bucket boundary (divisible by 10)


def bins_of(values: list[float]) -> Bins:
    bins: Bins = {}
    for value in values:
        key = bin_of(value)
        bins[key] = bins.get(key, 0) + 1
    return bins


def delay_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[delay_rank(q, len(ordered)) - 1]  # the local window's rule


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=MIN_LATENCY_S, max_value=MAX_LATENCY_S), min_size=1, max_size=300),
       st.floats(min_value=0.001, max_value=0.999))
def test_any_quantile_is_within_the_relative_accuracy_of_the_exact_delay_quantile(values: list[float],
                                                                               q: float) -> None:
    estimate = LatencySketch(bins_of(values)).quantile_s(q)
    exact = delay_quantile(values, q)
    assert estimate is not None
    assert abs(estimate - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9)


def test_quantiles_of_a_lognormal_ttft_window() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.4), 0.3) + (8.0 if rng.random() < 0.03 else 0.0) for _ in range(3000)]
    sketch = LatencySketch(bins_of(values))
    assert sketch.count == 3000
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert sketch.quantile_s(q) == pytest.approx(delay_quantile(values, q), rel=RELATIVE_ACCURACY)


def test_merging_two_sketches_is_the_sketch_of_both_sample_sets() -> None:
    rng = random.Random(3)
    first = [rng.uniform(0.1, 2.0) for _ in range(500)]
    second = [rng.uniform(1.0, 9.0) for _ in range(300)]
    merged = LatencySketch(bins_of(first))
    merged.merge(LatencySketch(bins_of(second)))
    together = LatencySketch(bins_of(first + second))
    assert merged.count == together.count == 800
    for q in (0.01, 0.25, 0.5, 0.75, 0.95, 0.99):
        assert merged.quantile_s(q) == together.quantile_s(q)
        assert merged.quantile_s(q) == pytest.approx(delay_quantile(first + second, q), rel=RELATIVE_ACCURACY)


def test_an_empty_sketch_has_no_quantile() -> None:
    assert LatencySketch().quantile_s(0.5) is None and LatencySketch().count == 0


def test_values_are_clamped_so_a_sketch_never_has_more_than_max_bins() -> None:
    assert bin_of(0.0) == bin_of(1e-12) == bin_of(MIN_LATENCY_S) == MIN_BIN
    assert bin_of(1e12) == bin_of(MAX_LATENCY_S) == MAX_BIN
    # Latencies spread over twenty decades, far past the clamp: the bins stay within the clamp's range.
    spread = [10.0 ** (exponent / 50) for exponent in range(-500, 500)]
    bins = bins_of(spread)
    assert len(bins) <= MAX_BINS and min(bins) == MIN_BIN and max(bins) == MAX_BIN
    assert MAX_BINS < 800  # 1% accuracy from 1 ms to 1 h


def test_bins_read_from_elsewhere_are_checked() -> None:
    raw: list[tuple[object, object]] = [(b"12", b"3"), ("12", 2), (MAX_BIN + 1, 5), (MIN_BIN - 1, 5), (7, 0),
                                        (8, -4), ("x", 1), (9, "y"), (10, None), (11, MAX_COUNT + 1),
                                        (13, MAX_COUNT), (13, MAX_COUNT)]
    assert checked_bins(raw) == {12: 5, 13: MAX_COUNT}
    assert unflat(flat({3: 1, -40: 7})) == {3: 1, -40: 7}
    assert unflat([1, 2, 3]) == {1: 2}  # an odd tail is dropped


def wall() -> FakeClock:
    return FakeClock(START)


def window_with(samples_at: dict[float, list[float]], clock: FakeClock) -> SharedWindow:
    """A window whose view holds `samples_at` (wall time -> latencies), as installed by an exchange."""
    view: dict[int, Bins] = {}
    for at, values in samples_at.items():
        bucket = view.setdefault(bucket_of(at), {})
        for key, count in bins_of(values).items():
            bucket[key] = bucket.get(key, 0) + count
    window = SharedWindow(wall=clock)
    window.install({bucket: LatencySketch(bins) for bucket, bins in view.items()})
    return window


def test_the_view_answers_only_while_current_and_from_min_samples() -> None:
    clock = wall()
    window = SharedWindow(wall=clock)
    assert window.quantile_s(0.95, min_samples=1, window_s=60) is None  # never fetched: not current
    window = window_with({START: [0.2] * 19}, clock)
    assert window.quantile_s(0.95, min_samples=20, window_s=60) is None
    assert window.quantile_s(0.95, min_samples=19, window_s=60) == pytest.approx(0.2, rel=RELATIVE_ACCURACY)
    window.lose()
    assert window.quantile_s(0.95, min_samples=1, window_s=60) is None
    assert window.samples(60) == 19  # still held: the next install replaces it


def test_one_view_answers_every_quantile_and_window() -> None:
    clock = wall()
    values = [float(ms) / 1000 for ms in range(1, 1001)]
    window = window_with({START: values}, clock)
    for q in (0.5, 0.95, 0.999):
        assert window.quantile_s(q, min_samples=1, window_s=60) == pytest.approx(delay_quantile(values, q),
                                                                                rel=RELATIVE_ACCURACY)


def test_buckets_are_forgotten_once_they_leave_the_window() -> None:
    clock = wall()
    # Slow samples 50 s before fast ones; a 60 s window sees both, then only the fast ones.
    window = window_with({START: [2.0] * 50, START + 50: [0.1] * 50}, clock)
    clock.now = START + 55
    assert window.samples(60) == 100
    assert window.quantile_s(0.95, min_samples=1, window_s=60) == pytest.approx(2.0, rel=RELATIVE_ACCURACY)
    # The first bucket [START, START + 10) overlaps the last 60 s until START + 70: never forgotten earlier
    # than the local window would (it forgets a sample at +60), at most one bucket later.
    clock.now = START + 69.9
    assert window.samples(60) == 100
    clock.now = START + 70
    assert window.samples(60) == 50
    assert window.quantile_s(0.95, min_samples=1, window_s=60) == pytest.approx(0.1, rel=RELATIVE_ACCURACY)
    # A shorter window of another alias reads the same view over its own span.
    assert window.samples(15) == 50
    clock.now = START + 75
    assert window.samples(15) == 0 and window.samples(60) == 50


def test_first_bucket_covers_between_the_window_and_one_bucket_more() -> None:
    for now in (START, START + 0.1, START + 9.99, START + 5):
        first = first_bucket(now, 60)
        covered_from = first * BUCKET_S
        assert now - 60 - BUCKET_S < covered_from <= now - 60
    assert first_bucket(START, 10 * MAX_WINDOW_S) == first_bucket(START, MAX_WINDOW_S)  # capped


def test_recorded_samples_wait_in_their_wall_clock_bucket_until_taken() -> None:
    clock = wall()
    window = SharedWindow(wall=clock)
    window.record(0.3)
    window.record(0.3)
    clock.advance(BUCKET_S)
    window.record(0.5)
    window.record(-1.0)  # broken measurements are ignored, as by the local window
    window.record(math.inf)
    window.record(math.nan)
    taken = window.take_pending()
    assert taken == {bucket_of(START): {bin_of(0.3): 2}, bucket_of(START) + 1: {bin_of(0.5): 1}}
    assert window.pending == {}
    window.record(0.3)
    window.give_back(taken)  # the exchange failed: published by the next one, with what came meanwhile
    assert window.pending == {bucket_of(START): {bin_of(0.3): 2}, bucket_of(START) + 1: {bin_of(0.5): 1,
                                                                                         bin_of(0.3): 1}}


def test_pending_buckets_are_bounded_while_nothing_publishes() -> None:
    clock = wall()
    window = SharedWindow(wall=clock)
    for _ in range(1000):  # an hour and more with the exchange down
        window.record(0.2)
        clock.advance(BUCKET_S)
    kept = int(MAX_WINDOW_S / BUCKET_S) + 1
    assert len(window.pending) <= kept
    assert min(window.pending) >= bucket_of(clock.now) - kept
    taken = window.take_pending()
    window.give_back({bucket_of(START): {bin_of(0.2): 5}, **taken})  # a bucket long gone is not kept
    assert bucket_of(START) not in window.pending and len(window.pending) <= kept


def test_each_install_replaces_the_view_and_its_cached_quantiles() -> None:
    clock = wall()
    window = window_with({START: [0.2] * 30}, clock)
    assert window.quantile_s(0.5, min_samples=1, window_s=60) == pytest.approx(0.2, rel=RELATIVE_ACCURACY)
    window.install({bucket_of(START): LatencySketch(bins_of([0.9] * 30))})
    assert window.quantile_s(0.5, min_samples=1, window_s=60) == pytest.approx(0.9, rel=RELATIVE_ACCURACY)
    window.install({})
    assert window.quantile_s(0.5, min_samples=1, window_s=60) is None and window.current
