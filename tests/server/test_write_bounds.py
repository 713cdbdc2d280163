"""A client that does not read cannot hold a request: the writers bound a write that could wait for it, and
leave unbounded only a write that cannot wait (the transport takes it whole, under its high-water mark), which
saves a fast answer a timer.

The slow client here is real: a socket with a small receive buffer that never reads, on a real aiohttp server,
so the write really stalls once the kernel's buffers are full."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiohttp import web

from gateway.server import writing
from gateway.server.writing import EventStreamResponse, finish_stream, write_body

# Far more than loopback's socket buffers can hold (a few MiB each way), so a client that does not read stalls it.
_HUGE = 64 * 1024 * 1024


@dataclass
class Record:
    status: int = 200
    error_type: str | None = None

    def fail(self, status: int, error_type: str | None) -> None:
        self.status, self.error_type = status, error_type


@dataclass
class Scope:
    """The part of `RequestScope` the writers use, around a real request."""

    request: web.Request
    deadline: float
    responded: bool = False
    record: Record = field(default_factory=Record)

    def client_left(self) -> None:
        self.record.fail(499, "client_disconnected")


Handler = Callable[[Scope], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[int, asyncio.Future[Scope]]]]]:
    runners: list[web.AppRunner] = []

    async def start(write: Handler) -> tuple[int, asyncio.Future[Scope]]:
        done: asyncio.Future[Scope] = asyncio.get_running_loop().create_future()

        async def handler(request: web.Request) -> web.StreamResponse:
            scope = Scope(request, deadline=asyncio.get_running_loop().time())  # the deadline has passed
            try:
                return await write(scope)
            finally:
                done.set_result(scope)

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner.addresses[0][1], done

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The deadlines of the timeout contexts the writers open."""
    opened: list[float] = []
    original = asyncio.timeout_at

    def timeout_at(when: float) -> asyncio.Timeout:
        opened.append(when)
        return original(when)

    monkeypatch.setattr(writing.asyncio, "timeout_at", timeout_at)
    return opened


async def request_without_reading(port: int) -> socket.socket:
    """A client that sends its request and then never reads: its receive buffer is kept small."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await asyncio.get_running_loop().sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


async def read_all(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return data


async def test_a_small_answer_is_written_without_a_timer(serve: Any, timers: list[float]) -> None:
    port, done = await serve(lambda scope: write_body(scope, b'{"ok":true}', {}))
    assert (await read_all(port)).endswith(b'\r\n\r\n{"ok":true}')
    scope = await done
    assert (scope.record.status, scope.responded, timers) == (200, True, [])


async def test_a_large_answer_to_a_client_that_does_not_read_ends_as_499(serve: Any, timers: list[float]) -> None:
    port, done = await serve(lambda scope: write_body(scope, b"x" * _HUGE, {}))
    sock = await request_without_reading(port)
    try:
        scope = await asyncio.wait_for(done, 30)  # the write gives up after _TAIL_WRITE_S, not never
    finally:
        sock.close()
    assert (scope.record.status, scope.record.error_type, scope.responded) == (499, "client_not_reading", True)
    assert len(timers) == 1


async def test_a_stream_end_too_large_to_go_at_once_is_bounded(serve: Any, timers: list[float]) -> None:
    async def write(scope: Scope) -> web.StreamResponse:
        resp = EventStreamResponse(status=200, headers={"content-type": "text/event-stream"})
        await resp.prepare(scope.request)
        return await finish_stream(cast(Any, scope), resp, b"data: " + b"x" * _HUGE + b"\n\n")

    port, done = await serve(write)
    sock = await request_without_reading(port)
    try:
        scope = await asyncio.wait_for(done, 30)
    finally:
        sock.close()
    assert (scope.record.status, scope.responded, len(timers)) == (200, True, 1)  # the status says what ended it


@dataclass
class Transport:
    buffered: int
    high: int = 65536

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.high // 4, self.high


@pytest.mark.parametrize(("transport", "size", "cannot_wait"), [
    (Transport(0), 100, True),
    (Transport(0), 65536 - writing._HEADER_ROOM, True),
    (Transport(0), 65536 - writing._HEADER_ROOM + 1, False),  # could go over the mark: the protocol pauses
    (Transport(1), 100, False),  # something is already waiting for the client
    (None, 100, False),  # no transport (the client left): let the bounded path find out
])
def test_only_a_write_the_transport_takes_whole_is_unbounded(transport: Transport | None, size: int,
                                                             cannot_wait: bool) -> None:
    scope = Scope(request=cast(Any, type("Req", (), {"transport": transport})()), deadline=0.0)
    assert writing._cannot_wait(cast(Any, scope), size) is cannot_wait
