"""The bulkhead: a bound on concurrent upstream attempts to one provider.

Hedging multiplies attempts, and a slow provider holds its attempts open longer; without a bound, one
sick provider could tie up every connection and socket the gateway has. Waiters are served strictly in
arrival order (FIFO), and a free slot is handed straight to the oldest waiter, so a newcomer can never
overtake someone already queued. This is written out rather than taken from `asyncio.Semaphore`, whose
fairness has changed between Python versions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BulkheadOptions:
    max_concurrent: int | None = None  # None = unbounded

    def __post_init__(self) -> None:
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1 or None (unbounded), got {self.max_concurrent}")


class Bulkhead:
    """Slots for one provider. Every successful `acquire` or `try_acquire` must be matched by exactly
    one `release`. Call from the event loop thread. Time waited is read from the event loop's clock."""

    def __init__(self, options: BulkheadOptions) -> None:
        self.options = options
        self._in_use = 0  # slots held, counting those handed to a waiter that has not resumed yet
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _has_free_slot(self) -> bool:
        limit = self.options.max_concurrent
        return limit is None or self._in_use < limit

    def try_acquire(self) -> bool:
        """Take a slot if one is free now and nobody is queued for it, else False without waiting
        (a hedge that would have to wait is better skipped)."""
        if self._waiters or not self._has_free_slot():
            return False
        self._in_use += 1
        return True

    async def acquire(self) -> float:
        """Wait for a slot, FIFO, and return the seconds waited (0.0 if one was free). Cancellable,
        and so bounded by an enclosing `asyncio.timeout`: a cancelled waiter holds no slot and leaves
        the queue, and a slot handed to it just before it was cancelled goes on to the next waiter."""
        if self.try_acquire():
            return 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        granted: asyncio.Future[None] = loop.create_future()
        self._waiters.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # the slot was ours, but we no longer want it
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(granted)
            raise
        return loop.time() - started

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one (the slot stays in use), else free it.
        RuntimeError if no slot is held: a double release is a bug that would break the bound."""
        if self._in_use <= 0:
            raise RuntimeError("Bulkhead.release() without a matching acquire")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_use -= 1
