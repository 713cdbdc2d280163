"""The percentile function and latency summaries."""

from __future__ import annotations

import random

import pytest

from loadtest.stats import percentile, percentiles, summarize_ms


def test_nearest_rank_on_known_values() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.9) == 90
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert percentile(values, 0.0) == 1
    assert percentile(values, 1.0) == 100


def test_exact_ranks_do_not_round_up() -> None:
    # 0.999 * 1000 is 999.0000000000001 in floating point: the 999th value, not the 1000th.
    assert percentile(range(1, 1001), 0.999) == 999


def test_order_of_input_does_not_matter_and_values_are_real_samples() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile([0.1, 0.2], 0.5) == 0.1  # no interpolation: a latency some request really had


def test_percentiles_are_monotonic() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(0, 1.5) for _ in range(777)]
    qs = [0.5, 0.9, 0.99, 0.999]
    got = percentiles(values, qs)
    assert got == sorted(got)


def test_errors() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1.0], 1.5)


def test_summary_in_milliseconds() -> None:
    summary = summarize_ms([0.1, 0.2, 0.3, 0.4])
    assert summary == {"count": 4, "mean": 250.0, "max": 400.0, "p50": 200.0, "p90": 400.0, "p99": 400.0,
                       "p99.9": 400.0}
    assert summarize_ms([]) == {"count": 0, "mean": None, "max": None, "p50": None, "p90": None, "p99": None,
                                "p99.9": None}
