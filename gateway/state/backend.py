"""The state backend of one gateway process: memory only, or Redis shared by every replica.

Shared through Redis: per-key rate limits, cached answers, circuit breaker openings. Not shared, on
purpose: hedge budgets and latency windows (adaptive delays). They are feedback loops about this replica's
own load and what it observed, and reading them from Redis would add a round trip to every request. The
memory backend is always there underneath: it is what serves while Redis is away.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.clock import Clock, monotonic
from gateway.config.model import ResponsesConfig, StateConfig
from gateway.policies.breaker import CircuitBreaker
from gateway.policies.cache import ResponseCache
from gateway.policies.ratelimit import RateLimiter
from gateway.state.answers import LocalAnswers, SharedAnswers
from gateway.state.conversations import ConversationStore, LocalConversations
from gateway.state.limiter import LocalLimiter, SharedLimiter


class StateBackend:
    """Created once per process (a config reload keeps it: `state` changes need a restart). With the redis
    backend it starts background tasks, so create it with an event loop running, and `aclose` it."""

    def __init__(self, config: StateConfig, *, clock: Clock = monotonic) -> None:
        self.config = config
        self._clock = clock
        self.local_limiter = RateLimiter(clock=clock)
        self.limiter: SharedLimiter = LocalLimiter(self.local_limiter)
        self._closed = False
        if config.backend != "redis":
            self._redis = None
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

    def answers(self, caches: Mapping[str, ResponseCache]) -> SharedAnswers:
        """The response cache over these local caches (one per alias of the current config)."""
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

    def health(self) -> dict[str, str]:
        """For /healthz: the backend, and with redis whether it is reachable (serving locally if not)."""
        if self._redis is None:
            return {"backend": "memory"}
        return {"backend": "redis", "redis": "connected" if self._redis[0].up else "unavailable"}

    async def aclose(self) -> None:
        """Stop the background tasks and close the connection; idempotent."""
        if self._redis is None or self._closed:
            return
        self._closed = True
        link, sync = self._redis
        await sync.aclose()
        await link.aclose()
