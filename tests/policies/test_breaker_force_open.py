"""`CircuitBreaker.force_open`: another replica's evidence opens this breaker, then the usual single probe."""

from __future__ import annotations

from gateway.clock import FakeClock
from gateway.policies.breaker import BreakerOptions, BreakerState, CircuitBreaker

RESET_S = 30.0


def make(clock: FakeClock, events: list[tuple[BreakerState, BreakerState]]) -> CircuitBreaker:
    return CircuitBreaker("p", BreakerOptions(fail_max=3, reset_timeout_s=RESET_S), clock=clock,
                          on_state_change=lambda _name, old, new: events.append((old, new)))


def state_of(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state


def test_force_open_skips_the_provider_for_the_given_time_then_admits_one_probe() -> None:
    clock, events = FakeClock(), []
    breaker = make(clock, events)
    assert breaker.force_open(10.0) is True
    assert state_of(breaker) is BreakerState.OPEN and breaker.try_acquire() is None
    assert events == [(BreakerState.CLOSED, BreakerState.OPEN)]  # reported like any opening
    assert breaker.retry_in_s() == 10.0  # its own reset timeout (30 s) does not apply
    clock.advance(9.9)
    assert breaker.try_acquire() is None
    clock.advance(0.1)
    probe = breaker.try_acquire()
    assert probe is not None and probe.is_probe and breaker.try_acquire() is None
    probe.success()
    assert state_of(breaker) is BreakerState.CLOSED


def test_force_open_only_ever_lengthens_an_opening() -> None:
    clock, events = FakeClock(), []
    breaker = make(clock, events)
    for _ in range(3):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.failure()
    assert breaker.retry_in_s() == RESET_S
    assert breaker.force_open(5.0) is False and breaker.retry_in_s() == RESET_S
    assert breaker.force_open(45.0) is True and breaker.retry_in_s() == 45.0
    assert events == [(BreakerState.CLOSED, BreakerState.OPEN)]  # extended, not re-opened
    assert breaker.force_open(0.0) is False and breaker.force_open(-1.0) is False


def test_force_open_during_a_probe_makes_the_probe_stale() -> None:
    clock, events = FakeClock(), []
    breaker = make(clock, events)
    breaker.force_open(1.0)
    clock.advance(1.0)
    probe = breaker.try_acquire()
    assert probe is not None and probe.is_probe
    assert breaker.force_open(20.0) is True  # another replica's probe failed meanwhile
    probe.success()  # granted before: must not close the breaker the other replica's evidence opened
    assert state_of(breaker) is BreakerState.OPEN and breaker.retry_in_s() == 20.0
