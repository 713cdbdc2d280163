"""The gateway object a request runs against, the holder that swaps it on reload, and their app key."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gateway.clock import Clock, monotonic
from gateway.config.model import GatewayConfig
from gateway.engine import Engine, Hooks, Runtime
from gateway.policies.cache import CachedAnswer, Coalescer, ResponseCache
from gateway.pricing.catalog import unpriced_warnings
from gateway.state import SharedAnswers, SharedLimiter, StateBackend
from gateway.state.conversations import ConversationStore
from gateway.telemetry import Telemetry

log = logging.getLogger("gateway.server")


class Gateway:
    """Everything a request needs for one config. A request captures it once, so a reload never changes the
    config of a request already running."""

    def __init__(self, config: GatewayConfig, *, hooks: Hooks | None = None, telemetry: Telemetry | None = None,
                 clock: Clock = monotonic, previous: Gateway | None = None) -> None:
        """`telemetry` supplies the hooks and /metrics, and is owned: `aclose` shuts it down. `hooks` alone
        (tests) is the older way; giving both is ambiguous, so it is refused. `previous`: the gateway being
        replaced by a reload, whose state for unchanged providers and aliases carries over."""
        if hooks is not None and telemetry is not None:
            raise TypeError("pass hooks or telemetry, not both")
        self.config = config
        self.clock = clock
        self.telemetry = telemetry
        self.owns_telemetry = previous is None
        if telemetry is not None:
            telemetry.attach(config)
            hooks = telemetry.hooks
        self._given_hooks = hooks
        # Rate limits, cache and breaker openings: this process's, or shared with other replicas via Redis.
        # Created once, like the telemetry: a reload keeps it (the first gateway owns and closes it).
        self.state_backend: StateBackend = (StateBackend(config.state, clock=clock) if previous is None
                                            else previous.state_backend)
        self.owns_state_backend = previous is None
        if previous is not None and config.state != previous.state_backend.config:
            log.warning("state (the shared state backend) changes take effect at the next restart")
        for warning in unpriced_warnings(config):  # at start and at each reload: a 0 cost must not go unnoticed
            log.warning("price: %s", warning)
        self.runtime: Runtime = Runtime(config, hooks=hooks, clock=clock,
                               previous=None if previous is None else previous.runtime,
                               shared_latency=self.state_backend.latency)
        self.state_backend.attach(self.runtime.breakers)  # their openings are shared, when Redis is there
        self.engine = Engine(self.runtime)
        self.limiter: SharedLimiter = self.state_backend.limiter
        self.caches = {alias: ResponseCache(route.cache, clock=clock)
                       for alias, route in config.models.items() if route.cache is not None}
        if previous is not None:
            for alias, cache in previous.caches.items():
                if alias in self.caches and cache.options == self.caches[alias].options:
                    self.caches[alias] = cache
        self.answers: SharedAnswers = self.state_backend.answers(self.caches)  # the caches, and Redis behind them
        self.coalescer: Coalescer[CachedAnswer] = Coalescer()
        # The Responses door's conversations outlive reloads, like the state backend they live in.
        self.conversations: ConversationStore = (self.state_backend.conversations(config.responses) if previous is None
                                                 else previous.conversations)
        if previous is not None and config.responses != previous.config.responses:
            log.warning("responses (the conversation store) changes take effect at the next restart")
        self.in_flight = 0  # requests running on this gateway (a retired one closes when it reaches 0)
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()

    @property
    def hooks(self) -> Hooks:
        return self.runtime.hooks

    def successor(self, config: GatewayConfig) -> Gateway:
        """The gateway for a reloaded config, sharing telemetry and the state of what did not change."""
        if self.telemetry is not None:
            return Gateway(config, telemetry=self.telemetry, clock=self.clock, previous=self)
        return Gateway(config, hooks=self._given_hooks, clock=self.clock, previous=self)

    async def aclose(self) -> None:
        await self.coalescer.aclose()
        await self.runtime.aclose()
        if self.owns_state_backend:
            await self.state_backend.aclose()
        if self.telemetry is not None and self.owns_telemetry:
            await self.telemetry.shutdown()


class GatewayHolder:
    """The current gateway, swapped atomically on reload. A retired gateway is closed after its last request."""

    def __init__(self, gateway: Gateway, *, grace_s: float = 30.0) -> None:
        self.current = gateway
        self.first = gateway  # owns the telemetry: closed last
        self.grace_s = grace_s
        self._retiring: set[asyncio.Task[None]] = set()
        self._live: list[Gateway] = [gateway]  # the current one and those still finishing their requests

    def swap(self, new: Gateway) -> None:
        old, self.current = self.current, new
        self._live.append(new)
        task = asyncio.get_running_loop().create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: Gateway) -> None:
        try:
            async with asyncio.timeout(self.grace_s):
                await old.idle.wait()
        except TimeoutError:
            log.warning("%d requests still running on the previous config after %g s", old.in_flight, self.grace_s)
        self._live.remove(old)
        # Its telemetry and state backend live on in its successors; its providers close unless a live
        # generation (the current one, or an older one still finishing a stream) shares them.
        await old.coalescer.aclose()
        await old.runtime.aclose(in_use=[g.runtime for g in self._live])

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for gateway in self._live:  # the current one, and any cut short while still finishing requests
            await gateway.coalescer.aclose()
            await gateway.runtime.aclose()
        await self.first.state_backend.aclose()  # shared by every gateway since the first
        if self.first.telemetry is not None:
            await self.first.telemetry.shutdown()


GATEWAY: web.AppKey[GatewayHolder] = web.AppKey("gateway", GatewayHolder)


def current_gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY].current
