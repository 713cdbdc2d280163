"""Shared latency windows: the exchange's rules on an in-memory stand-in (publish and read in one round trip,
settled buckets read once, what failed given back, the bound on targets), then through a real redis-server
(merged by HINCRBY, keys that expire, Redis killed and restarted, the start-up fetch)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as aioredis

from gateway.clock import FakeClock
from gateway.config.model import StateConfig
from gateway.policies.sketch import BUCKET_S, RELATIVE_ACCURACY, Bins, bin_of, bucket_of
from gateway.state import StateBackend
from gateway.state.errors import RedisUnavailable
from gateway.state.latency import (
    MAX_TARGETS,
    SETTLE_S,
    Publish,
    Read,
    RedisLatencyExchange,
    SharedLatency,
)
from gateway.state.link import RedisLink
from tests.polling import eventually
from tests.redis_server import RedisServer, free_port, running_redis

START = 1_700_000_000.0  # on a bucket boundary
A_TTFT = ("a", "m", True)
A_FULL = ("a", "m", False)


class MemoryExchange:
    """What Redis does for the exchange, in memory: bins added per (target, bucket), read back after."""

    name = "memory"

    def __init__(self) -> None:
        self.store: dict[Read, Bins] = {}
        self.up = True
        self.connections = 1
        self.failing = False
        self.calls: list[tuple[list[Publish], list[Read]]] = []

    async def ready(self) -> None:
        return None

    async def exchange(self, publish: Sequence[Publish], reads: Sequence[Read]) -> list[Bins]:
        self.calls.append((list(publish), list(reads)))
        if self.failing:
            raise RedisUnavailable
        for target, bucket, bins, _ in publish:
            stored = self.store.setdefault((target, bucket), {})
            for key, count in bins.items():
                stored[key] = stored.get(key, 0) + count
        return [dict(self.store.get(read, {})) for read in reads]


def replica(exchange: MemoryExchange, wall: FakeClock) -> SharedLatency:
    shared = SharedLatency(exchange, wall=wall, clock=wall)
    shared.watch({A_TTFT: 60.0, A_FULL: 60.0})
    return shared


def record(shared: SharedLatency, key: tuple[str, str, bool], latency_s: float, times: int) -> None:
    window = shared.window(key)
    assert window is not None
    for _ in range(times):
        window.record(latency_s)


def p95(shared: SharedLatency, key: tuple[str, str, bool], min_samples: int = 20) -> float | None:
    window = shared.window(key)
    assert window is not None
    return window.quantile_s(0.95, min_samples=min_samples, window_s=60.0)


async def test_what_one_replica_publishes_is_in_the_others_view_and_in_its_own() -> None:
    exchange, wall = MemoryExchange(), FakeClock(START)
    a, b = replica(exchange, wall), replica(exchange, wall)
    record(a, A_TTFT, 0.7, 30)
    assert await b.sync_once() and p95(b, A_TTFT) is None  # nothing published yet
    assert await a.sync_once()
    assert p95(a, A_TTFT) == pytest.approx(0.7, rel=RELATIVE_ACCURACY)  # its own samples, through the merge
    assert await b.sync_once()
    assert p95(b, A_TTFT) == pytest.approx(0.7, rel=RELATIVE_ACCURACY)
    assert p95(b, A_FULL, min_samples=1) is None  # the non-streamed window of the same target is apart
    # N replicas learn N times faster: 10 samples each from three replicas reach min_samples together.
    c = replica(exchange, wall)
    for shared in (a, b, c):
        record(shared, A_FULL, 0.3, 10)
        await shared.sync_once()
    await a.sync_once()
    assert p95(a, A_FULL, min_samples=30) == pytest.approx(0.3, rel=RELATIVE_ACCURACY)


async def test_one_round_trip_publishes_then_reads_and_settled_buckets_are_read_once() -> None:
    exchange, wall = MemoryExchange(), FakeClock(START)
    a = replica(exchange, wall)
    record(a, A_TTFT, 0.5, 3)
    await a.sync_once()
    publish, reads = exchange.calls[-1]
    assert publish == [(A_TTFT, bucket_of(START), {bin_of(0.5): 3}, 60.0)]
    window_buckets = list(range(bucket_of(START - 60), bucket_of(START) + 1))
    assert reads == [(key, bucket) for key in (A_TTFT, A_FULL) for bucket in window_buckets]
    await a.sync_once()
    assert exchange.calls[-1][0] == []  # nothing new: nothing published
    # Once a bucket ended SETTLE_S ago it is read one last time, then kept: about two buckets per target.
    wall.advance(SETTLE_S + BUCKET_S)
    await a.sync_once()
    await a.sync_once()
    read_buckets = {bucket for _, bucket in exchange.calls[-1][1]}
    assert read_buckets == set(range(bucket_of(wall() - SETTLE_S), bucket_of(wall()) + 1))
    assert p95(a, A_TTFT, min_samples=3) == pytest.approx(0.5, rel=RELATIVE_ACCURACY)  # from the kept bucket
    exchange.connections += 1  # it was away meanwhile: the others may have published late, all read again
    await a.sync_once()
    assert len(exchange.calls[-1][1]) == 2 * len(range(bucket_of(wall() - 60), bucket_of(wall()) + 1))


async def test_a_failed_exchange_gives_its_samples_back_and_the_local_windows_serve() -> None:
    exchange, wall = MemoryExchange(), FakeClock(START)
    a, b = replica(exchange, wall), replica(exchange, wall)
    record(a, A_TTFT, 0.9, 25)
    await a.sync_once()
    record(a, A_TTFT, 0.9, 25)
    exchange.failing = True
    assert not await a.sync_once()
    assert not a.current and p95(a, A_TTFT, min_samples=1) is None  # not current: the trackers use local windows
    exchange.failing = False
    exchange.up = False  # marked down: no call at all until it is back
    calls = len(exchange.calls)
    assert not await a.sync_once() and len(exchange.calls) == calls
    exchange.up = True
    assert await a.sync_once() and await b.sync_once()
    window = b.window(A_TTFT)
    assert window is not None and window.samples(60) == 50  # the 25 samples held back were published late


async def test_targets_past_the_bound_stay_local(caplog: pytest.LogCaptureFixture) -> None:
    shared = SharedLatency(MemoryExchange(), wall=FakeClock(START))
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        shared.watch({(f"p{i}", "m", False): 60.0 for i in range(MAX_TARGETS + 10)})
        assert shared.window(("another", "m", True)) is None
    assert shared.window(("p0", "m", False)) is not None
    assert len([r for r in caplog.records if "more than" in r.getMessage()]) == 1


async def test_windows_are_watched_over_their_longest_window_capped() -> None:
    exchange, wall = MemoryExchange(), FakeClock(START)
    shared = SharedLatency(exchange, wall=wall)
    shared.watch({A_TTFT: 120.0})
    shared.watch({A_TTFT: 30.0, A_FULL: 100_000.0})
    await shared.sync_once()
    reads = exchange.calls[-1][1]
    assert len([r for r in reads if r[0] == A_TTFT]) == len(range(bucket_of(START - 120), bucket_of(START) + 1))
    assert len([r for r in reads if r[0] == A_FULL]) == len(range(bucket_of(START - 600), bucket_of(START) + 1))


async def test_health_shows_the_shared_view() -> None:
    exchange, wall = MemoryExchange(), FakeClock(START)
    a = replica(exchange, wall)
    assert a.health() == {"shared_through": "memory", "view": "local", "synced_s_ago": None, "targets": {}}
    record(a, A_TTFT, 0.4, 100)
    await a.sync_once()
    wall.advance(0.5)
    health = a.health()
    assert health["view"] == "current" and health["synced_s_ago"] == 0.5
    assert health["targets"]["a/m/ttft"]["samples"] == 100
    assert health["targets"]["a/m/ttft"]["p95_ms"] == pytest.approx(400, rel=RELATIVE_ACCURACY)


@pytest.mark.looptime
async def test_the_background_exchange_runs_every_interval_and_start_up_is_bounded() -> None:
    exchange = MemoryExchange()
    shared = SharedLatency(exchange, wall=FakeClock(START), interval_s=1.0)
    shared.watch({A_TTFT: 60.0})
    shared.start()
    await asyncio.sleep(3.5)
    assert len(exchange.calls) == 3
    await shared.aclose()
    await asyncio.sleep(5)
    assert len(exchange.calls) == 3

    never = asyncio.Event()

    class Hung(MemoryExchange):
        async def ready(self) -> None:
            await never.wait()

    hung = SharedLatency(Hung(), wall=FakeClock(START))
    loop = asyncio.get_running_loop()
    before = loop.time()
    await hung.start_up(0.25)
    assert loop.time() - before == pytest.approx(0.25) and not hung.current


# -- through a real redis-server --


async def connected(server: RedisServer) -> RedisLink:
    link = RedisLink(server.url, timeout_s=1.0)
    link.start()
    await eventually(lambda: link.up, timeout_s=10, interval_s=0.05, what="the link to connect")
    return link


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


async def test_replicas_share_through_redis_and_redis_holds_the_merge(redis: RedisServer) -> None:
    wall = FakeClock(START + 3)
    links = [await connected(redis) for _ in range(3)]
    try:
        a, b, c = (SharedLatency(RedisLatencyExchange(link, "t:", wall=wall), wall=wall) for link in links)
        for shared in (a, b, c):
            shared.watch({A_TTFT: 60.0, A_FULL: 60.0})
        record(a, A_TTFT, 0.6, 30)
        record(b, A_TTFT, 0.6, 10)
        record(b, A_TTFT, 2.0, 1)  # p95 of 41 is the 40th smallest (rank ceil(0.95 * 42)), p99 the largest
        assert await a.sync_once() and await b.sync_once() and await c.sync_once()
        window = c.window(A_TTFT)
        assert window is not None and window.samples(60) == 41
        assert p95(c, A_TTFT) == pytest.approx(0.6, rel=RELATIVE_ACCURACY)
        assert window.quantile_s(0.99, min_samples=1, window_s=60) == pytest.approx(2.0, rel=RELATIVE_ACCURACY)
        client = aioredis.from_url(redis.url)
        try:
            key = RedisLatencyExchange(links[0], "t:").key(A_TTFT, bucket_of(wall()))
            assert key == f"t:latency:dd1:a:m:ttft:{bucket_of(wall())}"
            assert {int(k): int(v) for k, v in (await client.hgetall(key)).items()} == {bin_of(0.6): 40,
                                                                                          bin_of(2.0): 1}
            # It expires once its bucket has left the 60 s window, plus one bucket: 10 - 3 + 60 + 10 = 77 s.
            assert int(await client.pttl(key)) == pytest.approx(77_000, abs=1000)
            assert await client.keys("t:latency:*") == [key.encode()]  # nothing written for empty windows
        finally:
            await client.aclose()
    finally:
        for link in links:
            await link.aclose()


async def test_names_with_colons_do_not_mix_targets(redis: RedisServer) -> None:
    wall = FakeClock(START)
    link = await connected(redis)
    try:
        exchange = RedisLatencyExchange(link, "t:", wall=wall)
        assert exchange.key(("a:b", "c", False), 1) != exchange.key(("a", "b:c", False), 1)
        one, other = SharedLatency(exchange, wall=wall), SharedLatency(exchange, wall=wall)
        one.watch({("a:b", "c", False): 60.0})
        other.watch({("a", "b:c", False): 60.0})
        record(one, ("a:b", "c", False), 0.4, 5)
        await one.sync_once()
        await other.sync_once()
        window = other.window(("a", "b:c", False))
        assert window is not None and window.samples(60) == 0
    finally:
        await link.aclose()


async def test_redis_killed_the_views_go_local_and_held_samples_are_published_when_it_is_back(
        redis: RedisServer) -> None:
    wall = FakeClock(START)
    links = [await connected(redis) for _ in range(2)]
    try:
        a, b = (SharedLatency(RedisLatencyExchange(link, "t:", wall=wall), wall=wall) for link in links)
        for shared in (a, b):
            shared.watch({A_TTFT: 60.0})
        record(a, A_TTFT, 0.5, 20)
        assert await a.sync_once() and await b.sync_once() and p95(b, A_TTFT) is not None
        await redis.kill()
        record(a, A_TTFT, 0.5, 7)
        assert not await a.sync_once() and not await b.sync_once()
        assert p95(b, A_TTFT, min_samples=1) is None and not a.current  # local windows serve meanwhile
        await redis.start()  # same port, empty
        for link in links:
            await eventually(lambda link=link: link.up, timeout_s=10, interval_s=0.05, what="the link to come back")
        assert await a.sync_once() and await b.sync_once()
        window = b.window(A_TTFT)
        assert window is not None and window.samples(60) == 7  # what A held while Redis was away
    finally:
        for link in links:
            await link.aclose()


def redis_state(url: str) -> StateConfig:
    return StateConfig(backend="redis", url=url, key_prefix="t:", timeout_ms=1000)


async def test_a_new_replica_fetches_the_shared_windows_before_its_first_request(redis: RedisServer) -> None:
    first = StateBackend(redis_state(redis.url))
    try:
        assert first.latency is not None
        first.latency.watch({A_TTFT: 60.0})
        await first.ready(5.0)
        record(first.latency, A_TTFT, 0.45, 40)
        assert await first.latency.sync_once()
        fresh = StateBackend(redis_state(redis.url))
        try:
            assert fresh.latency is not None
            fresh.latency.watch({A_TTFT: 60.0})  # what Runtime does when the gateway is built
            await fresh.ready(5.0)  # what `serve` awaits before it listens
            assert p95(fresh.latency, A_TTFT) == pytest.approx(0.45, rel=RELATIVE_ACCURACY)
            assert fresh.latency_health() is not None
        finally:
            await fresh.aclose()
    finally:
        await first.aclose()


async def test_start_up_with_redis_away_costs_only_the_first_attempt() -> None:
    backend = StateBackend(redis_state(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        started = time.monotonic()
        await backend.ready(5.0)
        assert time.monotonic() - started < 4.0  # refused at once, not the whole 5 s
        assert backend.latency is not None and not backend.latency.current
    finally:
        await backend.aclose()


async def test_sharing_can_be_turned_off(redis: RedisServer) -> None:
    backend = StateBackend(StateConfig(backend="redis", url=redis.url, share_latency=False))
    try:
        assert backend.latency is None and backend.latency_health() is None
    finally:
        await backend.aclose()
