"""A deliberately misbehaving upstream for fault tests: a raw asyncio TCP server on 127.0.0.1.

Raw TCP rather than aiohttp.web, so a behaviour can do what no well-behaved HTTP server would: reset the
connection (RST) at any byte, stall between chunks, accept and never answer, send a wrong content type, an
error body with status 200, an endless line. A behaviour is an async function of one `Conn`; swap
`RogueUpstream.behaviour` between requests. Every response carries `Connection: close`, so each request
gets a fresh connection and a fault can never be blamed on connection reuse.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson

HOST = "127.0.0.1"


@dataclass(slots=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(slots=True)
class Conn:
    """One accepted connection, with the verbs a behaviour is built from."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    upstream: RogueUpstream
    request: SeenRequest | None = None

    async def read_request(self) -> SeenRequest:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        self.request = SeenRequest(method, path, headers, body)
        self.upstream.seen.append(self.request)
        return self.request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, status: int = 200, content_type: str | None = "text/event-stream",
                   *, chunked: bool = True, length: int | None = None,
                   extra: Sequence[tuple[str, str]] = ()) -> None:
        lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Whatever'}", "Connection: close"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif chunked:
            lines.append("Transfer-Encoding: chunked")
        lines.extend(f"{name}: {value}" for name, value in extra)
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (only after `head(chunked=True)`)."""
        if data:
            await self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def end_chunks(self) -> None:
        await self.send(b"0\r\n\r\n")
        self.close()

    def close(self) -> None:
        """A clean close (FIN)."""
        self.writer.close()

    def reset(self) -> None:
        """An abortive close: SO_LINGER 0 makes the kernel send RST instead of FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def hang(self) -> None:
        """Say nothing more, ever: ends when the peer leaves or the upstream stops."""
        await self.reader.read()  # returns at EOF, i.e. when the gateway closes the connection
        if not self.upstream.stopping.is_set():
            self.upstream.peer_closed += 1
        await self.upstream.stopping.wait()  # the peer left: still never answer


Behaviour = Callable[[Conn], Awaitable[None]]


class RogueUpstream:
    """`async with RogueUpstream(behaviour) as up:` then point a provider at `up.base_url` (+ "/v1" for OpenAI)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.seen: list[SeenRequest] = []
        self.connections = 0
        self.peer_closed = 0  # connections the gateway closed while a behaviour was hanging on them
        self.stopping = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        # Behaviours end by themselves (never cancelled: asyncio logs a cancelled connection callback).
        self.stopping.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RogueUpstream:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await self.behaviour(Conn(reader, writer, self))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway hung up first: that is its right
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------------------------- wire fragments

def openai_chunk(content: str | None = None, *, role: bool = False, finish: str | None = None,
                 usage: bool = False) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
        delta["content"] = ""
    if content is not None:
        delta["content"] = content
    data: dict[str, Any] = {"id": "chatcmpl-rogue", "object": "chat.completion.chunk", "created": 1,
                            "model": "rogue-model",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        data = {"id": "chatcmpl-rogue", "object": "chat.completion.chunk", "created": 1, "model": "rogue-model",
                "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    return b"data: " + orjson.dumps(data) + b"\n\n"


OPENAI_DONE = b"data: [DONE]\n\n"
OPENAI_HEAD = openai_chunk(role=True)  # role-only: not a content token
OPENAI_TOKENS = [openai_chunk("Hello"), openai_chunk(" world")]
OPENAI_TAIL = openai_chunk(finish="stop") + openai_chunk(usage=True) + OPENAI_DONE
OPENAI_ANSWER = "Hello world"


def anthropic_event(data: dict[str, Any]) -> bytes:
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


ANTHROPIC_HEAD = anthropic_event({"type": "message_start", "message": {
    "id": "msg_rogue", "type": "message", "role": "assistant", "model": "rogue-claude", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}}) + \
    anthropic_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}) + \
    anthropic_event({"type": "ping"})
ANTHROPIC_TOKENS = [anthropic_event({"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": piece}}) for piece in ("Hello", " world")]
ANTHROPIC_TAIL = anthropic_event({"type": "content_block_stop", "index": 0}) + anthropic_event(
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 2}}) + anthropic_event({"type": "message_stop"})


# ------------------------------------------------------------------------------------------ behaviours

def healthy(kind: str = "openai") -> Behaviour:
    """A correct, complete stream: proves the provider works again after a fault."""
    head, tokens, tail = ((OPENAI_HEAD, OPENAI_TOKENS, OPENAI_TAIL) if kind == "openai"
                          else (ANTHROPIC_HEAD, ANTHROPIC_TOKENS, ANTHROPIC_TAIL))

    async def behave(conn: Conn) -> None:
        await conn.read_request()
        await conn.head()
        for piece in (head, *tokens, tail):
            await conn.chunk(piece)
        await conn.end_chunks()
    return behave


def stream_then(pieces: Sequence[bytes], then: str, *, gate: asyncio.Event | None = None) -> Behaviour:
    """A 200 event stream of `pieces` (each its own chunk), then `then`: "reset", "close" (clean FIN with the
    chunked body unfinished), "eof" (chunked body properly ended), or "stall" (silence until the peer leaves).

    `gate`: wait for it before `then`, e.g. until the client has seen the first token, so a reset cannot
    overtake data the gateway has not read yet (an aiohttp reader raises a pending error before buffered data).
    """

    async def behave(conn: Conn) -> None:
        await conn.read_request()
        await conn.head()
        for piece in pieces:
            await conn.chunk(piece)
        if gate is not None:
            await gate.wait()
        if then == "reset":
            conn.reset()
        elif then == "close":
            conn.close()
        elif then == "eof":
            await conn.end_chunks()
        elif then == "stall":
            await conn.hang()
        else:
            raise ValueError(then)
    return behave


def respond(status: int, content_type: str | None, body: bytes, *,
            extra: Sequence[tuple[str, str]] = ()) -> Behaviour:
    """A whole response with a Content-Length."""

    async def behave(conn: Conn) -> None:
        await conn.read_request()
        await conn.head(status, content_type, length=len(body), extra=extra)
        await conn.send(body)
        conn.close()
    return behave


def reset_after_request() -> Behaviour:
    async def behave(conn: Conn) -> None:
        await conn.read_request()
        conn.reset()
    return behave


def close_after_request() -> Behaviour:
    async def behave(conn: Conn) -> None:
        await conn.read_request()
        conn.close()
    return behave


def never_answer(*, read: bool = True) -> Behaviour:
    """Accept the connection (and read the request, unless `read=False`), then say nothing."""

    async def behave(conn: Conn) -> None:
        if read:
            await conn.read_request()
        await conn.hang()
    return behave


def huge_line(prefix: bytes, size: int, *, status: int = 200, content_type: str = "text/event-stream") -> Behaviour:
    """A chunked response whose body is `prefix` then `size` bytes with no newline, sent in 64 KiB chunks
    for as long as the gateway keeps reading."""

    async def behave(conn: Conn) -> None:
        await conn.read_request()
        await conn.head(status, content_type)
        await conn.chunk(prefix)
        block = b"x" * 65536
        sent = 0
        while sent < size:
            await conn.chunk(block)
            sent += len(block)
        await conn.end_chunks()
    return behave


