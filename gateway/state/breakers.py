"""Circuit breaker openings shared through Redis: one replica's evidence opens the breaker for all.

Each replica keeps its own pybreaker state machine (`gateway.policies.breaker`). When a local breaker
opens, this publishes "open for the reset timeout" as `{key_prefix}breaker:{provider}` with that TTL
(`SET ... PX`, only ever lengthening a published opening). A background task reads the TTLs of every
provider's key every `POLL_INTERVAL_S`, in one round trip, and force-opens a local breaker that another
replica opened for longer than it is open here. So a request never waits on Redis for a breaker, and a
replica learns of an opening within about half a second. When the opening expires, each replica
half-opens on its own clock and sends its own single probe (N replicas: up to N probes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from gateway.policies.breaker import BreakerState, CircuitBreaker
from gateway.state.errors import RedisUnavailable

if TYPE_CHECKING:  # redis-py is imported only by a gateway that uses it: see gateway.state.backend
    from redis.asyncio import Redis

    from gateway.state.link import RedisLink

log = logging.getLogger("gateway.breaker")

POLL_INTERVAL_S = 0.5
# An opening published by this replica comes back from Redis a few ms longer than it is open here (it was
# published a moment after it opened): not worth extending for. Also absorbs the polling round trip.
_SAME_OPENING_S = 0.25

# Set the key to ARGV[2] for ARGV[1] ms, unless it already lives that long: two replicas opening at about
# the same time never shorten each other's opening.
_PUBLISH_LUA = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
  return 1
end
return 0
"""


class BreakerSync:
    """Publishes local openings (a listener on each breaker) and applies shared ones (a polling task)."""

    def __init__(self, link: RedisLink, key_prefix: str) -> None:
        self._link = link
        self._prefix = f"{key_prefix}breaker:"
        self._publish_script = link.client.register_script(_PUBLISH_LUA)
        self._replica = f"{socket.gethostname()}:{os.getpid()}"  # the value: who opened it, for operators
        self._breakers: Mapping[str, CircuitBreaker] = {}
        self._applying = False  # set while force-opening: that opening came from Redis, do not echo it
        self._background: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None

    def attach(self, breakers: Mapping[str, CircuitBreaker]) -> None:
        """The breakers of the current config (called again after each reload): listened to, and polled for."""
        self._breakers = breakers
        for breaker in breakers.values():
            breaker.add_listener(self.breaker_changed)

    def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever(), name="breaker-sync")

    def breaker_changed(self, provider: str, old: BreakerState, new: BreakerState) -> None:
        if new is not BreakerState.OPEN or self._applying or not self._link.up:
            return
        breaker = self._breakers.get(provider)
        if breaker is not None:
            self._spawn(self._publish(provider, breaker.retry_in_s()))

    async def poll_once(self) -> None:
        """Apply every opening published by another replica to the local breakers."""
        names = list(self._breakers)
        if not names:
            return

        async def read_ttls(client: Redis) -> list[int]:
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.pttl(self._prefix + name)
                return [int(ttl) for ttl in await pipe.execute()]

        try:
            ttls = await self._link.run(read_ttls)
        except RedisUnavailable:
            return
        for name, ttl_ms in zip(names, ttls, strict=True):
            breaker = self._breakers.get(name)
            if breaker is None or ttl_ms <= 0:  # -2: no opening; -1: a key without TTL is not ours
                continue
            open_for_s = ttl_ms / 1000
            if open_for_s <= breaker.retry_in_s() + _SAME_OPENING_S:
                continue
            self._applying = True
            try:
                changed = breaker.force_open(open_for_s)
            finally:
                self._applying = False
            if changed:
                log.warning("circuit breaker %s opened by another replica: provider skipped for %.1f s", name,
                            open_for_s)

    async def _poll_forever(self) -> None:
        connection_seen = 0
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            if not self._link.up:
                continue
            if self._link.connections != connection_seen:  # (re)connected: openings meanwhile are news to others
                connection_seen = self._link.connections
                for name, breaker in list(self._breakers.items()):
                    if breaker.retry_in_s() > 0:
                        await self._publish(name, breaker.retry_in_s())
            await self.poll_once()

    async def _publish(self, provider: str, open_for_s: float) -> None:
        ttl_ms = int(open_for_s * 1000)
        if ttl_ms <= 0:
            return

        async def publish(client: Redis) -> None:
            await self._publish_script(keys=[self._prefix + provider], args=[ttl_ms, self._replica], client=client)

        # If Redis is away, the local breaker is still open; the others learn when it is back (_poll_forever).
        with contextlib.suppress(RedisUnavailable):
            await self._link.run(publish)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        tasks = [*self._background, *([self._poller] if self._poller is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
