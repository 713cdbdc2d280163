"""The Responses door's stored responses, by owner (the gateway key's name) and response id: in this process,
or in Redis shared by every replica.

A stored response is opaque bytes here (the door decides what is in it: `gateway.server.responses_turn`). The
owner is part of the key, so one key never finds another's conversations, even by a guessed id.

Memory: a TTL cache bounded in entries and in bytes (least recently used out first); an entry larger than
the whole bound is not stored. Redis: `{key_prefix}responses:{owner hash}:{response id}` with the TTL as
its Redis TTL, bounded by that TTL and by Redis's `maxmemory` (every key the gateway writes has a TTL, so
`volatile-lru` evicts only such keys); entries over `max_mb` are not stored either. No local copy is kept in
front of Redis, so a DELETE through one replica is seen by all at once. While Redis is away the local store
serves (a response stored then is known to this replica only), and a read that misses Redis asks it too.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING, Protocol

from cachetools import TTLCache

from gateway.clock import Clock, monotonic
from gateway.config.model import ResponsesConfig
from gateway.state.errors import RedisUnavailable

if TYPE_CHECKING:  # redis-py is imported only by a gateway that uses it: see gateway.state.backend
    from redis.asyncio import Redis

    from gateway.state.link import RedisLink


class ConversationStore(Protocol):
    async def get(self, owner: str, response_id: str) -> bytes | None:
        """The stored response, or None (never stored, expired, deleted, or another owner's)."""
        ...

    async def put(self, owner: str, response_id: str, stored: bytes) -> bool:
        """Store it for the TTL; False when it is too large to be kept."""
        ...

    async def delete(self, owner: str, response_id: str) -> bool:
        """True when there was such a response."""
        ...


def _size(value: bytes) -> float:
    return len(value)


class LocalConversations:
    """This process's stored responses."""

    def __init__(self, config: ResponsesConfig, *, clock: Clock = monotonic) -> None:
        self.config = config
        self._cache: TTLCache[tuple[str, str], bytes] = TTLCache(
            maxsize=config.max_bytes, ttl=config.ttl_s, timer=clock, getsizeof=_size)

    def __len__(self) -> int:
        return len(self._cache)

    async def get(self, owner: str, response_id: str) -> bytes | None:
        return self._cache.get((owner, response_id))

    async def put(self, owner: str, response_id: str, stored: bytes) -> bool:
        if len(stored) > self.config.max_bytes:
            return False
        cache = self._cache
        key = (owner, response_id)
        # len() drops expired entries first, so a live entry is never evicted while dead ones count.
        if key not in cache and len(cache) >= self.config.max_entries:
            cache.popitem()
        cache[key] = stored  # cachetools evicts least recently used entries until max_bytes holds
        return True

    async def delete(self, owner: str, response_id: str) -> bool:
        return self._cache.pop((owner, response_id), None) is not None


class RedisConversations:
    """One Redis shared by every replica; the local store while Redis is away."""

    def __init__(self, config: ResponsesConfig, link: RedisLink, key_prefix: str, local: LocalConversations) -> None:
        self.config = config
        self._link = link
        self._prefix = f"{key_prefix}responses:"
        self.local = local

    def _key(self, owner: str, response_id: str) -> str:
        # Hashed: a key's name may hold any character, and the owner is not worth showing in Redis.
        return f"{self._prefix}{hashlib.sha256(owner.encode()).hexdigest()[:16]}:{response_id}"

    async def get(self, owner: str, response_id: str) -> bytes | None:
        key = self._key(owner, response_id)

        async def fetch(client: Redis) -> bytes | None:
            value = await client.get(key)
            return value if isinstance(value, bytes) else None

        try:
            found = await self._link.run(fetch)
        except RedisUnavailable:
            found = None
        return found if found is not None else await self.local.get(owner, response_id)

    async def put(self, owner: str, response_id: str, stored: bytes) -> bool:
        if len(stored) > self.config.max_bytes:
            return False
        key, ttl_ms = self._key(owner, response_id), max(1, int(self.config.ttl_s * 1000))

        async def store(client: Redis) -> None:
            await client.set(key, stored, px=ttl_ms)

        try:
            await self._link.run(store)
        except RedisUnavailable:
            return await self.local.put(owner, response_id, stored)
        return True

    async def delete(self, owner: str, response_id: str) -> bool:
        key = self._key(owner, response_id)

        async def remove(client: Redis) -> int:
            return int(await client.delete(key))

        removed = 0
        with contextlib.suppress(RedisUnavailable):
            removed = await self._link.run(remove)
        return await self.local.delete(owner, response_id) or removed > 0
