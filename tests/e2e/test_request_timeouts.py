"""Slow and silent clients, over real sockets on 127.0.0.1: every phase of reading a request has a time bound.

- a head that trickles in (slowloris) is answered 408 and closed at `server.header_timeout_s`;
- a connection that never sends a byte is closed at the same bound;
- a keep-alive connection left idle after a response is closed at `server.idle_timeout_s`;
- a body that stops halfway gets a 408 in the door's shape at `server.body_timeout_s`, and its request leaves
  the in-flight count (which reload retirement and the graceful drain wait for).

The bounds are short here (fractions of a second); each test waits for the gateway to act, never for a fixed
time, and fails (never hangs) past a generous deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.simulator import SimulatedProvider
from tests.e2e.harness import GATEWAY_KEY, Running, config_for, running

HEAD_S = 0.4
BODY_S = 0.4
IDLE_S = 0.4
BOUND_S = 5.0  # fail, never hang, if the gateway does not act; far above the bounds on a loaded machine


async def _gateway(**server: Any) -> AsyncIterator[Running]:
    async with SimulatedProvider(name="sim", seed=5) as sim:
        config = config_for({"sim": ("openai", sim)},
                            {"chat": {"targets": [{"provider": "sim", "model": "m"}], "hedge": "off"}},
                            server={"header_timeout_s": HEAD_S, "body_timeout_s": BODY_S,
                                    "idle_timeout_s": IDLE_S, **server})
        async with running(config) as r:
            yield r


@pytest.fixture
async def gw() -> AsyncIterator[Running]:
    async for r in _gateway():
        yield r


@pytest.fixture
async def gw_long_idle() -> AsyncIterator[Running]:
    # Only the head bound is short: proves it is the head timer, not the idle timer, that acts.
    async for r in _gateway(idle_timeout_s=60):
        yield r


def port_of(r: Running) -> int:
    return int(r.url.rsplit(":", 1)[1])


def open_connections(r: Running) -> int:
    assert r.runner is not None and r.runner.server is not None
    return len(r.runner.server.connections)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the gateway sends until it closes the connection (fails past BOUND_S)."""
    received = bytearray()
    async with asyncio.timeout(BOUND_S):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return bytes(received)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one response with a Content-Length."""
    async with asyncio.timeout(BOUND_S):
        status = int((await reader.readline()).split(b" ")[1])
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, await reader.readexactly(length)


def request_head(path: str, length: int, *, door: str = "openai", close: bool = False) -> bytes:
    auth = f"x-api-key: {GATEWAY_KEY}" if door == "anthropic" else f"Authorization: Bearer {GATEWAY_KEY}"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}\r\n"
            f"Content-Length: {length}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n").encode()


BODY = orjson.dumps({"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})


async def wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_slowloris_heads_are_cut_at_the_header_bound(gw_long_idle: Running) -> None:
    r = gw_long_idle
    head = request_head("/v1/chat/completions", len(BODY))
    clients = [await asyncio.open_connection("127.0.0.1", port_of(r)) for _ in range(20)]
    await wait_for(lambda: open_connections(r) == 20, "20 connections")
    started = time.monotonic()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        # One byte of the head at a time, never finishing it, until the gateway gives up on it.
        async def feed() -> None:
            for byte in head[:-2]:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)
        feeder = asyncio.create_task(feed())
        try:
            return await read_until_closed(reader)
        finally:
            feeder.cancel()
            writer.transport.abort()

    answers = await asyncio.gather(*(trickle(reader, writer) for reader, writer in clients))
    waited = time.monotonic() - started
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[0][:200]
    assert HEAD_S * 0.8 <= waited < BOUND_S
    await wait_for(lambda: open_connections(r) == 0, "the connections to be gone")
    assert r.gateway.in_flight == 0


async def test_connection_that_never_sends_a_byte_is_closed(gw_long_idle: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw_long_idle))
    started = time.monotonic()
    answer = await read_until_closed(reader)
    writer.transport.abort()
    assert HEAD_S * 0.8 <= time.monotonic() - started < BOUND_S
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_complete_heads_are_not_cut(gw_long_idle: Running) -> None:
    """The head bound is per request: two requests on one keep-alive connection, each head sent in pieces over
    less than the bound, and the second sent well after the first bound would have expired, are answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw_long_idle))
    try:
        for _ in range(2):
            head = request_head("/v1/chat/completions", len(BODY))
            for piece in (head[:20], head[20:]):
                writer.write(piece)
                await asyncio.sleep(HEAD_S / 4)
            writer.write(BODY)
            status, _ = await read_response(reader)
            assert status == 200
            await asyncio.sleep(HEAD_S)  # idle (not a head in progress): only the 60 s idle bound applies
    finally:
        writer.transport.abort()


async def test_a_later_head_that_trickles_in_on_a_keep_alive_connection_is_cut(gw_long_idle: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw_long_idle))
    try:
        writer.write(request_head("/v1/chat/completions", len(BODY)) + BODY)
        status, _ = await read_response(reader)
        assert status == 200
        head = request_head("/v1/chat/completions", len(BODY))
        writer.write(head[:1])  # the next request's first byte arms its head timer: nothing more comes
        started = time.monotonic()
        answer = await read_until_closed(reader)
        assert answer.startswith(b"HTTP/1.1 408 ") and HEAD_S * 0.8 <= time.monotonic() - started < BOUND_S
    finally:
        writer.transport.abort()


async def test_heads_that_come_whole_arm_no_timer(gw_long_idle: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.server.connections import BoundedRequestHandler

    armed: list[int] = []
    real_arm = BoundedRequestHandler._arm

    def counting_arm(self: BoundedRequestHandler) -> None:
        armed.append(id(self))
        real_arm(self)

    monkeypatch.setattr(BoundedRequestHandler, "_arm", counting_arm)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw_long_idle))
    try:
        for _ in range(3):
            writer.write(request_head("/v1/chat/completions", len(BODY)) + BODY)
            status, _ = await read_response(reader)
            assert status == 200
    finally:
        writer.transport.abort()
    assert len(armed) == 1  # at connect only: each whole head was parsed before a timer was needed


async def test_idle_keep_alive_connection_is_closed(gw: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    async with asyncio.timeout(BOUND_S):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
    answered = time.monotonic()
    rest = await read_until_closed(reader)  # the rest of the answer, then the close
    writer.transport.abort()
    assert b'"status"' in rest and b"408" not in rest
    assert IDLE_S * 0.8 <= time.monotonic() - answered < BOUND_S
    await wait_for(lambda: open_connections(gw) == 0, "the connection to be gone")


@pytest.mark.parametrize(("door", "path"), [("openai", "/v1/chat/completions"), ("anthropic", "/v1/messages")])
async def test_half_a_body_gets_a_408_and_leaves_the_in_flight_count(gw: Running, door: str, path: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    writer.write(request_head(path, len(BODY), door=door) + BODY[: len(BODY) // 2])
    await wait_for(lambda: gw.gateway.in_flight == 1, "the request to be in flight")
    started = time.monotonic()
    status, body = await read_response(reader)
    writer.transport.abort()
    assert BODY_S * 0.8 <= time.monotonic() - started < BOUND_S
    assert status == 408, body
    error = orjson.loads(body)
    if door == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "timeout_error"
    else:
        assert set(error["error"]) == {"message", "type", "param", "code"}
        assert error["error"]["type"] == "timeout_error"
    assert f"{BODY_S:g} s" in error["error"]["message"]
    assert gw.gateway.in_flight == 0 and gw.gateway.idle.is_set()  # a reload or a drain is not held up


def test_defaults_are_bounded() -> None:
    from gateway.config import parse_config
    config = parse_config({"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1"}},
                           "models": {"m": {"targets": [{"provider": "p", "model": "x"}]}}}, {})
    server = config.server
    assert 0 < server.header_timeout_s <= 30 and 0 < server.body_timeout_s <= 120
    assert 0 < server.idle_timeout_s < 90
