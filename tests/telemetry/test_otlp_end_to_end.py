"""End to end: SDK client -> gateway -> simulated providers, spans and metrics exported over OTLP/HTTP to a
protobuf-decoding receiver on 127.0.0.1. A slow primary (2 s to first token) and a 100 ms hedge delay make
every request hedged: the hedge wins, the primary is cancelled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.simulator import SimulatedProvider, parse_profile
from gateway.telemetry import setup_telemetry
from tests.e2e.harness import GATEWAY_KEY, config_for
from tests.telemetry.otlp_receiver import ReceivedSpan, Receiver, otlp_receiver
from tests.telemetry.prom_text import parse
from tests.telemetry.telemetry_harness import TracedGateway, traced_gateway

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2
CANARY = "prompt-canary-7f3a: please do not export me"
METRICS_KEY = "metrics-key-9c1e"
SECRETS = ["provider-secret-slow", "provider-secret-fast", GATEWAY_KEY, METRICS_KEY]
PRICE_SLOW = {"input_per_mtok": 1, "output_per_mtok": 2}
PRICE_FAST = {"input_per_mtok": 3, "output_per_mtok": 15}
TRACE_ID, PARENT_SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@dataclass
class Setup:
    gw: TracedGateway
    receiver: Receiver
    slow: SimulatedProvider
    fast: SimulatedProvider


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with otlp_receiver() as receiver, \
            SimulatedProvider(parse_profile({"ttft": 2000}), name="slow", seed=1) as slow, \
            SimulatedProvider(name="fast", seed=2) as fast:
        config = config_for({"slow": ("openai", slow), "fast": ("anthropic", fast)}, {
            "hedged": {"targets": [{"provider": "slow", "model": "gpt-slow", "price": PRICE_SLOW},
                                   {"provider": "fast", "model": "claude-fast", "price": PRICE_FAST}],
                       "hedge": {"delay_ms": 100, "max_attempts": 2}},
        }, telemetry={"metrics_key": METRICS_KEY, "traces_file": ""})
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "gw-under-test",
               "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"}
        async with traced_gateway(config, setup_telemetry(config.telemetry, env)) as gw:
            yield Setup(gw, receiver, slow, fast)


def _one_request(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, dict[str, ReceivedSpan]]:
    """The request span, and its attempt spans by outcome."""
    requests = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    assert len(requests) == 1, [s.name for s in spans]
    request = requests[0]
    attempts = [s for s in spans if s.parent_id == request.span_id]
    assert all(s.kind == SPAN_KIND_CLIENT and s.trace_id == request.trace_id for s in attempts)
    by_outcome = {s.attributes["gateway.attempt.outcome"]: s for s in attempts}
    assert len(by_outcome) == len(attempts) == len(spans) - 1
    return request, by_outcome


async def _flushed(s: Setup, requests: int) -> list[ReceivedSpan]:
    await s.gw.finished.wait_for(requests)
    await s.gw.telemetry.force_flush()
    return s.receiver.spans


async def test_hedged_request_is_one_trace_with_a_won_and_a_cancelled_attempt(setup: Setup) -> None:
    async with setup.gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="hedged", messages=[{"role": "user", "content": CANARY}],
            extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"})
        completion = raw.parse()
    assert raw.headers["x-gateway-provider"] == "fast"
    request, by_outcome = _one_request(await _flushed(setup, 1))
    won, lost = by_outcome["won"], by_outcome["cancelled"]

    # The incoming traceparent is honoured: same trace, the caller's span is the parent.
    assert request.trace_id == TRACE_ID and request.parent_id == PARENT_SPAN_ID
    assert request.name == "chat hedged" and won.name == "chat claude-fast" and lost.name == "chat gpt-slow"
    assert request.resource["service.name"] == "gw-under-test"
    assert request.resource["deployment.environment"] == "test"

    r = request.attributes
    assert r["gen_ai.operation.name"] == "chat" and r["gen_ai.request.model"] == "hedged"
    assert r["gateway.door"] == "openai" and r["gateway.stream"] is False
    assert r["gateway.attempts"] == 2 and r["gateway.hedged"] is True and r["gateway.hedges_skipped"] == 0
    assert r["gateway.winner"] == "fast" and r["gateway.winner.launch"] == "hedge"
    assert r["gateway.hedge_delay_ms"] == pytest.approx(100)
    assert r["http.response.status_code"] == 200 and "error.type" not in r
    assert 100 <= r["gateway.latency_ms"] < 2000  # hedged after 100 ms, long before the primary's 2 s
    assert request.status_code != STATUS_ERROR

    w, lo = won.attributes, lost.attributes
    assert (w["gateway.attempt.launch"], w["gateway.attempt.index"]) == ("hedge", 1)
    assert (lo["gateway.attempt.launch"], lo["gateway.attempt.index"]) == ("primary", 0)
    assert (w["gen_ai.provider.name"], w["gateway.provider"]) == ("anthropic", "fast")
    assert (lo["gen_ai.provider.name"], lo["gateway.provider"]) == ("openai", "slow")
    assert w["gen_ai.request.model"] == "claude-fast" and w["gen_ai.response.model"] == "claude-fast"
    assert w["server.address"] == "127.0.0.1" and w["server.port"] == setup.fast.port
    assert lo["server.port"] == setup.slow.port
    assert w["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert w["gateway.breaker.state"] == "closed"
    assert 0 <= w["gen_ai.response.time_to_first_chunk"] < 1

    # Token counts are the provider's own for the winner, estimates for the loser cut before any usage.
    assert completion.usage is not None
    assert w["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens == 16
    assert w["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert w["gen_ai.usage.cache_read.input_tokens"] == 0
    assert w["gateway.usage.estimated"] is False
    assert lo["gateway.usage.estimated"] is True and lo["gen_ai.usage.output_tokens"] == 0
    assert lo["gen_ai.usage.input_tokens"] >= 1

    # Costs add up: request = sum of attempts, wasted = the loser, each attempt = its tokens at its price.
    assert w["gateway.cost_usd"] == pytest.approx((w["gen_ai.usage.input_tokens"] * 3 + 16 * 15) / 1e6)
    assert lo["gateway.cost_usd"] == pytest.approx(lo["gen_ai.usage.input_tokens"] * 1 / 1e6)
    assert r["gateway.cost_usd"] == pytest.approx(w["gateway.cost_usd"] + lo["gateway.cost_usd"])
    assert r["gateway.wasted_cost_usd"] == pytest.approx(lo["gateway.cost_usd"]) and lo["gateway.cost_usd"] > 0

    # Attempt spans sit inside the request span; the loser ended when it was cancelled, before the request.
    for attempt in (won, lost):
        assert request.start_ns <= attempt.start_ns <= attempt.end_ns <= request.end_ns
    assert lost.end_ns - lost.start_ns < 2_000_000_000
    assert won.start_ns - lost.start_ns >= 90_000_000  # the hedge went out after the delay


async def test_nothing_secret_and_no_prompt_text_is_exported(setup: Setup) -> None:
    async with setup.gw.openai() as client:
        await client.chat.completions.create(model="hedged", messages=[{"role": "user", "content": CANARY}])
    async with setup.gw.anthropic() as aclient:
        await aclient.messages.create(model="hedged", max_tokens=50, system=CANARY,
                                      messages=[{"role": "user", "content": CANARY}])
    spans = await _flushed(setup, 2)
    assert len(spans) == 6
    async with aiohttp.ClientSession() as http, http.get(
            f"{setup.gw.url}/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"}) as resp:
        metrics_text = await resp.text()
    await setup.gw.gateway.aclose()  # shuts telemetry down: the OTLP metric export happens now
    assert setup.receiver.metric_requests
    exported = [*setup.receiver.raw_bodies, metrics_text.encode()]
    for needle in [*SECRETS, CANARY, "do not export"]:
        assert all(needle.encode() not in body for body in exported), needle
    for span in spans:  # and decoded, in case an encoding hid it from the byte search
        for value in [*span.attributes.values(), *span.resource.values()]:
            assert not any(secret in str(value) for secret in [*SECRETS, CANARY]), value
        assert not any(k.startswith("gen_ai.input") or "messages" in k for k in span.attributes)


async def test_streaming_hedge_records_ttft_and_ends_the_winner_with_its_stream(setup: Setup) -> None:
    async with setup.gw.anthropic() as client, client.messages.stream(
            model="hedged", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert len(text.split()) == 16
    request, by_outcome = _one_request(await _flushed(setup, 1))
    won = by_outcome["won"].attributes
    r = request.attributes
    assert r["gateway.stream"] is True and r["gateway.door"] == "anthropic"
    assert 100 <= r["gateway.ttft_ms"] <= r["gateway.latency_ms"]
    assert won["gen_ai.usage.output_tokens"] == final.usage.output_tokens == 16
    assert won["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert by_outcome["won"].end_ns <= request.end_ns
    assert r["gateway.cost_usd"] == pytest.approx(won["gateway.cost_usd"]
                                                  + by_outcome["cancelled"].attributes["gateway.cost_usd"])


async def test_metrics_endpoint_needs_the_key_and_parses_as_prometheus_text(setup: Setup) -> None:
    url = f"{setup.gw.url}/metrics"
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": METRICS_KEY},
                        {"authorization": f"Bearer {GATEWAY_KEY}"}):
            async with http.get(url, headers=headers) as resp:
                assert resp.status == 401, headers
        async with setup.gw.openai() as client:
            await client.chat.completions.create(model="hedged", messages=[{"role": "user", "content": "hi"}])
        await setup.gw.finished.wait_for(1)
        async with http.get(url, headers={"authorization": f"Bearer {METRICS_KEY}"}) as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    expo = parse(text)
    record = setup.gw.finished.records[0]
    won = next(a for a in record.attempts if a.outcome == "won")
    lost = next(a for a in record.attempts if a.outcome == "cancelled")
    assert expo.types["gateway_cost_usd_total"] == "counter"
    assert expo.types["gateway_request_duration_seconds"] == "histogram"
    assert expo.value("gateway_cost_usd_total", gateway_provider="fast") == pytest.approx(won.cost_usd)
    assert expo.value("gateway_cost_usd_total", gateway_provider="slow") == pytest.approx(lost.cost_usd)
    assert expo.value("gateway_wasted_cost_usd_total", gateway_provider="slow") == pytest.approx(lost.cost_usd)
    with pytest.raises(KeyError):  # the winner wasted nothing
        expo.value("gateway_wasted_cost_usd_total", gateway_provider="fast")
    assert expo.value("gateway_attempts_total", gateway_provider="slow", gateway_attempt_launch="primary",
                      gateway_attempt_outcome="cancelled") == 1
    assert expo.value("gateway_attempts_total", gateway_provider="fast", gateway_attempt_launch="hedge",
                      gateway_attempt_outcome="won") == 1
    assert expo.value("gateway_request_duration_seconds_count", gen_ai_request_model="hedged",
                      gateway_door="openai", gateway_provider="fast", http_response_status_code="200",
                      gateway_stream="false") == 1
    assert expo.value("gateway_request_duration_seconds_bucket", gateway_provider="fast", le="+Inf") == 1
    assert expo.value("gen_ai_client_token_usage_sum", gateway_provider="fast", gen_ai_token_type="output",
                      gen_ai_provider_name="anthropic", gen_ai_request_model="claude-fast") == 16
    assert expo.value("gateway_breaker_state", gateway_provider="slow") == 0
    assert expo.value("gateway_breaker_state", gateway_provider="fast") == 0
    assert "gateway_request_time_to_first_token_seconds_bucket" in expo.names()


async def test_metrics_are_also_exported_over_otlp(setup: Setup) -> None:
    async with setup.gw.openai() as client:
        await client.chat.completions.create(model="hedged", messages=[{"role": "user", "content": "hi"}])
    await setup.gw.finished.wait_for(1)
    await setup.gw.telemetry.force_flush()
    names: Any = setup.receiver.metric_names()
    assert {"gateway.request.duration", "gateway.cost", "gateway.wasted_cost", "gateway.attempts",
            "gen_ai.client.token.usage", "gateway.breaker.state"} <= names


DELTA, CUMULATIVE = 1, 2  # opentelemetry.proto.metrics.v1.AggregationTemporality


@pytest.mark.parametrize("preference", ["delta", "cumulative"])
async def test_otlp_metrics_are_deltas_when_the_exporter_asks_for_them(preference: str) -> None:
    # Dynatrace, for one, takes only delta counters and histograms over OTLP.
    async with otlp_receiver() as receiver, SimulatedProvider(name="fast", seed=2) as fast:
        config = config_for({"fast": ("anthropic", fast)}, {
            "solo": {"targets": [{"provider": "fast", "model": "claude-fast", "price": PRICE_FAST}]}},
            telemetry={"traces_file": ""})
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
               "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": preference}
        async with traced_gateway(config, setup_telemetry(config.telemetry, env)) as gw:
            for n in (1, 2):  # a request, an export; another request, another export
                async with gw.openai() as client:
                    await client.chat.completions.create(model="solo", messages=[{"role": "user", "content": "hi"}])
                await gw.finished.wait_for(n)
                await gw.telemetry.force_flush()
    exported = [m for request in receiver.metric_requests for rm in request.resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics]
    attempts = [m.sum for m in exported if m.name == "gateway.attempts"]
    durations = [m.histogram for m in exported if m.name == "gateway.request.duration"]
    expected = DELTA if preference == "delta" else CUMULATIVE
    assert [s.aggregation_temporality for s in attempts[:2]] == [expected, expected]
    assert [h.aggregation_temporality for h in durations[:2]] == [expected, expected]
    counted = [sum(p.as_int or int(p.as_double) for p in s.data_points) for s in attempts[:2]]
    assert counted == ([1, 1] if preference == "delta" else [1, 2])
    assert [sum(p.count for p in h.data_points) for h in durations[:2]] == counted
