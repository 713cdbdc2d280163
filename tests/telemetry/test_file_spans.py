"""The default span path (no collector): spans written straight to the JSON-lines file by `FileSpanHooks`
must be the lines the SDK path writes — same names, kinds, parentage, attribute keys and values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.simulator import SimulatedProvider, parse_profile
from gateway.telemetry import setup_telemetry
from gateway.telemetry.file_spans import FileSpanHooks
from gateway.telemetry.jsonl_exporter import span_to_dict
from tests.e2e.harness import config_for
from tests.telemetry.telemetry_harness import traced_gateway

HI: Any = [{"role": "user", "content": "hi"}]
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
VOLATILE = ("gateway.latency_ms", "gateway.ttft_ms", "gen_ai.response.time_to_first_chunk", "server.port")


async def _run(sims: Any, models: Any, telemetry: Any, path_or_memory: Any) -> None:
    config = config_for(sims, models)
    async with traced_gateway(config, telemetry) as gw:
        async with gw.openai() as client:
            await client.chat.completions.create(model="m", messages=HI, extra_headers={"traceparent": PARENT})
            await client.chat.completions.create(model="m", messages=HI, stream=True)
        await gw.finished.wait_for(2)


def _normalise(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    by_id = {line["span_id"]: line for line in lines}
    out = []
    for line in lines:
        attrs = {k: v for k, v in line["attributes"].items() if k not in VOLATILE}
        parent = by_id.get(line["parent_id"])
        where = parent["name"] if parent else ("remote parent" if line["parent_id"] else "root")
        out.append((line["name"], line["kind"], line["status"], where,
                    orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS)))
    return sorted(out)


async def test_file_spans_match_the_sdk_spans(tmp_path: Path) -> None:
    profile = parse_profile({"ttft": 3000})
    async with SimulatedProvider(profile, name="slow", seed=1) as slow, SimulatedProvider(name="fast") as fast:
        sims = {"slow": ("openai", slow), "fast": ("anthropic", fast)}
        models = {"m": {"targets": [{"provider": "slow", "model": "s", "price": {"input_per_mtok": 1,
                                                                                 "output_per_mtok": 2}},
                                    {"provider": "fast", "model": "f", "price": {"input_per_mtok": 3}}],
                        "hedge": {"delay_ms": 50, "budget_percent": 100}}}
        path = tmp_path / "spans.jsonl"
        direct = setup_telemetry(config_for(sims, models, telemetry={"traces_file": str(path)}).telemetry, {})
        assert isinstance(direct.hooks, FileSpanHooks)
        await _run(sims, models, direct, path)
        memory = InMemorySpanExporter()
        sdk = setup_telemetry(config_for(sims, models, telemetry={"traces_file": ""}).telemetry, {},
                              span_processors=[SimpleSpanProcessor(memory)])
        assert not isinstance(sdk.hooks, FileSpanHooks)
        await _run(sims, models, sdk, None)
    file_lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    sdk_lines = [span_to_dict(span) for span in memory.get_finished_spans()]
    assert len(file_lines) == len(sdk_lines) == 6  # two requests, each with a won and a cancelled attempt
    assert _normalise(file_lines) == _normalise(sdk_lines)
    first = next(line for line in file_lines if line["kind"] == "SERVER" and line["parent_id"])
    assert first["trace_id"] == PARENT.split("-")[1] and first["parent_id"] == PARENT.split("-")[2]
    for line in file_lines:
        assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16 and line["start_ns"] <= line["end_ns"]
    requests = [line for line in file_lines if line["kind"] == "SERVER"]
    for request in requests:
        attempts = [a for a in file_lines if a["parent_id"] == request["span_id"]]
        assert sum(a["attributes"]["gateway.cost_usd"] for a in attempts) == pytest.approx(
            request["attributes"]["gateway.cost_usd"])
        assert {a["trace_id"] for a in attempts} == {request["trace_id"]}


async def test_the_sampler_decides_like_the_sdk(tmp_path: Path) -> None:
    async with SimulatedProvider(name="fast") as fast:
        sims = {"fast": ("openai", fast)}
        models = {"m": {"targets": [{"provider": "fast", "model": "f"}]}}
        path = tmp_path / "spans.jsonl"
        telemetry = setup_telemetry(config_for(sims, models, telemetry={"traces_file": str(path)}).telemetry,
                                    {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"})
        await _run(sims, models, telemetry, path)
    # Ratio 0: the parent-less request is dropped; the one whose traceparent says "sampled" is kept with its
    # attempt (parent-based sampler), as the SDK does.
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["kind"] for line in lines] == ["CLIENT", "SERVER"]
    assert lines[1]["parent_id"] == PARENT.split("-")[2]
