"""TelemetryHooks driven by hand with frozen events: the cases a real gateway produces rarely or never on purpose."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.config.model import Price, Target, TelemetryConfig
from gateway.engine import (
    Attempt,
    AttemptStarted,
    BreakerChanged,
    HedgeSkipped,
    Launch,
    Outcome,
    RequestStarted,
    RequestSummary,
)
from gateway.engine.hooks import guarded
from gateway.errors import FailureKind, ProviderError
from gateway.telemetry import Telemetry, setup_telemetry
from gateway.wire import WireFormat

TARGET = Target("p", "m", Price(1, 2))


@pytest.fixture
def traced() -> tuple[Telemetry, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    return setup_telemetry(TelemetryConfig(traces_file=""), {}, span_processors=[SimpleSpanProcessor(memory)]), memory


def _started(headers: dict[str, str] | None = None) -> RequestStarted:
    return RequestStarted(request_id=7, alias="a", door=WireFormat.ANTHROPIC, endpoint="chat", stream=True,
                          started=0.0, trace_id=0x1234, headers=headers or {}, body={"messages": []})


def _summary(status: int, error_type: str | None, attempts: tuple[Attempt, ...] = ()) -> RequestSummary:
    return RequestSummary(request_id=7, alias="a", door=WireFormat.ANTHROPIC, endpoint="chat", stream=True,
                          started=0.0, latency_s=0.5, status=status, trace_id=0x1234, attempts=attempts,
                          winner=attempts[0] if attempts else None, error_type=error_type)


def test_an_attempt_never_reported_finished_still_ends_with_the_request(
        traced: tuple[Telemetry, InMemorySpanExporter], caplog: pytest.LogCaptureFixture) -> None:
    tel, memory = traced
    tel.hooks.request_started(_started())
    tel.hooks.attempt_started(AttemptStarted(7, "a", 0, TARGET, Launch.PRIMARY, 0.0, "closed", "127.0.0.1", 9))
    attempt = Attempt(request_id=7, alias="a", index=0, target=TARGET, launch=Launch.PRIMARY, started=0.0, ended=0.5,
                      outcome=Outcome.WON, input_estimate=10, first_token_s=0.1, streamed_chars=40,
                      error=ProviderError(FailureKind.FAULT, "cut", error_type="incomplete_stream"))
    tel.hooks.request_finished(_summary(502, "incomplete_stream", (attempt,)))
    (span, request) = memory.get_finished_spans()
    assert span.kind is SpanKind.CLIENT and request.kind is SpanKind.SERVER
    assert request.context is not None and request.context.trace_id == 0x1234  # the door's trace id
    a = dict(span.attributes or {})
    assert a["error.type"] == "incomplete_stream" and span.status.status_code is StatusCode.ERROR
    assert a["gen_ai.usage.output_tokens"] == 10 and a["gateway.usage.estimated"] is True  # 40 chars / 4
    assert a["gateway.cost_usd"] == pytest.approx((10 * 1 + 10 * 2) / 1e6)
    assert request.status.status_code is StatusCode.ERROR and dict(request.attributes or {})["error.type"]
    tel.hooks.request_finished(_summary(502, "incomplete_stream", (attempt,)))  # again: no span ends twice
    assert len(memory.get_finished_spans()) == 2
    assert "ended span" not in caplog.text


def test_a_client_error_does_not_mark_the_server_span_as_failed(
        traced: tuple[Telemetry, InMemorySpanExporter]) -> None:
    tel, memory = traced
    tel.hooks.request_started(_started({"traceparent": "garbage"}))
    tel.hooks.request_finished(_summary(400, "invalid_request_error"))
    (span,) = memory.get_finished_spans()
    assert span.parent is None  # an unreadable traceparent starts a new trace
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["error.type"] == "invalid_request_error"


def test_a_request_rejected_before_it_started_is_counted_without_a_span(
        traced: tuple[Telemetry, InMemorySpanExporter]) -> None:
    tel, memory = traced
    tel.hooks.request_finished(_summary(401, "authentication_error"))
    assert memory.get_finished_spans() == ()
    assert 'http_response_status_code="401"' in tel.metrics_text()


def test_guarded_hooks_never_raise(traced: tuple[Telemetry, InMemorySpanExporter],
                                   caplog: pytest.LogCaptureFixture) -> None:
    tel, _ = traced
    hooks = guarded(tel.hooks)
    broken: Any = Attempt(request_id=7, alias="a", index=0, target=None,  # type: ignore[arg-type]
                          launch=Launch.PRIMARY, started=0.0, ended=0.0, outcome=Outcome.FAILED, input_estimate=1)
    hooks.request_started(_started())
    hooks.attempt_started(AttemptStarted(7, "a", 0, None, Launch.PRIMARY, 0.0, "closed", "", 0))  # type: ignore[arg-type]
    hooks.attempt_finished(broken)
    hooks.request_finished(_summary(200, None, (broken,)))
    hooks.hedge_skipped(HedgeSkipped(7, "a", "budget"))
    hooks.breaker_changed(BreakerChanged("p", "closed", "open"))
    assert "a hook failed" in caplog.text  # it did fail, and was contained


def test_a_request_sampled_out_builds_no_attempt_span() -> None:
    """Through the SDK (an OTLP endpoint or extra processors), a request the sampler drops costs one sampling
    decision: its attempts get no span, recording or not (they would be dropped with it)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    from gateway.telemetry import TelemetryHooks

    class Dropping(Sampler):
        calls = 0

        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            Dropping.calls += 1
            return SamplingResult(Decision.DROP)

        def get_description(self) -> str:
            return "dropping"

    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=Dropping(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    hooks = guarded(TelemetryHooks(provider.get_tracer("t"), None))
    hooks.request_started(_started())
    hooks.attempt_started(AttemptStarted(7, "a", 0, TARGET, Launch.PRIMARY, 0.0, "closed", "127.0.0.1", 9))
    attempt = Attempt(request_id=7, alias="a", index=0, target=TARGET, launch=Launch.PRIMARY, started=0.0,
                      ended=0.5, outcome=Outcome.WON, input_estimate=10)
    hooks.attempt_finished(attempt)
    hooks.request_finished(_summary(200, None, (attempt,)))
    assert Dropping.calls == 1 and memory.get_finished_spans() == ()
