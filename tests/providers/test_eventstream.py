"""The AWS event-stream decoder against botocore's own (`EventStreamBuffer`), and Bedrock's frames to events."""

from __future__ import annotations

import base64
import struct
import uuid
import zlib
from typing import Any

import orjson
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import FailureKind, ProviderError
from gateway.providers.eventstream import EventStreamDecoder, EventStreamError, encode_message, read_bedrock_stream
from gateway.simulator.bedrock_wire import BedrockEncoder
from gateway.simulator.chat import ChatRequest, Finish

CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}


def botocore_messages(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(dict(m.headers), m.payload) for m in buffer]


def ours(data: bytes, sizes: list[int] | None = None) -> list[tuple[dict[str, Any], bytes]]:
    decoder = EventStreamDecoder()
    out = []
    pos = 0
    for size in sizes or [len(data)]:
        out.extend(decoder.feed(data[pos:pos + size]))
        pos += size
    out.extend(decoder.feed(data[pos:]))
    assert decoder.pending == 0
    return [(dict(m.headers), m.payload) for m in out]


headers_st = st.dictionaries(st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 256),
                             st.text(max_size=200), max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(headers_st, st.binary(max_size=2000)), min_size=1, max_size=5),
       st.lists(st.integers(min_value=1, max_value=50), max_size=40))
def test_ours_and_botocores_decoder_agree_however_the_bytes_are_split(
        messages: list[tuple[dict[str, str], bytes]], sizes: list[int]) -> None:
    data = b"".join(encode_message(h, p) for h, p in messages)
    assert ours(data, sizes) == botocore_messages(data) == [(h, p) for h, p in messages]


def test_every_header_type_decodes_as_botocore_decodes_it() -> None:
    """A frame built by hand with all ten header types (encode_message writes only strings)."""
    def header(name: str, kind: int, value: bytes) -> bytes:
        return bytes((len(name),)) + name.encode() + bytes((kind,)) + value

    the_uuid = uuid.UUID("12345678-1234-5678-1234-567812345678").bytes
    raw = b"".join((header("t", 0, b""), header("f", 1, b""), header("b", 2, b"\xff"),
                    header("s", 3, struct.pack(">h", -2)), header("i", 4, struct.pack(">i", 70000)),
                    header("l", 5, struct.pack(">q", -(2**40))),
                    header("by", 6, struct.pack(">H", 3) + b"\x00\x01\x02"),
                    header("str", 7, struct.pack(">H", 2) + b"ok"), header("ts", 8, struct.pack(">q", 1700000000000)),
                    header("u", 9, the_uuid)))
    payload = b'{"x":1}'
    total = 16 + len(raw) + len(payload)
    prelude = struct.pack(">II", total, len(raw))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    frame = head + struct.pack(">I", zlib.crc32(head))
    (mine,) = ours(frame)
    (theirs,) = botocore_messages(frame)
    assert mine[1] == theirs[1] == payload
    assert mine[0] == {"t": True, "f": False, "b": -1, "s": -2, "i": 70000, "l": -(2**40), "by": b"\x00\x01\x02",
                       "str": "ok", "ts": 1700000000000, "u": the_uuid}
    assert {k: mine[0][k] for k in ("t", "f", "b", "s", "i", "l", "by", "str", "ts", "u")} == theirs[0]


@pytest.mark.parametrize("where", ["prelude", "payload", "crc"])
def test_a_corrupt_frame_is_refused_by_both(where: str) -> None:
    frame = bytearray(encode_message(CHUNK, b'{"bytes":"e30="}'))
    index = {"prelude": 2, "payload": len(frame) - 8, "crc": len(frame) - 1}[where]
    frame[index] ^= 0x01
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        botocore_messages(bytes(frame))


def test_an_absurd_length_is_refused_before_buffering() -> None:
    prelude = struct.pack(">II", 64 * 1024 * 1024, 0)
    with pytest.raises(EventStreamError, match="bad lengths"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))


class FakeContent:
    """What `read_bedrock_stream` reads: aiohttp's StreamReader.readany()."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    async def readany(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""


async def events_of(pieces: list[bytes]) -> list[list[Any]]:
    return [[(e.event, e.data) for e in batch] async for batch in read_bedrock_stream(FakeContent(pieces), "br")]  # type: ignore[arg-type]


def chunk(event: dict[str, Any]) -> bytes:
    return encode_message(CHUNK, orjson.dumps({"bytes": base64.b64encode(orjson.dumps(event)).decode(), "p": "ab"}))


async def test_the_simulators_stream_reads_back_as_anthropic_events() -> None:
    encoder = BedrockEncoder(ChatRequest(model="m", stream=True, max_tokens=None, input_tokens=3), 1)
    data = (encoder.stream_open() + encoder.stream_text_open() + encoder.stream_token(0)
            + encoder.stream_close(1, Finish.STOP))
    # Split in the middle of frames: events come out whole, in order.
    batches = await events_of([data[i:i + 37] for i in range(0, len(data), 37)])
    events = [e for batch in batches for e in batch]
    assert [name for name, _ in events] == ["message_start", "content_block_start", "ping", "content_block_delta",
                                            "content_block_stop", "message_delta", "message_stop"]
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "tok0"}


@pytest.mark.parametrize(("exception", "kind", "status"), [
    ("throttlingException", FailureKind.RATE_LIMITED, 429), ("internalServerException", FailureKind.FAULT, 500),
    ("modelStreamErrorException", FailureKind.FAULT, 424), ("validationException", FailureKind.CLIENT, 400),
    ("somethingNewException", FailureKind.FAULT, 500)])
async def test_exception_frames_are_provider_errors_after_the_events_before_them(
        exception: str, kind: FailureKind, status: int) -> None:
    error = encode_message({":exception-type": exception, ":content-type": "application/json",
                            ":message-type": "exception"}, b'{"message":"went wrong"}')
    got: list[Any] = []
    with pytest.raises(ProviderError) as caught:
        async for batch in read_bedrock_stream(FakeContent([chunk({"type": "ping"}) + error]), "br"):  # type: ignore[arg-type]
            got.extend(batch)
    assert [e.event for e in got] == ["ping"]  # the event before the failure still reached the engine
    assert (caught.value.kind, caught.value.status, caught.value.error_type) == (kind, status, exception)
    assert "went wrong" in caught.value.message


async def test_a_stream_cut_inside_a_frame_or_carrying_bad_chunks_is_a_fault() -> None:
    whole = chunk({"type": "ping"})
    with pytest.raises(ProviderError, match="ended inside a message"):
        await events_of([whole + whole[:10]])
    bad = encode_message(CHUNK, b'{"bytes":"not base64!"}')
    with pytest.raises(ProviderError, match="malformed chunk") as caught:
        await events_of([bad])
    assert caught.value.kind is FailureKind.FAULT
