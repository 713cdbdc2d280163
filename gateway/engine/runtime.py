"""Long-lived state behind one config: provider connections, breakers, latency trackers, budgets, cooldowns."""

from __future__ import annotations

import logging

from gateway.clock import Clock, monotonic
from gateway.config.model import GatewayConfig, ModelRoute, Target
from gateway.engine.hooks import Hooks
from gateway.policies.breaker import BreakerState, CircuitBreaker
from gateway.policies.budget import HedgeBudget
from gateway.policies.bulkhead import Bulkhead
from gateway.policies.latency import LatencyTracker
from gateway.providers import Provider, create_provider

log = logging.getLogger("gateway.breaker")

MAX_COOLDOWN_S = 60.0
DEFAULT_COOLDOWN_S = 1.0


class Runtime:
    def __init__(self, config: GatewayConfig, *, hooks: Hooks | None = None, clock: Clock = monotonic,
                 providers: dict[str, Provider] | None = None) -> None:
        self.config = config
        self.hooks = hooks or Hooks()
        self.clock = clock
        self.providers: dict[str, Provider] = providers or {
            name: create_provider(p) for name, p in config.providers.items()}
        self.breakers = {
            name: CircuitBreaker(name, p.breaker, clock=clock, on_state_change=self._breaker_changed)
            for name, p in config.providers.items()}
        # Only bounded providers get a bulkhead: an unbounded one would cost a little on every attempt.
        self.bulkheads = {name: Bulkhead(p.bulkhead) for name, p in config.providers.items()
                          if p.bulkhead.max_concurrent is not None}
        self.budgets = {alias: HedgeBudget(route.hedge.budget, clock=clock)
                        for alias, route in config.models.items()}
        self._trackers: dict[tuple[str, str, bool], LatencyTracker] = {}
        self._cooldown_until: dict[tuple[str, str], float] = {}

    def _breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit breaker %s: %s -> %s", name, old, new)
        self.hooks.breaker_changed(name, str(old), str(new))

    def tracker(self, route: ModelRoute, target: Target, stream: bool) -> LatencyTracker | None:
        """The latency window behind an adaptive delay: per target, TTFT for streams, full latency otherwise."""
        options = route.hedge.adaptive
        if options is None:
            return None
        key = (target.provider, target.model, stream)
        tracker = self._trackers.get(key)
        if tracker is None:
            tracker = self._trackers[key] = LatencyTracker(options, clock=self.clock)
        return tracker

    def cool_down(self, target: Target, retry_after_s: float | None) -> None:
        wait = DEFAULT_COOLDOWN_S if retry_after_s is None else min(retry_after_s, MAX_COOLDOWN_S)
        self._cooldown_until[(target.provider, target.model)] = self.clock() + wait

    def cooling_down(self, target: Target) -> bool:
        until = self._cooldown_until.get((target.provider, target.model))
        return until is not None and self.clock() < until

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
