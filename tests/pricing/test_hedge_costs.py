"""What a hedge costs: a cut loser on a cold provider is billed its whole input (as cache writes when the
request asks for caching), and the expected cost of a hedge, known before it is sent, follows the backup's
prompt-cache state: the dollar ceiling refuses a hedge to a cold backup and lets the same hedge go once the
backup has cached the prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.simulator import SimulatedProvider, parse_profile
from gateway.telemetry import setup_telemetry
from tests.e2e.harness import GATEWAY_KEY, config_for
from tests.telemetry.telemetry_harness import TracedGateway, traced_gateway

SONNET = (3.0, 0.3, 3.75, 15.0)  # genai-prices 0.2.3, claude-sonnet-4-5: input, cache read, cache write, output
PREFIX = "tok " * 20_000


def body(question: str = "why") -> dict[str, Any]:
    return {"model": "chat", "max_tokens": 100, "stream": True,
            "system": [{"type": "text", "text": PREFIX, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}]}


async def ask(gw: TracedGateway, session: aiohttp.ClientSession, alias: str = "chat") -> None:
    async with session.post(gw.url + "/v1/messages", data=orjson.dumps({**body(), "model": alias}),
                            headers={"x-api-key": GATEWAY_KEY, "content-type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()


def attempts(memory: InMemorySpanExporter) -> list[dict[str, Any]]:
    spans: Sequence[ReadableSpan] = memory.get_finished_spans()
    return [dict(s.attributes or {}) for s in spans if s.kind is SpanKind.CLIENT]


@asynccontextmanager
async def gateway(sims: dict[str, SimulatedProvider], models: dict[str, Any]
                  ) -> AsyncIterator[tuple[TracedGateway, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    config = config_for({name: ("anthropic", sim) for name, sim in sims.items()}, models, server={"max_body_mb": 4})
    tel = setup_telemetry(config.telemetry, {}, span_processors=[SimpleSpanProcessor(memory)])
    async with traced_gateway(config, tel) as gw:
        yield gw, memory


def targets(*names: str) -> list[dict[str, str]]:
    return [{"provider": name, "model": "claude-sonnet-4-5"} for name in names]


async def test_a_cut_loser_on_a_cold_provider_is_billed_its_whole_input_as_cache_writes() -> None:
    # The primary answers at 300 ms; the hedge goes at 50 ms to a backup that takes 5 s to start: it is cut
    # before it reported any usage, on a provider that has never seen the prompt.
    async with SimulatedProvider(parse_profile({"ttft": 300}), name="primary") as primary, \
            SimulatedProvider(parse_profile({"ttft": 5000}), name="cold") as cold, \
            gateway({"primary": primary, "cold": cold}, {"chat": {
                "targets": targets("primary", "cold"), "hedge": {"delay_ms": 50, "budget_percent": 100}}}) as (
                gw, memory), aiohttp.ClientSession() as session:
        await ask(gw, session)
        await gw.finished.wait_for(1)
    won, cut = sorted(attempts(memory), key=lambda a: a["gateway.attempt.index"])
    assert won["gateway.attempt.outcome"] == "won" and cut["gateway.attempt.outcome"] == "cancelled"
    assert cut["gateway.usage.estimated"] is True and cut["gateway.prompt_cache.expected"] == "cold"
    prompt, written = cut["gen_ai.usage.input_tokens"], cut["gen_ai.usage.cache_write.input_tokens"]
    assert written >= 20_000 and prompt - written < 100  # the whole cacheable prefix is written
    assert cut.get("gen_ai.usage.cache_read.input_tokens", 0) == 0
    inp, _, write, _ = SONNET
    assert abs(cut["gateway.cost_usd"] - ((prompt - written) * inp + written * write) / 1e6) < 1e-9
    assert cut["gateway.cost_usd"] >= prompt * inp / 1e6  # never less than its whole input at the input price
    # The primary reported its own usage: the prompt written to its cache, exactly as billed.
    assert won["gateway.usage.estimated"] is False and won["gen_ai.usage.cache_write.input_tokens"] == 20_000
    # The hedge's cost was known before it went, and is what it cost (no output before it was cut).
    assert cut["gateway.hedge.expected_cost_usd"] >= cut["gateway.cost_usd"]


async def test_the_dollar_ceiling_refuses_a_hedge_to_a_cold_backup_and_allows_it_once_warm() -> None:
    # Prompt ~20k tokens: to the cold backup a hedge is expected to cost ~20k x 3.75 $/Mtok (~0.075 $), to a warm
    # one ~20k x 0.3 $/Mtok (~0.006 $) plus output. The ceiling, 0.03 $/hour, lies between.
    async with SimulatedProvider(parse_profile({"ttft": 400}), name="slow") as slow, \
            SimulatedProvider(name="backup") as backup, \
            gateway({"slow": slow, "backup": backup}, {
                "chat": {"targets": targets("slow", "backup"),
                         "hedge": {"delay_ms": 50, "budget_percent": 100, "budget_usd_per_hour": 0.03,
                                   "rearm": False}},
                "direct": {"targets": targets("backup"), "hedge": "off"}}) as (gw, memory), \
            aiohttp.ClientSession() as session:
        await ask(gw, session)  # the backup has never seen the prompt: refused
        await ask(gw, session, alias="direct")  # the backup caches it (and reports so)
        await ask(gw, session)  # now the same hedge is cheap: sent
        await gw.finished.wait_for(3)
    first, _, third = gw.finished.records
    assert first.hedges_skipped == 1 and not first.hedged
    assert third.hedged and third.hedges_skipped == 0
    hedge = next(a for a in attempts(memory) if a["gateway.attempt.launch"] == "hedge")
    assert hedge["gateway.prompt_cache.expected"] == "warm"
    assert hedge["gateway.hedge.expected_cost_usd"] < 0.03
    assert hedge["gateway.provider"] == "backup" and hedge["gateway.attempt.outcome"] == "won"
    assert hedge["gen_ai.usage.cache_read.input_tokens"] == 20_000  # as expected: warm
