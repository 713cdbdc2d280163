"""Breaker openings shared through a real redis-server: published on opening, applied by the other replica."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.policies.breaker import BreakerOptions, BreakerState, CircuitBreaker
from gateway.state.breakers import BreakerSync
from gateway.state.link import RedisLink
from tests.polling import eventually, eventually_equal
from tests.redis_server import RedisServer, running_redis, ttl_once_set

OPTIONS = BreakerOptions(fail_max=2, reset_timeout_s=30.0)


class Replica:
    """One replica's breakers, wired the way Runtime wires them: state changes go to the sync's hook."""

    def __init__(self, server: RedisServer) -> None:
        self.link = RedisLink(server.url, timeout_s=1.0)
        self.sync = BreakerSync(self.link, "t:")
        self.breakers = {name: CircuitBreaker(name, OPTIONS, on_state_change=self._changed) for name in ("a", "b")}
        self.sync.attach(self.breakers)

    def _changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.sync.breaker_changed(name, str(old), str(new))

    async def start(self) -> None:
        self.link.start()
        await eventually(lambda: self.link.up, timeout_s=10, interval_s=0.05, what="the link to connect")

    def fail(self, name: str, times: int) -> None:
        for _ in range(times):
            permit = self.breakers[name].try_acquire()
            assert permit is not None
            permit.failure()

    async def aclose(self) -> None:
        await self.sync.aclose()
        await self.link.aclose()


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica, RedisServer]]:
    async with running_redis() as server:
        first, second = Replica(server), Replica(server)
        await first.start()
        await second.start()
        try:
            yield first, second, server
        finally:
            await first.aclose()
            await second.aclose()


async def published_ttl_ms(server: RedisServer, provider: str) -> int:
    """The TTL of the provider's published opening; the publication is a background task: bounded wait for it."""
    client = aioredis.from_url(server.url)
    try:
        return await eventually(lambda: ttl_once_set(client, f"t:breaker:{provider}"), timeout_s=5,
                                what=f"the opening of {provider} to be published")
    finally:
        await client.aclose()


async def ttl_now(server: RedisServer, provider: str) -> int:
    client = aioredis.from_url(server.url)
    try:
        return int(await client.pttl(f"t:breaker:{provider}"))
    finally:
        await client.aclose()


async def test_an_opening_on_one_replica_opens_the_breaker_on_the_other(
        replicas: tuple[Replica, Replica, RedisServer]) -> None:
    first, second, server = replicas
    first.fail("a", 2)
    assert first.breakers["a"].state is BreakerState.OPEN
    assert 29_000 < await published_ttl_ms(server, "a") <= 30_000
    assert second.breakers["a"].state is BreakerState.CLOSED  # not before it polls
    await second.sync.poll_once()
    assert second.breakers["a"].state is BreakerState.OPEN and second.breakers["a"].try_acquire() is None
    assert 29.0 < second.breakers["a"].retry_in_s() <= 30.0  # until the same moment, not a fresh 30 s
    assert second.breakers["b"].state is BreakerState.CLOSED  # only that provider
    assert await ttl_now(server, "b") == -2  # never opened anywhere, so never published
    before = first.breakers["a"].retry_in_s()
    await first.sync.poll_once()  # its own opening coming back changes nothing
    assert first.breakers["a"].retry_in_s() <= before


async def test_the_polling_task_applies_openings_within_about_a_second(
        replicas: tuple[Replica, Replica, RedisServer]) -> None:
    first, second, _ = replicas
    first.sync.start()
    second.sync.start()
    first.fail("b", 2)
    await eventually_equal(lambda: second.breakers["b"].state, BreakerState.OPEN, timeout_s=3, interval_s=0.02,
                           what="the other replica to learn of the opening")


async def test_a_forced_opening_is_not_published_again(replicas: tuple[Replica, Replica, RedisServer]) -> None:
    first, _, server = replicas
    client = aioredis.from_url(server.url)
    try:
        await client.set("t:breaker:a", "someone-else", px=10_000)
        await first.sync.poll_once()
        assert first.breakers["a"].state is BreakerState.OPEN
        # An echo would be a background task spawned by that opening. A local opening spawned after it has been
        # published, so the echo (first in line, on the pool's idle connection) would have run by now.
        first.fail("b", 2)
        await eventually(lambda: ttl_once_set(client, "t:breaker:b"), timeout_s=5, what="the later opening of b")
        assert await client.get("t:breaker:a") == b"someone-else"  # not overwritten by an echo
    finally:
        await client.aclose()


async def test_an_opening_while_redis_was_away_is_published_when_it_is_back(
        replicas: tuple[Replica, Replica, RedisServer]) -> None:
    first, _, server = replicas
    first.sync.start()
    await server.kill()
    first.fail("a", 2)  # publishing fails: Redis is gone
    await server.start()  # same port, empty
    client = aioredis.from_url(server.url)
    try:
        await eventually(lambda: ttl_once_set(client, "t:breaker:a"), timeout_s=10, interval_s=0.05,
                         what="the opening to be published after Redis came back")
        # What is left of the opening (Redis outlives it by the few ms the publication took), not a fresh
        # 30 s: the outage and the polling made it at least a few hundred ms shorter than that.
        remaining_ms = first.breakers["a"].retry_in_s() * 1000
        assert remaining_ms < 29_800 and await client.pttl("t:breaker:a") <= remaining_ms + 100
    finally:
        await client.aclose()
