"""The hub backend of a worker: rate limits, cached answers, breaker openings and /metrics shared with the
other workers of the same `gateway serve --workers N`, through the hub (`gateway.state.hub`).

The same interfaces as the Redis backend (`SharedLimiter`, `SharedAnswers`, a `Hooks` publishing breaker
openings), and the same rule: while the hub is away, every call uses this worker's local state at once.
What differs from Redis, because the hub is one process on this machine: a limit check is one round trip
on a Unix socket (no Lua, no network); breaker openings are pushed, not polled; a miss takes a lease, so
identical concurrent requests on several workers make one upstream flight; and /metrics is merged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from gateway.policies.breaker import BreakerState, CircuitBreaker
from gateway.policies.cache import CachedAnswer, ResponseCache
from gateway.policies.ratelimit import RateLimiter, RateLimitOptions
from gateway.state.answers import decode_answer, encode_answer
from gateway.state.errors import HubUnavailable
from gateway.state.frames import COLLECT_TIMEOUT_S, LEASE_WAIT_S, Header
from gateway.state.hublink import HubLink

log = logging.getLogger("gateway.breaker")

# An opening this worker already has, pushed back a few ms longer (it was published a moment after it
# opened here), is the same opening: not worth a transition.
_SAME_OPENING_S = 0.25


class HubLimiter:
    """Token buckets in the hub, exact across workers (the hub's one event loop serialises every check)."""

    def __init__(self, link: HubLink, local: RateLimiter) -> None:
        self.local = local
        self._link = link

    async def check(self, key_id: str, options: RateLimitOptions, estimated_tokens: int) -> float | None:
        rpm, tpm = options.requests_per_minute, options.tokens_per_minute
        if rpm is None and tpm is None:
            return None
        try:
            header, _ = await self._link.request("check", key_id, rpm or 0, tpm or 0, max(0, estimated_tokens))
        except HubUnavailable:
            return self.local.check(key_id, options, estimated_tokens)
        wait = header[2]
        return None if wait is None else float(wait)

    async def settle(self, key_id: str, options: RateLimitOptions, estimated_tokens: int,
                     actual_tokens: int) -> None:
        tpm = options.tokens_per_minute
        if tpm is None or max(0, actual_tokens) == max(0, estimated_tokens):
            return
        # No reply needed, and deferred (at most 20 ms) to travel with this worker's next request: the
        # connection keeps the order, so its next check sees it.
        if not self._link.send("settle", key_id, options.requests_per_minute or 0, tpm, estimated_tokens,
                               actual_tokens, defer=True):
            self.local.settle(key_id, options, estimated_tokens, actual_tokens)


class Leases:
    """The hub's leases this worker holds: (alias, cache key) -> a token per lease.

    A miss answered by the hub makes this worker the one to fetch the answer; the request task that asked
    holds the lease until its `put`. If that task ends without one (the flight failed, the client left, the
    answer was too large), the lease is released so a worker waiting for it goes upstream itself.
    """

    def __init__(self, link: HubLink) -> None:
        self._link = link
        self._held: dict[tuple[str, str], object] = {}

    def hold(self, alias: str, key: str) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        token = self._held.setdefault((alias, key), object())
        task.add_done_callback(lambda _task: self._holder_done(alias, key, token))

    def answered(self, alias: str, key: str) -> None:
        self._held.pop((alias, key), None)

    def granted_to_nobody(self, header: Header, _payload: bytes) -> None:
        """A lease granted in reply to a `get` whose caller had gone (cancelled): give it back at once."""
        if len(header) >= 5 and header[2] is None:
            self._link.send("release", header[3], header[4])

    def _holder_done(self, alias: str, key: str, token: object) -> None:
        if self._held.get((alias, key)) is token:
            del self._held[(alias, key)]
            self._link.send("release", alias, key)


class HubAnswers:
    """This worker's caches in front of the hub's; local only while the hub is away."""

    def __init__(self, caches: Mapping[str, ResponseCache], link: HubLink, leases: Leases) -> None:
        self.caches = caches
        self._link = link
        self._leases = leases

    async def get(self, alias: str, key: str) -> CachedAnswer | None:
        local = self.caches[alias]
        answer = local.get(key)
        if answer is not None:
            return answer
        try:
            # Bounded by the lease wait, not the per-call timeout: waiting here for another worker's flight
            # is what coalescing across workers is.
            header, payload = await self._link.request("get", alias, key, True, waits_on_others=True,
                                                       timeout_s=LEASE_WAIT_S + self._link.timeout_s)
        except HubUnavailable:
            return None
        ttl_ms = header[2]
        if ttl_ms is None:
            self._leases.hold(alias, key)
            return None
        answer = decode_answer(payload)
        if answer is not None:
            local.put(key, answer, ttl_s=ttl_ms / 1000)  # expires here when it expires in the hub
        return answer

    async def put(self, alias: str, key: str, answer: CachedAnswer) -> None:
        local = self.caches[alias]
        local.put(key, answer)
        self._leases.answered(alias, key)
        options = local.options
        if answer.size > options.max_bytes:  # the same bound as locally: never one giant entry
            self._link.send("release", alias, key)
            return
        self._link.send("put", alias, key, max(1, int(options.ttl_s * 1000)), options.max_entries,
                        options.max_bytes, payload=encode_answer(answer))


class HubBreakers:
    """Publishes local openings (a listener on each breaker, like `BreakerSync`) and applies the ones the hub
    pushes from other workers, at once: no polling."""

    def __init__(self, link: HubLink) -> None:
        self._link = link
        self._breakers: Mapping[str, CircuitBreaker] = {}
        self._applying = False  # set while force-opening: that opening came from the hub, do not echo it
        link.on("opened", self._opened)
        link.on_connect.append(self._publish_all)

    def attach(self, breakers: Mapping[str, CircuitBreaker]) -> None:
        self._breakers = breakers
        for breaker in breakers.values():
            breaker.add_listener(self.breaker_changed)

    def breaker_changed(self, provider: str, old: BreakerState, new: BreakerState) -> None:
        if new is not BreakerState.OPEN or self._applying:
            return
        breaker = self._breakers.get(provider)
        if breaker is not None:
            self._link.send("open", provider, int(breaker.retry_in_s() * 1000))

    def _publish_all(self) -> None:
        """After a (re)connection: openings that happened meanwhile are news to the others."""
        for name, breaker in list(self._breakers.items()):
            if breaker.retry_in_s() > 0:
                self._link.send("open", name, int(breaker.retry_in_s() * 1000))

    def _opened(self, header: Header, _payload: bytes) -> None:
        _, provider, open_for_ms = header
        breaker = self._breakers.get(provider)
        open_for_s = open_for_ms / 1000
        if breaker is None or open_for_s <= breaker.retry_in_s() + _SAME_OPENING_S:
            return
        self._applying = True
        try:
            changed = breaker.force_open(open_for_s)
        finally:
            self._applying = False
        if changed:
            log.warning("circuit breaker %s opened by another worker: provider skipped for %.1f s", provider,
                        open_for_s)


class HubMetrics:
    """Answers the hub's collection requests with this worker's exposition, and asks for the merged one."""

    def __init__(self, link: HubLink) -> None:
        self._link = link
        self.source: Callable[[], str] | None = None
        link.on("collect", self._collect)

    def _collect(self, header: Header, _payload: bytes) -> None:
        text = self.source() if self.source is not None else ""
        self._link.send("collected", header[1], payload=text.encode())

    async def merged(self, local_text: str) -> str:
        """Every worker's metrics in one exposition; this worker's alone while the hub is away."""
        try:
            _, payload = await self._link.request("metrics", payload=local_text.encode(), waits_on_others=True,
                                                  timeout_s=2 * COLLECT_TIMEOUT_S + self._link.timeout_s)
        except HubUnavailable:
            return local_text
        return payload.decode()


class HubState:
    """What `SharedState` holds for the hub backend."""

    def __init__(self, path: str, *, timeout_s: float, worker: str, local: RateLimiter) -> None:
        self.worker = worker
        self.link = HubLink(path, timeout_s=timeout_s, worker=worker)
        self.limiter = HubLimiter(self.link, local)
        self.leases = Leases(self.link)
        self.link.orphan_reply = self.leases.granted_to_nobody
        self.breakers = HubBreakers(self.link)
        self.metrics = HubMetrics(self.link)

    def answers(self, caches: Mapping[str, ResponseCache]) -> HubAnswers:
        return HubAnswers(caches, self.link, self.leases)
