"""`HttpProvider` against a real upstream on 127.0.0.1: what it sends (headers, body), what it makes of the
answer, and that the provider's key never comes back in an error, whatever the upstream echoes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.config.model import ProviderConfig
from gateway.errors import FailureKind, ProviderError
from gateway.providers import HttpProvider, UpstreamRequest, create_provider, http
from gateway.providers.http import _error_message
from gateway.wire import SSEEvent, WireFormat

KEY = "sk-prov-9Qz7Lw2Xc4Vb8Nm1Kj6Hg3Fd5Sa0"  # the provider's key: must never come back in an error
BODY: dict[str, Any] = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
EVENTS = [{"id": "c1", "choices": [{"delta": {"content": "Hel"}}]},
          {"id": "c1", "choices": [{"delta": {"content": "lo"}}]}]

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    headers: list[tuple[str, str]]  # as received, duplicates included
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


async def sse(request: web.Request, events: list[dict[str, Any]] = EVENTS, *, done: bool = True) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for event in events:  # one write per event: several network reads on the provider's side, usually
        await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
    if done:
        await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@dataclass
class Upstream:
    url: str
    seen: list[Seen] = field(default_factory=list)
    reply: Reply = sse

    def provider(self, kind: WireFormat = WireFormat.OPENAI, api_key: str = KEY, **extra: Any) -> HttpProvider:
        base_url = self.url + ("/v1" if kind is WireFormat.OPENAI else "")
        provider = create_provider(ProviderConfig(name="up", kind=kind, base_url=base_url, api_key=api_key,
                                                  timeout_s=5, connect_timeout_s=2, **extra))
        assert isinstance(provider, HttpProvider)
        return provider


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream("")

    async def handle(request: web.Request) -> web.StreamResponse:
        up.seen.append(Seen(request.path, list(request.headers.items()), await request.read()))
        return await up.reply(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    up.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield up
    finally:
        await runner.cleanup()


@pytest.fixture
async def providers() -> AsyncIterator[list[HttpProvider]]:
    """Providers a test made: closed afterwards."""
    made: list[HttpProvider] = []
    yield made
    for provider in made:
        await provider.aclose()


async def events_of(provider: HttpProvider, request: UpstreamRequest) -> list[SSEEvent]:
    return [event async for batch in provider.stream(request) for event in batch]


async def error_of(provider: HttpProvider, request: UpstreamRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await events_of(provider, request or UpstreamRequest(BODY))
    return info.value


def leaks(text: str, secret: str = KEY, run: int = 8) -> list[str]:
    """Every `run`-character piece of `secret` found in `text` (a cut-off key leaks as much as a whole one)."""
    return [secret[i:i + run] for i in range(len(secret) - run + 1) if secret[i:i + run] in text]


# ------------------------------------------------------------------------------------------- the request

async def test_streams_the_events_and_sends_the_kinds_endpoint_body_and_auth(
        upstream: Upstream, providers: list[HttpProvider]) -> None:
    openai = upstream.provider(WireFormat.OPENAI)
    anthropic = upstream.provider(WireFormat.ANTHROPIC, anthropic_version="2023-06-01")
    providers += [openai, anthropic]
    assert await events_of(openai, UpstreamRequest(BODY)) == [SSEEvent(e) for e in EVENTS]
    assert await events_of(anthropic, UpstreamRequest(BODY)) == [SSEEvent(e) for e in EVENTS]
    oa, an = upstream.seen
    assert oa.path == "/v1/chat/completions" and orjson.loads(oa.body) == BODY
    assert oa.values("authorization") == [f"Bearer {KEY}"] and oa.values("x-api-key") == []
    assert an.path == "/v1/messages" and orjson.loads(an.body) == BODY
    assert an.values("x-api-key") == [KEY] and an.values("authorization") == []
    assert an.values("anthropic-version") == ["2023-06-01"]
    for seen in (oa, an):
        assert seen.values("content-type") == ["application/json"]
        assert seen.values("accept") == ["text/event-stream"]


async def test_a_cookie_an_answer_sets_never_goes_out_with_a_later_request(
        upstream: Upstream, providers: list[HttpProvider]) -> None:
    async def set_cookie(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream",
                                           "set-cookie": "session=client-a; Path=/"})
        await resp.prepare(request)
        await resp.write(b"data: " + orjson.dumps(EVENTS[0]) + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp

    upstream.reply = set_cookie
    upstream.url = upstream.url.replace("127.0.0.1", "localhost")  # a host name: a jar would keep its cookies
    provider = upstream.provider(WireFormat.OPENAI)
    providers.append(provider)
    await events_of(provider, UpstreamRequest(BODY))  # client A's request: the answer sets a cookie
    upstream.reply = sse
    await events_of(provider, UpstreamRequest(BODY))  # client B's
    assert [seen.values("cookie") for seen in upstream.seen] == [[], []]


async def test_no_key_configured_sends_no_auth_header(upstream: Upstream, providers: list[HttpProvider]) -> None:
    providers += [upstream.provider(WireFormat.OPENAI, api_key=""), upstream.provider(WireFormat.ANTHROPIC, api_key="")]
    for provider in providers:
        await events_of(provider, UpstreamRequest(BODY))
    for seen in upstream.seen:
        assert seen.values("authorization") == [] and seen.values("x-api-key") == []


async def test_forwarded_headers_go_over_the_defaults_for_that_request_only(
        upstream: Upstream, providers: list[HttpProvider]) -> None:
    provider = upstream.provider(WireFormat.ANTHROPIC, anthropic_version="2023-06-01")
    providers.append(provider)
    forwarded = {"anthropic-beta": "tools-2024-04-04", "anthropic-version": "2024-10-22"}
    await events_of(provider, UpstreamRequest(BODY, forwarded))
    await events_of(provider, UpstreamRequest(BODY))
    with_them, without = upstream.seen
    assert with_them.values("anthropic-beta") == ["tools-2024-04-04"]
    assert with_them.values("anthropic-version") == ["2024-10-22"]  # the client's over the configured one, once
    assert with_them.values("x-api-key") == [KEY]
    assert without.values("anthropic-beta") == [] and without.values("anthropic-version") == ["2023-06-01"]


@pytest.mark.parametrize(("kind", "forwarded", "expected"), [
    (WireFormat.ANTHROPIC, "x-api-key", [KEY]),
    (WireFormat.ANTHROPIC, "X-Api-Key", [KEY]),
    (WireFormat.ANTHROPIC, "authorization", []),  # not the provider's auth header: still never forwarded
    (WireFormat.OPENAI, "authorization", [f"Bearer {KEY}"]),
    (WireFormat.OPENAI, "Authorization", [f"Bearer {KEY}"]),
    (WireFormat.OPENAI, "api-key", []),  # Azure's spelling
], ids=["anthropic", "anthropic-mixed-case", "anthropic-bearer", "openai", "openai-mixed-case", "openai-api-key"])
async def test_a_forwarded_header_never_replaces_or_adds_an_auth_header(
        upstream: Upstream, providers: list[HttpProvider], kind: WireFormat, forwarded: str,
        expected: list[str]) -> None:
    provider = upstream.provider(kind)
    providers.append(provider)
    await events_of(provider, UpstreamRequest(BODY, {forwarded: "client-secret", "anthropic-beta": "b"}))
    [seen] = upstream.seen
    assert seen.values(forwarded) == expected
    assert seen.values("anthropic-beta") == ["b"]  # the other forwarded header still goes
    assert not leaks(str(seen.headers), "client-secret", run=6)


async def test_a_redirect_is_not_followed(upstream: Upstream, providers: list[HttpProvider]) -> None:
    # Following it would hand the key headers to whatever server the Location names.
    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path == "/elsewhere":
            return await sse(request)
        raise web.HTTPTemporaryRedirect(upstream.url + "/elsewhere")

    upstream.reply = redirect
    provider = upstream.provider()
    providers.append(provider)
    err = await error_of(provider)
    assert err.kind is FailureKind.FAULT and err.status == 307 and err.message.startswith("up: HTTP 307")
    assert [seen.path for seen in upstream.seen] == ["/v1/chat/completions"]


# ------------------------------------------------------------------------------------------ the connection

def ends_when(released: asyncio.Event, peers: list[object]) -> Reply:
    """A stream whose events and `[DONE]` go in one write, and whose body ends (the chunked terminator) only once
    `released` is set: the reader has seen `[DONE]` before the end can have come. Records each request's peer."""
    async def reply(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in EVENTS) + b"data: [DONE]\n\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), 10)  # bounded: a test that fails must not hang the server
        await resp.write_eof()
        return resp
    return reply


async def test_a_body_that_ends_after_its_done_event_keeps_its_connection(
        upstream: Upstream, providers: list[HttpProvider]) -> None:
    # Released before its end, a response's connection is closed by aiohttp, not pooled: every such answer
    # cost the next request a new connection (a TLS handshake with a real provider).
    released, peers = asyncio.Event(), list[object]()
    upstream.reply = ends_when(released, peers)
    provider = upstream.provider()
    providers.append(provider)
    for _ in range(2):
        released.clear()
        events: list[SSEEvent] = []
        async for batch in provider.stream(UpstreamRequest(BODY)):
            events += batch
            if len(events) == len(EVENTS):
                released.set()  # the reader has read `[DONE]` (same write): the end comes after it
        assert events == [SSEEvent(e) for e in EVENTS]
    assert len(peers) == 2 and peers[0] == peers[1]  # one connection for both


async def test_an_error_read_to_its_end_keeps_its_connection(upstream: Upstream,
                                                             providers: list[HttpProvider]) -> None:
    # A burst of 429s (or 400s, returned to their clients as they are) must not cost a new connection each.
    peers: list[object] = []

    async def limited(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.Response(status=429, body=openai_error("slow down", "rate_limit_error"),
                            content_type="application/json")

    upstream.reply = limited
    provider = upstream.provider()
    providers.append(provider)
    for _ in range(2):
        assert (await error_of(provider)).kind is FailureKind.RATE_LIMITED
    unary = UpstreamRequest({"model": "m", "input": "hi"}, operation="embeddings")
    for _ in range(2):
        with pytest.raises(ProviderError):
            await provider.call(unary)
    assert len(peers) == 4 and len(set(peers)) == 1


async def test_a_body_that_never_ends_after_done_still_ends_the_stream_soon(
        upstream: Upstream, providers: list[HttpProvider], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "_BODY_END_S", 0.01)
    released, peers = asyncio.Event(), list[object]()
    upstream.reply = ends_when(released, peers)
    provider = upstream.provider()
    providers.append(provider)
    try:
        for _ in range(2):
            assert await events_of(provider, UpstreamRequest(BODY)) == [SSEEvent(e) for e in EVENTS]
        assert len(peers) == 2 and peers[0] != peers[1]  # the first was given up on: closed, not pooled
    finally:
        released.set()


# ---------------------------------------------------------------------------------- errors and the key

def respond(status: int, body: bytes, content_type: str = "application/json", **headers: str) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers={"content-type": content_type, **headers})
    return reply


def openai_error(message: str, type_: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": "invalid_api_key"}})


def anthropic_error(message: str, type_: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


@pytest.mark.parametrize(("kind", "reply", "failure", "status", "expected"), [
    (WireFormat.OPENAI, respond(401, openai_error(f"Incorrect API key provided: {KEY}. Find yours at ...")),
     FailureKind.CLIENT, 401, "up: HTTP 401: Incorrect API key provided: [redacted]. Find yours at ..."),
    (WireFormat.ANTHROPIC, respond(403, anthropic_error(f"key {KEY} may not use this model", "permission_error")),
     FailureKind.CLIENT, 403, "up: HTTP 403: key [redacted] may not use this model"),
    (WireFormat.OPENAI, respond(429, openai_error(f"{KEY}: quota exceeded, {KEY}", "rate_limit_error"),
                                **{"retry-after": "3"}),
     FailureKind.RATE_LIMITED, 429, "up: HTTP 429: [redacted]: quota exceeded, [redacted]"),
    (WireFormat.OPENAI, respond(502, f"<html>bad gateway for key={KEY}</html>".encode(), "text/html"),
     FailureKind.FAULT, 502, "up: HTTP 502: <html>bad gateway for key=[redacted]</html>"),
    (WireFormat.ANTHROPIC, respond(200, anthropic_error(f"invalid x-api-key {KEY}", "authentication_error")),
     FailureKind.FAULT, 200, "up: expected an event stream, got application/json (HTTP 200): "
                             "invalid x-api-key [redacted]"),
], ids=["openai-401", "anthropic-403", "429-twice", "html-502", "json-with-200"])
async def test_an_error_body_that_echoes_the_key_never_hands_it_on(
        upstream: Upstream, providers: list[HttpProvider], kind: WireFormat, reply: Reply, failure: FailureKind,
        status: int, expected: str) -> None:
    upstream.reply = reply
    provider = upstream.provider(kind)
    providers.append(provider)
    err = await error_of(provider)
    assert (err.kind, err.status, err.message) == (failure, status, expected)
    assert str(err) == err.message and not leaks(str(err)) and not leaks(repr(err))
    if status == 429:
        assert err.retry_after_s == 3.0


async def test_a_unary_call_redacts_the_key_and_forwards_no_auth_either(
        upstream: Upstream, providers: list[HttpProvider]) -> None:
    # Embeddings go through `call`, not `stream`: the same error handling, the same header rules.
    upstream.reply = respond(401, openai_error(f"Incorrect API key provided: {KEY}"))
    provider = upstream.provider()
    providers.append(provider)
    request = UpstreamRequest({"model": "e", "input": "hi"}, {"authorization": "Bearer client"}, operation="embeddings")
    with pytest.raises(ProviderError) as info:
        await provider.call(request)
    assert (info.value.kind, info.value.message) == (FailureKind.CLIENT,
                                                     "up: HTTP 401: Incorrect API key provided: [redacted]")
    [seen] = upstream.seen
    assert seen.path == "/v1/embeddings" and seen.values("authorization") == [f"Bearer {KEY}"]

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": []})

    upstream.reply = answer
    assert await provider.call(request) == {"object": "list", "data": []}


async def test_a_key_at_the_end_of_a_long_error_message_does_not_leak_in_part(
        upstream: Upstream, providers: list[HttpProvider]) -> None:
    prefix = "Incorrect API key provided: ".rjust(488, "x")  # the key starts 12 characters before the cut
    upstream.reply = respond(401, openai_error(prefix + KEY))
    provider = upstream.provider()
    providers.append(provider)
    err = await error_of(provider)
    assert not leaks(err.message), err.message[-60:]


async def test_a_key_at_the_end_of_a_long_raw_error_body_does_not_leak_in_part(
        upstream: Upstream, providers: list[HttpProvider]) -> None:
    upstream.reply = respond(500, ("key=".rjust(188, "y") + KEY).encode(), "text/plain")  # 12 before the cut
    provider = upstream.provider()
    providers.append(provider)
    err = await error_of(provider)
    assert not leaks(err.message), err.message[-60:]


async def test_a_connection_failure_names_the_provider_not_the_key(providers: list[HttpProvider]) -> None:
    provider = Upstream("http://127.0.0.1:9").provider()  # discard port: nothing listens
    providers.append(provider)
    err = await error_of(provider)
    assert err.kind is FailureKind.FAULT and err.error_type == "connection_error"
    assert err.message.startswith("up: connection failed (") and not leaks(err.message)


def test_redact() -> None:
    provider = Upstream("http://127.0.0.1:9").provider()
    assert provider.redact(f"a {KEY} b {KEY}") == "a [redacted] b [redacted]"
    assert provider.redact("nothing secret") == "nothing secret"
    # A piece of the key cut off at a bound (its start or its end, 6 characters or more) is cut out too.
    assert provider.redact(KEY[:-1]) == "[redacted]"
    assert provider.redact(f"x {KEY[:12]}") == "x [redacted]" and provider.redact(f"{KEY[-8:]} y") == "[redacted] y"
    keyless = Upstream("http://127.0.0.1:9").provider(api_key="")
    assert keyless.redact("any text at all") == "any text at all"  # an empty key is not found everywhere


# ------------------------------------------------------------------------------------------ _error_message

def test_error_message_reads_both_error_shapes_and_leaves_bounding_to_after_redaction() -> None:
    assert _error_message(openai_error("bad model", "invalid_request_error")) == ("bad model",
                                                                                  "invalid_request_error")
    assert _error_message(anthropic_error("overloaded", "overloaded_error")) == ("overloaded", "overloaded_error")
    assert _error_message(orjson.dumps({"error": {"message": "m" * 2000}})) == ("m" * 2000, "")  # bounded later
    assert _error_message(orjson.dumps({"error": {"type": None, "message": 7}})) == ("7", "")
    assert _error_message(orjson.dumps({"error": "a plain string"})) == ("", "")
    assert _error_message(b"[1, 2]") == ("", "")
    assert _error_message(b"  Service Unavailable\n") == ("Service Unavailable", "")
    assert _error_message(b"z" * 1000) == ("z" * 1000, "")
    assert _error_message(b"\xff\xfe not utf-8") == ("\ufffd\ufffd not utf-8", "")
    assert _error_message(b"<html/>", raw_excerpt=False) == ("", "")
    assert _error_message(b"") == ("", "")
