"""AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock's response streams use it.

A message is: total length (uint32, big-endian), headers length (uint32), CRC32 of those 8 bytes; the headers;
the payload; CRC32 of everything before it. A header is a name (uint8 length + UTF-8), a type byte and a
value; Bedrock sends strings (type 7: uint16 length + UTF-8), the others are read so any valid frame decodes.

`EventStreamDecoder` is incremental (feed it whatever a network read gave) and checks both CRCs: a corrupt or
truncated frame is a provider fault, never a half-read event. `read_bedrock_stream` turns Bedrock's frames into
the Anthropic events they carry. `encode_message` is what the simulator frames its answers with.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import orjson

from gateway.errors import FailureKind, ProviderError
from gateway.wire import SSEEvent

_PRELUDE = struct.Struct(">II")
_PRELUDE_LEN = 12  # the two lengths and their CRC
_MIN_MESSAGE = 16  # prelude and message CRC around no headers and no payload
MAX_MESSAGE = 16 * 1024 * 1024  # the format's own bound on one message
MAX_HEADERS = 128 * 1024
# Fixed-size header values by type: bool true/false (0, 1) have none; byte, short, int, long, timestamp, uuid.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_STRING, _BYTES = 7, 6

HeaderValue = str | bytes | int | bool


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad length, CRC or header)."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: Mapping[str, HeaderValue]
    payload: bytes


class EventStreamDecoder:
    """Whole messages out of a byte stream fed in pieces."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buffer
        buf += data
        out: list[Message] = []
        start = 0
        while len(buf) - start >= _PRELUDE_LEN:
            total, headers_len = _PRELUDE.unpack_from(buf, start)
            if zlib.crc32(memoryview(buf)[start:start + 8]) != struct.unpack_from(">I", buf, start + 8)[0]:
                raise EventStreamError("prelude CRC mismatch")
            if not _MIN_MESSAGE <= total <= MAX_MESSAGE or headers_len > min(MAX_HEADERS, total - _MIN_MESSAGE):
                raise EventStreamError(f"bad lengths (total {total}, headers {headers_len})")
            if len(buf) - start < total:
                break
            frame = memoryview(buf)[start:start + total]
            if zlib.crc32(frame[:-4]) != struct.unpack_from(">I", frame, total - 4)[0]:
                raise EventStreamError("message CRC mismatch")
            headers = _parse_headers(bytes(frame[_PRELUDE_LEN:_PRELUDE_LEN + headers_len]))
            out.append(Message(headers, bytes(frame[_PRELUDE_LEN + headers_len:total - 4])))
            frame.release()
            start += total
        if start:
            del buf[:start]
        return out


def _parse_headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    i, end = 0, len(raw)
    try:
        while i < end:
            name_len = raw[i]
            name = raw[i + 1:i + 1 + name_len].decode()
            i += 1 + name_len
            kind = raw[i]
            i += 1
            value: HeaderValue
            if kind in (_STRING, _BYTES):
                (size,) = struct.unpack_from(">H", raw, i)
                chunk = raw[i + 2:i + 2 + size]
                if len(chunk) != size:
                    raise EventStreamError("header value past the headers' end")
                value = chunk.decode() if kind == _STRING else chunk
                i += 2 + size
            elif kind in _FIXED:
                size = _FIXED[kind]
                if i + size > end:
                    raise EventStreamError("header value past the headers' end")
                value = kind == 0 if kind in (0, 1) else (
                    raw[i:i + size] if kind == 9 else int.from_bytes(raw[i:i + size], "big", signed=True))
                i += size
            else:
                raise EventStreamError(f"unknown header type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed header ({type(exc).__name__})") from None
    return headers


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string headers (all Bedrock sends)."""
    raw = b"".join(_string_header(name, value) for name, value in headers.items())
    total = _MIN_MESSAGE + len(raw) + len(payload)
    prelude = _PRELUDE.pack(total, len(raw))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    return head + struct.pack(">I", zlib.crc32(head))


def _string_header(name: str, value: str) -> bytes:
    key, data = name.encode(), value.encode()
    return bytes((len(key),)) + key + bytes((_STRING,)) + struct.pack(">H", len(data)) + data


# ---- Bedrock's InvokeModelWithResponseStream -----------------------------------------------------------------

# Exception frames by `:exception-type`: how the engine treats each, and the HTTP status Bedrock gives it.
_EXCEPTIONS: dict[str, tuple[FailureKind, int]] = {
    "throttlingException": (FailureKind.RATE_LIMITED, 429),
    "serviceUnavailableException": (FailureKind.FAULT, 503),
    "internalServerException": (FailureKind.FAULT, 500),
    "modelStreamErrorException": (FailureKind.FAULT, 424),
    "modelTimeoutException": (FailureKind.FAULT, 408),
    "validationException": (FailureKind.CLIENT, 400),
}


def bedrock_event(message: Message, name: str) -> SSEEvent | None:
    """The Anthropic event in a Bedrock `chunk` message (None for another event type); an exception or error
    message raises `ProviderError`."""
    kind = message.headers.get(":message-type")
    if kind != "event":
        raise _stream_error(message, name)
    if message.headers.get(":event-type") != "chunk":
        return None  # nothing else is defined for this stream; a future event type is not ours to read
    return _chunk_event(message.payload, name)


def _chunk_event(payload: bytes, name: str) -> SSEEvent:
    try:
        chunk = orjson.loads(payload)
        data = orjson.loads(base64.b64decode(chunk["bytes"], validate=True))
    except (orjson.JSONDecodeError, binascii.Error, KeyError, TypeError):
        raise ProviderError(FailureKind.FAULT, f"{name}: malformed chunk in event stream",
                            error_type="bad_response") from None
    if not isinstance(data, dict):
        raise ProviderError(FailureKind.FAULT, f"{name}: event is not a JSON object", error_type="bad_response")
    event = data.get("type")
    return SSEEvent(data, event if isinstance(event, str) else None)


def _stream_error(message: Message, name: str) -> ProviderError:
    headers = message.headers
    if headers.get(":message-type") == "exception":
        exc_type = _text(headers.get(":exception-type", "exception"))
        try:
            body = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            body = None
        text = str(body.get("message", "")) if isinstance(body, dict) else ""  # redacted, then bounded, upstream
        kind, status = _EXCEPTIONS.get(exc_type, (FailureKind.FAULT, 500))
        return ProviderError(kind, f"{name}: {exc_type}" + (f": {text}" if text else ""), status=status,
                             error_type=exc_type)
    code, text = _text(headers.get(":error-code", "error")), _text(headers.get(":error-message", ""))
    return ProviderError(FailureKind.FAULT, f"{name}: stream error {code}: {text}", error_type=code)


def _text(value: HeaderValue) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def read_bedrock_stream(content: aiohttp.StreamReader, name: str) -> AsyncIterator[list[SSEEvent]]:
    """The Anthropic events of a Bedrock response stream, a batch per network read (the `StreamDecoder` of
    the bedrock kind). Events before an exception in the same read are yielded before it is raised."""
    decoder = EventStreamDecoder()
    while chunk := await content.readany():
        try:
            messages = decoder.feed(chunk)
        except EventStreamError as exc:
            raise ProviderError(FailureKind.FAULT, f"{name}: invalid event stream ({exc})",
                                error_type="bad_response") from None
        batch: list[SSEEvent] = []
        for message in messages:
            try:
                event = bedrock_event(message, name)
            except ProviderError:
                if batch:
                    yield batch  # the events before the failure still count (one may be the first token)
                raise
            if event is not None:
                batch.append(event)
        if batch:
            yield batch
    if decoder.pending:
        # The body ended inside a frame: the stream was cut, not finished.
        raise ProviderError(FailureKind.FAULT, f"{name}: event stream ended inside a message",
                            error_type="bad_response")
