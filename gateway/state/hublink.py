"""A worker's one connection to the workers' hub (`gateway.state.hub`), and what happens while it is away.

Requests are multiplexed on the connection: each carries an id, and its reply resolves the matching future,
so concurrent requests of one worker never wait for each other. Every request is bounded by `timeout_s`
(a lease wait by its own, longer bound). The hub's pushes (breaker openings, metrics collection) go to the
handlers registered with `on`. Like `RedisLink`: a lost connection or a timeout marks the link down, from
then on every call raises `HubUnavailable` at once (callers use local state, without a timeout per
request), one task reconnects with backoff, and going down and coming back are logged once each.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable
from typing import Any

from gateway.state.errors import HubUnavailable
from gateway.state.frames import FrameProtocol, Header, encode

log = logging.getLogger("gateway.state")

# A restarted hub is usually there within a fraction of a second (the supervisor starts it again at once);
# capped so it is found within a couple of seconds; jittered so workers do not knock in step.
_FIRST_RETRY_S = 0.05
_MAX_RETRY_S = 2.0

PushHandler = Callable[[Header, bytes], None]

# How long a deferred message (a token settlement) may wait for a request to travel with.
DEFER_S = 0.02


class HubLink:
    def __init__(self, path: str, *, timeout_s: float, worker: str) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.worker = worker
        self.up = False
        self.connections = 0  # times it came up
        self.on_connect: list[Callable[[], None]] = []  # run each time it comes up, once sending works
        # A reply nobody waits for any more (its caller was cancelled or timed out): some carry something
        # to give back (a lease).
        self.orphan_reply: PushHandler | None = None
        self._proto: FrameProtocol | None = None
        self._pending: dict[int, asyncio.Future[tuple[Header, bytes]]] = {}
        self._ids = itertools.count(1)
        self._deferred: list[bytes] = []  # encoded frames not written yet (see `send`)
        self._flush_timer: asyncio.TimerHandle | None = None
        self._push: dict[str, PushHandler] = {}
        self._connected = asyncio.Event()
        self._ever_up = False
        self._closed = False
        self._reconnecting: asyncio.Task[None] | None = None

    def on(self, op: str, handler: PushHandler) -> None:
        self._push[op] = handler

    def start(self) -> None:
        self._reconnect_in_background()

    async def ready(self, timeout_s: float) -> bool:
        """Wait (bounded) for the first connection; False if the hub was not there in time."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def request(self, op: str, *args: Any, payload: bytes = b"", timeout_s: float | None = None,
                      waits_on_others: bool = False) -> tuple[Header, bytes]:
        """Send `[op, id, *args]` and return the reply's header (`["r", id, ...]`) and payload.
        `waits_on_others`: the hub may hold the reply for other workers (a lease, a scrape), so running out
        of time says nothing about the hub: that call falls back, the link stays up."""
        proto = self._proto
        if not self.up or proto is None:
            raise HubUnavailable
        request_id = next(self._ids)
        future: asyncio.Future[tuple[Header, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._deferred.append(encode([op, request_id, *args], payload))
        self._flush()  # with whatever was deferred: one write, one wake-up of the hub
        try:
            async with asyncio.timeout(self.timeout_s if timeout_s is None else timeout_s):
                return await future
        except TimeoutError:
            if not waits_on_others:
                self._down(proto, "no answer within the timeout")
            raise HubUnavailable from None
        finally:
            self._pending.pop(request_id, None)

    def send(self, op: str, *args: Any, payload: bytes = b"", defer: bool = False) -> bool:
        """Send a message that has no reply; False (nothing sent) while the hub is away. `defer`: it may wait
        (at most `DEFER_S`) to go with the next request, so the hub wakes up once for both: every wake-up of
        another process costs more CPU than the message itself. Order is kept either way."""
        if not self.up or self._proto is None:
            return False
        self._deferred.append(encode([op, *args], payload))
        if not defer:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(DEFER_S, self._flush)
        return True

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        deferred, self._deferred = self._deferred, []
        proto = self._proto
        if deferred and proto is not None and proto.transport is not None and not proto.transport.is_closing():
            proto.transport.write(b"".join(deferred))

    def _frame(self, header: Header, payload: bytes) -> None:
        if header[0] == "r":
            future = self._pending.get(header[1])
            if future is not None and not future.done():
                future.set_result((header, payload))
            elif self.orphan_reply is not None:
                self.orphan_reply(header, payload)
            return
        handler = self._push.get(header[0])
        if handler is not None:
            handler(header, payload)

    def _lost(self, proto: FrameProtocol) -> None:
        self._down(proto, "connection lost")

    def _down(self, proto: FrameProtocol, why: str) -> None:
        if proto is not self._proto:
            return  # an older connection, already replaced
        self._proto = None
        proto.close()
        self._deferred.clear()  # lost with the hub, like what it held
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HubUnavailable())
        self._pending.clear()
        if self.up:
            self.up = False
            log.warning("shared state: the workers' hub at %s unavailable (%s); worker %s serves on local state "
                        "(its own rate limits, cache and breakers) and reconnects in the background", self.path,
                        why, self.worker)
        self._reconnect_in_background()

    def _reconnect_in_background(self) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="hub-reconnect")

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _FIRST_RETRY_S
        first_failure = True
        while not self._closed:
            proto: FrameProtocol | None = None
            try:
                async with asyncio.timeout(max(self.timeout_s * 2, 1.0)):
                    _, proto = await loop.create_unix_connection(lambda: FrameProtocol(self._frame, self._lost),
                                                                 self.path)
                    self._proto = proto
                    proto.send(["hello", self.worker])
                    # A round trip before calling it up: a hub that accepts but does not answer is not there.
                    request_id = next(self._ids)
                    future: asyncio.Future[tuple[Header, bytes]] = loop.create_future()
                    self._pending[request_id] = future
                    proto.send(["ping", request_id])
                    await future
            except (OSError, TimeoutError, HubUnavailable) as exc:
                if proto is not None:
                    self._proto = None
                    proto.close()
                if first_failure and not self._ever_up:
                    log.warning("shared state: the workers' hub at %s unavailable at start (%s); worker %s serves "
                                "on local state and retries in the background", self.path,
                                type(exc).__name__, self.worker)
                first_failure = False
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, _MAX_RETRY_S)
                continue
            self.up = True
            self.connections += 1
            log.info("shared state: the workers' hub at %s %s; worker %s shares rate limits, cache, breaker "
                     "openings and metrics", self.path, "is back" if self._ever_up else "connected", self.worker)
            self._ever_up = True
            self._connected.set()
            for callback in self.on_connect:
                callback()
            return

    async def aclose(self) -> None:
        self._closed = True
        self.up = False
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        if self._proto is not None:
            self._proto.close()
            self._proto = None
