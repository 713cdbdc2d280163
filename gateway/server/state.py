"""The gateway object a request runs against, and the app key it is stored under."""

from __future__ import annotations

from aiohttp import web

from gateway.clock import Clock, monotonic
from gateway.config.model import GatewayConfig
from gateway.engine import Engine, Hooks, Runtime


class Gateway:
    """Everything a request needs, swapped as a whole on reload (in-flight requests keep their own)."""

    def __init__(self, config: GatewayConfig, *, hooks: Hooks | None = None, clock: Clock = monotonic) -> None:
        self.config = config
        self.clock = clock
        self.runtime = Runtime(config, hooks=hooks, clock=clock)
        self.engine = Engine(self.runtime)

    @property
    def hooks(self) -> Hooks:
        return self.runtime.hooks

    async def aclose(self) -> None:
        await self.runtime.aclose()


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
