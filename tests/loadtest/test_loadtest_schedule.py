"""The open-loop schedule: Poisson arrivals from a seeded RNG, fixed before the first request is sent."""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics

import pytest

from loadtest.schedule import build_schedule, poisson_arrivals
from loadtest.spec import IntRange, Traffic

TRAFFIC = Traffic(rate=50.0, duration_s=40.0, count=None, request_timeout_s=10.0, stream_share=0.6,
                  anthropic_share=0.3, prompt_tokens=IntRange(10, 90), max_tokens=IntRange(64, 64))


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    assert build_schedule(TRAFFIC, seed=3) == build_schedule(TRAFFIC, seed=3)
    assert build_schedule(TRAFFIC, seed=3) != build_schedule(TRAFFIC, seed=4)


def test_arrivals_are_poisson_at_the_rate() -> None:
    times = poisson_arrivals(50.0, 200.0, random.Random(1))
    # 10,000 expected; a Poisson count's standard deviation is 100, so 5% is far outside chance.
    assert abs(len(times) - 10_000) < 500
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.05)
    # Exponential gaps: standard deviation equals the mean (coefficient of variation 1), unlike a fixed pace.
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.05)


def test_arrivals_are_sorted_within_the_duration_and_capped_by_count() -> None:
    times = poisson_arrivals(20.0, 5.0, random.Random(2))
    assert times == sorted(times)
    assert all(0.0 <= t < 5.0 for t in times)
    assert len(poisson_arrivals(20.0, 5.0, random.Random(2), count=7)) == 7
    assert poisson_arrivals(20.0, 5.0, random.Random(2), count=7) == times[:7]


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        poisson_arrivals(0.0, 1.0, random.Random(0))


def test_request_mix_follows_the_shares_and_ranges() -> None:
    plan = build_schedule(TRAFFIC, seed=5)
    n = len(plan)
    assert [r.index for r in plan] == list(range(n))
    assert sum(r.stream for r in plan) / n == pytest.approx(0.6, abs=0.05)
    assert sum(r.door == "anthropic" for r in plan) / n == pytest.approx(0.3, abs=0.05)
    assert all(10 <= r.prompt_tokens <= 90 for r in plan)
    assert {r.prompt_tokens for r in plan} >= {10, 90}  # both ends are reachable
    assert all(r.max_tokens == 64 for r in plan)


def test_changing_the_mix_does_not_move_any_arrival() -> None:
    other = dataclasses.replace(TRAFFIC, stream_share=0.1, anthropic_share=0.9, prompt_tokens=IntRange(5, 5))
    assert [r.at_s for r in build_schedule(other, seed=5)] == [r.at_s for r in build_schedule(TRAFFIC, seed=5)]


def test_count_caps_the_schedule() -> None:
    plan = build_schedule(dataclasses.replace(TRAFFIC, count=25), seed=1)
    assert len(plan) == 25
