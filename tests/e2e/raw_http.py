"""A raw HTTP/1.1 client for the fuzz tests: bytes in, the whole response out, judged for completeness.

The fuzzers send what no HTTP library would (broken bytes, bad headers) and must see exactly what came back,
including a response cut short, which an HTTP library would hide or raise on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def exchange(port: int, request: bytes, timeout_s: float) -> bytes:
    """Send `request` to 127.0.0.1:`port` and read until the server closes (or `timeout_s` passes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    try:
        writer.write(request)
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionResetError:
        pass  # e.g. an early answer (413) with part of our body unread; judged by parse_reply
    finally:
        writer.transport.abort()
    return bytes(received)


def parse_reply(raw: bytes) -> Reply:
    """A complete HTTP/1.1 response (after any interim 1xx), or an AssertionError saying how it is incomplete."""
    while raw.startswith(b"HTTP/1.1 1"):  # interim responses (100 Continue): the final one follows
        raw = raw.partition(b"\r\n\r\n")[2]
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head: {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") != "chunked":
        length = int(headers.get("content-length", "0"))
        assert len(rest) == length, f"body cut: {len(rest)} of {length} bytes"
        return Reply(status, headers, rest)
    body = bytearray()
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        assert sep, f"stream cut mid-chunk (no last chunk) after {bytes(body[-300:])!r}"
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return Reply(status, headers, bytes(body))
        assert len(rest) >= size + 2, f"stream cut mid-chunk after {bytes(body[-300:])!r}"
        body += rest[:size]
        rest = rest[size + 2:]

