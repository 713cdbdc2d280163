"""Provider usage is not trusted as sent: a token count that is not a plausible count is treated as missing.

A rogue upstream of each kind answers normally, except that its usage holds a string, a negative number, a
float far past any count, a list, or a count past any context window. Through both doors, streaming and not,
and through an alias that caches: the client gets a complete answer (valid JSON, or a stream ending in
`[DONE]` / `message_stop`) whose usage counts are non-negative ints; the attempt's usage is estimated (and
flagged so in its span); the cost metrics never go negative or absurd; the cached answer serves again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.config import parse_config
from gateway.formats import MAX_TOKENS
from gateway.telemetry import setup_telemetry
from tests.e2e.harness import GATEWAY_KEY
from tests.e2e.rogue_upstream import (
    ANTHROPIC_TOKENS,
    OPENAI_DONE,
    OPENAI_HEAD,
    OPENAI_TOKENS,
    RogueUpstream,
    anthropic_event,
    healthy,
    openai_chunk,
    respond,
    stream_then,
)
from tests.telemetry.prom_text import parse
from tests.telemetry.telemetry_harness import TracedGateway, traced_gateway

BAD_COUNTS: list[Any] = ["12", -50_000_000, 1e308, 12.0, [1], {"n": 1}, True, MAX_TOKENS, 2**64 - 1]
PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}


def openai_stream(bad: Any) -> list[bytes]:
    usage = {"id": "chatcmpl-rogue", "object": "chat.completion.chunk", "created": 1, "model": "rogue-model",
             "choices": [], "usage": {"prompt_tokens": bad, "completion_tokens": bad, "total_tokens": bad,
                                      "prompt_tokens_details": {"cached_tokens": bad}}}
    return [OPENAI_HEAD, *OPENAI_TOKENS, openai_chunk(finish="stop"), b"data: " + orjson.dumps(usage) + b"\n\n",
            OPENAI_DONE]


def anthropic_stream(bad: Any) -> list[bytes]:
    start = anthropic_event({"type": "message_start", "message": {
        "id": "msg_rogue", "type": "message", "role": "assistant", "model": "rogue-claude", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": bad, "output_tokens": bad, "cache_read_input_tokens": bad,
                  "cache_creation_input_tokens": bad}}})
    return [start, anthropic_event({"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "text", "text": ""}}), *ANTHROPIC_TOKENS,
            anthropic_event({"type": "content_block_stop", "index": 0}),
            anthropic_event({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"output_tokens": bad, "input_tokens": bad}}),
            anthropic_event({"type": "message_stop"})]


@dataclass
class Env:
    gw: TracedGateway
    spans: InMemorySpanExporter
    rogues: dict[str, RogueUpstream]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with RogueUpstream(healthy("openai")) as oa, RogueUpstream(healthy("anthropic")) as an:
        config = parse_config({
            "server": {"api_keys": [GATEWAY_KEY]},
            "providers": {"rogue-openai": {"kind": "openai", "base_url": oa.base_url + "/v1", "timeout_s": 5},
                          "rogue-anthropic": {"kind": "anthropic", "base_url": an.base_url, "timeout_s": 5}},
            "models": {
                **{f"to-{kind}": {"targets": [{"provider": f"rogue-{kind}", "model": "m", "price": PRICE}],
                                  "hedge": "off"} for kind in ("openai", "anthropic")},
                **{f"cached-{kind}": {"targets": [{"provider": f"rogue-{kind}", "model": "m", "price": PRICE}],
                                      "hedge": "off", "cache": {"ttl_s": 60, "always": True}}
                   for kind in ("openai", "anthropic")}},
            "telemetry": {"traces_file": ""},
        }, {})
        spans = InMemorySpanExporter()
        telemetry = setup_telemetry(config.telemetry, {}, span_processors=[SimpleSpanProcessor(spans)])
        async with traced_gateway(config, telemetry) as gw:
            yield Env(gw, spans, {"openai": oa, "anthropic": an})


async def ask(http: aiohttp.ClientSession, env: Env, door: str, alias: str, stream: bool,
              content: str = "hi") -> tuple[int, str, bytes]:
    if door == "openai":
        url, headers = f"{env.gw.url}/v1/chat/completions", {"authorization": f"Bearer {GATEWAY_KEY}"}
    else:
        url, headers = f"{env.gw.url}/v1/messages", {"x-api-key": GATEWAY_KEY}
    body = {"model": alias, "max_tokens": 20, "stream": stream, "messages": [{"role": "user", "content": content}]}
    if stream and door == "openai":
        body["stream_options"] = {"include_usage": True}
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, resp.headers.get("content-type", ""), await resp.read()


def counts_of(usage: Any) -> list[Any]:
    """Every token count in a door's usage object (nested details included)."""
    out: list[Any] = []
    for key, value in usage.items():
        if isinstance(value, dict):
            out.extend(counts_of(value))
        elif key.endswith("tokens"):
            out.append(value)
    return out


def assert_complete(kind: str, door: str, stream: bool, status: int, content_type: str, body: bytes) -> None:
    assert status == 200, body[:500]
    if not stream:
        assert content_type.startswith("application/json"), body[:300]
        answer = orjson.loads(body)
        if door == "openai":
            assert answer["choices"][0]["message"]["content"] == "Hello world"
        else:
            assert answer["content"][0]["text"] == "Hello world"
        usages = [answer["usage"]]
    else:
        datas = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
        if door == "openai":
            assert datas[-1] == b"[DONE]", datas[-3:]
            events = [orjson.loads(d) for d in datas[:-1]]
            assert all("error" not in e for e in events), events
            usages = [e["usage"] for e in events if e.get("usage")]
        else:
            events = [orjson.loads(d) for d in datas]
            assert events[-1]["type"] == "message_stop", events[-3:]
            assert all(e["type"] != "error" for e in events), events
            usages = [e["usage"] for e in events if e["type"] == "message_delta"]
        if door == kind:
            # A stream passed through untouched carries the provider's own usage event as it was sent (the
            # gateway does not rewrite the events it relays); a translated stream's usage is the gateway's own.
            return
    for usage in usages:
        for count in counts_of(usage):
            assert type(count) is int and 0 <= count < MAX_TOKENS, usage


@pytest.mark.parametrize("bad", BAD_COUNTS, ids=[repr(b)[:12] for b in BAD_COUNTS])
async def test_implausible_usage_is_treated_as_missing(env: Env, bad: Any) -> None:
    env.rogues["openai"].behaviour = stream_then(openai_stream(bad), "eof")
    env.rogues["anthropic"].behaviour = stream_then(anthropic_stream(bad), "eof")
    n = 0
    async with aiohttp.ClientSession() as http:
        for kind in ("openai", "anthropic"):
            for door in ("openai", "anthropic"):
                for stream in (False, True):
                    assert_complete(kind, door, stream, *await ask(http, env, door, f"to-{kind}", stream))
                    n += 1
                    # An alias that caches: the answer is stored, then served again from the cache.
                    content = f"cache me {kind} {door} {stream}"
                    assert_complete(kind, door, stream, *await ask(http, env, door, f"cached-{kind}", stream, content))
                    seen = len(env.rogues[kind].seen)
                    assert_complete(kind, door, stream, *await ask(http, env, door, f"cached-{kind}", stream, content))
                    assert len(env.rogues[kind].seen) == seen, "the second answer was not from the cache"
                    n += 2
    await env.gw.finished.wait_for(n)
    records = env.gw.finished.records
    assert all(r.status == 200 for r in records), [(r.status, r.error_type) for r in records]
    sent = [a for r in records for a in r.attempts]
    assert sent and all(a.usage_estimated for a in sent)  # nothing implausible was taken as a count
    assert all(type(a.billed_input_tokens) is int and 0 < a.billed_input_tokens < 1000 for a in sent)
    assert all(type(a.billed_output_tokens) is int and 0 < a.billed_output_tokens < 1000 for a in sent)
    attempt_spans = [s for s in env.spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert attempt_spans and all((s.attributes or {})["gateway.usage.estimated"] is True for s in attempt_spans)
    metrics = parse(env.gw.telemetry.metrics_text())
    costs = [value for name, _labels, value in metrics.samples if name.startswith("gateway_cost")]
    assert costs and all(0 < value < 1.0 for value in costs), costs


@pytest.mark.parametrize(("header", "value"), [("retry-after", "inf"), ("retry-after-ms", "1e400"),
                                               ("retry-after", "nan"), ("retry-after", "1e300"),
                                               ("retry-after", "-5"), ("retry-after-ms", "-inf")])
async def test_implausible_retry_after_is_treated_as_missing(env: Env, header: str, value: str) -> None:
    """A 429's wait is another number from upstream: an infinite or absurd one is as if none was sent (it
    would otherwise reach the client's Retry-After, or fail to become one)."""
    error = orjson.dumps({"error": {"message": "slow down", "type": "rate_limit_error"}})
    for rogue in env.rogues.values():
        rogue.behaviour = respond(429, "application/json", error, extra=[(header, value)])
    async with aiohttp.ClientSession() as http:
        for kind in ("openai", "anthropic"):
            for door in ("openai", "anthropic"):
                url, headers = ((f"{env.gw.url}/v1/chat/completions", {"authorization": f"Bearer {GATEWAY_KEY}"})
                                if door == "openai" else (f"{env.gw.url}/v1/messages", {"x-api-key": GATEWAY_KEY}))
                body = {"model": f"to-{kind}", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 429, await resp.text()
                    assert resp.content_type == "application/json"
                    wait = resp.headers.get("retry-after")
                    assert wait is None or (wait.isdigit() and 1 <= int(wait) <= 3600), wait
                env.gw.gateway.runtime._cooldown_until.clear()  # the next request reaches the rogue again
