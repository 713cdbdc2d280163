"""The exact-match response cache and request coalescing.

A deterministic request (explicit `temperature: 0`, or an alias marked `always`) asked twice gets the
same answer, so the second one need not reach a provider. The cache stores the aggregated non-streaming
body in the door's own format, so a streamed request can be served from a non-streamed answer and vice
versa: the caller re-streams a hit. Identical requests that arrive while the first is still upstream
are coalesced onto that one flight instead of each paying for its own (a cache stampede).

cachetools 8 has no asyncio support (`@cached` on an `async def` caches the coroutine), so the cache
is used with explicit, synchronous get and put, and the stampede guard is the `Coalescer` below: a
dict of in-flight tasks, one per key.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import orjson
from cachetools import TLRUCache

from gateway.clock import Clock, monotonic
from gateway.wire import Json

# Top-level fields that cannot change the answer: how it is delivered (stream, stream_options) and
# who asked (user, metadata). Requests differing only in these share a cache entry.
_IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata"})

# Bump when the key derivation changes, so entries written under the old scheme can never be hit.
_KEY_SCHEME = "v1"


@dataclass(frozen=True, slots=True)
class CacheOptions:
    ttl_s: float = 300.0
    max_entries: int = 1000
    max_bytes: int = 64 * 1024 * 1024
    shared_across_keys: bool = False  # one entry serves every gateway key (only for non-private data)
    always: bool = False  # cache even non-deterministic requests: the alias says any answer will do

    def __post_init__(self) -> None:
        if not 0.0 < self.ttl_s < math.inf:
            raise ValueError(f"ttl_s must be finite and > 0, got {self.ttl_s}")
        if self.max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {self.max_entries}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")


def _is_number(value: object) -> bool:
    # bool is an int subclass, but `temperature: false` is not a temperature.
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_cacheable(body: Json, options: CacheOptions) -> bool:
    """Whether an answer to this request may be cached and served again. Same rule for OpenAI and
    Anthropic bodies (both name the field `temperature`).

    Never with several choices (`n` other than 1: a client asking for n samples wants them to differ)
    or with `store` set (the client asked the provider to keep the exchange, which a hit would skip).
    Otherwise only with an explicit `temperature: 0`, since both APIs default to sampling, unless the
    alias is marked `always`. Tools are allowed: a tool call is returned to the client, not executed.
    """
    n = body.get("n")
    if n is not None and not (_is_number(n) and n == 1):
        return False
    if body.get("store") not in (None, False):
        return False
    if options.always:
        return True
    temperature = body.get("temperature")
    return _is_number(temperature) and temperature == 0


def cache_key(door: str, alias: str, body: Json, gateway_key: str | None, options: CacheOptions) -> str:
    """The cache key of a request: a sha256 hex digest, so neither the prompt nor the gateway key is
    kept in memory as a key.

    The body is canonicalised (keys sorted at every depth, no whitespace, fields in _IGNORED_FIELDS
    dropped), so key order and formatting do not matter. The door is part of the key because the cached
    body is in the door's format. The gateway key is too, hashed, unless `shared_across_keys`: one
    tenant must not read another's answers. `body` must be what orjson can serialise, which anything
    `orjson.loads` produced is; otherwise orjson raises TypeError.
    """
    kept = {name: value for name, value in body.items() if name not in _IGNORED_FIELDS}
    canonical = orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)
    tenant = None
    if gateway_key is not None and not options.shared_across_keys:
        tenant = hashlib.sha256(gateway_key.encode()).hexdigest()
    # A JSON array header cannot contain a raw newline, so header and body cannot be confused.
    header = orjson.dumps([_KEY_SCHEME, door, alias, tenant])
    return hashlib.sha256(header + b"\n" + canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A successful answer as the door would send it without streaming."""

    body: bytes  # serialized non-streaming response body, in the door's wire format
    provider: str  # who answered first time, for the trace and response headers
    model: str  # the provider's model that answered
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers worth replaying, if any

    @property
    def size(self) -> int:
        """Bytes this entry accounts for in `max_bytes`: the body plus header names and values."""
        return len(self.body) + sum(len(name) + len(value) for name, value in self.headers)


def _size_of(answer: CachedAnswer) -> float:
    return answer.size


class _AnswerStore(TLRUCache[str, CachedAnswer, float]):
    """An LRU cache with a time to live per entry, bounded in bytes, that counts evictions. cachetools
    evicts (always through `popitem`, least recently used first) only for room; expired entries are
    dropped without it. Per entry (TLRU, not TTLCache) because an answer copied from a shared cache must
    expire when the shared copy does, not a whole ttl after it was copied."""

    def __init__(self, options: CacheOptions, clock: Clock) -> None:
        super().__init__(maxsize=options.max_bytes, ttu=self._expires_at, timer=clock, getsizeof=_size_of)
        self.evictions = 0
        self.next_ttl_s = options.ttl_s  # the ttl of the entry being stored: `ResponseCache.put` sets it

    def _expires_at(self, _key: str, _answer: CachedAnswer, now: float) -> float:
        return now + self.next_ttl_s

    def popitem(self) -> tuple[str, CachedAnswer]:
        item = super().popitem()
        self.evictions += 1
        return item


class ResponseCache:
    """Answers by cache key, each kept for `ttl_s`, least recently used evicted first once either
    `max_entries` or `max_bytes` would be exceeded. Synchronous: call from the event loop thread, and
    never await between a `get` that missed and the `put` that fills it (use a `Coalescer`)."""

    def __init__(self, options: CacheOptions, *, clock: Clock = monotonic) -> None:
        self.options = options
        self._store = _AnswerStore(options, clock)
        self.hits = 0
        self.misses = 0

    @property
    def evictions(self) -> int:
        """Entries dropped to make room (not those that expired)."""
        return self._store.evictions

    def __len__(self) -> int:
        return len(self._store)  # cachetools drops expired entries first

    @property
    def size_bytes(self) -> int:
        """Bytes held by live and not yet collected entries, as counted by `CachedAnswer.size`."""
        return int(self._store.currsize)

    def get(self, key: str) -> CachedAnswer | None:
        """The live answer for `key`, now the most recently used, or None."""
        answer = self._store.get(key)
        if answer is None:
            self.misses += 1
        else:
            self.hits += 1
        return answer

    def put(self, key: str, answer: CachedAnswer, *, ttl_s: float | None = None) -> None:
        """Store (or replace) the answer for `key` with a fresh ttl: the configured one, or `ttl_s` if
        shorter (what is left of it in a shared cache). An answer larger than `max_bytes` is ignored
        rather than allowed to flush the whole cache."""
        if answer.size > self.options.max_bytes or (ttl_s is not None and ttl_s <= 0):
            return
        store = self._store
        store.next_ttl_s = self.options.ttl_s if ttl_s is None else min(ttl_s, self.options.ttl_s)
        # len() drops expired entries first, so live entries are never evicted while dead ones count.
        if key not in store and len(store) >= self.options.max_entries:
            store.popitem()
        store[key] = answer  # cachetools evicts further LRU entries until max_bytes holds


T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0


class Coalescer(Generic[T]):
    """Identical concurrent requests share one upstream flight.

    The first caller for a key starts the flight as a task this object owns; every caller, the first
    included, awaits it through `asyncio.shield`. So a caller that goes away (client disconnect,
    deadline) stops waiting without cancelling the flight for the others, and every caller gets the
    same result or the same exception. When the last waiter has gone the flight is cancelled, since
    nobody wants it any more. A call after a flight has finished starts a new one.

    The flight runs in its own task: it sees a copy of the first caller's contextvars, and a deadline
    (`asyncio.timeout`) around `run` bounds only the wait, not the flight, so the flight must carry its
    own. A flight must not `run` its own key: it would wait for itself.
    """

    def __init__(self) -> None:
        self._joinable: dict[str, _Flight[T]] = {}  # key -> the flight a new caller joins
        self._running: set[asyncio.Task[T]] = set()  # every unfinished flight, joinable or abandoned
        self._closed = False

    def in_flight(self) -> int:
        """Flights whose task has not finished yet (including abandoned ones still unwinding)."""
        return len(self._running)

    def waiters(self, key: str) -> int:
        """Callers waiting on the joinable flight for `key`."""
        flight = self._joinable.get(key)
        return 0 if flight is None else flight.waiters

    async def run(self, key: str, flight: Callable[[], Awaitable[T]]) -> T:
        """The result of the flight for `key`, joining the one in progress if there is one."""
        if self._closed:
            raise RuntimeError("Coalescer is closed")
        current = self._joinable.get(key)
        # A flight whose task is done but whose cleanup callback has not run yet is over: start anew.
        if current is None or current.task.done():
            current = self._start(key, flight)
        current.waiters += 1
        try:
            return await asyncio.shield(current.task)
        finally:
            current.waiters -= 1
            if current.waiters == 0 and not current.task.done():
                # Nobody wants the answer any more. Unlist it now, so a caller arriving while it unwinds
                # starts a fresh flight instead of joining one that will end in CancelledError.
                self._unlist(key, current)
                current.task.cancel()

    async def aclose(self) -> None:
        """Cancel every flight and wait for them to finish, for shutdown. Later `run` calls raise.
        Callers still waiting get CancelledError."""
        self._closed = True
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, key: str, flight: Callable[[], Awaitable[T]]) -> _Flight[T]:
        async def fly() -> T:
            return await flight()

        task = asyncio.get_running_loop().create_task(fly(), name=f"coalesced-flight-{key[:12]}")
        started = _Flight(task)
        self._joinable[key] = started
        self._running.add(task)
        task.add_done_callback(lambda done: self._finished(key, started, done))
        return started

    def _finished(self, key: str, flight: _Flight[T], task: asyncio.Task[T]) -> None:
        self._running.discard(task)
        # No need to retrieve a failure nobody waited for: each waiter's asyncio.shield does that even
        # after its waiter left, so asyncio never logs "Task exception was never retrieved" for it.
        self._unlist(key, flight)

    def _unlist(self, key: str, flight: _Flight[T]) -> None:
        if self._joinable.get(key) is flight:
            del self._joinable[key]
