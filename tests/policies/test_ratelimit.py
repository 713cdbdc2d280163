"""Per-key rate limits: token buckets for requests and tokens per minute, driven by a FakeClock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import FakeClock
from gateway.policies.ratelimit import RateLimiter, RateLimitOptions

RPM_60 = RateLimitOptions(requests_per_minute=60)  # one request per second refill
TPM_600 = RateLimitOptions(tokens_per_minute=600)  # ten tokens per second refill


def admit_all(limiter: RateLimiter, key: str, options: RateLimitOptions, tokens: int = 0,
              limit: int = 10_000) -> int:
    admitted = 0
    while admitted < limit and limiter.check(key, options, tokens) is None:
        admitted += 1
    return admitted


@pytest.mark.parametrize("kwargs", [{"requests_per_minute": 0}, {"tokens_per_minute": -5}])
def test_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RateLimitOptions(**kwargs)


def test_unlimited_admits_everything_and_keeps_no_state() -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert admit_all(limiter, "k", RateLimitOptions(), tokens=1_000_000, limit=1_000) == 1_000
    limiter.settle("k", RateLimitOptions(), 1_000_000, 5)
    assert len(limiter) == 0


def test_rpm_burst_then_exact_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert admit_all(limiter, "k", RPM_60) == 60  # a full minute's burst
    assert limiter.check("k", RPM_60, 0) == pytest.approx(1.0)
    clock.advance(0.25)
    assert limiter.check("k", RPM_60, 0) == pytest.approx(0.75)  # refused calls are not counted
    clock.advance(0.75)
    assert limiter.check("k", RPM_60, 0) is None
    assert limiter.check("k", RPM_60, 0) == pytest.approx(1.0)


def test_retry_after_for_an_odd_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    options = RateLimitOptions(requests_per_minute=7)
    assert admit_all(limiter, "k", options) == 7
    wait = limiter.check("k", options, 0)
    assert wait == pytest.approx(60 / 7)
    assert wait is not None
    clock.advance(wait)  # waiting exactly what was asked is enough, float rounding notwithstanding
    assert limiter.check("k", options, 0) is None


def test_rpm_refill_is_continuous_and_capped_at_a_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    admit_all(limiter, "k", RPM_60)
    clock.advance(10)
    assert admit_all(limiter, "k", RPM_60) == 10
    clock.advance(3600)  # an hour idle buys one minute's burst, not sixty
    assert admit_all(limiter, "k", RPM_60) == 60


def test_tpm_reserves_the_estimate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert limiter.check("k", TPM_600, 400) is None
    assert limiter.check("k", TPM_600, 200) is None
    assert limiter.check("k", TPM_600, 100) == pytest.approx(10.0)  # 100 tokens at 10 per second
    clock.advance(5)
    assert limiter.check("k", TPM_600, 100) == pytest.approx(5.0)
    assert limiter.check("k", TPM_600, 50) is None


def test_settle_refunds_an_overestimate() -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert limiter.check("k", TPM_600, 600) is None
    assert limiter.check("k", TPM_600, 100) is not None
    limiter.settle("k", TPM_600, 600, 150)  # 450 back
    assert limiter.check("k", TPM_600, 450) is None
    assert limiter.check("k", TPM_600, 1) is not None


def test_settle_refund_never_exceeds_a_full_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert limiter.check("k", TPM_600, 500) is None
    clock.advance(60)  # full again
    limiter.settle("k", TPM_600, 500, 0)
    assert admit_all(limiter, "k", TPM_600, tokens=100) == 6


def test_settle_charges_an_underestimate_as_debt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert limiter.check("k", TPM_600, 100) is None
    limiter.settle("k", TPM_600, 100, 1_100)  # 1,000 more than reserved: the bucket is at -500
    assert limiter.check("k", TPM_600, 0) == pytest.approx(50.0)  # in debt: even a 0-token request waits
    assert limiter.check("k", TPM_600, 100) == pytest.approx(60.0)  # 600 tokens short at 10/s
    clock.advance(60)
    assert limiter.check("k", TPM_600, 100) is None


def test_an_estimate_above_the_limit_waits_for_a_full_bucket_then_goes_into_debt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert limiter.check("k", TPM_600, 10) is None
    assert limiter.check("k", TPM_600, 5_000) == pytest.approx(1.0)  # waits only for a full bucket
    clock.advance(1)
    assert limiter.check("k", TPM_600, 5_000) is None
    assert limiter.check("k", TPM_600, 1) == pytest.approx((4_400 + 1) / 10)


def test_rpm_and_tpm_together_wait_for_the_later_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    options = RateLimitOptions(requests_per_minute=60, tokens_per_minute=600)
    assert limiter.check("k", options, 600) is None
    # One request is free, but the tokens are not: nothing is counted.
    assert limiter.check("k", options, 30) == pytest.approx(3.0)
    clock.advance(3)
    assert limiter.check("k", options, 30) is None
    assert admit_all(limiter, "k", options) == 59  # 60 + 3 refilled, capped at 60, minus this one


def test_keys_are_independent() -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert admit_all(limiter, "a", RPM_60) == 60
    assert admit_all(limiter, "b", RPM_60) == 60
    assert admit_all(limiter, "c", RateLimitOptions(requests_per_minute=5)) == 5


def test_idle_keys_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    for i in range(1_000):
        assert limiter.check(f"key-{i}", RPM_60, 0) is None
    assert len(limiter) == 1_000
    clock.advance(61)  # every bucket is full again and a sweep is due
    assert limiter.check("other", RPM_60, 0) is None
    assert len(limiter) == 1
    # A forgotten key starts with a full bucket, exactly as it would have had.
    assert admit_all(limiter, "key-0", RPM_60) == 60


def test_a_key_in_debt_is_remembered_until_the_debt_is_paid() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert limiter.check("debtor", TPM_600, 0) is None
    limiter.settle("debtor", TPM_600, 0, 1_800)  # -1,200: full again after 180 s
    clock.advance(121)
    limiter.check("other", TPM_600, 0)  # sweeps
    assert len(limiter) == 2
    assert limiter.check("debtor", TPM_600, 600) == pytest.approx(59.0)
    clock.advance(60)
    limiter.check("other", TPM_600, 0)  # sweeps again: debt paid, both buckets full
    assert len(limiter) == 1


def test_settle_after_the_key_was_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert limiter.check("k", TPM_600, 100) is None
    clock.advance(300)  # a long stream: the key is swept meanwhile
    limiter.check("other", TPM_600, 0)
    assert len(limiter) == 1
    limiter.settle("k", TPM_600, 100, 700)  # 600 over the estimate
    assert limiter.check("k", TPM_600, 1) == pytest.approx(0.1)


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from([0.0, 1000.0, 1e6, 3e7]),  # float rounding grows with the clock's magnitude
       rpm=st.integers(1, 10_000), tpm=st.integers(1, 2_000_000),
       calls=st.lists(st.tuples(st.integers(0, 100_000), st.floats(0, 90), st.integers(0, 200_000) | st.none()),
                      min_size=1, max_size=30))
def test_waiting_the_retry_after_is_always_enough(start: float, rpm: int, tpm: int,
                                                  calls: list[tuple[int, float, int | None]]) -> None:
    clock = FakeClock(start)
    limiter = RateLimiter(clock=clock)
    options = RateLimitOptions(requests_per_minute=rpm, tokens_per_minute=tpm)
    for tokens, gap, actual in calls:
        clock.advance(gap)
        wait = limiter.check("k", options, tokens)
        if wait is not None:
            assert wait > 0
            clock.advance(wait)
            assert limiter.check("k", options, tokens) is None
        if actual is not None:
            limiter.settle("k", options, tokens, actual)
