from __future__ import annotations

import pybreaker
import pytest

from gateway.clock import FakeClock
from gateway.policies.breaker import BreakerOptions, BreakerState, CircuitBreaker, Permit

FAIL_MAX = 3
RESET_S = 30.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, BreakerState, BreakerState]] = []

    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.events.append((name, old, new))


def make(clock: FakeClock, recorder: Recorder | None = None) -> CircuitBreaker:
    return CircuitBreaker("openai", BreakerOptions(fail_max=FAIL_MAX, reset_timeout_s=RESET_S),
                          clock=clock, on_state_change=recorder)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A call, not the property, so mypy does not carry narrowing from one assert to the next.
    return breaker.state


def acquire(breaker: CircuitBreaker) -> Permit:
    permit = breaker.try_acquire()
    assert permit is not None
    return permit


def fail_times(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        acquire(breaker).failure()


def open_breaker(breaker: CircuitBreaker) -> None:
    fail_times(breaker, FAIL_MAX)
    assert state_of(breaker) is BreakerState.OPEN


def test_closed_admits_everything() -> None:
    breaker = make(FakeClock())
    permits = [breaker.try_acquire() for _ in range(100)]
    assert all(p is not None and not p.is_probe for p in permits)
    assert state_of(breaker) is BreakerState.CLOSED


def test_opens_after_fail_max_consecutive_failures_and_not_before() -> None:
    breaker = make(FakeClock())
    fail_times(breaker, FAIL_MAX - 1)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == FAIL_MAX - 1
    fail_times(breaker, 1)
    assert state_of(breaker) is BreakerState.OPEN


def test_success_in_between_resets_the_count() -> None:
    breaker = make(FakeClock())
    for _ in range(5):
        fail_times(breaker, FAIL_MAX - 1)
        acquire(breaker).success()
        assert breaker.consecutive_failures == 0
    assert state_of(breaker) is BreakerState.CLOSED


def test_releases_never_count_cancelled_losers_never_open_a_breaker() -> None:
    breaker = make(FakeClock())
    fail_times(breaker, 1)
    for _ in range(1_000):
        acquire(breaker).release()
    # Releases neither count as failures nor reset the count as successes would.
    assert breaker.consecutive_failures == 1
    fail_times(breaker, FAIL_MAX - 2)
    assert state_of(breaker) is BreakerState.CLOSED
    fail_times(breaker, 1)
    assert state_of(breaker) is BreakerState.OPEN


def test_thousand_releases_then_fail_max_minus_one_failures_stays_closed() -> None:
    breaker = make(FakeClock())
    for _ in range(1_000):
        acquire(breaker).release()
    fail_times(breaker, FAIL_MAX - 1)
    assert state_of(breaker) is BreakerState.CLOSED


def test_permit_settles_once() -> None:
    breaker = make(FakeClock())
    permit = acquire(breaker)
    permit.failure()
    for _ in range(10):
        permit.failure()
        permit.success()
        permit.release()
    assert breaker.consecutive_failures == 1
    fail_times(breaker, FAIL_MAX - 2)
    assert state_of(breaker) is BreakerState.CLOSED


def test_open_rejects_until_reset_timeout() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    assert breaker.try_acquire() is None
    clock.advance(RESET_S - 0.001)
    assert breaker.try_acquire() is None
    assert state_of(breaker) is BreakerState.OPEN


def test_after_reset_timeout_exactly_one_probe() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(RESET_S)
    probe = breaker.try_acquire()
    assert probe is not None and probe.is_probe
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert [breaker.try_acquire() for _ in range(50)] == [None] * 50
    clock.advance(3 * RESET_S)  # time alone frees nothing while the probe is in flight
    assert breaker.try_acquire() is None


def test_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(RESET_S)
    acquire(breaker).success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    permits = [breaker.try_acquire() for _ in range(10)]
    assert all(p is not None and not p.is_probe for p in permits)
    # The count starts from zero again: fail_max fresh failures are needed to reopen.
    fail_times(breaker, FAIL_MAX - 1)
    assert state_of(breaker) is BreakerState.CLOSED


def test_probe_failure_reopens_and_restarts_the_timer() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(RESET_S + 5)  # probe taken late: the timer must restart from the failure, not opening
    probe = acquire(breaker)
    clock.advance(7)
    probe.failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.retry_in_s() == pytest.approx(RESET_S)
    clock.advance(RESET_S - 0.001)
    assert breaker.try_acquire() is None
    clock.advance(0.001)
    assert acquire(breaker).is_probe


def test_probe_release_frees_the_slot_without_changing_state() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(RESET_S)
    acquire(breaker).release()
    assert state_of(breaker) is BreakerState.HALF_OPEN
    second = acquire(breaker)
    assert second.is_probe
    assert breaker.try_acquire() is None
    second.success()
    assert state_of(breaker) is BreakerState.CLOSED


def test_state_change_callback_sequence() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, recorder)
    open_breaker(breaker)
    clock.advance(RESET_S)
    acquire(breaker).failure()
    clock.advance(RESET_S)
    acquire(breaker).release()  # neutral: no transition
    acquire(breaker).success()
    closed, open_, half = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
    assert recorder.events == [
        ("openai", closed, open_),
        ("openai", open_, half),
        ("openai", half, open_),
        ("openai", open_, half),
        ("openai", half, closed),
    ]


def test_reading_state_half_opens_once_and_reports_it() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, recorder)
    open_breaker(breaker)
    clock.advance(RESET_S)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert recorder.events[-1] == ("openai", BreakerState.OPEN, BreakerState.HALF_OPEN)
    assert len(recorder.events) == 2
    assert acquire(breaker).is_probe  # state was consistent with try_acquire


def test_retry_in_s() -> None:
    clock = FakeClock()
    breaker = make(clock)
    assert breaker.retry_in_s() == 0.0
    open_breaker(breaker)
    assert breaker.retry_in_s() == pytest.approx(RESET_S)
    clock.advance(12.5)
    assert breaker.retry_in_s() == pytest.approx(RESET_S - 12.5)
    clock.advance(100)
    assert breaker.retry_in_s() == 0.0
    acquire(breaker)
    assert breaker.retry_in_s() == 0.0  # half-open


def test_late_failures_from_closed_permits_are_ignored_while_open() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, recorder)
    stragglers = [acquire(breaker) for _ in range(5)]
    open_breaker(breaker)
    clock.advance(RESET_S - 1)
    for permit in stragglers[:3]:
        permit.failure()  # must not re-arm the open timer
    assert breaker.retry_in_s() == pytest.approx(1.0)
    clock.advance(1)
    probe = acquire(breaker)
    stragglers[3].success()  # a late success must not close the breaker or free the probe slot
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.try_acquire() is None
    stragglers[4].failure()  # nor may a late failure reopen it
    assert state_of(breaker) is BreakerState.HALF_OPEN
    probe.success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert [e[2] for e in recorder.events] == [BreakerState.OPEN, BreakerState.HALF_OPEN,
                                               BreakerState.CLOSED]


def test_pybreaker_is_the_state_machine() -> None:
    breaker = make(FakeClock())
    assert isinstance(breaker._cb, pybreaker.CircuitBreaker)
    open_breaker(breaker)
    assert breaker._cb.current_state == pybreaker.STATE_OPEN


def test_zero_reset_timeout_admits_a_probe_at_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", BreakerOptions(fail_max=1, reset_timeout_s=0.0), clock=clock)
    acquire(breaker).failure()
    probe = acquire(breaker)
    assert probe.is_probe
    assert breaker.try_acquire() is None


@pytest.mark.parametrize(("fail_max", "reset"), [(0, 1.0), (-1, 1.0), (1, -0.5), (1, float("inf"))])
def test_options_validation(fail_max: int, reset: float) -> None:
    with pytest.raises(ValueError):
        BreakerOptions(fail_max=fail_max, reset_timeout_s=reset)
