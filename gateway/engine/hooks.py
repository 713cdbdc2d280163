"""Observability hooks: the engine reports what happened; telemetry decides what to do with it.

Like stamina's instrumentation: the policies and the race never call a tracer; they call these hooks,
which default to doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.wire import WireFormat

if TYPE_CHECKING:
    from gateway.config.model import ModelRoute
    from gateway.engine.attempt import Attempt


@dataclass(slots=True)
class RequestRecord:
    """One client request, filled in as it runs. Times are monotonic seconds."""

    route: ModelRoute
    door: WireFormat
    stream: bool
    started: float
    hedge_delay_s: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    winner: Attempt | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    status: int = 200
    error_type: str | None = None
    hedges_skipped: int = 0
    cache: str | None = None  # "hit", "miss" or "coalesced" when the alias caches this request
    key_name: str | None = None  # the gateway key's configured name (never the key)
    body_bytes: int = 0  # size of the client's request body: the prompt-token estimate until a provider reports
    # Opaque slot for the telemetry layer (e.g. the request span); the engine never reads it.
    context: object = None

    @property
    def hedged(self) -> bool:
        return any(a.launch == "hedge" for a in self.attempts)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    @property
    def wasted_cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts if a is not self.winner)


class Hooks:
    """Subclass and override what you need. Every method must be cheap and must not raise."""

    def request_started(self, record: RequestRecord) -> None:
        pass

    def request_finished(self, record: RequestRecord) -> None:
        pass

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        pass

    def attempt_finished(self, record: RequestRecord, attempt: Attempt) -> None:
        pass

    def hedge_skipped(self, record: RequestRecord, reason: str) -> None:
        pass

    def breaker_changed(self, provider: str, old: str, new: str) -> None:
        pass


class CompositeHooks(Hooks):
    """Fans every event out to several hooks, in order (e.g. tracing first, then the request log)."""

    def __init__(self, *hooks: Hooks) -> None:
        self.hooks = hooks

    def request_started(self, record: RequestRecord) -> None:
        for h in self.hooks:
            h.request_started(record)

    def request_finished(self, record: RequestRecord) -> None:
        for h in self.hooks:
            h.request_finished(record)

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        for h in self.hooks:
            h.attempt_started(record, attempt)

    def attempt_finished(self, record: RequestRecord, attempt: Attempt) -> None:
        for h in self.hooks:
            h.attempt_finished(record, attempt)

    def hedge_skipped(self, record: RequestRecord, reason: str) -> None:
        for h in self.hooks:
            h.hedge_skipped(record, reason)

    def breaker_changed(self, provider: str, old: str, new: str) -> None:
        for h in self.hooks:
            h.breaker_changed(provider, old, new)
