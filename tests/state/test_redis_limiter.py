"""The Lua token bucket against a real redis-server: the same answers as the local RateLimiter, shared."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.clock import FakeClock
from gateway.policies.ratelimit import RateLimiter, RateLimitOptions
from gateway.state.limiter import RedisLimiter
from gateway.state.link import RedisLink
from tests.polling import eventually
from tests.redis_server import RedisServer, running_redis

RPM_3 = RateLimitOptions(requests_per_minute=3)
TPM_1000 = RateLimitOptions(tokens_per_minute=1000)
BOTH = RateLimitOptions(requests_per_minute=6, tokens_per_minute=600)


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


async def connected(server: RedisServer, timeout_s: float = 1.0) -> RedisLink:
    link = RedisLink(server.url, timeout_s=timeout_s)
    link.start()
    await eventually(lambda: link.up, timeout_s=10, interval_s=0.05, what="the link to connect")
    return link


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    link = await connected(redis_server)
    yield link
    await link.aclose()


def limiter(link: RedisLink, prefix: str = "t:") -> RedisLimiter:
    return RedisLimiter(link, prefix, RateLimiter())


async def test_requests_per_minute_admits_the_burst_then_gives_the_exact_wait(link: RedisLink) -> None:
    shared = limiter(link)
    assert [await shared.check("team", RPM_3, 0) for _ in range(3)] == [None, None, None]
    wait = await shared.check("team", RPM_3, 0)
    # One request's worth refills in 60 / 3 = 20 s, minus the few ms the test took.
    assert wait is not None and 19.5 < wait <= 20.0
    assert await shared.check("other-team", RPM_3, 0) is None  # buckets are per key


async def test_same_answers_as_the_local_limiter_for_tokens_debt_and_refunds(link: RedisLink) -> None:
    """The same calls against the Lua bucket and against RateLimiter on a frozen clock: same decisions, and
    waits that differ by no more than the real time the Redis side saw pass (it refills while we run)."""
    shared, local = limiter(link), RateLimiter(clock=FakeClock())
    # Real time, not the loop's: under looptime the loop's clock is virtual. And the wall clock, not the
    # monotonic one: Redis refills by `TIME` (the wall clock), which a VM's clock discipline may slew against the
    # monotonic clock (in CI a 5 ms window once measured 0.14 ms longer in Redis than by time.monotonic).
    started = time.time()

    async def both_check(options: RateLimitOptions, estimate: int) -> None:
        remote, expected = await shared.check("k", options, estimate), local.check("k", options, estimate)
        assert (remote is None) == (expected is None), (remote, expected)
        if remote is not None and expected is not None:
            assert expected - (time.time() - started) - 1e-6 <= remote <= expected + 1e-6

    async def both_settle(options: RateLimitOptions, estimate: int, actual: int) -> None:
        await shared.settle("k", options, estimate, actual)
        local.settle("k", options, estimate, actual)

    await both_check(TPM_1000, 600)            # admitted: 400 left
    await both_check(TPM_1000, 600)            # short by 200: 12 s
    await both_settle(TPM_1000, 600, 100)      # used 100: 500 refunded, 900 left
    await both_check(TPM_1000, 600)            # admitted: 300 left
    await both_settle(TPM_1000, 600, 1900)     # used 1300 more than estimated: 1000 in debt
    await both_check(TPM_1000, 1)              # 1001 short: 60.06 s
    await both_check(TPM_1000, 5000)           # more than a minute's worth: waits for a full bucket, 120 s
    await both_check(BOTH, 10)                 # a reload added rpm: requests full, tokens still in debt
    await both_settle(BOTH, 0, -5)             # nothing to correct: no change
    await both_check(BOTH, 10)


async def test_two_replicas_share_one_bucket(redis_server: RedisServer) -> None:
    first, second = await connected(redis_server), await connected(redis_server)
    try:
        a, b = limiter(first), limiter(second)
        outcomes = [await (a if i % 2 else b).check("team", RPM_3, 0) for i in range(8)]
        assert sum(wait is None for wait in outcomes) == 3  # not 3 per replica
        assert len(a.local) == len(b.local) == 0  # the local fallback was never used
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_key_expires_once_its_buckets_are_full_again(link: RedisLink, redis_server: RedisServer) -> None:
    shared = limiter(link, prefix="exp:")
    assert await shared.check("team", RateLimitOptions(requests_per_minute=60), 0) is None
    assert await shared.check("unlimited", RateLimitOptions(), 10) is None
    client = aioredis.from_url(redis_server.url)
    try:
        ttl_ms = await client.pttl("exp:ratelimit:team")
        assert 1000 < ttl_ms <= 2000  # one request of 60/min refills in 1 s, plus 1 s of margin
        assert await client.exists("exp:ratelimit:unlimited") == 0  # no limits: Redis is not even asked
    finally:
        await client.aclose()
