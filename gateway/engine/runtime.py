"""Long-lived state behind one config: provider connections, breakers, latency trackers, budgets, cooldowns."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.clock import Clock, monotonic
from gateway.config.model import GatewayConfig, ModelRoute, Target
from gateway.engine.hooks import BreakerChanged, Hooks, guarded
from gateway.policies.breaker import BreakerState, CircuitBreaker
from gateway.policies.budget import HedgeBudget
from gateway.policies.bulkhead import Bulkhead
from gateway.policies.latency import AdaptiveDelayOptions, LatencyTracker
from gateway.policies.sketch import LatencyShare, SharedWindow, TargetKey
from gateway.policies.spend import SpendCeiling
from gateway.pricing.prompt_cache import PromptCacheTracker
from gateway.providers import Provider, create_provider

log = logging.getLogger("gateway.breaker")

# The typical-latency window: a median, trusted after a few samples, over the last minute.
_TYPICAL = AdaptiveDelayOptions(quantile=0.5, min_delay_ms=0.0, max_delay_ms=3_600_000.0, min_samples=5,
                                fallback_ms=0.0)

MAX_COOLDOWN_S = 60.0
DEFAULT_COOLDOWN_S = 1.0


class Runtime:
    def __init__(self, config: GatewayConfig, *, hooks: Hooks | None = None, clock: Clock = monotonic,
                 providers: dict[str, Provider] | None = None, previous: Runtime | None = None,
                 shared_latency: LatencyShare | None = None) -> None:
        """`previous`: the runtime of the config being reloaded. What belongs to providers whose config did not
        change (connections, breaker, latency windows, 429 cool-downs, bulkhead) is carried over.
        `shared_latency`: the latency windows shared with other replicas or workers, if they are."""
        self.config = config
        self.shared_latency = shared_latency
        if shared_latency is not None:
            shared_latency.watch(shared_latency_windows(config))
        self.hooks = guarded(hooks or Hooks())  # no observer can fail a request
        self.clock = clock
        kept = set() if previous is None else {
            name for name, p in config.providers.items() if previous.config.providers.get(name) == p}
        self.providers: dict[str, Provider] = providers or {
            name: previous.providers[name] if previous is not None and name in kept else create_provider(p)
            for name, p in config.providers.items()}
        self.breakers: dict[str, CircuitBreaker] = {
            name: previous.breakers[name] if previous is not None and name in kept else
            CircuitBreaker(name, p.breaker, clock=clock, on_state_change=self._breaker_changed)
            for name, p in config.providers.items()}
        # Only bounded providers get a bulkhead: an unbounded one would cost a little on every attempt.
        self.bulkheads: dict[str, Bulkhead] = {
            name: previous.bulkheads[name] if previous is not None and name in kept else Bulkhead(p.bulkhead)
            for name, p in config.providers.items() if p.bulkhead.max_concurrent is not None}
        self.budgets = {alias: HedgeBudget(route.hedge.budget, clock=clock)
                        for alias, route in config.models.items()}
        # Per target (provider, model, stream): one window per set of adaptive options that uses it. Every sample
        # goes to all of them; each alias reads its own quantile and clamp.
        self._trackers: dict[tuple[str, str, bool], dict[AdaptiveDelayOptions, LatencyTracker]] = {}
        self._cooldown_until: dict[tuple[str, str], float] = {}
        # Every target's recent median latency, whatever its aliases' delays: how long a backup usually takes,
        # so a hedge that cannot answer before the deadline is not sent.
        self._typical: dict[tuple[str, str, bool], LatencyTracker] = {}
        self.ceilings = {alias: SpendCeiling(route.hedge.budget_usd_per_hour, clock=clock)
                         for alias, route in config.models.items() if route.hedge.budget_usd_per_hour is not None}
        self._output_tokens: dict[str, float] = {}  # per alias: a moving average of the winners' output
        # Per provider: the prompt prefixes it has likely cached, for what a hedge to it will cost.
        self.prompt_caches: dict[str, PromptCacheTracker] = {
            name: previous.prompt_caches[name] if previous is not None and name in kept else
            PromptCacheTracker(clock=clock) for name in config.providers}
        # Per alias, resumes of broken streams: the hedge budget's share, counted apart so that hedges and
        # resumes never starve each other. Made on first use (only aliases that resume need one).
        self._resume_budgets: dict[str, HedgeBudget] = {}
        if previous is not None:
            for alias, budget in previous.budgets.items():
                if alias in self.budgets and budget.options == self.budgets[alias].options:
                    self.budgets[alias] = budget
            for alias, ceiling in previous.ceilings.items():
                if alias in self.ceilings and ceiling.usd_per_hour == self.ceilings[alias].usd_per_hour:
                    self.ceilings[alias] = ceiling
            self._typical = {k: t for k, t in previous._typical.items() if k[0] in kept}
            self._output_tokens = {a: n for a, n in previous._output_tokens.items() if a in config.models}
            self._trackers = {k: t for k, t in previous._trackers.items() if k[0] in kept}
            self._cooldown_until = {k: t for k, t in previous._cooldown_until.items() if k[0] in kept}

    def _breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit breaker %s: %s -> %s", name, old, new)
        self.hooks.breaker_changed(BreakerChanged(name, str(old), str(new)))

    def resume_budget(self, route: ModelRoute) -> HedgeBudget:
        budget = self._resume_budgets.get(route.alias)
        if budget is None:
            budget = self._resume_budgets[route.alias] = HedgeBudget(route.hedge.budget, clock=self.clock)
        return budget

    def tracker(self, route: ModelRoute, target: Target, stream: bool) -> LatencyTracker | None:
        """The latency window behind `route`'s adaptive delay for `target`: TTFT for streams, full latency
        otherwise. None when the route's delay is fixed."""
        options = route.hedge.adaptive
        if options is None:
            return None
        windows = self._trackers.setdefault((target.provider, target.model, stream), {})
        tracker = windows.get(options)
        if tracker is None:
            tracker = windows[options] = LatencyTracker(options, clock=self.clock, shared=self._shared_window(
                (target.provider, target.model, stream)))
        return tracker

    def record_latency(self, target: Target, stream: bool, latency_s: float) -> None:
        """One latency sample of `target`, for every alias that hedges on it with an adaptive delay."""
        key = (target.provider, target.model, stream)
        windows = self._trackers.get(key)
        if windows:
            for tracker in windows.values():
                tracker.record(latency_s)
        typical = self._typical.get(key)
        if typical is None:
            typical = self._typical[key] = LatencyTracker(_TYPICAL, clock=self.clock, shared=self._shared_window(key))
        typical.record(latency_s)
        shared = self._shared_window(key)
        if shared is not None:
            shared.record(latency_s)

    def typical_latency_s(self, target: Target, stream: bool) -> float | None:
        """The target's recent median latency (TTFT for streams), None until it has a few samples (here or,
        when latency is shared, in the shared window)."""
        key = (target.provider, target.model, stream)
        typical = self._typical.get(key)
        if typical is None and self.shared_latency is not None:
            typical = self._typical[key] = LatencyTracker(_TYPICAL, clock=self.clock, shared=self._shared_window(key))
        if typical is None or (typical.sample_count() < _TYPICAL.min_samples and typical.shared_quantile_s() is None):
            return None
        return typical.delay_s()

    def _shared_window(self, key: TargetKey) -> SharedWindow | None:
        return None if self.shared_latency is None else self.shared_latency.window(key)

    def note_output(self, alias: str, tokens: int) -> None:
        """A winner's output size, for the expected cost of the alias's next hedges."""
        previous = self._output_tokens.get(alias)
        self._output_tokens[alias] = float(tokens) if previous is None else 0.9 * previous + 0.1 * tokens

    def expected_output_tokens(self, route: ModelRoute) -> float:
        """What a hedge for `route` will likely produce: its winners' average, else a modest default."""
        return self._output_tokens.get(route.alias, min(256.0, float(route.default_max_tokens)))

    def cool_down(self, target: Target, retry_after_s: float | None) -> None:
        wait = DEFAULT_COOLDOWN_S if retry_after_s is None else min(retry_after_s, MAX_COOLDOWN_S)
        self._cooldown_until[(target.provider, target.model)] = self.clock() + wait

    def cooling_down(self, target: Target) -> bool:
        until = self._cooldown_until.get((target.provider, target.model))
        return until is not None and self.clock() < until

    async def aclose(self, *, in_use: Iterable[Runtime] = ()) -> None:
        """Close this runtime's connections, except those of providers a live runtime (`in_use`) shares:
        providers carry over reloads, so one object may serve several config generations at once."""
        shared = {id(p) for rt in in_use if rt is not self for p in rt.providers.values()}
        for provider in self.providers.values():
            if id(provider) not in shared:
                await provider.aclose()


def shared_latency_windows(config: GatewayConfig) -> dict[TargetKey, float]:
    """Every target of `config`, streamed and not, with the longest window an alias reads its latency over
    (the typical-latency window's at least: every target is a possible backup)."""
    windows: dict[TargetKey, float] = {}
    for route in config.models.values():
        adaptive = route.hedge.adaptive
        window_s = max(_TYPICAL.window_s, adaptive.window_s if adaptive is not None else 0.0)
        for target in route.targets:
            for stream in (False, True):
                key = (target.provider, target.model, stream)
                windows[key] = max(windows.get(key, 0.0), window_s)
    return windows
