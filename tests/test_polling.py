"""The shared polling helper, in virtual time (looptime): its sleeps are instant but counted."""

from __future__ import annotations

import asyncio

import pytest

from tests.polling import NotYet, eventually, eventually_equal

pytestmark = pytest.mark.looptime


async def test_returns_the_first_truthy_value_of_a_plain_check() -> None:
    values = iter([0, None, "", [], [1]])
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await eventually(lambda: next(values), timeout_s=1, what="a list", interval_s=0.1) == [1]
    assert loop.time() - started == pytest.approx(0.4)  # four falsy values, one interval after each


async def test_awaits_a_coroutine_check() -> None:
    calls = 0

    async def check() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls if calls == 3 else 0

    assert await eventually(check, timeout_s=1, what="the third call") == 3


class NotReady:
    """A falsy value with something to say."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"NotReady({self.n})"


async def test_times_out_naming_what_and_the_last_value() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    calls = iter(range(1_000_000))
    with pytest.raises(AssertionError, match=r"timed out after 0.5 s \(\d+ checks?\) waiting for the thing; "
                                             r"last value seen: NotReady\(\d+\)$") as info:
        await eventually(lambda: NotReady(next(calls)), timeout_s=0.5, what="the thing", interval_s=0.1)
    assert str(info.value).endswith("NotReady(5)")  # the value of the last check (at 0.5 s), not the first
    assert loop.time() - started == pytest.approx(0.5)


async def test_a_check_that_never_returns_is_still_bounded() -> None:
    never = asyncio.Event()

    async def hangs() -> bool:
        await never.wait()
        return True

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AssertionError, match="waiting for a hang; last value seen: <no check completed>"):
        await eventually(hangs, timeout_s=2, what="a hang")
    assert loop.time() - started == pytest.approx(2)


async def test_an_exception_from_the_check_ends_the_wait_at_once() -> None:
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        raise KeyError("gone")

    with pytest.raises(KeyError):
        await eventually(check, timeout_s=5, what="anything")
    assert calls == 1


async def test_ignored_exceptions_count_as_not_yet_and_are_reported() -> None:
    outcomes: list[object] = [ConnectionError("refused"), ConnectionError("refused"), "up"]

    def check() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert await eventually(check, timeout_s=1, what="up", ignoring=(ConnectionError,)) == "up"

    def refused() -> bool:
        raise ConnectionError("still refused")

    with pytest.raises(AssertionError, match=r"last value seen: ConnectionError\('still refused'\)"):
        await eventually(refused, timeout_s=0.1, what="up", ignoring=(ConnectionError,))


async def test_a_timeout_inside_the_check_is_not_mistaken_for_the_deadline() -> None:
    async def check() -> bool:
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
        return True

    with pytest.raises(TimeoutError):
        await eventually(check, timeout_s=5, what="anything")


async def test_rejects_a_wait_that_is_not_bounded() -> None:
    for timeout_s, interval_s in ((0, 0.1), (-1, 0.1), (float("nan"), 0.1), (float("inf"), 0.1), (1, 0)):
        with pytest.raises(ValueError, match="must be > 0 and finite"):
            await eventually(lambda: True, timeout_s=timeout_s, what="x", interval_s=interval_s)


async def test_one_last_check_runs_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    ready_at = loop.time() + 1.0
    # Checks at 0, 0.3, 0.6, 0.9 see nothing; without a check at 1.0 the wait would fail.
    assert await eventually(lambda: loop.time() >= ready_at, timeout_s=1.0, what="the deadline", interval_s=0.3)
    assert loop.time() == pytest.approx(ready_at)


async def test_not_yet_is_falsy_and_shows_what_the_check_saw() -> None:
    left = ["_Race.drive"]
    with pytest.raises(AssertionError, match=r"last value seen: NotYet\(seen=\['_Race.drive'\]\)$"):
        await eventually(lambda: not left or NotYet(list(left)), timeout_s=0.1, what="no task left")
    left.clear()
    assert await eventually(lambda: not left or NotYet(list(left)), timeout_s=0.1, what="no task left") is True


async def test_eventually_equal_waits_for_the_value_and_reports_the_last_one() -> None:
    counter = iter(range(100))
    await eventually_equal(lambda: next(counter), 3, timeout_s=1, what="the counter")
    assert next(counter) == 4  # stopped at the first equal value

    async def status() -> int:
        await asyncio.sleep(0.01)
        return 503

    with pytest.raises(AssertionError, match=r"waiting for the status \(== 200\); last value seen: NotYet\(seen=503\)"):
        await eventually_equal(status, 200, timeout_s=0.2, what="the status")
