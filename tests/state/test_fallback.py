"""Redis away (at start, killed, hung) and back: every call still answers, from local state, and quickly;
the outage and the recovery are logged once each. Against a real redis-server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.policies.cache import CachedAnswer, CacheOptions, ResponseCache
from gateway.policies.ratelimit import RateLimiter, RateLimitOptions
from gateway.state.answers import RedisAnswers
from gateway.state.limiter import RedisLimiter
from gateway.state.link import RedisLink, redacted
from tests.polling import eventually
from tests.redis_server import RedisServer, free_port, running_redis

RPM_2 = RateLimitOptions(requests_per_minute=2)
ANSWER = CachedAnswer(b'{"id": "x"}', "sim", "m", (("x-gateway-provider", "sim"),))


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.state" and text in r.getMessage()]


async def test_redis_absent_at_start_serves_locally_without_waiting(caplog: pytest.LogCaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, "gateway.state")
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.1)  # nothing listens there
    pings = 0
    real_ping = link.client.ping

    async def counted_ping() -> Any:  # each reconnect attempt is one PING
        nonlocal pings
        pings += 1
        return await real_ping()

    monkeypatch.setattr(link.client, "ping", counted_ping)
    link.start()
    try:
        shared = RedisLimiter(link, "t:", RateLimiter())
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes = [await shared.check("team", RPM_2, 0) for _ in range(3)]
        assert outcomes[:2] == [None, None] and outcomes[2] is not None  # the local bucket, same limit
        assert loop.time() - started < 0.09  # not even one Redis timeout (0.1 s) paid while it is down
        await eventually(lambda: messages(caplog, "unavailable at start"), timeout_s=10,
                         what="the first reconnect attempt to fail")
        seen = pings
        # Several more attempts (backoff from 0.1 s: about 0.7 s for three) ...
        await eventually(lambda: pings >= seen + 3, timeout_s=10, what="three more reconnect attempts")
        assert len(messages(caplog, "unavailable")) == 1  # ... logged once
    finally:
        await link.aclose()


async def test_killed_then_restarted_redis(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.state")
    link = RedisLink(redis_server.url, timeout_s=0.5)
    link.start()
    caches = {"chat": ResponseCache(CacheOptions(ttl_s=60))}
    shared, answers = RedisLimiter(link, "t:", RateLimiter()), RedisAnswers(caches, link, "t:")
    try:
        await eventually(lambda: link.up, timeout_s=10, what="the link to connect")
        assert await shared.check("team", RPM_2, 0) is None
        assert len(shared.local) == 0  # counted in Redis

        await redis_server.kill()
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The first call finds the dead connection and falls back; the next ones do not even try.
        outcomes = [await shared.check("team", RPM_2, 0) for _ in range(3)]
        assert outcomes[:2] == [None, None] and outcomes[2] is not None
        await answers.put("chat", "key", ANSWER)
        assert await answers.get("chat", "key") == ANSWER  # the local cache still works
        assert loop.time() - started < 0.5 and not link.up
        assert len(messages(caplog, "unavailable")) == 1

        await redis_server.start()  # same port, empty (no persistence)
        await eventually(lambda: link.up, timeout_s=10, what="the link to reconnect")
        assert len(messages(caplog, "is back")) == 1
        assert await shared.check("team", RPM_2, 0) is None  # the new Redis has a full bucket for the key
        client = aioredis.from_url(redis_server.url)
        try:
            assert await client.exists("t:ratelimit:team") == 1  # shared again
        finally:
            await client.aclose()
    finally:
        await link.aclose()


async def test_a_hung_redis_costs_one_timeout_then_nothing(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url, timeout_s=0.1)
    link.start()
    shared = RedisLimiter(link, "t:", RateLimiter())
    try:
        await eventually(lambda: link.up, timeout_s=10, what="the link to connect")
        redis_server.pause()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await shared.check("team", RPM_2, 0) is None  # timed out, then answered locally
        first = loop.time() - started
        assert 0.09 < first < 1.0 and not link.up
        started = loop.time()
        await shared.check("team", RPM_2, 0)
        assert loop.time() - started < 0.09  # marked down: no second timeout (0.1 s)
        redis_server.resume()
        await eventually(lambda: link.up, timeout_s=10, what="the link to reconnect")
    finally:
        redis_server.resume()
        await link.aclose()


def test_a_password_never_reaches_the_logs() -> None:
    assert redacted("redis://:s3cret@cache.internal:6380/1") == "redis://:***@cache.internal:6380/1"
    assert redacted("rediss://user:s3cret@cache.internal/0") == "rediss://user:***@cache.internal/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
