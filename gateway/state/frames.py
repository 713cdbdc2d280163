"""The framing between gateway workers and their hub (`gateway.state.hub`) on a Unix socket.

A frame is a 4-byte big-endian length, then an orjson array (the header: the operation and its arguments),
then, after a newline, optional raw bytes (a cached answer, a metrics exposition). orjson never writes a raw
newline, so the first newline ends the header and the payload needs no escaping or base64. An asyncio
`Protocol` rather than streams: a frame is handled in `data_received`, with no task switch per message.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, cast

import orjson

Header = list[Any]
FrameHandler = Callable[[Header, bytes], None]

HUB_ENV = "GATEWAY_STATE_HUB"  # the hub's socket path, set by `supervise` for its workers
WORKER_ENV = "GATEWAY_WORKER"  # the worker's number (1..N), for logs and the `worker` label of gauges

# A worker waiting on another's lease gets a miss after this long at the latest and goes upstream itself.
# Only a backstop: the lease ends with the holder's put, its release, or its connection.
LEASE_WAIT_S = 60.0
# A scrape waits this long for the other workers' expositions; one that has not answered is left out.
COLLECT_TIMEOUT_S = 2.0

_LENGTH = struct.Struct(">I")
# A frame never needs more: answers are bounded by the alias's max_mb (64 MB by default), expositions are
# far smaller. A length past it means a corrupt stream, and the connection is dropped.
MAX_FRAME_BYTES = 256 * 1024 * 1024


def encode(header: Header, payload: bytes = b"") -> bytes:
    body = orjson.dumps(header) + b"\n" + payload
    return _LENGTH.pack(len(body)) + body


class FrameProtocol(asyncio.Protocol):
    """Splits the byte stream into frames for `on_frame`; `send` writes one. `on_lost` runs once, when the
    connection closes for any reason."""

    def __init__(self, on_frame: FrameHandler, on_lost: Callable[[FrameProtocol], None]) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 4:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                self.close()
                return
            end = start + 4 + length
            if len(buffer) < end:
                break
            frame = bytes(buffer[start + 4:end])
            start = end
            header, _, payload = frame.partition(b"\n")
            try:
                decoded = orjson.loads(header)
            except orjson.JSONDecodeError:
                self.close()
                return
            if isinstance(decoded, list) and decoded:
                self._on_frame(decoded, payload)
        del buffer[:start]

    def send(self, header: Header, payload: bytes = b"") -> bool:
        """False if the connection is gone (nothing sent)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(encode(header, payload))
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_lost(self)
