"""TelemetryHooks driven by hand: the cases a real gateway produces rarely or never on purpose."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.config.model import ModelRoute, Price, Target, TelemetryConfig
from gateway.engine import Attempt, Launch, Outcome, RequestRecord
from gateway.errors import FailureKind, ProviderError
from gateway.telemetry import IncomingRequest, Telemetry, setup_telemetry
from gateway.wire import WireFormat

ROUTE = ModelRoute(alias="a", targets=(Target("p", "m", Price(1, 2)),))


@pytest.fixture
def traced() -> tuple[Telemetry, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    return setup_telemetry(TelemetryConfig(traces_file=""), {}, span_processors=[SimpleSpanProcessor(memory)]), memory


def _record(context: Any = None) -> RequestRecord:
    record = RequestRecord(route=ROUTE, door=WireFormat.ANTHROPIC, stream=True, started=0.0)
    record.context = context
    return record


def test_an_attempt_never_reported_finished_still_ends_with_the_request(
        traced: tuple[Telemetry, InMemorySpanExporter], caplog: pytest.LogCaptureFixture) -> None:
    tel, memory = traced
    record = _record()
    tel.hooks.request_started(record)
    attempt = Attempt(index=0, target=ROUTE.targets[0], launch=Launch.PRIMARY, started=0.0, input_estimate=10)
    record.attempts.append(attempt)
    tel.hooks.attempt_started(record, attempt)
    attempt.outcome, attempt.first_token_s, attempt.streamed_chars = Outcome.WON, 0.1, 40
    attempt.error = ProviderError(FailureKind.FAULT, "cut", error_type="incomplete_stream")
    record.winner, record.status, record.error_type = attempt, 502, "incomplete_stream"
    tel.hooks.request_finished(record)
    (span, request) = memory.get_finished_spans()
    assert span.kind is SpanKind.CLIENT and request.kind is SpanKind.SERVER
    a = dict(span.attributes or {})
    assert a["error.type"] == "incomplete_stream" and span.status.status_code is StatusCode.ERROR
    assert a["gen_ai.usage.output_tokens"] == 10 and a["gateway.usage.estimated"] is True  # 40 chars / 4
    assert a["gateway.cost_usd"] == pytest.approx((10 * 1 + 10 * 2) / 1e6)
    assert request.status.status_code is StatusCode.ERROR and dict(request.attributes or {})["error.type"]
    tel.hooks.request_finished(record)  # a second call must neither raise nor end spans twice
    assert len(memory.get_finished_spans()) == 2
    assert "ended span" not in caplog.text


def test_a_client_error_does_not_mark_the_server_span_as_failed(
        traced: tuple[Telemetry, InMemorySpanExporter]) -> None:
    tel, memory = traced
    record = _record(IncomingRequest({"traceparent": "garbage"}, {"messages": []}))
    tel.hooks.request_started(record)
    record.status, record.error_type = 400, "invalid_request_error"
    tel.hooks.request_finished(record)
    (span,) = memory.get_finished_spans()
    assert span.parent is None  # an unreadable traceparent starts a new trace
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["error.type"] == "invalid_request_error"


def test_hooks_never_raise(traced: tuple[Telemetry, InMemorySpanExporter]) -> None:
    tel, _ = traced
    record = _record(object())  # a context that is not ours
    broken: Any = Attempt(index=0, target=None, launch=Launch.PRIMARY, started=0.0,  # type: ignore[arg-type]
                          input_estimate=1)
    tel.hooks.request_started(record)
    tel.hooks.attempt_started(record, broken)
    tel.hooks.attempt_finished(record, broken)
    record.route = None  # type: ignore[assignment]
    tel.hooks.request_finished(record)
    tel.hooks.hedge_skipped(record, "budget")
    tel.hooks.breaker_changed("p", "closed", "open")
