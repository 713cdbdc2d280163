"""Spans and metrics from a real gateway, read back with the SDK's InMemorySpanExporter: failures and
fallbacks, skipped attempts behind an open breaker, the hedge budget, content capture, sampling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.config import parse_config
from gateway.engine import Hooks
from gateway.server import Gateway
from gateway.simulator import SimulatedProvider, parse_profile
from gateway.telemetry import setup_telemetry
from tests.e2e.harness import GATEWAY_KEY, config_for
from tests.telemetry.prom_text import parse
from tests.telemetry.telemetry_harness import TracedGateway, traced_gateway

HI: Any = [{"role": "user", "content": "hi"}]


@asynccontextmanager
async def gateway_with_memory(sims: dict[str, tuple[str, SimulatedProvider]], models: dict[str, Any],
                              env: dict[str, str] | None = None, **telemetry: Any,
                              ) -> AsyncIterator[tuple[TracedGateway, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    config = config_for(sims, models, telemetry={"traces_file": "", **telemetry})
    tel = setup_telemetry(config.telemetry, env or {}, span_processors=[SimpleSpanProcessor(memory)])
    async with traced_gateway(config, tel) as gw:
        yield gw, memory


def requests_and_attempts(spans: Sequence[ReadableSpan]) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    return ([s for s in spans if s.kind is SpanKind.SERVER], [s for s in spans if s.kind is SpanKind.CLIENT])


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def only(spans: list[ReadableSpan], pred: Callable[[ReadableSpan], bool]) -> ReadableSpan:
    found = [s for s in spans if pred(s)]
    assert len(found) == 1, [s.name for s in found]
    return found[0]


async def test_failed_primary_falls_back_and_is_not_billed() -> None:
    async with SimulatedProvider(parse_profile({"error_rate": 1.0, "error_status": 500}), name="broken") as broken, \
            SimulatedProvider(name="fast") as fast, gateway_with_memory(
                {"broken": ("openai", broken), "fast": ("openai", fast)},
                {"m": {"targets": [{"provider": "broken", "model": "b", "price": {"input_per_mtok": 5}},
                                   {"provider": "fast", "model": "f", "price": {"input_per_mtok": 1}}],
                       "hedge": False}}) as (gw, memory):
        async with gw.openai() as client:
            await client.chat.completions.create(model="m", messages=HI)
        await gw.finished.wait_for(1)
    (request,), attempts = requests_and_attempts(memory.get_finished_spans())
    failed = only(attempts, lambda s: attrs(s)["gateway.attempt.outcome"] == "failed")
    won = only(attempts, lambda s: attrs(s)["gateway.attempt.outcome"] == "won")
    assert failed.status.status_code is StatusCode.ERROR and attrs(failed)["error.type"]
    assert attrs(failed)["gateway.cost_usd"] == 0  # an HTTP error before any token is not billed
    assert attrs(won)["gateway.attempt.launch"] == "fallback" and won.status.status_code is StatusCode.UNSET
    r = attrs(request)
    assert r["gateway.attempts"] == 2 and r["gateway.hedged"] is False and r["gateway.winner"] == "fast"
    assert r["gateway.wasted_cost_usd"] == 0 and r["gateway.cost_usd"] == pytest.approx(attrs(won)["gateway.cost_usd"])
    assert "gateway.hedge_delay_ms" not in r  # hedging is off for this alias
    assert request.status.status_code is StatusCode.UNSET


async def test_open_breaker_gives_a_zero_length_skipped_span_and_breaker_metrics() -> None:
    async with SimulatedProvider(parse_profile({"error_rate": 1.0, "error_status": 503}), name="broken") as broken, \
            SimulatedProvider(name="fast") as fast, gateway_with_memory(
                {"broken": ("openai", broken), "fast": ("anthropic", fast)},
                {"m": {"targets": [{"provider": "broken", "model": "b"}, {"provider": "fast", "model": "f"}],
                       "hedge": False}}) as (gw, memory):
        async with gw.openai() as client:
            for _ in range(4):  # the harness's breakers open after 3 failures: the 4th request skips `broken`
                await client.chat.completions.create(model="m", messages=HI)
        await gw.finished.wait_for(4)
        expo = parse(gw.telemetry.metrics_text())
    assert broken.stats.received == 3
    requests, attempts = requests_and_attempts(memory.get_finished_spans())
    skipped = only(attempts, lambda s: attrs(s)["gateway.attempt.outcome"] == "skipped")
    a = attrs(skipped)
    assert a["gateway.attempt.skip_reason"] == "breaker_open" and a["gateway.breaker.state"] == "open"
    assert a["gateway.cost_usd"] == 0 and "gen_ai.usage.input_tokens" not in a and "server.address" not in a
    assert a["gen_ai.provider.name"] == "openai" and skipped.name == "chat b"
    assert skipped.start_time == skipped.end_time
    last_request = only(requests, lambda s: s.context.trace_id == skipped.context.trace_id)
    assert skipped.parent is not None and skipped.parent.span_id == last_request.context.span_id
    assert attrs(last_request)["gateway.attempts"] == 1  # the skipped one was never sent
    assert expo.value("gateway_breaker_state", gateway_provider="broken") == 2
    assert expo.value("gateway_breaker_state", gateway_provider="fast") == 0
    assert expo.value("gateway_breaker_transitions_total", gateway_provider="broken", gateway_breaker_from="closed",
                      gateway_breaker_to="open") == 1
    assert expo.value("gateway_attempts_total", gateway_provider="broken", gateway_attempt_outcome="skipped") == 1
    assert expo.value("gateway_attempts_total", gateway_provider="broken", gateway_attempt_outcome="failed") == 3


async def test_a_hedge_refused_by_the_budget_is_counted() -> None:
    async with SimulatedProvider(parse_profile({"ttft": 300}), name="slow") as slow, \
            SimulatedProvider(name="fast") as fast, gateway_with_memory(
                {"slow": ("openai", slow), "fast": ("openai", fast)},
                {"m": {"targets": [{"provider": "slow", "model": "s"}, {"provider": "fast", "model": "f"}],
                       "hedge": {"delay_ms": 50, "budget_percent": 0, "budget_min": 0,
                                 "rearm": False}}}) as (gw, memory):
        async with gw.openai() as client:
            await client.chat.completions.create(model="m", messages=HI)
        await gw.finished.wait_for(1)
        expo = parse(gw.telemetry.metrics_text())
    (request,), attempts = requests_and_attempts(memory.get_finished_spans())
    assert [attrs(a)["gateway.provider"] for a in attempts] == ["slow"]  # the hedge never went out
    r = attrs(request)
    assert r["gateway.hedges_skipped"] == 1 and r["gateway.hedged"] is False and r["gateway.winner"] == "slow"
    assert r["gateway.latency_ms"] >= 300 and r["gateway.wasted_cost_usd"] == 0
    assert expo.value("gateway_hedges_skipped_total", gen_ai_request_model="m", gateway_hedge_skip_reason="budget") == 1


@pytest.mark.parametrize("capture", [False, True])
async def test_prompt_text_is_recorded_only_when_capture_content_is_on(capture: bool) -> None:
    async with SimulatedProvider(name="p") as p, gateway_with_memory(
            {"p": ("anthropic", p)}, {"m": {"targets": [{"provider": "p", "model": "x"}]}},
            capture_content=capture) as (gw, memory):
        async with gw.anthropic() as client:
            await client.messages.create(model="m", max_tokens=20, system="be brief", messages=HI)
        await gw.finished.wait_for(1)
    spans = memory.get_finished_spans()
    (request,), _ = requests_and_attempts(spans)
    if capture:
        assert orjson.loads(attrs(request)["gen_ai.input.messages"]) == HI
        assert orjson.loads(attrs(request)["gen_ai.system_instructions"]) == "be brief"
    else:
        for span in spans:
            assert not any(k in attrs(span) for k in ("gen_ai.input.messages", "gen_ai.system_instructions"))
            assert "be brief" not in orjson.dumps(attrs(span)).decode()


async def test_sampler_from_env_can_drop_spans_but_metrics_stay() -> None:
    async with SimulatedProvider(name="p") as p, gateway_with_memory(
            {"p": ("openai", p)}, {"m": {"targets": [{"provider": "p", "model": "x"}]}},
            env={"OTEL_TRACES_SAMPLER": "always_off"}) as (gw, memory):
        async with gw.openai() as client:
            await client.chat.completions.create(model="m", messages=HI)
        await gw.finished.wait_for(1)
        expo = parse(gw.telemetry.metrics_text())
    assert memory.get_finished_spans() == ()
    assert expo.value("gateway_attempts_total", gateway_provider="p", gateway_attempt_outcome="won") == 1


async def test_sdk_disabled_means_no_telemetry_and_an_empty_open_metrics_endpoint() -> None:
    async with SimulatedProvider(name="p") as p:
        config = config_for({"p": ("openai", p)}, {"m": {"targets": [{"provider": "p", "model": "x"}]}})
        tel = setup_telemetry(config.telemetry, {"OTEL_SDK_DISABLED": "true"})
        assert type(tel.hooks) is Hooks and tel.tracer_provider is None
        async with traced_gateway(config, tel) as gw, aiohttp.ClientSession() as http:
            async with gw.openai() as client:
                await client.chat.completions.create(model="m", messages=HI)
            async with http.get(f"{gw.url}/metrics") as resp:  # no metrics_key configured: open
                assert resp.status == 200 and await resp.text() == ""


async def test_metrics_route_without_telemetry_is_not_found_and_hooks_exclude_telemetry() -> None:
    config = parse_config({"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9"}},
                           "models": {"m": {"targets": [{"provider": "p", "model": "x"}]}}}, {})
    from tests.e2e.harness import running  # the plain harness: hooks, no telemetry

    async with running(config) as r, aiohttp.ClientSession() as http, http.get(f"{r.url}/metrics") as resp:
        assert resp.status == 404
    with pytest.raises(TypeError):
        Gateway(config, hooks=Hooks(), telemetry=setup_telemetry(config.telemetry, {"OTEL_SDK_DISABLED": "true"}))
    assert GATEWAY_KEY  # the harness key is what the other tests search exported data for
