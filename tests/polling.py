"""One bounded way for a test to wait for something the code under test makes true on its own.

    record = await eventually(lambda: collect.records, timeout_s=5, what="the request record")
    await eventually(lambda: link.up, timeout_s=10, what="the link to connect")
    await eventually(healthy, timeout_s=30, what="the gateway to start", ignoring=(aiohttp.ClientError,))
    await eventually(lambda: not (left := tasks()) or NotYet(left), timeout_s=5, what="no task left")
    await eventually_equal(lambda: breaker.consecutive_failures, 1, timeout_s=5, what="the breaker failure")

`check` is called until it returns a truthy value, which `eventually` returns. It may be a plain function or
a coroutine function (its awaitable is awaited). An exception it raises ends the wait at once and propagates
(so a check may assert things that must hold all along, e.g. that a process is still running), unless its
type is in `ignoring`: then it counts as "not yet" and is reported as the last value if the wait times out.

The wait is bounded as a whole, the check's own awaiting included: after `timeout_s` it fails the test with an
AssertionError naming `what` and the last value the check returned. It never falls through silently.
A check whose plain "no" would say little returns `NotYet(what it saw)`: falsy, and shown in that message.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NotYet:
    """A falsy check result that carries what the check saw instead, for the timeout message."""

    seen: object

    def __bool__(self) -> bool:
        return False


class _NothingYet:
    def __repr__(self) -> str:
        return "<no check completed>"


_NOTHING_YET = _NothingYet()


async def eventually(check: Callable[[], T | Awaitable[T]], *, timeout_s: float, what: str,
                     interval_s: float = 0.01, ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy value `check()` returns within `timeout_s`; else the test fails (see module doc)."""
    if not (0 < timeout_s < math.inf and 0 < interval_s < math.inf):
        raise ValueError(f"timeout_s and interval_s must be > 0 and finite, got {timeout_s} and {interval_s}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: object = _NOTHING_YET
    calls = 0
    final = False  # the check at the deadline: whatever it sees, the last one
    while True:
        calls += 1
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await _bounded(value, deadline)
        except _Expired:
            break  # the check itself was still running at the deadline
        except ignoring as exc:
            last = exc
        else:
            last = value
            if value:
                return cast(T, value)
        remaining = deadline - loop.time()
        if final or remaining <= 0:
            break
        final = remaining <= interval_s
        await asyncio.sleep(min(interval_s, remaining))
    checks = f"{calls} check" + ("s" if calls != 1 else "")
    raise AssertionError(f"timed out after {timeout_s:g} s ({checks}) waiting for {what}; last value seen: {last!r}")


async def eventually_equal(get: Callable[[], object | Awaitable[object]], expected: object, *, timeout_s: float,
                           what: str, interval_s: float = 0.01,
                           ignoring: tuple[type[BaseException], ...] = ()) -> None:
    """Wait until `get()` (plain or coroutine function) equals `expected`; on timeout the message shows the
    last value it had instead."""
    async def check() -> bool | NotYet:
        value = get()
        if inspect.isawaitable(value):
            value = await value
        return True if value == expected else NotYet(value)

    await eventually(check, timeout_s=timeout_s, what=f"{what} (== {expected!r})", interval_s=interval_s,
                     ignoring=ignoring)


class _Expired(Exception):
    """The deadline passed while an asynchronous check was still running."""


async def _bounded(awaitable: Awaitable[T], deadline: float) -> T:
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise _Expired from None
        raise  # the check's own TimeoutError: not ours to reinterpret
