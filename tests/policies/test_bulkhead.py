"""The bulkhead in virtual time (looptime): the bound, FIFO service, cancellation and try_acquire."""

from __future__ import annotations

import asyncio

import pytest

from gateway.policies.bulkhead import Bulkhead, BulkheadOptions

pytestmark = pytest.mark.looptime


def test_invalid_options() -> None:
    with pytest.raises(ValueError):
        BulkheadOptions(max_concurrent=0)


async def test_bound_holds_under_a_hundred_users() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=5))
    running = peak = 0
    waits: list[float] = []

    async def user() -> None:
        nonlocal running, peak
        waits.append(await bulkhead.acquire())
        try:
            running += 1
            peak = max(peak, running)
            assert bulkhead.in_use <= 5
            await asyncio.sleep(1)
        finally:
            running -= 1
            bulkhead.release()

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(user() for _ in range(100)))
    assert peak == 5
    assert loop.time() - started == pytest.approx(20.0)  # 100 users, 5 at a time, 1 s each
    assert sorted(waits) == pytest.approx(sorted(float(i // 5) for i in range(100)))
    assert (bulkhead.in_use, bulkhead.waiting) == (0, 0)


async def test_waiters_are_served_in_arrival_order() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1))
    assert await bulkhead.acquire() == 0.0
    served: list[int] = []

    async def waiter(number: int) -> None:
        await bulkhead.acquire()
        served.append(number)
        await asyncio.sleep(0.1)
        bulkhead.release()

    tasks = []
    for number in range(10):
        tasks.append(asyncio.create_task(waiter(number)))
        await asyncio.sleep(0.01)  # arrive in this order
    assert bulkhead.waiting == 10
    bulkhead.release()
    await asyncio.gather(*tasks)
    assert served == list(range(10))


async def test_a_newcomer_cannot_overtake_the_queue() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1))
    await bulkhead.acquire()
    queued = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()  # the slot goes to the queued waiter, which has not resumed yet
    assert bulkhead.in_use == 1
    assert bulkhead.try_acquire() is False
    late = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    assert await queued == 0.0
    assert not late.done() and bulkhead.waiting == 1
    bulkhead.release()
    await late
    bulkhead.release()
    assert bulkhead.in_use == 0


async def test_acquire_reports_the_time_waited() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1))
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(2.5)
    bulkhead.release()
    assert await waiter == pytest.approx(2.5)


async def test_a_cancelled_waiter_leaks_nothing() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1))
    await bulkhead.acquire()
    gone = asyncio.create_task(bulkhead.acquire())
    stays = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(1)
    assert bulkhead.waiting == 2
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert bulkhead.waiting == 1 and bulkhead.in_use == 1
    bulkhead.release()
    assert await stays == pytest.approx(1.0)
    bulkhead.release()
    assert (bulkhead.in_use, bulkhead.waiting) == (0, 0)


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1))
    await bulkhead.acquire()
    handed = asyncio.create_task(bulkhead.acquire())
    next_in_line = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()  # the slot is handed to `handed`...
    handed.cancel()  # ...which is cancelled before it could resume
    await asyncio.gather(handed, return_exceptions=True)
    assert handed.cancelled()
    assert await next_in_line == 0.0
    assert bulkhead.in_use == 1
    bulkhead.release()
    assert (bulkhead.in_use, bulkhead.waiting) == (0, 0)


async def test_an_enclosing_timeout_bounds_the_wait() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1))
    await bulkhead.acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(3):
            await bulkhead.acquire()
    assert loop.time() - started == pytest.approx(3.0)
    assert (bulkhead.in_use, bulkhead.waiting) == (1, 0)
    bulkhead.release()
    assert bulkhead.try_acquire() is True


async def test_many_cancellations_leave_the_count_exact() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=3))

    async def user(hold_s: float) -> None:
        await bulkhead.acquire()
        try:
            await asyncio.sleep(hold_s)
        finally:
            bulkhead.release()

    tasks = [asyncio.create_task(user(0.5 + (i % 7) * 0.3)) for i in range(60)]
    await asyncio.sleep(2)
    for task in tasks[::3]:  # some are running, some waiting, some about to be handed a slot
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (bulkhead.in_use, bulkhead.waiting) == (0, 0)


async def test_try_acquire() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=2))
    assert bulkhead.try_acquire() is True
    assert bulkhead.try_acquire() is True
    assert bulkhead.try_acquire() is False
    assert bulkhead.in_use == 2
    bulkhead.release()
    assert bulkhead.try_acquire() is True


async def test_unbounded() -> None:
    bulkhead = Bulkhead(BulkheadOptions())
    for _ in range(1_000):
        assert bulkhead.try_acquire() is True
    assert await bulkhead.acquire() == 0.0
    assert (bulkhead.in_use, bulkhead.waiting) == (1_001, 0)


async def test_release_without_acquire_is_an_error() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1))
    with pytest.raises(RuntimeError):
        bulkhead.release()
