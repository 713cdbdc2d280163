"""The same-format fast path changes nothing a client can see: forwarded events parse to what the slow path wrote.

A rogue upstream of each kind serves a stream (realistic, with an error event or garbage mid-stream, CRLF or
multi-line framing, or one that hypothesis mangled frame by frame); each stream goes through a door of the
provider's own format twice: on the fast path (events forwarded as the provider sent them, text deltas counted
without `inspect`) and on the slow path (every event serialised again and inspected, as before the fast path
existed). For every input, streaming and not, with and without usage asked for: the same status, the same
events (names and parsed data) or the same JSON answer, and the same accounting on the request's record
(outcome, tokens, finish reason, streamed characters, error type).

The gateway runs in an event loop on a background thread (module scope), as in test_upstream_fuzz.py.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.engine import RequestSummary
from gateway.formats import codecs
from gateway.providers import http as provider_http
from gateway.server import Gateway, build_app
from gateway.server.connections import GatewayRunner
from tests.e2e.harness import GATEWAY_KEY, Collect
from tests.e2e.raw_http import Reply, exchange, parse_reply
from tests.e2e.rogue_upstream import RogueUpstream, anthropic_event, healthy, openai_chunk
from tests.e2e.upstream_frames import ANTHROPIC_BASE, OPENAI_BASE, Frames, mangled_streams

T = TypeVar("T")
KINDS = ("openai", "anthropic")
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
TIMEOUT_S = 10.0
_unique = itertools.count()


@dataclass
class Setup:
    loop: asyncio.AbstractEventLoop
    port: int
    rogues: dict[str, RogueUpstream]
    collect: Collect

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT_S + 5)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="same-format", daemon=True)
    thread.start()

    def call(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    rogues = {kind: RogueUpstream(healthy(kind)) for kind in KINDS}
    for rogue in rogues.values():
        call(rogue.start())
    options = {"api_key": "provider-secret-rogue", "timeout_s": 2, "breaker": {"fail_max": 1_000_000}}
    config = parse_config({
        "server": {"api_keys": [GATEWAY_KEY]},
        "providers": {"rogue-openai": {"kind": "openai", "base_url": rogues["openai"].base_url + "/v1", **options},
                      "rogue-anthropic": {"kind": "anthropic", "base_url": rogues["anthropic"].base_url, **options}},
        "models": {f"to-{kind}": {"targets": [{"provider": f"rogue-{kind}", "model": "m"}], "hedge": "off"}
                   for kind in KINDS},
        "telemetry": {"traces_file": ""},
    }, {})
    collect = Collect()
    runner = GatewayRunner(build_app(Gateway(config, hooks=collect)), config.server, handler_cancellation=True,
                           access_log=None)

    async def start() -> int:
        from aiohttp import web
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    try:
        yield Setup(loop, call(start()), rogues, collect)
    finally:
        call(runner.cleanup())
        for rogue in rogues.values():
            call(rogue.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """As before the fast path: no event keeps its raw text (so every one is serialised again), and no codec
    has the plain-text shortcut (so every event goes through `inspect`)."""
    monkeypatch.setattr(provider_http, "nested_within_writable", lambda text: False)
    for codec in (codecs._OpenAICodec, codecs._AnthropicCodec):
        monkeypatch.setattr(codec, "plain_text", staticmethod(lambda data: None))


def ask(setup: Setup, kind: str, stream: bool, usage: bool) -> tuple[Reply, RequestSummary]:
    body: dict[str, Any] = {"model": f"to-{kind}", "max_tokens": 20, "stream": stream,
                            "messages": [{"role": "user", "content": f"hello {next(_unique)}"}]}
    if kind == "openai" and usage:
        body["stream_options"] = {"include_usage": True}
    payload = orjson.dumps(body)
    auth = f"x-api-key: {GATEWAY_KEY}" if kind == "anthropic" else f"Authorization: Bearer {GATEWAY_KEY}"
    request = (f"POST {PATHS[kind]} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    count = len(setup.collect.records)
    reply = parse_reply(setup.run(exchange(setup.port, request, TIMEOUT_S)))
    records = setup.run(setup.collect.wait_for(count + 1))
    return reply, records[count]


def seen_by_client(reply: Reply) -> tuple[Any, ...]:
    """What a client parses: the status, and the JSON answer or each event's name and data."""
    if not reply.headers.get("content-type", "").startswith("text/event-stream"):
        return reply.status, orjson.loads(reply.body)
    events = []
    for frame in reply.body.split(b"\n\n"):
        if not frame.strip():
            continue
        name, data = None, []
        for line in frame.split(b"\n"):
            assert b"\r" not in line, frame
            if line.startswith(b"event: "):
                name = line[7:]
            elif line.startswith(b"data: "):
                data.append(line[6:])
        assert len(data) == 1, frame  # the gateway writes each event on one line, on both paths
        events.append((name, data[0] if data[0] == b"[DONE]" else orjson.loads(data[0])))
    return reply.status, events


def accounting(summary: RequestSummary) -> tuple[Any, ...]:
    return summary.status, summary.error_type, tuple(
        (a.outcome, a.input_tokens, a.output_tokens, a.cached_input_tokens, a.finish_reason, a.streamed_chars,
         a.response_model, None if a.error is None else (a.error.kind, a.error.error_type))
        for a in summary.attempts)


def both_paths(setup: Setup, monkeypatch: pytest.MonkeyPatch, kind: str, frames: Frames, stream: bool,
               usage: bool) -> tuple[Any, ...]:
    """The client's view and the record on the fast path; asserted equal to the slow path's; returned."""
    setup.rogues[kind].behaviour = frames.behaviour()
    fast_reply, fast_record = ask(setup, kind, stream, usage)
    with monkeypatch.context() as patch:
        slow_path(patch)
        slow_reply, slow_record = ask(setup, kind, stream, usage)
    fast = seen_by_client(fast_reply), accounting(fast_record)
    assert fast == (seen_by_client(slow_reply), accounting(slow_record))
    return fast


def whole(*frames: bytes) -> Frames:
    return Frames(list(frames), [], "eof")


OPENAI_ERROR = b'data: {"error": {"type": "server_error", "message": "upstream overloaded"}}\n\n'
ANTHROPIC_ERROR = anthropic_event({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
DEEP = b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "deep"}, "logprobs": ' + \
    b"[" * 300 + b"]" * 300 + b"}]}\n\n"
STREAMS: dict[str, dict[str, Frames]] = {
    "openai": {
        "complete": whole(*OPENAI_BASE),
        "error mid-stream": whole(*OPENAI_BASE[:3], OPENAI_ERROR),
        "malformed JSON mid-stream": whole(*OPENAI_BASE[:3], b'data: {"choices": [\n\n'),
        "nested deeper than can be written": whole(*OPENAI_BASE[:3], DEEP, *OPENAI_BASE[3:]),
        "CRLF framing": whole(*(frame.replace(b"\n", b"\r\n") for frame in OPENAI_BASE)),
        "a lone CR in an event": whole(*OPENAI_BASE[:2], openai_chunk("a\rb").replace(b'"a', b'\r"a'),
                                       *OPENAI_BASE[2:]),
        "multi-line data and comments": whole(OPENAI_BASE[0], b": keep-alive\n\n",
                                              OPENAI_BASE[1].replace(b'","', b'",\ndata: "', 1), *OPENAI_BASE[2:]),
        "the last token carries the finish": whole(OPENAI_BASE[0], OPENAI_BASE[1], openai_chunk("!", finish="stop"),
                                                   openai_chunk(usage=True), b"data: [DONE]\n\n"),
        "no model in the chunks": whole(*(frame.replace(b'"model":"rogue-model",', b"") for frame in OPENAI_BASE)),
    },
    "anthropic": {
        "complete": whole(*ANTHROPIC_BASE),
        "error mid-stream": whole(*ANTHROPIC_BASE[:4], ANTHROPIC_ERROR),
        "malformed JSON mid-stream": whole(*ANTHROPIC_BASE[:4], b"event: content_block_delta\ndata: {\n\n"),
        "event name unlike its type": whole(*ANTHROPIC_BASE[:3], ANTHROPIC_BASE[3].replace(
            b"event: content_block_delta", b"event: something_else"), *ANTHROPIC_BASE[4:]),
        "type unknown or not a string": whole(*ANTHROPIC_BASE[:3], b'event: x\ndata: {"type": "novel"}\n\n',
                                              b'event: y\ndata: {"type": 7}\n\n', *ANTHROPIC_BASE[3:]),
        "events after message_stop": whole(*ANTHROPIC_BASE, ANTHROPIC_BASE[3]),
        "no message_stop": whole(*ANTHROPIC_BASE[:-1]),
        "CRLF framing": whole(*(frame.replace(b"\n", b"\r\n") for frame in ANTHROPIC_BASE)),
    },
}
CASES = [(kind, name) for kind, streams in STREAMS.items() for name in streams]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}: {n}" for k, n in CASES])
@pytest.mark.parametrize("mode", ["stream, usage asked", "stream", "json"])
def test_the_fast_path_is_invisible(setup: Setup, monkeypatch: pytest.MonkeyPatch, kind: str, name: str,
                                    mode: str) -> None:
    (status, _), record = both_paths(setup, monkeypatch, kind, STREAMS[kind][name], mode != "json",
                                     mode == "stream, usage asked")
    if name == "complete":  # the inputs are what they say: a real answer...
        assert status == 200 and record[0] == 200
    elif "error" in name or "malformed" in name or "deeper" in name:  # ... and a stream broken mid-way
        assert record[0] != 200


def test_usage_chunk_goes_to_the_client_only_when_asked(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = STREAMS["openai"]["complete"]
    (_, asked), _ = both_paths(setup, monkeypatch, "openai", frames, True, True)
    (_, unasked), _ = both_paths(setup, monkeypatch, "openai", frames, True, False)
    assert any(isinstance(data, dict) and data.get("usage") for _, data in asked)
    assert not any(isinstance(data, dict) and data.get("usage") for _, data in unasked)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), data=st.data(), stream=st.booleans(), usage=st.booleans())
def test_mangled_streams_look_the_same_on_both_paths(setup: Setup, monkeypatch: pytest.MonkeyPatch, kind: str,
                                                     data: st.DataObject, stream: bool, usage: bool) -> None:
    frames = data.draw(mangled_streams(kind))
    frames.end = "eof"  # a cut connection is raced by timing; a complete body is the same bytes on both runs
    both_paths(setup, monkeypatch, kind, frames, stream, usage)
