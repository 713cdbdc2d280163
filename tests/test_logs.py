import logging

import orjson
import pytest

from gateway.config.model import Price, Target
from gateway.engine import Attempt, Launch, Outcome, RequestStarted, RequestSummary
from gateway.logs import JsonFormatter, RequestLog
from gateway.wire import WireFormat

TARGET = Target("p", "m", Price(1, 1))


def _summary(trace_id: int = 0xabc) -> RequestSummary:
    attempt = Attempt(request_id=3, alias="chat", index=0, target=TARGET, launch=Launch.PRIMARY, started=0.0,
                      ended=0.25, outcome=Outcome.WON, input_estimate=10, input_tokens=10, output_tokens=5)
    return RequestSummary(request_id=3, alias="chat", door=WireFormat.OPENAI, endpoint="chat", stream=True,
                          started=0.0, latency_s=0.25, status=200, trace_id=trace_id, attempts=(attempt,),
                          winner=attempt)


def test_request_log_is_one_json_line_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        RequestLog().request_finished(_summary())
    line = JsonFormatter().format(caplog.records[0])
    data = orjson.loads(line)
    assert data["msg"] == "request" and data["alias"] == "chat" and data["winner"] == "p/m"
    assert data["attempts"] == ["p/m:won"] and data["latency_ms"] == 250.0 and data["request_id"] == 3
    assert data["cost_usd"] == pytest.approx(15 / 1_000_000)
    assert "\n" not in line


@pytest.mark.parametrize("log_first", [True, False])
@pytest.mark.parametrize("traceparent", [None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
def test_request_log_and_request_span_name_the_same_trace_in_any_hook_order(
        caplog: pytest.LogCaptureFixture, log_first: bool, traceparent: str | None) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway.config.model import TelemetryConfig
    from gateway.engine import CompositeHooks
    from gateway.server.scope import trace_id_of
    from gateway.telemetry import setup_telemetry

    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(TelemetryConfig(traces_file=""), {}, span_processors=[SimpleSpanProcessor(exporter)])
    hooks = CompositeHooks(RequestLog(), telemetry.hooks) if log_first else CompositeHooks(telemetry.hooks,
                                                                                           RequestLog())
    headers = {} if traceparent is None else {"traceparent": traceparent}
    trace_id = trace_id_of(headers)  # what the door decides
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        hooks.request_started(RequestStarted(3, "chat", WireFormat.OPENAI, "chat", False, 0.0, trace_id, headers, {}))
        hooks.request_finished(_summary(trace_id))
    telemetry.shutdown_blocking()
    if traceparent is not None:
        assert trace_id == 0x0af7651916cd43dd8448eb211c80319c
    assert caplog.records[0].trace_id == f"{trace_id:032x}"  # type: ignore[attr-defined]
    assert exporter.get_finished_spans()[0].context.trace_id == trace_id


def test_request_log_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A hook runs in the request's `finally`: whatever a summary holds, it must not raise. Here a count of the
    wrong type, as untrusted provider usage once put there."""
    attempt = Attempt(request_id=3, alias="chat", index=0, target=TARGET, launch=Launch.PRIMARY, started=0.0,
                      ended=0.1, outcome=Outcome.WON, input_estimate=10, input_tokens="12",  # type: ignore[arg-type]
                      output_tokens=5)
    summary = RequestSummary(request_id=3, alias="chat", door=WireFormat.OPENAI, endpoint="chat", stream=False,
                             started=0.0, latency_s=0.1, status=200, trace_id=1, attempts=(attempt,), winner=attempt)
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        RequestLog().request_finished(summary)
    assert [r.getMessage() for r in caplog.records] == ["request log line not written"]
