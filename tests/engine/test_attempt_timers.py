"""`AttemptRun` details the race tests do not show: which timers an attempt arms (and which timeout contexts it
enters: one costs a few microseconds even with no timer)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.engine import Engine
from gateway.errors import GatewayError
from tests.engine.fakes import FakeProvider, Plan
from tests.engine.test_race import BODY, new_record, runtime

pytestmark = pytest.mark.looptime


@pytest.mark.parametrize(("deadline_s", "armed"), [(60.0, [30.0]), (10.0, [])])
async def test_an_attempt_timeout_past_the_race_deadline_arms_no_timer(
        monkeypatch: pytest.MonkeyPatch, deadline_s: float, armed: list[float | None]) -> None:
    delays: list[float | None] = []
    real_timeout = asyncio.timeout

    def recording_timeout(delay: float | None) -> asyncio.Timeout:
        delays.append(delay)
        return real_timeout(delay)

    monkeypatch.setattr("gateway.engine.attempt.asyncio.timeout", recording_timeout)
    rt = runtime(FakeProvider("a", Plan(ttft_s=0.1)), timeout_s=30.0)
    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as tg:
        await Engine(rt).run(new_record(rt), BODY, tg, loop.time() + deadline_s)
    assert delays == armed  # the deadline (10 s) would cancel the attempt before its 30 s could pass: no context


async def test_a_deadline_before_the_attempt_timeout_still_ends_a_slow_attempt() -> None:
    rt = runtime(FakeProvider("a", Plan(ttft_s=50.0)), timeout_s=30.0)
    loop = asyncio.get_running_loop()
    error: GatewayError | None = None
    async with asyncio.TaskGroup() as tg:
        try:  # inside the group: TaskGroup would wrap the error in an ExceptionGroup
            await Engine(rt).run(new_record(rt), BODY, tg, loop.time() + 10.0)
        except GatewayError as exc:
            error = exc
    assert error is not None and error.status == 504
    assert loop.time() == pytest.approx(10.0, abs=0.5)
