"""The shared response cache against a real redis-server: local in front, Redis behind, TTLs kept honest."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.clock import FakeClock
from gateway.policies.cache import CachedAnswer, CacheOptions, ResponseCache
from gateway.state.answers import RedisAnswers, decode_answer, encode_answer
from gateway.state.link import RedisLink
from tests.polling import eventually
from tests.redis_server import RedisServer, running_redis

ANSWER = CachedAnswer(b'{"id": "chatcmpl-1",\n "x": 1}', "sim", "m", (("x-gateway-provider", "sim"),))
OPTIONS = CacheOptions(ttl_s=60)


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_server.url, timeout_s=1.0)
    link.start()
    await eventually(lambda: link.up, timeout_s=10, interval_s=0.05, what="the link to connect")
    yield link
    await link.aclose()


def test_an_answer_survives_encoding_and_anything_else_is_a_miss() -> None:
    assert decode_answer(encode_answer(ANSWER)) == ANSWER  # a body with newlines included
    for junk in (b"", b"not json\n{}", b'["p", "m"]\n{}', b'[1, "m", []]\n{}', b'["p", "m", []]'):
        assert decode_answer(junk) is None


async def test_stored_through_one_replica_found_through_another(link: RedisLink,
                                                                redis_server: RedisServer) -> None:
    a = RedisAnswers({"chat": ResponseCache(OPTIONS)}, link, "t:")
    b_local = ResponseCache(OPTIONS)
    b = RedisAnswers({"chat": b_local}, link, "t:")
    await a.put("chat", "k1", ANSWER)
    assert await b.get("chat", "k1") == ANSWER
    assert len(b_local) == 1  # copied in front: the next get is local
    assert await b.get("chat", "other") is None
    client = aioredis.from_url(redis_server.url)
    try:
        assert 59_000 < await client.pttl("t:cache:chat:k1") <= 60_000  # Redis TTL = ttl_s
    finally:
        await client.aclose()


async def test_a_local_copy_expires_with_the_shared_one(link: RedisLink, redis_server: RedisServer) -> None:
    clock = FakeClock()
    local = ResponseCache(OPTIONS, clock=clock)
    answers = RedisAnswers({"chat": local}, link, "t:")
    client = aioredis.from_url(redis_server.url)
    try:
        await client.set("t:cache:chat:k", encode_answer(ANSWER), px=5_000)  # cached 55 s ago elsewhere
        assert await answers.get("chat", "k") == ANSWER
        await client.delete("t:cache:chat:k")  # from now on only the local copy can answer
    finally:
        await client.aclose()
    clock.advance(4.5)
    assert await answers.get("chat", "k") == ANSWER
    clock.advance(0.6)
    assert await answers.get("chat", "k") is None  # 5 s, not the alias's 60 s


async def test_an_answer_too_large_for_the_alias_is_not_shared(link: RedisLink, redis_server: RedisServer) -> None:
    small = CacheOptions(ttl_s=60, max_bytes=10)
    answers = RedisAnswers({"chat": ResponseCache(small)}, link, "t:")
    await answers.put("chat", "big", ANSWER)
    client = aioredis.from_url(redis_server.url)
    try:
        assert await client.exists("t:cache:chat:big") == 0
    finally:
        await client.aclose()
