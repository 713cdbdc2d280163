"""The gateway object a request runs against, and the app key it is stored under."""

from __future__ import annotations

from aiohttp import web

from gateway.clock import Clock, monotonic
from gateway.config.model import GatewayConfig
from gateway.engine import Engine, Hooks, Runtime
from gateway.policies.cache import CachedAnswer, Coalescer, ResponseCache
from gateway.policies.ratelimit import RateLimiter
from gateway.telemetry import Telemetry


class Gateway:
    """Everything a request needs, swapped as a whole on reload (in-flight requests keep their own)."""

    def __init__(self, config: GatewayConfig, *, hooks: Hooks | None = None, telemetry: Telemetry | None = None,
                 clock: Clock = monotonic) -> None:
        """`telemetry` supplies the hooks and /metrics, and is owned: `aclose` shuts it down. `hooks` alone
        (tests) is the older way; giving both is ambiguous, so it is refused."""
        if hooks is not None and telemetry is not None:
            raise TypeError("pass hooks or telemetry, not both")
        self.config = config
        self.clock = clock
        self.telemetry = telemetry
        if telemetry is not None:
            telemetry.attach(config)
            hooks = telemetry.hooks
        self.runtime = Runtime(config, hooks=hooks, clock=clock)
        self.engine = Engine(self.runtime)
        self.limiter = RateLimiter(clock=clock)
        self.caches = {alias: ResponseCache(route.cache, clock=clock)
                       for alias, route in config.models.items() if route.cache is not None}
        self.coalescer: Coalescer[CachedAnswer] = Coalescer()

    @property
    def hooks(self) -> Hooks:
        return self.runtime.hooks

    async def aclose(self) -> None:
        await self.coalescer.aclose()
        await self.runtime.aclose()
        if self.telemetry is not None:
            await self.telemetry.shutdown()


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
