"""The state backend of one gateway process: memory only, Redis shared by every replica, or the hub shared
by the workers of one `gateway serve --workers N`.

Shared through Redis: per-key rate limits, cached answers, circuit breaker openings, and (with
`state.share_latency`, the default) latency windows: the adaptive hedge delays and typical latencies of
every target, as time-bucketed sketches exchanged in the background once a second
(`gateway.state.latency`), never on a request's path. Shared through the hub (`gateway.state.hub`, chosen
automatically for a worker whose supervisor runs one, that is with `backend: memory`, more than one worker
and `state.share_workers`): the same, plus coalescing of identical requests and the /metrics exposition.
Not shared, on purpose: hedge budgets. They are a feedback loop about this process's own load (each caps
the extra load its process adds). The memory backend is always there underneath: it is what serves while
Redis or the hub is away (latency included: every process keeps its local windows all along).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from gateway.clock import Clock, monotonic
from gateway.config.model import ResponsesConfig, StateConfig
from gateway.policies.breaker import CircuitBreaker
from gateway.policies.cache import ResponseCache
from gateway.policies.ratelimit import RateLimiter
from gateway.state.answers import LocalAnswers, SharedAnswers
from gateway.state.conversations import ConversationStore, LocalConversations
from gateway.state.frames import HUB_ENV, WORKER_ENV
from gateway.state.limiter import LocalLimiter, SharedLimiter

if TYPE_CHECKING:
    from gateway.state.hubstate import HubState
    from gateway.state.latency import SharedLatency


class StateBackend:
    """Created once per process (a config reload keeps it: `state` changes need a restart). With redis or the
    workers' hub it starts background tasks, so create it with an event loop running, and `aclose` it."""

    def __init__(self, config: StateConfig, *, clock: Clock = monotonic, hub: str | None = None) -> None:
        """`hub`: the socket of the workers' hub; by default the one `supervise` names in the environment."""
        self.config = config
        self._clock = clock
        self.local_limiter = RateLimiter(clock=clock)
        self.limiter: SharedLimiter = LocalLimiter(self.local_limiter)
        self._closed = False
        self._redis = None
        self._hub: HubState | None = None
        # The latency windows shared with the other replicas or workers; None: local windows only.
        self.latency: SharedLatency | None = None
        hub = os.environ.get(HUB_ENV) if hub is None else hub
        if hub and config.share_workers:
            from gateway.state.hubstate import HubState

            self._hub = HubState(hub, timeout_s=config.timeout_ms / 1000,
                                 worker=os.environ.get(WORKER_ENV) or str(os.getpid()), local=self.local_limiter)
            self._hub.link.start()
            if config.backend == "memory":
                self.limiter = self._hub.limiter
                if config.share_latency:
                    from gateway.state.latency import HubLatencyExchange, SharedLatency

                    self.latency = SharedLatency(HubLatencyExchange(self._hub.link), clock=clock)
                    self.latency.start()
                return
            # With redis, Redis shares the state (as between replicas); the hub still merges /metrics.
        if config.backend != "redis":
            return
        # Imported here: a memory-only gateway never loads redis-py.
        from gateway.state.breakers import BreakerSync
        from gateway.state.limiter import RedisLimiter
        from gateway.state.link import RedisLink

        link = RedisLink(config.url, timeout_s=config.timeout_ms / 1000)
        sync = BreakerSync(link, config.key_prefix)
        self._redis = (link, sync)
        self.limiter = RedisLimiter(link, config.key_prefix, self.local_limiter)
        link.start()
        sync.start()
        if config.share_latency:
            from gateway.state.latency import RedisLatencyExchange, SharedLatency

            self.latency = SharedLatency(RedisLatencyExchange(link, config.key_prefix), clock=clock)
            self.latency.start()

    def answers(self, caches: Mapping[str, ResponseCache]) -> SharedAnswers:
        """The response cache over these local caches (one per alias of the current config)."""
        if self._hub is not None and self._redis is None:
            return self._hub.answers(caches)
        if self._redis is None:
            return LocalAnswers(caches)
        from gateway.state.answers import RedisAnswers

        return RedisAnswers(caches, self._redis[0], self.config.key_prefix)

    def conversations(self, config: ResponsesConfig) -> ConversationStore:
        """The Responses door's stored responses: this process's, or Redis's (local while it is away)."""
        local = LocalConversations(config, clock=self._clock)
        if self._redis is None:
            return local
        from gateway.state.conversations import RedisConversations

        return RedisConversations(config, self._redis[0], self.config.key_prefix, local)

    def attach(self, breakers: Mapping[str, CircuitBreaker]) -> None:
        """The breakers of the current config, whose openings are shared."""
        if self._redis is not None:
            self._redis[1].attach(breakers)
        if self._hub is not None and self._redis is None:
            self._hub.breakers.attach(breakers)

    async def ready(self, timeout_s: float) -> None:
        """Wait, at most `timeout_s`, for the workers' hub (a worker starts serving with its state shared) and,
        when latency is shared, for the first latency exchange (so the first requests hedge at the learned
        delays). A Redis away at start costs only its first connection attempt: it is found in the background."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        if self._hub is not None:
            await self._hub.link.ready(timeout_s)
        if self.latency is not None:
            await self.latency.start_up(max(0.0, deadline - asyncio.get_running_loop().time()))

    def serve_metrics(self, source: Callable[[], str]) -> None:
        """This process's own exposition, which the hub asks for when another worker is scraped."""
        if self._hub is not None:
            self._hub.metrics.source = source

    async def metrics_text(self, local: str) -> str:
        """What /metrics answers: `local` (this process's exposition), merged with the other workers' when
        they share a hub."""
        if self._hub is None:
            return local
        return await self._hub.metrics.merged(local)

    def health(self) -> dict[str, str]:
        """For /healthz: the backend, and with redis or the hub whether it is reachable (local if not)."""
        health: dict[str, str] = {"backend": self.config.backend}
        if self._redis is not None:
            health["redis"] = "connected" if self._redis[0].up else "unavailable"
        if self._hub is not None:
            health.update({"workers": "shared" if self._redis is None else "metrics merged",
                           "worker": self._hub.worker, "hub": "connected" if self._hub.link.up else "unavailable"})
        return health

    def latency_health(self) -> dict[str, object] | None:
        """For /healthz: the shared latency windows (see `SharedLatency.health`), None when not shared."""
        return None if self.latency is None else self.latency.health()

    async def aclose(self) -> None:
        """Stop the background tasks and close the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.latency is not None:
            await self.latency.aclose()
        if self._hub is not None:
            await self._hub.link.aclose()
        if self._redis is None:
            return
        link, sync = self._redis
        await sync.aclose()
        await link.aclose()
