"""`TelemetryHooks`: the engine's events turned into spans (one per request, one per attempt) and metrics.

Spans are started and ended live in the hooks, which are called at the moment things happen, so span times are
right without converting the engine's monotonic clock. A skipped attempt (never sent) gets a zero-length
span. Open spans are kept here, in a map keyed by request id; nothing is put in the ambient (contextvars)
context, so concurrent requests never mix. The request span's trace id is the one the door chose
(`RequestStarted.trace_id`), so the request log names the same trace without asking this hook.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config.model import ProviderConfig
from gateway.engine import (
    Attempt,
    AttemptStarted,
    BreakerChanged,
    HedgeSkipped,
    Hooks,
    Outcome,
    RequestStarted,
    RequestSummary,
)
from gateway.telemetry import span_attributes
from gateway.telemetry.metrics import GatewayMetrics

log = logging.getLogger("gateway.telemetry")

# gen_ai.provider.name well-known values, by provider kind (the same model on a cloud is the cloud's).
GENAI_PROVIDER_NAME: Mapping[str, str] = {"openai": "openai", "anthropic": "anthropic",
                                          "azure-openai": "azure.ai.openai", "bedrock": "aws.bedrock",
                                          "vertex": "gcp.vertex_ai"}
UNKNOWN_PROVIDER = "_OTHER"  # the semantic conventions' value for a provider outside their list

W3C = TraceContextTextMapPropagator()


class GivenTraceIds(RandomIdGenerator):
    """The SDK's id generator, except that a new trace takes the id the door chose for the request."""

    def __init__(self) -> None:
        self.next_trace_id = 0

    def generate_trace_id(self) -> int:
        given, self.next_trace_id = self.next_trace_id, 0
        return given or super().generate_trace_id()


class _RequestSpan:
    __slots__ = ("attempts", "context", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.context: Context = trace.set_span_in_context(span)  # the parent of the attempt spans
        self.attempts: dict[int, Span] = {}  # open attempt spans by attempt index


class TelemetryHooks(Hooks):
    """Spans through `tracer` (None: no tracing), metrics through `metrics` (None: none). `trace_ids`: the
    tracer provider's id generator, when it is a `GivenTraceIds`."""

    def __init__(self, tracer: Tracer | None, metrics: GatewayMetrics | None, *, capture_content: bool = False,
                 trace_ids: GivenTraceIds | None = None) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._capture_content = capture_content
        self._trace_ids = trace_ids
        self._provider_kinds: dict[str, str] = {}
        self._open: dict[int, _RequestSpan] = {}  # request id -> its span, while the request runs

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

    def request_started(self, event: RequestStarted) -> None:
        if self._tracer is None:
            return
        # Never the ambient context: without a valid traceparent the request span starts a new trace.
        parent = W3C.extract(event.headers, Context())
        attrs = span_attributes.request_start(event)
        if self._capture_content:
            attrs.update(span_attributes.content(event.body))
        if self._trace_ids is not None:
            self._trace_ids.next_trace_id = event.trace_id
        span = self._tracer.start_span(f"{event.endpoint} {event.alias}", context=parent, kind=SpanKind.SERVER,
                                       attributes=attrs)
        if span.is_recording():  # sampled out: its attempts would be too (same trace, or a parent not sampled)
            self._open[event.request_id] = _RequestSpan(span)

    def request_finished(self, summary: RequestSummary) -> None:
        if self._metrics is not None:
            winner = summary.winner
            self._metrics.request_finished(summary.alias, str(summary.door), summary.stream,
                                           winner.provider if winner is not None else None, summary.status,
                                           summary.error_type, summary.latency_s, summary.ttft_s)
        state = self._open.pop(summary.request_id, None)
        if state is None:
            return
        for index, span in state.attempts.items():  # an attempt never reported finished still ends
            attempt = next((a for a in summary.attempts if a.index == index), None)
            self._end_attempt_span(attempt, span)
        span = state.span
        if span.is_recording():
            span.set_attributes(span_attributes.request_end(summary))
            # HTTP server semantics: a 4xx is the client's doing, only a 5xx fails the server span.
            if summary.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end()

    def hedge_skipped(self, event: HedgeSkipped) -> None:
        if self._metrics is not None:
            self._metrics.hedge_skipped(event.alias, event.reason)

    def breaker_changed(self, event: BreakerChanged) -> None:
        if self._metrics is not None:
            self._metrics.breaker_changed(event.provider, event.old, event.new)

    # ---- attempts ---------------------------------------------------------------------------------------

    def attempt_started(self, event: AttemptStarted) -> None:
        state = self._open.get(event.request_id)
        if self._tracer is None or state is None:
            return
        state.attempts[event.index] = self._tracer.start_span(
            f"{event.operation} {event.target.model}", context=state.context, kind=SpanKind.CLIENT,
            attributes=span_attributes.attempt_start(event, self._kind(event.target.provider)))

    def attempt_finished(self, attempt: Attempt) -> None:
        if self._metrics is not None:
            self._metrics.attempt_finished(attempt.alias, attempt, self._kind(attempt.provider))
        state = self._open.get(attempt.request_id)
        if state is None or self._tracer is None:
            return
        span = state.attempts.pop(attempt.index, None)
        if span is not None:
            self._end_attempt_span(attempt, span)
        elif attempt.outcome is Outcome.SKIPPED:  # never sent: a zero-length span, started and ended now
            attrs = span_attributes.attempt_start(attempt, self._kind(attempt.provider))
            attrs.update(span_attributes.attempt_end(attempt))
            now = time.time_ns()
            self._tracer.start_span(f"{attempt.operation} {attempt.target.model}", context=state.context,
                                    kind=SpanKind.CLIENT, attributes=attrs, start_time=now).end(now)

    @staticmethod
    def _end_attempt_span(attempt: Attempt | None, span: Span) -> None:
        if span.is_recording() and attempt is not None:
            span.set_attributes(span_attributes.attempt_end(attempt))
            if attempt.error is not None:
                span.set_status(Status(StatusCode.ERROR))
        span.end()
