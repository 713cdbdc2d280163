"""`TelemetryHooks`: the engine's hooks turned into spans (one per request, one per attempt) and metrics.

Spans are started and ended live in the hooks, which the engine calls at the moment things happen, so span
times are right without converting the engine's monotonic clock. A skipped attempt (never sent) gets a
zero-length span. The request span's context rides in `RequestRecord.context`, each attempt's span in
`Attempt.context`; nothing is put in the ambient (contextvars) context, so concurrent requests never mix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config.model import ProviderConfig
from gateway.engine.attempt import Attempt, Outcome
from gateway.engine.hooks import Hooks, RequestRecord
from gateway.telemetry import span_attributes
from gateway.telemetry.incoming import IncomingRequest
from gateway.telemetry.metrics import GatewayMetrics
from gateway.wire import WireFormat

log = logging.getLogger("gateway.telemetry")

# gen_ai.provider.name well-known values for the wire formats a provider speaks.
GENAI_PROVIDER_NAME: Mapping[WireFormat, str] = {WireFormat.OPENAI: "openai", WireFormat.ANTHROPIC: "anthropic"}
UNKNOWN_PROVIDER = "_OTHER"  # the semantic conventions' value for a provider outside their list

_W3C = TraceContextTextMapPropagator()


class _RequestSpan:
    __slots__ = ("context", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.context: Context = trace.set_span_in_context(span)  # the parent of the attempt spans


class TelemetryHooks(Hooks):
    """Spans through `tracer` (None: no tracing), metrics through `metrics` (None: none)."""

    def __init__(self, tracer: Tracer | None, metrics: GatewayMetrics | None, *,
                 capture_content: bool = False) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._capture_content = capture_content
        self._provider_kinds: dict[str, str] = {}

    def set_providers(self, providers: Mapping[str, ProviderConfig]) -> None:
        """Learn each provider's kind (for gen_ai.provider.name); report every breaker, closed, from the start."""
        self._provider_kinds = {name: GENAI_PROVIDER_NAME.get(p.kind, UNKNOWN_PROVIDER)
                                for name, p in providers.items()}
        if self._metrics is not None:
            for name in providers:
                self._metrics.breaker_is(name, "closed")

    def _kind(self, provider: str) -> str:
        return self._provider_kinds.get(provider, UNKNOWN_PROVIDER)

    # ---- requests ---------------------------------------------------------------------------------------

    def request_started(self, record: RequestRecord) -> None:
        incoming = record.context
        record.context = None
        if self._tracer is None:
            return
        try:
            # Never the ambient context: without a valid traceparent the request span starts a new trace.
            parent = Context()
            attrs = span_attributes.request_start(record)
            if isinstance(incoming, IncomingRequest):
                parent = _W3C.extract(incoming.headers, parent)
                if self._capture_content:
                    attrs.update(span_attributes.content(incoming.body))
            span = self._tracer.start_span(f"chat {record.route.alias}", context=parent, kind=SpanKind.SERVER,
                                           attributes=attrs)
            record.context = _RequestSpan(span)
        except Exception:  # telemetry must never fail a request
            log.exception("request span not started")

    def request_finished(self, record: RequestRecord) -> None:
        try:
            if self._metrics is not None:
                winner = record.winner
                self._metrics.request_finished(record.route.alias, str(record.door), record.stream,
                                               winner.provider if winner is not None else None, record.status,
                                               record.error_type, record.latency_s, record.ttft_s)
            state = record.context
            if not isinstance(state, _RequestSpan):
                return
            record.context = None  # the span is ended exactly once
            for attempt in record.attempts:  # an attempt the engine never reported finished still ends
                if isinstance(attempt.context, Span):
                    self._end_attempt_span(attempt, attempt.context)
            span = state.span
            if span.is_recording():
                span.set_attributes(span_attributes.request_end(record))
                # HTTP server semantics: a 4xx is the client's doing, only a 5xx fails the server span.
                if record.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
        except Exception:
            log.exception("request telemetry failed")

    def hedge_skipped(self, record: RequestRecord, reason: str) -> None:
        if self._metrics is not None:
            try:
                self._metrics.hedge_skipped(record.route.alias, reason)
            except Exception:
                log.exception("hedge telemetry failed")

    def breaker_changed(self, provider: str, old: str, new: str) -> None:
        if self._metrics is not None:
            try:
                self._metrics.breaker_changed(provider, old, new)
            except Exception:
                log.exception("breaker telemetry failed")

    # ---- attempts ---------------------------------------------------------------------------------------

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        state = record.context
        if self._tracer is None or not isinstance(state, _RequestSpan):
            return
        try:
            attempt.context = self._tracer.start_span(
                f"chat {attempt.target.model}", context=state.context, kind=SpanKind.CLIENT,
                attributes=span_attributes.attempt_start(attempt, self._kind(attempt.provider)))
        except Exception:
            log.exception("attempt span not started")

    def attempt_finished(self, record: RequestRecord, attempt: Attempt) -> None:
        try:
            if self._metrics is not None:
                self._metrics.attempt_finished(record.route.alias, attempt, self._kind(attempt.provider))
            span = attempt.context
            if isinstance(span, Span):
                self._end_attempt_span(attempt, span)
            elif attempt.outcome is Outcome.SKIPPED and self._tracer is not None:
                state = record.context
                if isinstance(state, _RequestSpan):  # never sent: a zero-length span, started and ended now
                    attrs = span_attributes.attempt_start(attempt, self._kind(attempt.provider))
                    attrs.update(span_attributes.attempt_end(attempt))
                    now = time.time_ns()
                    self._tracer.start_span(f"chat {attempt.target.model}", context=state.context,
                                            kind=SpanKind.CLIENT, attributes=attrs, start_time=now).end(now)
        except Exception:
            log.exception("attempt telemetry failed")

    def _end_attempt_span(self, attempt: Attempt, span: Span) -> None:
        attempt.context = None  # ended exactly once, even if request_finished sweeps the attempts again
        if span.is_recording():
            span.set_attributes(span_attributes.attempt_end(attempt))
            if attempt.error is not None:
                span.set_status(Status(StatusCode.ERROR))
        span.end()
