"""A breaker listener that raises is logged, and fails nothing: not the outcome it follows, not the other
listeners, not the state change, not the request whose attempt moved the breaker (regression of cdb4ce9)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.clock import FakeClock
from gateway.config.model import GatewayConfig, HedgeConfig, ModelRoute, ProviderConfig, ServerConfig, Target
from gateway.engine import Completed, Engine, Launch, Outcome, RequestRecord, Runtime
from gateway.errors import FailureKind, ProviderError
from gateway.policies.breaker import BreakerOptions, BreakerState, CircuitBreaker, Permit
from gateway.wire import WireFormat
from tests.engine.fakes import FakeProvider, Plan

FAIL_MAX = 2
RESET_S = 30.0
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Raising:
    """A listener that fails on every call (a broken replication link, a buggy log handler)."""

    def __init__(self) -> None:
        self.calls: list[tuple[BreakerState, BreakerState]] = []

    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.calls.append((old, new))
        raise RuntimeError("listener is broken")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[BreakerState, BreakerState]] = []

    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.events.append((old, new))


def acquire(breaker: CircuitBreaker) -> Permit:
    permit = breaker.try_acquire()
    assert permit is not None
    return permit


def state_of(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state


def listener_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.breaker" and r.getMessage() == "breaker listener failed"]


def test_a_raising_listener_is_logged_and_every_outcome_and_transition_still_happens(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, raising, recorder = FakeClock(), Raising(), Recorder()
    breaker = CircuitBreaker("p", BreakerOptions(FAIL_MAX, RESET_S), clock=clock, on_state_change=raising)
    breaker.add_listener(recorder)  # after the raising one: it still hears of every change
    with caplog.at_level(logging.ERROR, logger="gateway.breaker"):
        acquire(breaker).failure()
        assert breaker.consecutive_failures == 1
        acquire(breaker).failure()  # opens the breaker: the listeners are called, the first raises
        assert state_of(breaker) is OPEN and breaker.try_acquire() is None
        clock.advance(RESET_S)
        probe = acquire(breaker)  # open -> half-open, reported
        assert probe.is_probe
        probe.success()  # half-open -> closed, reported
        assert state_of(breaker) is CLOSED and breaker.consecutive_failures == 0
        acquire(breaker).failure()  # a failure after all that still counts
        assert breaker.consecutive_failures == 1
    expected = [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert raising.calls == expected and recorder.events == expected
    failures = listener_failures(caplog)
    assert len(failures) == 3 and all(r.levelno == logging.ERROR for r in failures)
    assert all(r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError) for r in failures)


def test_a_raising_listener_cannot_fail_a_forced_opening(caplog: pytest.LogCaptureFixture) -> None:
    clock, raising = FakeClock(), Raising()
    breaker = CircuitBreaker("p", BreakerOptions(FAIL_MAX, RESET_S), clock=clock, on_state_change=raising)
    with caplog.at_level(logging.ERROR, logger="gateway.breaker"):
        assert breaker.force_open(10.0)  # another replica's breaker opened
        assert state_of(breaker) is OPEN
    assert raising.calls == [(CLOSED, OPEN)] and len(listener_failures(caplog)) == 1


@pytest.mark.looptime
async def test_a_request_whose_attempt_opens_a_breaker_with_a_raising_listener_still_succeeds(
        caplog: pytest.LogCaptureFixture) -> None:
    fault = ProviderError(FailureKind.FAULT, "a: HTTP 500: boom", status=500, error_type="api_error")
    a, b = FakeProvider("a", Plan(ttft_s=0.05, error=fault)), FakeProvider("b", Plan(ttft_s=0.1))
    providers = {f.name: ProviderConfig(name=f.name, kind=WireFormat.OPENAI, base_url="http://127.0.0.1:9/v1",
                                        breaker=BreakerOptions(fail_max=1, reset_timeout_s=RESET_S))
                 for f in (a, b)}
    route = ModelRoute(alias="chat", targets=(Target("a", "model-a"), Target("b", "model-b")),
                       hedge=HedgeConfig(max_attempts=1))
    loop = asyncio.get_running_loop()
    rt = Runtime(GatewayConfig(server=ServerConfig(), providers=providers, models={"chat": route}),
                 providers={"a": a, "b": b}, clock=loop.time)
    raising = Raising()
    rt.breakers["a"].add_listener(raising)  # as the shared-state link adds its own
    record = RequestRecord(request_id=1, door=WireFormat.OPENAI, started=loop.time(), trace_id=1, route=route,
                           alias="chat")
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
    with caplog.at_level(logging.ERROR, logger="gateway.breaker"):
        async with asyncio.TaskGroup() as tg:
            result = await Engine(rt).run(record, body, tg, loop.time() + 60)
    assert isinstance(result, Completed)
    assert str(result.body["choices"][0]["message"]["content"]).startswith("b-0")  # the fallback answered
    assert [(x.provider, x.launch, x.outcome) for x in record.attempts] == [
        ("a", Launch.PRIMARY, Outcome.FAILED), ("b", Launch.FALLBACK, Outcome.WON)]
    assert raising.calls == [(CLOSED, OPEN)] and state_of(rt.breakers["a"]) is OPEN
    assert len(listener_failures(caplog)) == 1
