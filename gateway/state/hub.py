"""The workers' hub: the state that `gateway serve --workers N` shares between its workers on one machine.

`supervise` runs it as a process of its own (`python -m gateway.state.hub SOCKET`) listening on a Unix
socket in a private temporary directory (mode 0700: only this user's processes can connect), and each
worker talks to it through `gateway.state.hublink`. One asyncio loop serialises everything, so what it holds
is exact across workers without locks:

- token buckets per gateway key: the same `RateLimiter` a single process uses (check-and-take in one step);
- cached answers per alias, bounded like a local cache (`max_entries`, `max_mb`, `ttl_s` as the worker
  sends them), and a *lease* per missing answer so that identical requests arriving at several workers at
  once make one upstream flight: the first worker to miss holds the lease, the others' `get` waits here
  until its `put` (or its release, when its flight failed or it went away; the lease then passes to a
  waiting worker);
- circuit breaker openings: pushed to every other worker the moment one opens (no polling);
- latency windows (adaptive hedge delays, typical latencies): each worker's new samples merged into shared
  time-bucketed sketches, read back in the same request (`gateway.state.hub_latency`);
- `/metrics`: the worker answering a scrape sends its exposition, the hub asks every other worker for
  theirs and returns the merge (`gateway.telemetry.merge`).

It holds nothing that must survive it: if it dies, workers serve on local state (and the supervisor starts
a new one, which they reconnect to, starting from empty buckets and an empty cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from cachetools import TLRUCache

from gateway.clock import Clock, monotonic
from gateway.policies.ratelimit import RateLimiter, RateLimitOptions
from gateway.state.frames import COLLECT_TIMEOUT_S, LEASE_WAIT_S, FrameProtocol, Header
from gateway.state.hub_latency import HubLatency

log = logging.getLogger("gateway.state.hub")


class _Conn:
    __slots__ = ("proto", "worker")

    def __init__(self) -> None:
        self.proto: FrameProtocol | None = None
        self.worker = "?"


@dataclass
class _Waiter:
    conn: _Conn
    request_id: int
    timer: asyncio.TimerHandle


@dataclass
class _Lease:
    holder: _Conn
    timer: asyncio.TimerHandle
    waiters: list[_Waiter] = field(default_factory=list)


@dataclass
class _Collect:
    number: int
    scraper: _Conn
    request_id: int
    texts: dict[_Conn, str]
    missing: set[_Conn]
    timer: asyncio.TimerHandle | None = None


class _Answers:
    """One alias's answers: (expires at, encoded answer) by cache key, LRU within the byte bound."""

    def __init__(self, max_entries: int, max_bytes: int, clock: Clock) -> None:
        self.bounds = (max_entries, max_bytes)
        self.store: TLRUCache[str, tuple[float, bytes], float] = TLRUCache(
            maxsize=max_bytes, ttu=lambda _key, value, _now: value[0], timer=clock,
            getsizeof=lambda value: len(value[1]))

    def put(self, key: str, expires_at: float, blob: bytes) -> None:
        max_entries, max_bytes = self.bounds
        if len(blob) > max_bytes:
            return
        if key not in self.store and len(self.store) >= max_entries:  # len() drops expired entries first
            self.store.popitem()
        self.store[key] = (expires_at, blob)


class Hub:
    def __init__(self, *, clock: Clock = monotonic) -> None:
        self.clock = clock
        self.limiter = RateLimiter(clock=clock)
        self.answers: dict[str, _Answers] = {}
        self.leases: dict[tuple[str, str], _Lease] = {}
        self.openings: dict[str, float] = {}  # provider -> open until, on this clock
        self.latency = HubLatency()  # on the wall clock: bucket ids are wall-clock, as in Redis
        self.conns: set[_Conn] = set()
        self._options: dict[tuple[int, int], RateLimitOptions] = {}
        self._collects: dict[int, _Collect] = {}
        self._next_collect = 0

    def protocol(self) -> FrameProtocol:
        """A protocol for one new worker connection (the factory for `create_unix_server`)."""
        conn = _Conn()
        conn.proto = FrameProtocol(lambda header, payload: self._frame(conn, header, payload),
                                   lambda _proto: self._lost(conn))
        self.conns.add(conn)
        return conn.proto

    def _frame(self, conn: _Conn, header: Header, payload: bytes) -> None:
        try:
            handler = _HANDLERS[header[0]]
        except (KeyError, TypeError):
            log.warning("hub: unknown message %r from worker %s", header[0], conn.worker)
            return
        try:
            handler(self, conn, header, payload)
        except (ValueError, TypeError, IndexError) as exc:  # a malformed message must not kill the hub
            log.warning("hub: bad %s message from worker %s: %s", header[0], conn.worker, exc)

    def _reply(self, conn: _Conn, header: Header, payload: bytes = b"") -> None:
        if conn.proto is not None:
            conn.proto.send(header, payload)

    # -- workers --

    def _ping(self, conn: _Conn, header: Header, _payload: bytes) -> None:
        self._reply(conn, ["r", header[1]])

    def _hello(self, conn: _Conn, header: Header, _payload: bytes) -> None:
        conn.worker = str(header[1])
        now = self.clock()
        for provider, until in list(self.openings.items()):  # what it missed while it was not connected
            if until <= now:
                del self.openings[provider]
            else:
                self._reply(conn, ["opened", provider, int((until - now) * 1000)])

    def _lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        conn.proto = None
        for lease in self.leases.values():  # first, so that no lease passes to a worker that is gone
            for waiter in lease.waiters:
                if waiter.conn is conn:
                    waiter.timer.cancel()
            lease.waiters = [waiter for waiter in lease.waiters if waiter.conn is not conn]
        for key, lease in list(self.leases.items()):
            if lease.holder is conn:
                self._release_lease(key, lease)
        for collect in list(self._collects.values()):
            if conn in collect.missing:
                collect.missing.discard(conn)
                self._finish_collect_if_done(collect)

    # -- rate limits --

    def _limits(self, rpm: int, tpm: int) -> RateLimitOptions:
        options = self._options.get((rpm, tpm))
        if options is None:
            if len(self._options) > 1024:  # bounded by the config's distinct limits; reloads could add more
                self._options.clear()
            options = self._options[(rpm, tpm)] = RateLimitOptions(rpm or None, tpm or None)
        return options

    def _check(self, conn: _Conn, header: Header, _payload: bytes) -> None:
        _, request_id, key_id, rpm, tpm, amount = header
        self._reply(conn, ["r", request_id, self.limiter.check(str(key_id), self._limits(rpm, tpm), int(amount))])

    def _settle(self, _conn: _Conn, header: Header, _payload: bytes) -> None:
        _, key_id, rpm, tpm, estimated, actual = header
        self.limiter.settle(str(key_id), self._limits(rpm, tpm), int(estimated), int(actual))

    # -- cached answers and leases --

    def _get(self, conn: _Conn, header: Header, _payload: bytes) -> None:
        _, request_id, alias, key, want_lease = header
        cache = self.answers.get(alias)
        entry = cache.store.get(key) if cache is not None else None
        if entry is not None:
            left_ms = int((entry[0] - self.clock()) * 1000)
            if left_ms > 0:
                self._reply(conn, ["r", request_id, left_ms], entry[1])
                return
        if not want_lease:
            self._reply(conn, ["r", request_id, None])
            return
        lease = self.leases.get((alias, key))
        if lease is None:  # a miss, and the caller now holds the lease (the grant names it, see `Leases`)
            self._grant((alias, key), conn)
            self._reply(conn, ["r", request_id, None, alias, key])
        elif lease.holder is conn:  # the same worker's identical requests are its own coalescer's business
            self._reply(conn, ["r", request_id, None])
        else:
            timer = asyncio.get_running_loop().call_later(LEASE_WAIT_S, self._waited_too_long, (alias, key), conn,
                                                          request_id)
            lease.waiters.append(_Waiter(conn, request_id, timer))

    def _grant(self, key: tuple[str, str], conn: _Conn) -> _Lease:
        # A lease outlives no flight: past LEASE_WAIT_S it passes on, even if its holder never said anything.
        lease = _Lease(conn, timer=asyncio.get_running_loop().call_later(LEASE_WAIT_S, self._expire, key))
        self.leases[key] = lease
        return lease

    def _expire(self, key: tuple[str, str]) -> None:
        lease = self.leases.get(key)
        if lease is not None:
            self._release_lease(key, lease)

    def _waited_too_long(self, key: tuple[str, str], conn: _Conn, request_id: int) -> None:
        lease = self.leases.get(key)
        if lease is not None:
            lease.waiters = [w for w in lease.waiters if not (w.conn is conn and w.request_id == request_id)]
        self._reply(conn, ["r", request_id, None])

    def _put(self, _conn: _Conn, header: Header, payload: bytes) -> None:
        _, alias, key, ttl_ms, max_entries, max_bytes = header
        cache = self.answers.get(alias)
        if cache is None or cache.bounds != (max_entries, max_bytes):  # new alias, or bounds changed by a reload
            cache = self.answers[alias] = _Answers(int(max_entries), int(max_bytes), self.clock)
        cache.put(key, self.clock() + ttl_ms / 1000, payload)
        lease = self.leases.pop((alias, key), None)
        if lease is not None:
            lease.timer.cancel()
            for waiter in lease.waiters:
                waiter.timer.cancel()
                self._reply(waiter.conn, ["r", waiter.request_id, int(ttl_ms)], payload)

    def _release(self, conn: _Conn, header: Header, _payload: bytes) -> None:
        key = (header[1], header[2])
        lease = self.leases.get(key)
        if lease is not None and lease.holder is conn:
            self._release_lease(key, lease)

    def _release_lease(self, key: tuple[str, str], lease: _Lease) -> None:
        """The holder will not put an answer: the first waiting worker takes the lease and goes upstream."""
        del self.leases[key]
        lease.timer.cancel()
        if not lease.waiters:
            return
        successor = self._grant(key, lease.waiters[0].conn)
        for waiter in lease.waiters:
            if waiter.conn is successor.holder:
                waiter.timer.cancel()
                self._reply(waiter.conn, ["r", waiter.request_id, None, key[0], key[1]])
            else:
                successor.waiters.append(waiter)

    # -- circuit breakers --

    def _open(self, conn: _Conn, header: Header, _payload: bytes) -> None:
        _, provider, open_for_ms = header
        until = self.clock() + open_for_ms / 1000
        if until <= self.openings.get(provider, 0.0):  # never shorten an opening another worker published
            return
        self.openings[provider] = until
        for other in self.conns:
            if other is not conn:
                self._reply(other, ["opened", provider, int(open_for_ms)])

    # -- latency windows --

    def _latency(self, conn: _Conn, header: Header, payload: bytes) -> None:
        try:
            answer = self.latency.exchange(payload)
        except (ValueError, TypeError) as exc:
            # Answered all the same (an empty list the worker takes for a failed exchange): unanswered, its
            # request would time out and the worker would take the whole hub for gone.
            log.warning("hub: bad latency message from worker %s: %s", conn.worker, exc)
            answer = b"[]"
        self._reply(conn, ["r", header[1]], answer)

    # -- metrics --

    def _metrics(self, conn: _Conn, header: Header, payload: bytes) -> None:
        self._next_collect += 1
        others = {c for c in self.conns if c is not conn and c.proto is not None}
        collect = _Collect(self._next_collect, conn, int(header[1]), {conn: payload.decode()}, others)
        self._collects[self._next_collect] = collect
        for other in others:
            self._reply(other, ["collect", self._next_collect])
        collect.timer = asyncio.get_running_loop().call_later(COLLECT_TIMEOUT_S, self._finish_collect, collect)
        self._finish_collect_if_done(collect)

    def _collected(self, conn: _Conn, header: Header, payload: bytes) -> None:
        collect = self._collects.get(int(header[1]))
        if collect is not None and conn in collect.missing:
            collect.missing.discard(conn)
            collect.texts[conn] = payload.decode()
            self._finish_collect_if_done(collect)

    def _finish_collect_if_done(self, collect: _Collect) -> None:
        if not collect.missing:
            self._finish_collect(collect)

    def _finish_collect(self, collect: _Collect) -> None:
        from gateway.telemetry.merge import merge_expositions  # only a scrape needs it

        if self._collects.pop(collect.number, None) is None:
            return  # finished already
        if collect.timer is not None:
            collect.timer.cancel()
        if collect.missing:
            log.warning("hub: /metrics without worker(s) %s, which did not answer within %g s",
                        ", ".join(sorted(c.worker for c in collect.missing)), COLLECT_TIMEOUT_S)
        texts = sorted(((c.worker, text) for c, text in collect.texts.items()), key=lambda item: _order(item[0]))
        self._reply(collect.scraper, ["r", collect.request_id], merge_expositions(texts).encode())


def _order(worker: str) -> tuple[int, str]:
    return (int(worker), "") if worker.isdigit() else (1 << 30, worker)


_HANDLERS = {"ping": Hub._ping, "hello": Hub._hello, "check": Hub._check, "settle": Hub._settle, "get": Hub._get,
             "put": Hub._put, "release": Hub._release, "open": Hub._open, "metrics": Hub._metrics,
             "collected": Hub._collected, "latency": Hub._latency}


async def run_hub(path: str) -> None:
    """Serve on the Unix socket `path` until SIGTERM or SIGINT."""
    hub = Hub()
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(hub.protocol, path)
    os.chmod(path, 0o600)  # the directory is private already; the socket too, in case it is not
    log.info("workers' hub listening on %s (pid %d)", path, os.getpid())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    for conn in list(hub.conns):
        if conn.proto is not None:
            conn.proto.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.logs import setup_logging

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m gateway.state.hub SOCKET [LOG_LEVEL] [LOG_FORMAT]", file=sys.stderr)
        return 2
    setup_logging(args[1] if len(args) > 1 else "INFO", args[2] if len(args) > 2 else "json")
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_hub(args[0]))
    else:
        uvloop.run(run_hub(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
