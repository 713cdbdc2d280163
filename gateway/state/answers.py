"""The response cache behind an async interface: this process's `ResponseCache`s, or Redis behind them.

With Redis, an answer is stored under `{key_prefix}cache:{alias}:{cache key}` with the alias's `ttl_s` as
its Redis TTL, and the local cache stays in front: a local hit costs no round trip, a local miss asks
Redis, and a Redis hit is copied locally for what is left of its TTL (so it expires everywhere at once).
Redis itself is bounded by the TTLs and its `maxmemory` (with `maxmemory-policy volatile-lru` the least
recently used entries go first; every key the gateway writes has a TTL); `max_entries` and `max_mb` bound
each replica's local copy. The per-alias prefix lets an operator inspect or flush one alias
(`redis-cli --scan --pattern 'gw:cache:chat:*'`). Coalescing stays per replica: two replicas asked the
same new question at the same moment may both go upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import orjson

from gateway.policies.cache import CachedAnswer, ResponseCache
from gateway.state.errors import RedisUnavailable

if TYPE_CHECKING:  # redis-py is imported only by a gateway that uses it: see gateway.state.backend
    from redis.asyncio import Redis

    from gateway.state.link import RedisLink


class SharedAnswers(Protocol):
    """Cached answers by alias and cache key (see `gateway.policies.cache.cache_key`)."""

    async def get(self, alias: str, key: str) -> CachedAnswer | None: ...

    async def put(self, alias: str, key: str, answer: CachedAnswer) -> None: ...


class LocalAnswers:
    """This process's caches only."""

    def __init__(self, caches: Mapping[str, ResponseCache]) -> None:
        self.caches = caches

    async def get(self, alias: str, key: str) -> CachedAnswer | None:
        return self.caches[alias].get(key)

    async def put(self, alias: str, key: str, answer: CachedAnswer) -> None:
        self.caches[alias].put(key, answer)


def encode_answer(answer: CachedAnswer) -> bytes:
    """A JSON header line (provider, model, headers), then the body as it is: a JSON array holds no raw
    newline, so the first newline ends the header."""
    return orjson.dumps([answer.provider, answer.model, answer.headers]) + b"\n" + answer.body


def decode_answer(raw: bytes) -> CachedAnswer | None:
    """The answer `encode_answer` wrote, or None for anything else (treated as a miss)."""
    header, newline, body = raw.partition(b"\n")
    try:
        provider, model, headers = orjson.loads(header)
        replayed = tuple((str(name), str(value)) for name, value in headers)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if not newline or not isinstance(provider, str) or not isinstance(model, str):
        return None
    return CachedAnswer(body, provider, model, replayed)


class RedisAnswers:
    """Local caches in front of one Redis shared by every replica; local only while Redis is away."""

    def __init__(self, caches: Mapping[str, ResponseCache], link: RedisLink, key_prefix: str) -> None:
        self.caches = caches
        self._link = link
        self._prefix = f"{key_prefix}cache:"

    async def get(self, alias: str, key: str) -> CachedAnswer | None:
        local = self.caches[alias]
        answer = local.get(key)
        if answer is not None:
            return answer

        async def fetch(client: Redis) -> tuple[bytes | None, int]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(self._prefix + f"{alias}:{key}")
                pipe.pttl(self._prefix + f"{alias}:{key}")
                raw, ttl_ms = await pipe.execute()
            return raw, int(ttl_ms)

        try:
            raw, ttl_ms = await self._link.run(fetch)
        except RedisUnavailable:
            return None
        if raw is None or ttl_ms <= 0:  # gone, or expiring this very moment
            return None
        answer = decode_answer(raw)
        if answer is not None:
            local.put(key, answer, ttl_s=ttl_ms / 1000)
        return answer

    async def put(self, alias: str, key: str, answer: CachedAnswer) -> None:
        local = self.caches[alias]
        local.put(key, answer)
        if answer.size > local.options.max_bytes:  # the same bound as locally: never one giant entry
            return
        ttl_ms = max(1, int(local.options.ttl_s * 1000))

        async def store(client: Redis) -> None:
            await client.set(self._prefix + f"{alias}:{key}", encode_answer(answer), px=ttl_ms)

        with contextlib.suppress(RedisUnavailable):  # then kept locally; other replicas ask upstream themselves
            await self._link.run(store)
