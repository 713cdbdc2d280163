"""Observability hooks: the engine and the server report what happened as frozen event data.

Like stamina's instrumentation: nothing on the request path calls a tracer or a logger for a request; it calls
these hooks, which default to doing nothing. A hook only observes: it receives immutable data, keeps whatever
handles it needs in its own maps (keyed by request id), and never steers behaviour. Hooks do not depend on
each other, so their order does not matter. A hook must be cheap and must not raise; `CompositeHooks`
contains a hook that does anyway, so no observer can ever fail a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config.model import Target
from gateway.engine.records import Attempt, Launch, RequestSummary
from gateway.wire import Json, WireFormat

log = logging.getLogger("gateway.hooks")


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """A request admitted at the door (its alias is known), before any attempt."""

    request_id: int
    alias: str
    door: WireFormat
    endpoint: str
    stream: bool
    started: float
    trace_id: int
    # The client's headers (W3C traceparent/tracestate) and body (read only for opt-in content capture).
    headers: Mapping[str, str]
    body: Json
    cache: str | None = None
    key_name: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """An attempt sent to its provider. Its end arrives as a finished `Attempt`."""

    request_id: int
    alias: str
    index: int
    target: Target
    launch: Launch
    started: float
    breaker_state: str
    server_address: str
    server_port: int
    operation: str = "chat"
    dropped_fields: tuple[str, ...] = ()  # client fields the translation for this target left out
    expected_cost_usd: float | None = None  # a hedge's cost as estimated before it was sent


@dataclass(frozen=True, slots=True)
class HedgeSkipped:
    request_id: int
    alias: str
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerChanged:
    provider: str
    old: str
    new: str


class Hooks:
    """Subclass and override what you need. Every method must be cheap and must not raise."""

    def request_started(self, event: RequestStarted) -> None:
        pass

    def request_finished(self, summary: RequestSummary) -> None:
        pass

    def attempt_started(self, event: AttemptStarted) -> None:
        pass

    def attempt_finished(self, attempt: Attempt) -> None:
        pass

    def hedge_skipped(self, event: HedgeSkipped) -> None:
        pass

    def breaker_changed(self, event: BreakerChanged) -> None:
        pass


class CompositeHooks(Hooks):
    """Fans every event out to several hooks. A hook that raises is logged and skipped, never propagated.

    Dispatch is resolved once, here: for each event, the bound methods of the hooks that override it (a hook
    that leaves an event to the base class's no-op is never called for it), with nested plain
    `CompositeHooks` flattened into this one. An event costs a loop over those methods, each in a `try`.
    """

    def __init__(self, *hooks: Hooks) -> None:
        self.hooks = hooks
        flat: list[Hooks] = []
        for h in hooks:
            flat.extend(h.hooks_flat if type(h) is CompositeHooks else (h,))
        self.hooks_flat: tuple[Hooks, ...] = tuple(flat)
        self._request_started = _overriding(flat, "request_started")
        self._request_finished = _overriding(flat, "request_finished")
        self._attempt_started = _overriding(flat, "attempt_started")
        self._attempt_finished = _overriding(flat, "attempt_finished")
        self._hedge_skipped = _overriding(flat, "hedge_skipped")
        self._breaker_changed = _overriding(flat, "breaker_changed")

    def request_started(self, event: RequestStarted) -> None:
        for method in self._request_started:
            try:
                method(event)
            except Exception:
                _failed()

    def request_finished(self, summary: RequestSummary) -> None:
        for method in self._request_finished:
            try:
                method(summary)
            except Exception:
                _failed()

    def attempt_started(self, event: AttemptStarted) -> None:
        for method in self._attempt_started:
            try:
                method(event)
            except Exception:
                _failed()

    def attempt_finished(self, attempt: Attempt) -> None:
        for method in self._attempt_finished:
            try:
                method(attempt)
            except Exception:
                _failed()

    def hedge_skipped(self, event: HedgeSkipped) -> None:
        for method in self._hedge_skipped:
            try:
                method(event)
            except Exception:
                _failed()

    def breaker_changed(self, event: BreakerChanged) -> None:
        for method in self._breaker_changed:
            try:
                method(event)
            except Exception:
                _failed()


def guarded(hooks: Hooks) -> Hooks:
    """`hooks` wrapped so that none of its methods can raise into the request path."""
    return hooks if isinstance(hooks, CompositeHooks) else CompositeHooks(hooks)


def _overriding(hooks: Sequence[Hooks], event: str) -> tuple[Callable[[Any], None], ...]:
    """The bound `event` methods of the hooks whose class overrides the base no-op."""
    base = getattr(Hooks, event)
    return tuple(getattr(h, event) for h in hooks if getattr(type(h), event) is not base)


def _failed() -> None:
    log.exception("a hook failed (ignored: observers never fail a request)")
