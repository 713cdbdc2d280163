"""The one Redis connection of a gateway process, and what happens while Redis is away.

Every call goes through `RedisLink.run`, bounded by `timeout_s`. A connection error or timeout marks the
link down: from then on `run` raises `RedisUnavailable` at once, so callers use their local state without
paying a timeout per request, while one background task reconnects with backoff. Going down and coming
back are logged once each. Only `redis.asyncio` is used: nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from gateway.state.errors import RedisUnavailable

log = logging.getLogger("gateway.state")

T = TypeVar("T")

# Reconnect backoff: short first (a restart is usually quick), capped so a returning Redis is found within
# a couple of seconds, jittered so replicas do not knock in step. A PING every 2 s costs Redis nothing.
_FIRST_RETRY_S = 0.1
_MAX_RETRY_S = 2.0


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisLink:
    """A Redis client that is either up (calls go to Redis, bounded) or down (calls fail fast)."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.where = redacted(url)
        self.timeout_s = timeout_s
        # No retries inside redis-py: a failed call falls back to local state at once, and reconnecting is
        # the background task's job. The socket timeouts back up the asyncio timeout around each call.
        self.client: aioredis.Redis = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
        self.up = False
        self.connections = 0  # times it came up: a change tells a poller that Redis was away meanwhile
        self.tried = asyncio.Event()  # set once the first connection attempt has succeeded or failed
        self._ever_up = False
        self._reported_reply_error = False
        self._closed = False
        self._reconnecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect in the background; until then, and whenever Redis is away, callers use local state."""
        self._reconnect_in_background()

    async def run(self, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """`call(client)` within the timeout, or RedisUnavailable."""
        if not self.up:
            raise RedisUnavailable
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call(self.client)
        except ResponseError as exc:
            # Redis answered, with an error (e.g. OOM under maxmemory with noeviction): this call falls
            # back, but the link stays up. Reported once: it would repeat on every request.
            if not self._reported_reply_error:
                self._reported_reply_error = True
                log.warning("shared state: redis refused a command (%s); that call used local state", exc)
            raise RedisUnavailable from None
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
            raise RedisUnavailable from None

    def _down(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        log.warning("shared state: redis at %s unavailable (%s); serving on local state (rate limits, cache "
                    "and breakers per replica) and reconnecting in the background", self.where, _describe(exc))
        self._reconnect_in_background()

    def _reconnect_in_background(self) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="redis-reconnect")

    async def _reconnect(self) -> None:
        delay = _FIRST_RETRY_S
        first_failure = True
        while not self._closed:
            # Connections opened before the outage are dead: drop them all, or each would fail once more.
            await self.client.connection_pool.disconnect()
            try:
                async with asyncio.timeout(self.timeout_s * 2):
                    await self.client.ping()
            except (RedisError, OSError, TimeoutError) as exc:
                if first_failure and not self._ever_up:
                    log.warning("shared state: redis at %s unavailable at start (%s); serving on local state and "
                                "retrying in the background", self.where, _describe(exc))
                first_failure = False
                self.tried.set()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, _MAX_RETRY_S)
                continue
            self.up = True
            self.connections += 1
            log.info("shared state: redis at %s %s; rate limits, cache and breakers are shared", self.where,
                        "is back" if self._ever_up else "connected")
            self._ever_up = True
            self.tried.set()
            return

    async def aclose(self) -> None:
        self._closed = True
        self.up = False
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        await self.client.aclose()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
