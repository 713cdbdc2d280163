"""Kaplan-Meier against hand-computed cases, and the documented tail rule."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from gateway.tuning.survival import TABLE_GRID, Sample, SurvivalCurve


def curve(*values: float | str) -> SurvivalCurve:
    """`3` is observed at 3, `"3+"` was still waiting at 3 (censored)."""
    return SurvivalCurve(Sample(float(str(v).rstrip("+")), observed=not str(v).endswith("+")) for v in values)


def test_without_censoring_it_is_the_empirical_distribution() -> None:
    c = curve(1, 2, 3, 4)
    assert [c.cdf(t) for t in (0.5, 1, 1.5, 2, 3, 4)] == [0, 0.25, 0.25, 0.5, 0.75, 1.0]
    assert [c.quantile(u) for u in (0, 0.25, 0.26, 0.5, 0.75, 1)] == [1, 1, 2, 2, 3, 4]
    assert c.tail_mass == 0


def test_censored_samples_pass_their_mass_to_the_later_ones() -> None:
    # n=5. t=1: 1 event of 5 at risk, S = 4/5. 2+ leaves. t=3: 1 of 3, S = 4/5 * 2/3 = 8/15. 4+ leaves.
    # t=5: 1 of 1, S = 0.  F: 1 -> 0.2, 3 -> 7/15, 5 -> 1.
    c = curve(1, "2+", 3, "4+", 5)
    assert c.cdf(1) == pytest.approx(0.2)
    assert c.cdf(2.5) == pytest.approx(0.2)
    assert c.cdf(3) == pytest.approx(7 / 15)
    assert c.cdf(5) == pytest.approx(1.0)
    assert (c.observed, c.censored) == (3, 2)
    # Dropping the censored samples would put the median at 3; they were slower than 2 and 4, so it is 5.
    assert c.quantile(0.5) == 5
    assert c.quantile(0.3) == 3


def test_ties_count_the_censored_as_at_risk_at_their_own_time() -> None:
    # t=2: 2 events among 4 at risk (the 2+ still counts), S = 1/2; then 1 left, t=4: S = 0.
    c = curve(2, "2+", 2, 4)
    assert c.cdf(2) == pytest.approx(0.5)
    assert c.cdf(3.9) == pytest.approx(0.5)
    assert c.cdf(4) == 1.0


def test_the_tail_beyond_the_last_observed_value_is_spread_up_to_the_longest_wait() -> None:
    # t=1: S = 3/4; t=2: S = 3/4 * 2/3 = 1/2; two still waiting at 3: half the mass lies beyond 2, and the
    # documented rule spreads it evenly over (2, 3].
    c = curve(1, 2, "3+", "3+")
    assert c.tail_mass == pytest.approx(0.5)
    assert (c.last_observed, c.longest_wait) == (2, 3)
    assert c.quantile(0.75) == pytest.approx(2.5)
    assert c.quantile(1.0) == pytest.approx(3.0)
    assert c.cdf(2.5) == pytest.approx(0.75)
    assert c.cdf(3) == 1.0


def test_conditional_draws_stay_above_the_wait() -> None:
    c = curve(1, "2+", 3, "4+", 5)
    # Given T > 2: P(3) = (7/15 - 1/5) / (4/5) = 1/3, P(5) = 2/3.
    assert c.conditional_quantile(2, 0.2) == 3
    assert c.conditional_quantile(2, 0.5) == 5
    assert c.conditional_quantile(5, 0.5) == 5  # nothing known beyond the longest wait: the wait itself
    tail = curve(1, "3+")
    assert 1 < tail.conditional_quantile(1.5, 0.5) <= 3


def test_table_reproduces_the_quantiles_on_its_grid() -> None:
    rng = random.Random(4)
    values = [rng.lognormvariate(0, 1) for _ in range(5000)]
    c = SurvivalCurve(Sample(v) for v in values)
    table = c.table(scale=1000.0, digits=3)
    assert [q for q, _ in table] == [round(q, 6) for q in TABLE_GRID]
    assert table[0] == (0.0, round(1000 * min(values), 3)) and table[-1] == (1.0, round(1000 * max(values), 3))
    ordered = sorted(values)
    for q, v in table[1:-1]:  # nearest rank: the smallest value with a share q at or below it
        assert v == pytest.approx(1000 * ordered[max(0, math.ceil(q * len(ordered) - 1e-9) - 1)], abs=1e-3)
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(table))


def test_needs_one_observed_value() -> None:
    with pytest.raises(ValueError, match="at least one uncensored"):
        curve("1+", "2+")
    with pytest.raises(ValueError, match="u must be in"):
        curve(1).quantile(1.5)
