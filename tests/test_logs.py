import dataclasses
import io
import logging

import orjson
import pytest

from gateway.config.model import Price, Target
from gateway.engine import Attempt, Launch, Outcome, RequestStarted, RequestSummary
from gateway.logs import PIPE_BUF, BatchingStreamHandler, JsonFormatter, RequestLog, make_handler
from gateway.wire import WireFormat
from tests.polling import NotYet, eventually

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


def test_request_log_names_the_gateway_key(caplog: pytest.LogCaptureFixture) -> None:
    """The README lists the key name among the request line's fields (the name, never the key)."""
    summary = dataclasses.replace(_summary(), key_name="team-a")
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        RequestLog().request_finished(summary)
    assert caplog.records[0].key_name == "team-a"  # type: ignore[attr-defined]


class Writes(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


def _logger(stream: Writes, interval_s: float = 3600) -> tuple[logging.Logger, BatchingStreamHandler]:
    logger = logging.getLogger(f"test.batching.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = make_handler("json", stream)
    assert isinstance(handler, BatchingStreamHandler)
    handler.interval_s = interval_s
    logger.handlers[:] = [handler]
    return logger, handler


async def test_on_the_loop_info_lines_are_batched_and_a_warning_writes_everything_in_order() -> None:
    stream = Writes()
    logger, handler = _logger(stream)
    for i in range(3):
        logger.info("request %d", i)
    assert stream.writes == []  # waiting for the timer (an hour here) or a size
    logger.warning("breaker open")
    assert len(stream.writes) == 1  # one write: the three pending lines, then the warning
    assert [orjson.loads(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "request 0", "request 1", "request 2", "breaker open"]
    logger.info("last")
    handler.close()  # logging.shutdown at exit closes every handler: nothing pending is lost
    assert orjson.loads(stream.getvalue().splitlines()[-1])["msg"] == "last"


async def test_a_batch_is_written_when_its_timer_fires() -> None:
    stream = Writes()
    logger, handler = _logger(stream, interval_s=0.01)
    logger.info("one")
    logger.info("two")
    await eventually(lambda: stream.writes or NotYet("nothing written"), timeout_s=10, what="the timed batch")
    assert stream.writes == [stream.getvalue()] and stream.getvalue().count("\n") == 2
    handler.close()


async def test_each_write_is_whole_lines_within_pipe_buf() -> None:
    """Workers share one stderr pipe: a write of at most PIPE_BUF bytes is atomic, so lines never interleave."""
    stream = Writes()
    logger, handler = _logger(stream)
    for i in range(200):
        logger.info("request", extra={"n": i, "pad": "x" * 100})
    handler.flush()
    assert len(stream.writes) > 1 and all(len(w) <= PIPE_BUF and w.endswith("\n") for w in stream.writes)
    assert [orjson.loads(line)["n"] for line in stream.getvalue().splitlines()] == list(range(200))
    handler.close()


def test_off_the_loop_every_line_is_written_at_once() -> None:
    stream = Writes()
    logger, handler = _logger(stream)
    logger.info("starting")
    assert orjson.loads(stream.getvalue())["msg"] == "starting"
    handler.close()


def test_the_timestamp_is_utc_with_milliseconds_across_seconds() -> None:
    formatter = JsonFormatter()
    stamps = []
    for created in (1700000000.25, 1700000000.999, 1700000001.0):
        record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        stamps.append(orjson.loads(formatter.format(record))["ts"])
    assert stamps == ["2023-11-14T22:13:20.250Z", "2023-11-14T22:13:20.999Z", "2023-11-14T22:13:21.000Z"]
