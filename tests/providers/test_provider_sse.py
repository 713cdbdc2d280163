"""The SSE reader of `gateway.providers.http`: bytes as the network hands them over, events out, in batches.

`_read_sse` reads `content.readany()` until it returns b"": the fake below hands over one given chunk per call,
so each test decides exactly where the network split the stream.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import FailureKind, ProviderError
from gateway.providers.http import _MAX_BODY_TAIL, _MAX_EVENT, _parse_block, _read_sse
from gateway.wire import LastBatch, SSEEvent


class Chunks:
    """The part of `aiohttp.StreamReader` the reader uses: `readany()` gives one chunk per call, then b""."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.reads = 0

    async def readany(self) -> bytes:
        self.reads += 1
        return self.chunks.pop(0) if self.chunks else b""

    def at_eof(self) -> bool:  # every chunk handed over: the next read is the end of the body
        return not self.chunks


async def batches(content: Chunks) -> list[list[SSEEvent]]:
    return [batch async for batch in _read_sse(content, "prov")]  # type: ignore[arg-type]


async def batches_then_error(content: Chunks) -> tuple[list[list[SSEEvent]], ProviderError]:
    got: list[list[SSEEvent]] = []
    with pytest.raises(ProviderError) as info:
        async for batch in _read_sse(content, "prov"):  # type: ignore[arg-type]
            got.append(batch)
    assert info.value.kind is FailureKind.FAULT and info.value.error_type == "bad_response"
    assert info.value.message.startswith("prov: ")
    return got, info.value


def data(obj: Any) -> bytes:
    """One usual one-line event."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def ev(n: int, event: str | None = None) -> SSEEvent:
    return SSEEvent({"n": n}, event)


# ------------------------------------------------------------------------------------------ plain events

async def test_one_line_events_in_one_read_are_one_batch() -> None:
    assert await batches(Chunks(data({"n": 1}) + data({"n": 2}), data({"n": 3}))) == [[ev(1), ev(2)], [ev(3)]]


async def test_the_batch_the_stream_ends_with_says_so() -> None:
    # [DONE] and the body's end in the same read, or the end alone: the next batch will not be waited for.
    done = await batches(Chunks(data({"n": 1}), data({"n": 2}) + b"data: [DONE]\n\n"))
    assert [type(b) for b in done] == [list, LastBatch] and done == [[ev(1)], [ev(2)]]
    # [DONE] with the body's end still to come: the reader waits for that end (so the connection is pooled,
    # not closed), so its last batch is a plain one, written before the wait.
    end_later = await batches(Chunks(data({"n": 1}), data({"n": 2}) + b"data: [DONE]\n\n", data({"n": 3})))
    assert [type(b) for b in end_later] == [list, list] and end_later == [[ev(1)], [ev(2)]]
    at_end = await batches(Chunks(data({"n": 1}), data({"n": 2})))  # no terminator (Anthropic): the body's end
    assert [type(b) for b in at_end] == [list, LastBatch]
    # A body whose end comes in a read of its own: the last batch did not know, and is a plain one.
    later = await batches(Chunks(data({"n": 1}), b""))
    assert [type(b) for b in later] == [list]


async def test_a_read_with_no_complete_event_yields_no_batch() -> None:
    content = Chunks(b'data: {"n"', b": 1}", b"\n", b"\n")
    assert await batches(content) == [[ev(1)]]
    assert content.reads == 5  # the four chunks, then the end


async def test_an_event_split_across_reads_and_the_next_one_in_the_same_read() -> None:
    content = Chunks(b'data: {"n": 1}\n\ndata: {"n":', b' 2}\n\ndata: {"n": 3}\n', b'\ndata: {"n": 4}\n\n')
    assert await batches(content) == [[ev(1)], [ev(2)], [ev(3), ev(4)]]


async def test_data_without_the_space_and_with_extra_whitespace() -> None:
    assert await batches(Chunks(b'data:{"n": 1}\n\ndata:   {"n": 2}  \n\n')) == [[ev(1), ev(2)]]


async def test_multi_line_data_is_joined_with_newlines() -> None:
    # JSON may be spread over several data lines (the SSE spec joins them with "\n").
    stream = b'data: {"n":\ndata: 1,\ndata: "text": "a"}\n\n'
    assert await batches(Chunks(stream)) == [[SSEEvent({"n": 1, "text": "a"})]]
    stream = b'data: {"s": "x\ndata: y"}\n\n'  # a raw newline inside a JSON string is not JSON
    _, err = await batches_then_error(Chunks(stream))
    assert "malformed JSON" in err.message


async def test_event_names_are_kept_with_their_data() -> None:
    stream = (b'event: message_start\ndata: {"n": 1}\n\n'
              b'event:content_block_delta\ndata: {"n": 2}\n\n'  # no space after the colon
              b'data: {"n": 3}\nevent:  late  \n\n'  # the name may follow the data; surrounding blanks go
              b'data: {"n": 4}\n\n')  # no name: None, not the previous event's
    assert await batches(Chunks(stream)) == [[ev(1, "message_start"), ev(2, "content_block_delta"), ev(3, "late"),
                                              ev(4)]]


async def test_an_undecodable_event_name_does_not_break_the_stream() -> None:
    [[event]] = await batches(Chunks(b'event: \xff\xfe\ndata: {"n": 1}\n\n'))
    assert event.data == {"n": 1} and event.event == "\ufffd\ufffd"


async def test_comments_keep_alives_and_events_without_data_are_skipped() -> None:
    stream = (b": keep-alive\n\n"
              b":\n\n"
              b"event: ping\n\n"  # a name but no data
              b"id: 7\nretry: 1000\n\n"  # fields we do not use
              b'id: 8\n: a comment inside an event\ndata: {"n": 1}\n\n')
    assert await batches(Chunks(stream)) == [[ev(1)]]
    assert await batches(Chunks(b": ping\n\n", b": ping\n\n")) == []  # no empty batches


async def test_blank_lines_beyond_the_separator_are_harmless() -> None:
    assert await batches(Chunks(b'\n\ndata: {"n": 1}\n\n\n\ndata: {"n": 2}\n\n\n')) == [[ev(1), ev(2)]]


async def test_an_event_cut_off_by_the_end_of_the_body_is_dropped() -> None:
    # No closing blank line: incomplete, and the SSE spec says to drop it. Not an error: the engine decides
    # whether a stream that ended there was complete.
    assert await batches(Chunks(data({"n": 1}) + b'data: {"n": 2}\n')) == [[ev(1)]]
    assert await batches(Chunks(b'data: {"n": 1}')) == []


# ---------------------------------------------------------------------------------------------- CRLF

async def test_crlf_streams() -> None:
    stream = b'event: a\r\ndata: {"n": 1}\r\n\r\ndata: {"n": 2}\r\n\r\n: keep-alive\r\n\r\n'
    assert await batches(Chunks(stream)) == [[ev(1, "a"), ev(2)]]


@pytest.mark.parametrize("split", [
    [b'data: {"n": 1}\r', b'\n\r\n'],  # the CR of the first line ending at the end of a read
    [b'data: {"n": 1}\r\n\r', b'\n'],  # the CR of the blank line at the end of a read
    [b'data: {"n": 1}\r\n', b'\r\n'],
    [b'data: {"n": 1}\r', b'\n', b'\r', b'\n'],
    [b'event: a\r', b'\ndata: {"n": 1}\r\n\r', b'\ndata: {"n": 2}\r\n\r\n'],
], ids=["cr|lf-crlf", "crlf-cr|lf", "crlf|crlf", "cr|lf|cr|lf", "named"])
async def test_a_cr_at_a_read_boundary_waits_for_its_lf(split: list[bytes]) -> None:
    got = await batches(Chunks(*split))
    events = [e for batch in got for e in batch]
    assert events in ([ev(1)], [ev(1, "a"), ev(2)])
    assert all(e.data for e in events)


# --------------------------------------------------------------------------------------------- [DONE]

async def test_done_ends_the_stream_after_the_events_before_it() -> None:
    content = Chunks(data({"n": 1}) + b"data: [DONE]\n\n" + data({"n": 2}), data({"n": 3}))
    assert await batches(content) == [[ev(1)]]
    # Nothing after [DONE] is an event; the rest of the body is read to its end (dropped), then b"".
    assert content.reads == 3 and not content.chunks


async def test_what_follows_done_is_read_only_up_to_a_bound() -> None:
    # A provider that keeps sending after [DONE]: given up (its connection closed) after _MAX_BODY_TAIL bytes.
    tail = b"x" * (_MAX_BODY_TAIL // 2 + 1)
    content = Chunks(data({"n": 1}) + b"data: [DONE]\n\n", tail, tail, tail)
    assert await batches(content) == [[ev(1)]]
    assert content.reads == 3 and content.chunks == [tail]


async def test_done_in_any_spelling_of_the_data_line() -> None:
    for done in (b"data: [DONE]\n\n", b"data:[DONE]\n\n", b"data: [DONE]\r\n\r\n", b": ka\ndata: [DONE]\n\n"):
        content = Chunks(data({"n": 1}), done, data({"n": 2}))
        assert await batches(content) == [[ev(1)]], done
        assert content.reads == 4  # then the rest of the body, read to its end and dropped


async def test_done_first_yields_nothing() -> None:
    assert await batches(Chunks(b"data: [DONE]\n\n", data({"n": 1}))) == []


# --------------------------------------------------------------------------------------- bad payloads

async def test_malformed_json_after_good_events_yields_the_good_ones_first() -> None:
    # Same read: the events before the bad one still count (one of them may be the first token).
    got, err = await batches_then_error(Chunks(data({"n": 1}) + data({"n": 2}) + b"data: {oops\n\n" + data({"n": 3})))
    assert got == [[ev(1), ev(2)]]
    assert err.message == "prov: malformed JSON in event stream"
    # An earlier read, then a bad event alone in its read.
    got, err = await batches_then_error(Chunks(data({"n": 1}), b"data: {oops\n\n", data({"n": 2})))
    assert got == [[ev(1)]] and "malformed JSON" in err.message


@pytest.mark.parametrize("payload", [b"[1, 2]", b"42", b'"text"', b"true",
                                     b"null"])
async def test_json_that_is_not_an_object_is_a_fault(payload: bytes) -> None:
    got, err = await batches_then_error(Chunks(data({"n": 1}) + b"data: " + payload + b"\n\n"))
    assert got == [[ev(1)]]
    assert err.message == "prov: event is not a JSON object"


@pytest.mark.parametrize("payload", [b"", b"{", b"{'n': 1}", b"\xff"])
async def test_undecodable_data_is_a_fault(payload: bytes) -> None:
    _, err = await batches_then_error(Chunks(b"data: " + payload + b"\n\n"))
    assert "malformed JSON" in err.message


# ------------------------------------------------------------------------------------------ size bound

CHUNK = 64 * 1024


def pieces(blob: bytes, size: int = CHUNK) -> list[bytes]:
    return [blob[i:i + size] for i in range(0, len(blob), size)]


async def test_an_event_just_under_the_bound_arriving_in_many_reads_is_fine() -> None:
    text = "x" * (_MAX_EVENT - 100)
    stream = data({"t": text})
    assert len(stream) - 2 <= _MAX_EVENT  # the unfinished part never exceeds the bound
    got = await batches(Chunks(*pieces(stream)))
    assert got == [[SSEEvent({"t": text})]]


async def test_an_unfinished_event_over_the_bound_fails_without_reading_the_rest() -> None:
    stream = b'data: {"t": "' + b"x" * (4 * _MAX_EVENT)  # never ends
    content = Chunks(*pieces(stream))
    total = len(content.chunks)
    _, err = await batches_then_error(content)
    assert err.message == "prov: event stream line or event larger than 1 MiB"
    assert content.reads <= _MAX_EVENT // CHUNK + 2 < total  # stopped at the bound, not at the end of the body


async def test_a_complete_event_over_the_bound_in_one_read_fails() -> None:
    _, err = await batches_then_error(Chunks(data({"t": "x" * _MAX_EVENT})))
    assert "larger than 1 MiB" in err.message
    # Several data lines, each small, together over the bound.
    line = b"data: " + b"1" * 1000 + b"\n"
    _, err = await batches_then_error(Chunks(line * (_MAX_EVENT // 1000 + 10) + b"\n"))
    assert "larger than 1 MiB" in err.message


async def test_good_events_before_an_oversized_one_in_the_same_read_are_yielded_first() -> None:
    got, err = await batches_then_error(Chunks(data({"n": 1}) + b"data: " + b"1" * (_MAX_EVENT + 1) + b"\n\n"))
    assert "larger than 1 MiB" in err.message
    assert got == [[ev(1)]]


async def test_good_events_before_an_oversized_unfinished_one_in_the_same_read_are_yielded_first() -> None:
    got, err = await batches_then_error(Chunks(data({"n": 1}) + b"data: " + b"1" * (_MAX_EVENT + 1)))
    assert "larger than 1 MiB" in err.message
    assert got == [[ev(1)]]


# ------------------------------------------------------------------------------------------ _parse_block

def test_parse_block() -> None:
    assert _parse_block(b'data: {"n": 1}') == (None, b'{"n": 1}')
    assert _parse_block(b"event: x\ndata: 1\ndata:2") == ("x", b"1\n2")
    assert _parse_block(b"data: 1\nevent: first\nevent: second") == ("second", b"1")  # the last name counts
    assert _parse_block(b"data:") == (None, b"")  # an empty data line is data
    assert _parse_block(b"event: ping") == ("ping", None)
    assert _parse_block(b": comment\nid: 3\nretry: 10") == (None, None)
    assert _parse_block(b"") == (None, None)
    assert _parse_block(b"datum: 1\nevents: x") == (None, None)  # field names are exact, not prefixes


# ------------------------------------------------------------------------------- any split, same events

JSON_VALUES = st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)  # orjson writes 64-bit integers
EVENTS = st.lists(st.tuples(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
                            st.none() | st.sampled_from(["message_start", "content_block_delta", "ping"])),
                  max_size=8)


def encode(events: list[tuple[dict[str, Any], str | None]], crlf: bool, comments: bool, multiline: bool) -> bytes:
    out = []
    for data_obj, name in events:
        lines = [b": keep-alive"] if comments else []
        if name is not None:
            lines.append(b"event: " + name.encode())
        payload = orjson.dumps(data_obj)
        if multiline:  # split after the opening brace: the newline joining the lines is JSON whitespace
            lines.extend((b"data: {", b"data: " + payload[1:]))
        else:
            lines.append(b"data: " + payload)
        out.append(b"\n".join(lines) + b"\n\n")
    if comments:
        out.append(b":\n\n")
    blob = b"".join(out)
    return blob.replace(b"\n", b"\r\n") if crlf else blob


@settings(max_examples=300, deadline=None, database=None)
@given(events=EVENTS, crlf=st.booleans(), comments=st.booleans(), multiline=st.booleans(), done=st.booleans(),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_of_a_stream_gives_the_same_events(events: list[tuple[dict[str, Any], str | None]], crlf: bool,
                                                     comments: bool, multiline: bool, done: bool,
                                                     cuts: list[int]) -> None:
    blob = encode(events, crlf, comments, multiline)
    if done:
        blob += (b"data: [DONE]\r\n\r\n" if crlf else b"data: [DONE]\n\n") + data({"after": "done"})
    points = sorted({c % (len(blob) + 1) for c in cuts} | {0, len(blob)})
    chunks = [blob[a:b] for a, b in itertools.pairwise(points) if a != b]
    got = asyncio.run(batches(Chunks(*chunks)))
    assert all(got), "no empty batch"
    assert [e for batch in got for e in batch] == [SSEEvent(d, n) for d, n in events]
    assert len(got) <= len(chunks)  # at most one batch per read


# ---------------------------------------------------------------- raw text, for a door of the same format

def raws(got: list[list[SSEEvent]]) -> list[bytes | None]:
    return [ev.raw for batch in got for ev in batch]


async def test_each_one_line_event_keeps_its_json_text_as_sent() -> None:
    got = await batches(Chunks(b'data: {"a": 1}\n\nevent: message_start\ndata: {"type":"message_start"}\n\n'
                               b'data:{"c":[2]}\n\n'))
    assert raws(got) == [b'{"a": 1}', b'{"type":"message_start"}', b'{"c":[2]}']
    assert [orjson.loads(raw or b"") for raw in raws(got)] == [ev.data for ev in got[0]]
    assert got[0][0] == SSEEvent({"a": 1})  # the raw text is no part of an event's equality


async def test_no_raw_text_where_forwarding_it_could_split_the_line_or_nest_too_deep() -> None:
    deep = b"[" * 255 + b"]" * 255  # parses, but orjson writes at most 254 levels back
    long_shallow = b'{"t": "' + b"x" * 2000 + b'"}'  # long, so its brackets are counted: few
    got = await batches(Chunks(b'data: {"a":\ndata: 1}\n\n', b'data: {"b":\r 2}\n\n',
                               b'data: {"d": ' + deep + b"}\n\n", b"data: " + long_shallow + b"\n\n"))
    assert [ev.data.get("a", ev.data.get("b")) for ev in got[0] + got[1]] == [1, 2]
    assert raws(got) == [None, None, None, long_shallow]


async def test_a_crlf_stream_keeps_raw_text_a_lone_cr_does_not() -> None:
    got = await batches(Chunks(b'data: {"a": 1}\r\n\r\n', b'data: {"b": 2}\r\n\r\ndata: {"c":\r3}\r\n\r\n'))
    assert raws(got) == [b'{"a": 1}', None, None]  # a lone CR anywhere in a read: none of it is forwarded
