"""Writing a streamed winner: batches that are already here go out together, and none waits for the next one.

Each write to a client is a system call and a wake-up of its reader; a fast provider's whole answer arrives in
one read, so its stream (headers, events, terminator, end of body) should cost one write, not five. What must
not change: a batch that the next one would have to be waited for is written at once, before the wait.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_writer import StreamWriter

from gateway.engine import StreamBroken
from gateway.errors import FailureKind, GatewayError, ProviderError
from gateway.server.writing import EventStreamResponse, finish_stream, pump
from gateway.wire import SSEEvent


@dataclass
class Step:
    events: list[SSEEvent]
    ready_after: bool  # whether the next batch is already here once this one was handed over
    error: ProviderError | None = None  # raised instead of handing over `events`


@dataclass
class FakeWinner:
    """The part of `StreamingWinner` the writer uses; `log` says when each batch was asked for."""

    steps: list[Step]
    log: list[str]
    ready: bool = True  # the head is here at the commit point

    async def __aenter__(self) -> FakeWinner:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None

    def __aiter__(self) -> FakeWinner:
        return self

    async def __anext__(self) -> list[SSEEvent]:
        self.log.append("next")
        if not self.steps:
            raise StopAsyncIteration
        step = self.steps.pop(0)
        if step.error is not None:
            raise StreamBroken(step.error)
        self.ready = step.ready_after
        return step.events


@dataclass
class FakeResponse:
    log: list[str]
    prepared: bool = False
    written: list[bytes] = field(default_factory=list)

    async def prepare(self, request: Any) -> None:
        self.prepared = True

    async def write(self, data: bytes) -> None:
        self.log.append(f"write {data.decode()}")
        self.written.append(data)

    async def write_eof(self, data: bytes = b"") -> None:
        self.log.append(f"write_eof {data.decode()}")
        self.written.append(data)


@dataclass
class FakeRecord:
    status: int = 200


@dataclass
class FakeRequest:
    transport: None = None  # no transport: the writers bound every write (tests/server/test_write_bounds.py)


@dataclass
class FakeScope:
    deadline: float
    request: FakeRequest = field(default_factory=FakeRequest)
    responded: bool = False
    record: FakeRecord = field(default_factory=FakeRecord)
    failures: list[str] = field(default_factory=list)

    def failed(self, err: GatewayError, error_type: str | None = None) -> None:
        self.record.status = err.status
        self.failures.append(error_type or err.type)

    def client_left(self) -> None:
        self.record.status = 499


def ev(text: str) -> SSEEvent:
    return SSEEvent({"t": text})


def frame(events: list[SSEEvent]) -> bytes:
    return b"".join(str(e.data["t"]).encode() for e in events)


async def write(steps: list[Step], tail: bytes = b"|end") -> tuple[list[str], FakeScope]:
    log: list[str] = []
    scope = FakeScope(deadline=asyncio.get_running_loop().time() + 60)
    resp = FakeResponse(log)
    winner = FakeWinner(steps, log)
    failure, unwritten = await pump(cast(Any, scope), cast(Any, winner), cast(Any, resp), frame)
    if failure is not None:
        tail = f"|error {failure.status}".encode()
    await finish_stream(cast(Any, scope), cast(Any, resp), unwritten + tail)
    return log, scope


async def test_a_stream_that_came_whole_is_one_write_with_its_end() -> None:
    log, _ = await write([Step([ev("h")], True), Step([ev("a"), ev("b")], True), Step([ev("z")], True)])
    assert log == ["next", "next", "next", "next", "write_eof habz|end"]


async def test_a_batch_is_written_before_the_next_one_is_waited_for() -> None:
    # The head, then a slow provider: each batch goes out before the stream asks for the next.
    log, _ = await write([Step([ev("h")], False), Step([ev("a")], False), Step([ev("b")], True)])
    assert log == ["next", "write h", "next", "write a", "next", "next", "write_eof b|end"]


async def test_batches_already_here_go_together_then_the_rest_as_it_comes() -> None:
    # The head and the events read with it: one write; then a batch that had to be waited for, alone.
    log, _ = await write([Step([ev("h")], True), Step([ev("c")], False), Step([ev("d")], False)])
    assert log == ["next", "next", "write hc", "next", "write d", "next", "write_eof |end"]


async def test_events_held_back_still_reach_the_client_before_the_error() -> None:
    broken = ProviderError(FailureKind.FAULT, "p: stream broken", error_type="connection_error")
    log, scope = await write([Step([ev("h")], True), Step([ev("c")], True), Step([], True, error=broken)])
    assert log == ["next", "next", "next", "write_eof hc|error 502"]
    assert scope.failures == ["connection_error"]


async def test_a_streamed_answer_sends_its_headers_with_its_first_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real aiohttp server: the transport writes the handler's response makes, from prepare to the end of body.
    writes: list[bytes] = []
    counting = False
    original_write, original_writelines = StreamWriter._write, StreamWriter._writelines

    def write(self: StreamWriter, chunk: Any) -> None:
        if counting:
            writes.append(bytes(chunk))
        original_write(self, chunk)

    def writelines(self: StreamWriter, chunks: Any) -> None:
        if counting:
            writes.append(b"".join(chunks))
        original_writelines(self, chunks)

    monkeypatch.setattr(StreamWriter, "_write", write)
    monkeypatch.setattr(StreamWriter, "_writelines", writelines)

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal counting
        counting = True
        resp = EventStreamResponse(status=200, headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write_eof(b"data: {}\n\n")
        counting = False
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{runner.addresses[0][1]}/") as resp:
            assert await resp.read() == b"data: {}\n\n"
    finally:
        await runner.cleanup()
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200") and writes[0].endswith(b"0\r\n\r\n")
