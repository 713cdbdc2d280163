"""Request coalescing in virtual time (looptime): identical concurrent requests share one flight."""

from __future__ import annotations

import asyncio
import contextlib
import gc

import pytest

from gateway.policies.cache import Coalescer

pytestmark = pytest.mark.looptime


class Upstream:
    """A fake upstream call that takes `delay_s`, counts its calls and notices being cancelled."""

    def __init__(self, delay_s: float = 1.0, result: str = "answer", error: Exception | None = None) -> None:
        self.delay_s = delay_s
        self.result = result
        self.error = error
        self.calls = 0
        self.cancelled = 0
        self.finished = 0

    async def __call__(self) -> str:
        self.calls += 1
        number = self.calls
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        if self.error is not None:
            raise self.error
        return f"{self.result}-{number}"


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_concurrent_identical_calls_share_one_flight() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream()
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(coalescer.run("k", upstream) for _ in range(50)))
    assert results == ["answer-1"] * 50
    assert upstream.calls == 1
    assert loop.time() - started == pytest.approx(1.0)
    await asyncio.sleep(0)
    assert coalescer.in_flight() == 0


async def test_different_keys_fly_separately() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream()
    results = await asyncio.gather(coalescer.run("a", upstream), coalescer.run("b", upstream))
    assert sorted(results) == ["answer-1", "answer-2"]
    assert upstream.calls == 2


async def test_failure_reaches_every_caller() -> None:
    coalescer: Coalescer[str] = Coalescer()
    boom = RuntimeError("upstream 500")
    upstream = Upstream(error=boom)
    results = await asyncio.gather(*(coalescer.run("k", upstream) for _ in range(10)), return_exceptions=True)
    assert all(result is boom for result in results)
    assert upstream.calls == 1
    # The failure is not remembered: the next call flies again.
    upstream.error = None
    assert await coalescer.run("k", upstream) == "answer-2"


async def test_a_cancelled_waiter_does_not_cancel_the_flight() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream(delay_s=1.0)
    first = asyncio.create_task(coalescer.run("k", upstream))  # the caller that starts the flight
    others = [asyncio.create_task(coalescer.run("k", upstream)) for _ in range(3)]
    await asyncio.sleep(0.5)
    assert coalescer.waiters("k") == 4
    first.cancel()  # its client disconnected
    await asyncio.sleep(0)
    assert first.cancelled()
    assert coalescer.waiters("k") == 3
    assert await asyncio.gather(*others) == ["answer-1"] * 3
    assert upstream.cancelled == 0 and upstream.finished == 1


async def test_a_waiter_deadline_bounds_only_its_own_wait() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream(delay_s=2.0)

    async def impatient() -> str:
        async with asyncio.timeout(0.5):
            return await coalescer.run("k", upstream)

    patient = asyncio.create_task(coalescer.run("k", upstream))
    with pytest.raises(TimeoutError):
        await impatient()
    assert await patient == "answer-1"
    assert upstream.cancelled == 0


async def test_the_flight_is_cancelled_when_every_waiter_has_gone() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream(delay_s=10.0)
    waiters = [asyncio.create_task(coalescer.run("k", upstream)) for _ in range(5)]
    await asyncio.sleep(1)
    for task in waiters[:4]:
        task.cancel()
    await asyncio.sleep(0)
    assert upstream.cancelled == 0  # one still wants it
    waiters[4].cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.sleep(0)
    assert upstream.cancelled == 1
    assert coalescer.in_flight() == 0
    assert not other_tasks()


async def test_a_caller_arriving_while_an_abandoned_flight_unwinds_starts_a_new_one() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream(delay_s=1.0)
    leaver = asyncio.create_task(coalescer.run("k", upstream))
    await asyncio.sleep(0.1)
    leaver.cancel()
    # Same loop iteration: the abandoned flight has been told to cancel but has not finished yet.
    newcomer = asyncio.create_task(coalescer.run("k", upstream))
    assert await newcomer == "answer-2"
    assert upstream.cancelled == 1


async def test_a_failure_after_every_waiter_left_is_not_reported_as_unretrieved() -> None:
    # The flight swallows the cancellation and fails instead: nobody waits, yet asyncio must not
    # complain that the task's exception was never retrieved.
    coalescer: Coalescer[str] = Coalescer()
    handler_called: list[object] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: handler_called.append(ctx))

    async def stubborn() -> str:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        raise RuntimeError("failed while unwinding")

    waiter = asyncio.create_task(coalescer.run("k", stubborn))
    await asyncio.sleep(1)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.sleep(0)
    assert coalescer.in_flight() == 0
    gc.collect()
    assert handler_called == []


async def test_sequential_calls_start_new_flights() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream()
    assert await coalescer.run("k", upstream) == "answer-1"
    assert await coalescer.run("k", upstream) == "answer-2"
    assert upstream.calls == 2


async def test_a_call_right_after_completion_starts_a_new_flight() -> None:
    coalescer: Coalescer[str] = Coalescer()
    calls = 0

    async def instant() -> str:
        nonlocal calls
        calls += 1
        return f"answer-{calls}"

    first = asyncio.create_task(coalescer.run("k", instant))
    await asyncio.sleep(0)  # first starts the flight
    await asyncio.sleep(0)  # the flight completes; the callbacks that clean up after it are only queued
    assert coalescer.in_flight() == 1  # still listed...
    second = await coalescer.run("k", instant)  # ...but over, so this is a new request
    assert await first == "answer-1"
    assert second == "answer-2"


async def test_aclose_cancels_every_flight_and_leaves_no_task() -> None:
    coalescer: Coalescer[str] = Coalescer()
    upstream = Upstream(delay_s=10.0)
    waiters = [asyncio.create_task(coalescer.run(k, upstream)) for k in ("a", "b", "c")]
    await asyncio.sleep(1)
    assert coalescer.in_flight() == 3
    await coalescer.aclose()
    assert coalescer.in_flight() == 0
    assert upstream.cancelled == 3
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert not other_tasks()
    with pytest.raises(RuntimeError):
        await coalescer.run("a", upstream)
