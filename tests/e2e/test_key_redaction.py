"""A provider's key never reaches a client, a log line or a trace, whatever the upstream echoes and wherever.

A rogue upstream of each kind echoes its key in every place an error can carry text: the message of an HTTP
error body (401 and 500), a plain-text 500, a 200 JSON error body, an unparseable status line, a wrong content
type, an in-stream error event after the first token, and a malformed event (which the gateway logs). The
error `type` holds the key too. The key sits at every offset of the text: each body repeats "<key>y" from
offset k, for every k below the repeat's length, so every cut the gateway makes (at whatever length) goes
through a copy of the key at every position of it.

Every cut is made before the door and the mode matter (in the provider adapter, the engine, the formats), so
by default each offset of each scenario goes through one door x mode pair, the pairs taking turns; with
FUZZ_EXAMPLES > 1 (the suite's scale knob) every offset goes through all four. Checked: the client's whole
answer, every log record (formatted as the JSON log lines `gateway serve` writes, extras and tracebacks
included), every span (attributes, events, status) and the Prometheus text hold no piece of the key 8
characters or longer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.config import parse_config
from gateway.engine.hooks import CompositeHooks
from gateway.errors import KNOWN_ERROR_TYPES
from gateway.logs import JsonFormatter, RequestLog
from gateway.telemetry import setup_telemetry
from tests.e2e.harness import GATEWAY_KEY
from tests.e2e.rogue_upstream import (
    ANTHROPIC_HEAD,
    ANTHROPIC_TOKENS,
    OPENAI_HEAD,
    OPENAI_TAIL,
    OPENAI_TOKENS,
    Behaviour,
    Conn,
    RogueUpstream,
    anthropic_event,
    healthy,
    respond,
    stream_then,
)
from tests.telemetry.telemetry_harness import TracedGateway, traced_gateway

KEYS = {"openai": "sk-rogue-Zq8xW2vN5mK7pL3rT9yB4cF6hJ1dS0gA", "anthropic": "sk-ant-rogue-Hb3Nc8Vx1Lq7Ws4Er9Ty2Ui6Op5"}
MIN_PIECE = 8
EVERY_PAIR = float(os.environ.get("FUZZ_EXAMPLES", "1")) > 1
PAIRS = [(door, stream) for door in ("openai", "anthropic") for stream in (False, True)]


def pieces(key: str) -> list[str]:
    """Every piece of `key` MIN_PIECE long: any longer piece of it contains one."""
    return [key[i:i + MIN_PIECE] for i in range(len(key) - MIN_PIECE + 1)]


def echo(key: str, offset: int) -> str:
    """The key repeated from `offset`, far past every bound the gateway puts on an error text."""
    return "x" * offset + (key + "y") * (1500 // len(key))


def scenarios(kind: str, key: str, offset: int) -> dict[str, Behaviour]:
    text = echo(key, offset)
    kind_text = "invalid key " + text[:120]
    if kind == "openai":
        error = orjson.dumps({"error": {"message": text, "type": kind_text, "code": kind_text}})
        in_stream = b"data: " + error + b"\n\n"
        malformed = b"data: " + orjson.dumps({"pad": text, "choices": "x"}) + b"\n\n"
        head, token = OPENAI_HEAD, OPENAI_TOKENS[0]
    else:
        error = orjson.dumps({"type": "error", "error": {"type": kind_text, "message": text}})
        in_stream = anthropic_event({"type": "error", "error": {"type": kind_text, "message": text}})
        malformed = anthropic_event({"type": "content_block_delta", "pad": text, "index": 0, "delta": "x"})
        head, token = ANTHROPIC_HEAD, ANTHROPIC_TOKENS[0]
    async def status_line(conn: Conn) -> None:  # unparseable: aiohttp's error quotes the line
        await conn.read_request()
        await conn.send(b"HTTP/1.1 2x0 " + text.encode() + b"\r\n\r\n")
        conn.close()

    return {
        "401": respond(401, "application/json", error),
        "status-line": status_line,
        "content-type": respond(200, "text/html; x=" + text[:400], b"{}"),
        "500": respond(500, "application/json", error),
        "500-text": respond(500, "text/plain", text.encode()),
        "200-json": respond(200, "application/json", error),
        "in-stream": stream_then([head, token, in_stream], "eof"),
        "malformed": stream_then([head, token, malformed], "eof"),
    }


@dataclass
class Env:
    gw: TracedGateway
    spans: InMemorySpanExporter
    rogues: dict[str, RogueUpstream]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with RogueUpstream(healthy("openai")) as oa, RogueUpstream(healthy("anthropic")) as an:
        rogue: dict[str, Any] = {"timeout_s": 5, "breaker": {"fail_max": 1_000_000}}
        config = parse_config({
            "server": {"api_keys": [GATEWAY_KEY]},
            "providers": {"rogue-openai": {"kind": "openai", "base_url": oa.base_url + "/v1",
                                           "api_key": KEYS["openai"], **rogue},
                          "rogue-anthropic": {"kind": "anthropic", "base_url": an.base_url,
                                              "api_key": KEYS["anthropic"], **rogue}},
            "models": {f"to-{kind}": {"targets": [{"provider": f"rogue-{kind}", "model": "m"}], "hedge": "off"}
                       for kind in KEYS},
            "telemetry": {"traces_file": ""},
        }, {})
        spans = InMemorySpanExporter()
        telemetry = setup_telemetry(config.telemetry, {}, span_processors=[SimpleSpanProcessor(spans)])
        telemetry.hooks = CompositeHooks(RequestLog(), telemetry.hooks)  # as `gateway serve` has it
        async with traced_gateway(config, telemetry) as gw:
            yield Env(gw, spans, {"openai": oa, "anthropic": an})


async def ask(http: aiohttp.ClientSession, env: Env, door: str, alias: str, stream: bool) -> tuple[int, bytes]:
    if door == "openai":
        url, headers = f"{env.gw.url}/v1/chat/completions", {"authorization": f"Bearer {GATEWAY_KEY}"}
    else:
        url, headers = f"{env.gw.url}/v1/messages", {"x-api-key": GATEWAY_KEY}
    body = {"model": alias, "max_tokens": 20, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.read()


def error_type_of(door: str, body: bytes, stream: bool) -> str | None:
    if stream:
        datas = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: {")]
        errors = [orjson.loads(d) for d in datas if b'"error"' in d]
        if not errors:
            return None
        parsed = errors[-1]
    else:
        parsed = orjson.loads(body)
    kind: str = parsed["error"]["type"]
    return kind


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_no_piece_of_the_key_escapes(env: Env, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = KEYS[kind]
    leaks: list[str] = []
    formatter = JsonFormatter()

    def check(where: str, text: str) -> None:
        found = [p for p in pieces(key) if p in text]
        if found:
            at = text.index(found[0])
            leaks.append(f"{where}: {found[0]!r} in ...{text[max(0, at - 60):at + 40]!r}")

    async with aiohttp.ClientSession() as http:
        for offset in range(len(key) + 1):
            for turn, (name, behaviour) in enumerate(scenarios(kind, key, offset).items()):
                env.rogues[kind].behaviour = behaviour
                for door, stream in PAIRS if EVERY_PAIR else [PAIRS[(offset + turn) % len(PAIRS)]]:
                    status, body = await ask(http, env, door, f"to-{kind}", stream)
                    where = f"{name} offset {offset} {door} door {'stream' if stream else 'json'} ({status})"
                    check(f"client answer, {where}", body.decode(errors="replace"))
                    assert status != 200 or stream, (where, body[:300])
                    error_type = error_type_of(door, body, stream)
                    assert error_type is None or error_type in KNOWN_ERROR_TYPES, (where, error_type)
        await env.gw.finished.wait_for(len(env.gw.finished.records))
    for record in caplog.records:
        check(f"log {record.name}", formatter.format(record))
    for span in env.spans.get_finished_spans():
        check(f"span {span.name}", span.to_json())
    check("metrics", env.gw.telemetry.metrics_text())
    assert not leaks, f"{len(leaks)} leaks, e.g.:\n" + "\n".join(leaks[:10])


async def test_a_model_name_that_echoes_the_key_is_not_traced(env: Env) -> None:
    key = KEYS["openai"]
    head = b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": key,
                                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]})
    env.rogues["openai"].behaviour = stream_then([head + b"\n\n", *OPENAI_TOKENS, OPENAI_TAIL], "eof")
    async with aiohttp.ClientSession() as http:
        status, _ = await ask(http, env, "openai", "to-openai", False)
    assert status == 200
    await env.gw.finished.wait_for(1)
    spans = [span.to_json() for span in env.spans.get_finished_spans()]
    assert spans and not [p for p in pieces(key) for text in spans if p in text]
