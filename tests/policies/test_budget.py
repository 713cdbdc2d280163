from __future__ import annotations

from typing import Any

import pytest

from gateway.clock import FakeClock
from gateway.policies.budget import BudgetOptions, HedgeBudget


def spend_all(budget: HedgeBudget, limit: int = 10_000) -> int:
    spent = 0
    while spent < limit and budget.try_spend():
        spent += 1
    return spent


def test_floor_lets_a_quiet_gateway_hedge() -> None:
    budget = HedgeBudget(BudgetOptions(percent=10, window_s=10, min_per_window=3), clock=FakeClock())
    assert [budget.try_spend() for _ in range(5)] == [True, True, True, False, False]
    assert budget.snapshot() == (0, 3)
    # A fraction of a hedge earned counts as room (the test is hedges < floor + share): 3 < 3 + 0.1.
    budget.record_request()
    assert [budget.try_spend() for _ in range(3)] == [True, False, False]
    assert budget.snapshot() == (1, 4)


def test_thousand_requests_at_ten_percent() -> None:
    budget = HedgeBudget(BudgetOptions(percent=10, window_s=10, min_per_window=3), clock=FakeClock())
    for _ in range(1_000):
        budget.record_request()
    assert spend_all(budget) == 100 + 3
    assert budget.snapshot() == (1_000, 103)
    assert budget.try_spend() is False
    # More traffic earns more hedges: ten requests buy one.
    for _ in range(10):
        budget.record_request()
    assert budget.try_spend() is True
    assert budget.try_spend() is False


def test_refused_hedges_are_not_counted_or_queued() -> None:
    budget = HedgeBudget(BudgetOptions(percent=0, window_s=10, min_per_window=1), clock=FakeClock())
    assert budget.try_spend() is True
    for _ in range(50):
        assert budget.try_spend() is False
    assert budget.snapshot() == (0, 1)


def test_budget_refills_after_the_window() -> None:
    clock = FakeClock()
    budget = HedgeBudget(BudgetOptions(percent=10, window_s=10, min_per_window=3), clock=clock)
    for _ in range(100):
        budget.record_request()
    assert spend_all(budget) == 13
    clock.advance(5)
    assert budget.try_spend() is False  # still inside the window
    clock.advance(5)
    assert budget.snapshot() == (0, 0)
    assert spend_all(budget) == 3  # the floor is back; the old requests are gone too


def test_requests_age_out_bucket_by_bucket() -> None:
    clock = FakeClock(start=0.0)
    budget = HedgeBudget(BudgetOptions(percent=50, window_s=10, min_per_window=0), clock=clock)
    for _ in range(10):  # 10 requests at t = 0, 1, ..., 9
        budget.record_request()
        clock.advance(1)
    assert budget.snapshot() == (9, 0)  # at t = 10 the t = 0 bucket has left the window
    clock.advance(4.5)
    assert budget.snapshot() == (5, 0)  # t = 14.5: requests from t = 5..9 remain
    assert spend_all(budget) == 3  # 3 < 0.5 * 5 refuses the 4th
    clock.advance(10)
    assert budget.snapshot() == (0, 0)


def test_hedges_age_out_too() -> None:
    clock = FakeClock(start=0.0)
    budget = HedgeBudget(BudgetOptions(percent=0, window_s=10, min_per_window=2), clock=clock)
    assert spend_all(budget) == 2
    clock.advance(6)
    assert budget.try_spend() is False
    clock.advance(4)  # t = 10: the t = 0 hedges leave
    assert spend_all(budget) == 2
    assert budget.snapshot() == (0, 2)


def test_long_idle_gap_is_cheap_and_clears_everything() -> None:
    clock = FakeClock()
    budget = HedgeBudget(BudgetOptions(), clock=clock)
    for _ in range(500):
        budget.record_request()
    spend_all(budget)
    clock.advance(1e9)
    assert budget.snapshot() == (0, 0)


def test_percent_100_effectively_uncapped() -> None:
    budget = HedgeBudget(BudgetOptions(percent=100, window_s=10, min_per_window=3), clock=FakeClock())
    for _ in range(200):
        budget.record_request()
        assert budget.try_spend() is True  # every request may hedge once


def test_percent_zero_leaves_only_the_floor() -> None:
    budget = HedgeBudget(BudgetOptions(percent=0, window_s=10, min_per_window=3), clock=FakeClock())
    for _ in range(10_000):
        budget.record_request()
    assert spend_all(budget) == 3


def test_fractional_window() -> None:
    clock = FakeClock(start=0.0)
    budget = HedgeBudget(BudgetOptions(percent=0, window_s=0.5, min_per_window=1), clock=clock)
    assert budget.try_spend() is True
    clock.advance(0.45)
    assert budget.try_spend() is False
    clock.advance(0.1)
    assert budget.try_spend() is True


@pytest.mark.parametrize("kwargs", [{"percent": -1.0}, {"window_s": 0.0}, {"window_s": float("inf")},
                                    {"min_per_window": -1}, {"percent": float("nan")}])
def test_options_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BudgetOptions(**kwargs)
