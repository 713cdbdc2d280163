"""The traced cost equals the bill: a Claude-Code-shaped turn (a 90k-token cached prefix, 8k tokens newly
cached, a few hundred output tokens with reasoning) through both doors to both provider kinds.

The bill is computed by hand from the provider's own usage fields: the exact upstream bodies the gateway
sent are replayed, in order, against a twin simulator (same profile, its own prompt cache), and its usage
fields priced with the catalog prices of the pinned genai-prices version (hard-coded here on purpose).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.simulator import SimulatedProvider, parse_profile
from gateway.telemetry import setup_telemetry
from tests.e2e.harness import config_for
from tests.telemetry.telemetry_harness import TracedGateway, traced_gateway

# genai-prices 0.2.3, USD per Mtok: (input, cache read, cache write 5 min, cache write 1 h, output)
PRICES = {"anthropic": (3.0, 0.3, 3.75, 6.0, 15.0), "openai": (2.0, 0.2, 2.5, 2.5, 12.0)}
MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-5.6-terra"}
PROFILE = {"output_tokens": 500, "reasoning_tokens": 64}
SYSTEM = "tok " * 90_000  # 90k tokens: the cached prefix
NEW = "new " * 8_000  # 8k tokens newly cached by the second turn
QUESTION = "why " * 100


def anthropic_turn(second: bool) -> dict[str, Any]:
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    if second:
        messages += [{"role": "assistant", "content": "ok"},
                     {"role": "user", "content": [{"type": "text", "text": NEW, "cache_control": {"type": "ephemeral"}},
                                                  {"type": "text", "text": QUESTION}]}]
    return {"model": "m", "max_tokens": 2000, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}], "messages": messages}


def openai_turn(second: bool) -> dict[str, Any]:
    messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]
    if second:
        messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": NEW + QUESTION}]
    return {"model": "m", "max_completion_tokens": 2000, "stream": True, "reasoning_effort": "low",
            "messages": messages}


def bill_by_hand(kind: str, usage: dict[str, Any]) -> float:
    """The provider's usage fields, priced as that provider bills them."""
    inp, read, write, write_1h, out = PRICES[kind]
    if kind == "anthropic":  # input_tokens excludes the cache reads and writes
        ttl = usage.get("cache_creation") or {}
        usd = (usage["input_tokens"] * inp + usage["cache_read_input_tokens"] * read
               + ttl.get("ephemeral_5m_input_tokens", 0) * write + ttl.get("ephemeral_1h_input_tokens", 0) * write_1h
               + usage["output_tokens"] * out)
    else:  # prompt_tokens includes cached_tokens and cache_write_tokens; completion_tokens includes reasoning
        details = usage.get("prompt_tokens_details") or {}
        cached, written = details.get("cached_tokens", 0), details.get("cache_write_tokens", 0)
        usd = ((usage["prompt_tokens"] - cached - written) * inp + cached * read + written * write
               + usage["completion_tokens"] * out)
    return usd / 1_000_000


async def replay(session: aiohttp.ClientSession, twin: SimulatedProvider, kind: str, body: dict[str, Any]
                 ) -> dict[str, Any]:
    """The twin's usage for an upstream body (asked without streaming: the billing is the same)."""
    path = "/v1/chat/completions" if kind == "openai" else "/v1/messages"
    async with session.post(twin.base_url + path, json={**body, "stream": False}) as resp:
        assert resp.status == 200, await resp.text()
        usage: dict[str, Any] = (await resp.json())["usage"]
        return usage


def attempt_spans(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    return [dict(s.attributes or {}) for s in spans if s.kind is SpanKind.CLIENT]


@asynccontextmanager
async def gateway(kind: str, sim: SimulatedProvider) -> AsyncIterator[tuple[TracedGateway, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    config = config_for({"p": (kind, sim)}, {"m": {"targets": [{"provider": "p", "model": MODELS[kind]}]}},
                        server={"max_body_mb": 4})
    tel = setup_telemetry(config.telemetry, {}, span_processors=[SimpleSpanProcessor(memory)])
    async with traced_gateway(config, tel) as gw:
        yield gw, memory


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
@pytest.mark.parametrize("door", ["anthropic", "openai"])
async def test_traced_cost_equals_the_bill_to_the_micro_dollar(door: str, kind: str) -> None:
    profile = parse_profile(PROFILE)
    turns = [anthropic_turn(False), anthropic_turn(True)] if door == "anthropic" else [openai_turn(False),
                                                                                       openai_turn(True)]
    path = "/v1/messages" if door == "anthropic" else "/v1/chat/completions"
    async with SimulatedProvider(profile, name="p") as sim, SimulatedProvider(profile, name="twin") as twin, \
            gateway(kind, sim) as (gw, memory), aiohttp.ClientSession() as session:
        upstream: list[dict[str, Any]] = []
        for turn in turns:
            async with session.post(gw.url + path, data=orjson.dumps(turn),
                                    headers={"authorization": "Bearer gw-test-key-1234",
                                             "content-type": "application/json"}) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            upstream.append(sim.stats.recent[-1]["body"])
        await gw.finished.wait_for(2)
        usages = [await replay(session, twin, kind, body) for body in upstream]
    spans = attempt_spans(memory.get_finished_spans())
    assert len(spans) == 2
    for span, usage in zip(spans, usages, strict=True):
        assert span["gateway.usage.estimated"] is False
        assert abs(span["gateway.cost_usd"] - bill_by_hand(kind, usage)) < 1e-6
        parts = sum(span[f"gateway.cost.{p}_usd"] for p in ("input", "cache_read", "cache_write", "output"))
        assert abs(parts - span["gateway.cost_usd"]) < 1e-12
        assert span["gateway.price.source"] == "catalog" and span["gateway.price.catalog"] == "genai-prices 0.2.3"
    second, usage = spans[1], usages[1]
    cached = door == "anthropic" or kind == "openai"  # an OpenAI client's request has no cache_control for Claude
    if cached:
        assert second["gen_ai.usage.cache_read.input_tokens"] >= 89_984  # the 90k prefix (OpenAI: 128-token steps)
        assert second["gen_ai.usage.cache_write.input_tokens"] >= 8_000
        # Billed as the provider bills it, far below pricing every prompt token as input.
        assert second["gateway.cost_usd"] < 0.5 * second["gen_ai.usage.input_tokens"] * PRICES[kind][0] / 1e6
    else:
        assert second.get("gen_ai.usage.cache_read.input_tokens", 0) == 0
    if door == kind:  # a translation drops the other format's reasoning request (thinking, reasoning_effort)
        reasoning = usage.get("output_tokens_details") or usage.get("completion_tokens_details") or {}
        assert second["gen_ai.usage.reasoning.output_tokens"] == 64 == next(iter(reasoning.values()))
        assert second["gen_ai.usage.output_tokens"] == 564  # reasoning is output, billed as output
    else:
        assert "gen_ai.usage.reasoning.output_tokens" not in second and second["gen_ai.usage.output_tokens"] == 500
