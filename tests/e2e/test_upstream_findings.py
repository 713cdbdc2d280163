"""Findings of the provider-side fuzz (test_upstream_fuzz.py) whose fix belongs in the engine or the handlers.

Each test states the behaviour the gateway should have and is marked xfail(strict=True) with its root cause:
it fails today, and starts failing the suite the day the fix lands, so the mark is removed with the fix.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.simulator import SimulatedProvider, parse_profile
from tests.e2e.harness import GATEWAY_KEY, Running, config_for, running
from tests.e2e.rogue_upstream import (
    ANTHROPIC_HEAD,
    ANTHROPIC_TAIL,
    ANTHROPIC_TOKENS,
    OPENAI_HEAD,
    OPENAI_TAIL,
    RogueUpstream,
    anthropic_event,
    healthy,
    openai_chunk,
    stream_then,
)


@dataclass
class Env:
    r: Running
    oa: RogueUpstream
    an: RogueUpstream


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    slow = parse_profile({"per_token": 100, "output_tokens": 16})  # a backup that streams for ~1.6 s
    async with RogueUpstream(healthy("openai")) as oa, RogueUpstream(healthy("anthropic")) as an, \
            SimulatedProvider(slow, name="backup", seed=4) as backup:
        config = config_for(
            {"rogue": ("openai", oa), "rogue-an": ("anthropic", an), "backup": ("openai", backup)},  # type: ignore[dict-item]
            {"hedged": {"targets": [{"provider": "rogue", "model": "m"}, {"provider": "backup", "model": "b"}],
                        "hedge": "off"},
             "cached-an": {"targets": [{"provider": "rogue-an", "model": "m"}], "hedge": "off",
                           "cache": {"ttl_s": 60, "always": True}},
             "solo": {"targets": [{"provider": "rogue", "model": "m"}], "hedge": "off", "timeout_s": 1}})
        async with running(config) as r:
            yield Env(r, oa, an)


async def wait_until(cond: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_failed_attempt_closes_its_upstream_connection_at_once(env: Env) -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    env.oa.behaviour = stream_then([OPENAI_HEAD, error], "stall")  # says it failed, then keeps the line open
    async with aiohttp.ClientSession() as http, http.post(
            f"{env.r.url}/v1/chat/completions", headers={"authorization": f"Bearer {GATEWAY_KEY}"},
            json={"model": "hedged", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status == 200 and resp.headers["x-gateway-provider"] == "backup"
        await resp.content.readline()  # the backup's stream has begun: the rogue's attempt failed before it
        closed = await wait_until(lambda: env.oa.peer_closed == 1, 1.0)  # the backup streams on meanwhile
        await resp.read()
    assert closed, "the failed attempt's connection was still open while the request went on"


async def test_a_stream_the_cache_cannot_store_still_ends_cleanly(env: Env) -> None:
    broken_tool = anthropic_event({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}) + anthropic_event({
            "type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"q'}})
    env.an.behaviour = stream_then([ANTHROPIC_HEAD, *ANTHROPIC_TOKENS, broken_tool, ANTHROPIC_TAIL], "eof")
    async with aiohttp.ClientSession() as http, http.post(
            f"{env.r.url}/v1/messages", headers={"x-api-key": GATEWAY_KEY},
            json={"model": "cached-an", "max_tokens": 20, "stream": True,
                  "messages": [{"role": "user", "content": "hi"}]}) as resp:
        body = await resp.read()
    events = [orjson.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1]["type"] == "message_stop", events[-2:]
    assert env.r.gateway.runtime.breakers["rogue-an"].consecutive_failures == 0


async def test_a_client_that_never_reads_its_answer_is_let_go(env: Env) -> None:
    # ~10 MB of answer: more than the socket buffers on both ends and the client's stream reader can hold.
    big = openai_chunk("x" * 25_000)
    env.oa.behaviour = stream_then([OPENAI_HEAD, *[big] * 400, OPENAI_TAIL], "eof")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    port = int(env.r.url.rsplit(":", 1)[1])
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    _, writer = await asyncio.open_connection(sock=sock)
    body = orjson.dumps({"model": "solo", "messages": [{"role": "user", "content": "hi"}]})
    writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {GATEWAY_KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    try:
        assert await wait_until(lambda: env.r.gateway.in_flight == 1, 5.0)
        # The alias's whole-request deadline is 1 s: well past it, the request should be over.
        assert await wait_until(lambda: env.r.gateway.in_flight == 0, 2.5), "still writing to a client that never reads"
    finally:
        writer.transport.abort()


def test_file_span_hooks_never_raise(tmp_path: Any) -> None:
    """The default deployment's hooks (spans to the traces file), as the gateway holds them: whatever an event
    carries, no exception reaches the request."""
    from gateway.config.model import Price, Target, TelemetryConfig
    from gateway.engine import Attempt, AttemptStarted, Launch, Outcome, RequestStarted, RequestSummary
    from gateway.engine.hooks import guarded
    from gateway.telemetry import setup_telemetry
    from gateway.wire import WireFormat

    hooks = guarded(setup_telemetry(TelemetryConfig(traces_file=str(tmp_path / "traces.jsonl")), {}).hooks)
    target = Target("p", "m", Price(1, 1))
    hooks.request_started(RequestStarted(1, "chat", WireFormat.OPENAI, "chat", False, 0.0, 1, {}, {}))
    hooks.attempt_started(AttemptStarted(1, "chat", 0, target, Launch.PRIMARY, 0.0, "closed", "127.0.0.1", 9))
    attempt = Attempt(request_id=1, alias="chat", index=0, target=target, launch=Launch.PRIMARY, started=0.0,
                      ended=0.1, outcome=Outcome.WON, input_estimate=1,
                      input_tokens="12")  # type: ignore[arg-type]  # a value of the wrong type, however it got there
    hooks.attempt_finished(attempt)
    hooks.request_finished(RequestSummary(1, "chat", WireFormat.OPENAI, "chat", False, 0.0, 0.1, 200, 1,
                                          (attempt,), attempt))
