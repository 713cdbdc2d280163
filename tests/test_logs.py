import logging

import orjson
import pytest

from gateway.config.model import ModelRoute, Price, Target
from gateway.engine import RequestRecord
from gateway.engine.attempt import Attempt, Launch, Outcome
from gateway.logs import JsonFormatter, RequestLog
from gateway.wire import WireFormat


def test_request_log_is_one_json_line_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    route = ModelRoute(alias="chat", targets=(Target("p", "m", Price(1, 1)),))
    record = RequestRecord(route=route, door=WireFormat.OPENAI, stream=True, started=0.0, latency_s=0.25)
    attempt = Attempt(index=0, target=route.targets[0], launch=Launch.PRIMARY, started=0.0, input_estimate=10,
                      outcome=Outcome.WON, input_tokens=10, output_tokens=5)
    record.attempts.append(attempt)
    record.winner = attempt
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        RequestLog().request_finished(record)
    line = JsonFormatter().format(caplog.records[0])
    data = orjson.loads(line)
    assert data["msg"] == "request" and data["alias"] == "chat" and data["winner"] == "p/m"
    assert data["attempts"] == ["p/m:won"] and data["latency_ms"] == 250.0
    assert data["cost_usd"] == pytest.approx(15 / 1_000_000)
    assert "\n" not in line


def test_request_log_carries_the_trace_id_of_the_request_span(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway.config.model import TelemetryConfig
    from gateway.engine.hooks import CompositeHooks
    from gateway.telemetry import IncomingRequest, setup_telemetry

    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(TelemetryConfig(traces_file=""), {}, span_processors=[SimpleSpanProcessor(exporter)])
    hooks = CompositeHooks(RequestLog(), telemetry.hooks)  # the order `gateway serve` uses
    route = ModelRoute(alias="chat", targets=(Target("p", "m", Price(1, 1)),))
    record = RequestRecord(route=route, door=WireFormat.OPENAI, stream=False, started=0.0, latency_s=0.1)
    record.context = IncomingRequest({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, {})
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        hooks.request_started(record)
        hooks.request_finished(record)
    telemetry.shutdown_blocking()
    assert caplog.records[0].trace_id == "0af7651916cd43dd8448eb211c80319c"  # type: ignore[attr-defined]
    assert exporter.get_finished_spans()[0].context.trace_id == int("0af7651916cd43dd8448eb211c80319c", 16)


def test_request_log_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A hook runs in the request's `finally`: whatever a record holds, it must not raise (it would escape the
    request as a plain-text 500). Here a count of the wrong type, as untrusted provider usage once put there."""
    route = ModelRoute(alias="chat", targets=(Target("p", "m", Price(1, 1)),))
    record = RequestRecord(route=route, door=WireFormat.OPENAI, stream=False, started=0.0, latency_s=0.1)
    attempt = Attempt(index=0, target=route.targets[0], launch=Launch.PRIMARY, started=0.0, input_estimate=10,
                      outcome=Outcome.WON, input_tokens="12", output_tokens=5)  # type: ignore[arg-type]
    record.attempts.append(attempt)
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        RequestLog().request_finished(record)
    assert [r.getMessage() for r in caplog.records] == ["request log line not written"]
