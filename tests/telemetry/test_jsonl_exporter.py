"""The embedded JSON-lines span exporter: one parseable compact object per span, appended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from gateway.simulator import SimulatedProvider
from gateway.telemetry import JsonLinesSpanExporter, setup_telemetry
from tests.e2e.harness import config_for
from tests.polling import NotYet, eventually
from tests.telemetry.telemetry_harness import traced_gateway


def _lines(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [orjson.loads(line) for line in raw.splitlines()]


def test_spans_become_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = JsonLinesSpanExporter(path)
    provider = TracerProvider(resource=Resource({"service.name": "svc"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    parent = tracer.start_span("chat a", kind=SpanKind.SERVER, attributes={"gateway.cost_usd": 0.5})
    child = tracer.start_span("chat m", context=set_span_in_context(parent), kind=SpanKind.CLIENT,
                              attributes={"gen_ai.response.finish_reasons": ("stop",), "gateway.hedged": True})
    child.set_status(Status(StatusCode.ERROR))
    child.end()
    parent.end()
    provider.shutdown()
    child_line, parent_line = _lines(path)
    assert parent_line["name"] == "chat a" and parent_line["kind"] == "SERVER" and parent_line["parent_id"] is None
    assert child_line["parent_id"] == parent_line["span_id"] and child_line["trace_id"] == parent_line["trace_id"]
    assert len(parent_line["trace_id"]) == 32 and len(parent_line["span_id"]) == 16
    assert child_line["kind"] == "CLIENT" and child_line["status"] == "ERROR" and parent_line["status"] == "UNSET"
    assert child_line["attributes"] == {"gen_ai.response.finish_reasons": ["stop"], "gateway.hedged": True}
    assert parent_line["attributes"] == {"gateway.cost_usd": 0.5}
    assert parent_line["service_name"] == "svc"
    assert 0 < parent_line["start_ns"] <= child_line["start_ns"] <= child_line["end_ns"] <= parent_line["end_ns"]
    assert exporter.export([]) is SpanExportResult.FAILURE  # shut down: refuses, never raises


def test_a_second_exporter_appends(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    for name in ("first", "second"):
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
        provider.get_tracer("t").start_span(name).end()
        provider.shutdown()
    assert [line["name"] for line in _lines(path)] == ["first", "second"]


async def test_a_gateway_writes_its_spans_to_the_traces_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway-traces.jsonl"
    async with SimulatedProvider(name="p") as p:
        config = config_for({"p": ("openai", p)}, {"m": {"targets": [{"provider": "p", "model": "x"}]}},
                            telemetry={"traces_file": str(path)})
        async with traced_gateway(config, setup_telemetry(config.telemetry, {})) as gw:
            async with gw.openai() as client:
                await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            await gw.finished.wait_for(1)
        # Leaving the block shut the gateway down, which flushed the batch processor.
    request, attempt = sorted(_lines(path), key=lambda s: s["kind"] != "SERVER")
    assert request["name"] == "chat m" and attempt["name"] == "chat x"
    assert attempt["parent_id"] == request["span_id"] and request["service_name"] == "llm-gateway"
    assert attempt["attributes"]["gateway.attempt.outcome"] == "won"


def test_inline_processor_writes_by_batch_and_on_flush(tmp_path: Path) -> None:
    from gateway.telemetry.jsonl_exporter import InlineJsonLinesProcessor, span_to_dict

    path = tmp_path / "inline.jsonl"
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    tracer.start_span("sx").end()  # every line of these spans has the same length: ids and times are fixed-width
    line_bytes = len(orjson.dumps(span_to_dict(memory.get_finished_spans()[0]))) + 1
    processor = InlineJsonLinesProcessor(path, batch_bytes=3 * line_bytes, interval_s=3600)
    provider.add_span_processor(processor)
    for i in range(2):
        tracer.start_span(f"s{i}").end()
    assert path.read_bytes() == b""  # buffered: below the batch and the interval
    tracer.start_span("s2").end()
    assert [line["name"] for line in _lines(path)] == ["s0", "s1", "s2"]  # the third span filled the batch
    tracer.start_span("s3").end()
    provider.force_flush()
    assert [line["name"] for line in _lines(path)][-1] == "s3"
    provider.shutdown()
    tracer.start_span("after").end()  # after shutdown: dropped, never raises
    assert len(_lines(path)) == 4


async def test_inline_processor_writes_a_batch_on_a_timer_while_the_gateway_idles(tmp_path: Path) -> None:
    """On an event loop a batch below the size is written `interval_s` after its first line, with no further
    span needed to trigger it (and no line is written twice)."""
    from gateway.telemetry.jsonl_exporter import InlineJsonLinesProcessor

    path = tmp_path / "timed.jsonl"
    processor = InlineJsonLinesProcessor(path, interval_s=0.01)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.get_tracer("t").start_span("one").end()
    assert path.read_bytes() == b""
    await eventually(lambda: path.read_bytes() != b"" or NotYet("nothing written"), timeout_s=10,
                     what="the timed batch")
    provider.get_tracer("t").start_span("two").end()
    await eventually(lambda: len(_lines(path)) == 2 or NotYet(len(_lines(path))), timeout_s=10,
                     what="the second timed batch")
    provider.shutdown()
    assert [line["name"] for line in _lines(path)] == ["one", "two"]
