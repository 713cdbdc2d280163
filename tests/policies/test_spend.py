import pytest

from gateway.clock import FakeClock
from gateway.policies.spend import SpendCeiling


def test_the_ceiling_holds_over_a_sliding_hour() -> None:
    clock = FakeClock(0.0)
    ceiling = SpendCeiling(1.0, clock=clock)
    assert ceiling.allows(0.6)
    ceiling.spend(0.6)
    assert not ceiling.allows(0.5) and ceiling.allows(0.4)
    clock.advance(30 * 60)
    ceiling.spend(0.4)
    assert not ceiling.allows(0.01)
    clock.advance(31 * 60)  # the first 0.6 has left the hour
    assert ceiling.spent_usd() == pytest.approx(0.4) and ceiling.allows(0.6)


def test_negative_spend_counts_as_nothing_and_a_bad_ceiling_is_refused() -> None:
    ceiling = SpendCeiling(1.0, clock=FakeClock(0.0))
    ceiling.spend(-5.0)
    assert ceiling.spent_usd() == 0.0
    with pytest.raises(ValueError):
        SpendCeiling(float("inf"))
