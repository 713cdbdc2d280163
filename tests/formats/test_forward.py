"""`gateway.formats.forward` and the plain-text shortcut: the fast path writes and counts what the slow one did.

- `plain_text`: for every event it returns text for, `inspect` says exactly "content with that text" (NOTHING
  for ""): checked on the real events of both formats' streams and on hypothesis-built ones of every shape.
- `frames`: an event with raw text is forwarded as sent; the client parses the same events as from
  `encode_event`; what the gateway built, or what nests too deep, is encoded (and raises) as before.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ProviderError
from gateway.formats import NOTHING, content_info
from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.formats import responses as responses_format
from gateway.formats.codecs import ANTHROPIC, OPENAI, RESPONSES, Codec
from gateway.wire import SSEEvent, read_event
from tests.e2e.upstream_frames import ANTHROPIC_BASE, OPENAI_BASE

FORMATS = {"openai": openai_format, "anthropic": anthropic_format, "responses": responses_format}


def base_events(frames: tuple[bytes, ...]) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for frame in frames for line in frame.split(b"\n")
            if line.startswith(b"data: ") and line != b"data: [DONE]"]


def check_shortcut(fmt: str, data: dict[str, Any], name: str | None = None) -> str | None:
    text = FORMATS[fmt].plain_text(data)  # never raises: an event it cannot read is left to `inspect`
    if text is not None:
        assert FORMATS[fmt].inspect(SSEEvent(data, name)) == (content_info(text) if text else NOTHING), data
    return text


def test_the_shortcut_takes_the_text_deltas_of_real_streams() -> None:
    openai = [check_shortcut("openai", data) for data in base_events(OPENAI_BASE)]
    anthropic = [check_shortcut("anthropic", data) for data in base_events(ANTHROPIC_BASE)]
    assert [t for t in openai if t is not None] == ["Hel", "lo"]
    assert [t for t in anthropic if t is not None] == ["Hel", "lo"]
    assert check_shortcut("responses", {"type": "response.output_text.delta", "delta": "x"}) == "x"
    assert check_shortcut("responses", {"type": "response.completed", "response": {}}) is None


values = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "x", "stop"]),
                      lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
                          st.sampled_from(["content", "role", "text", "type", "delta", "usage", "error"]), inner,
                          max_size=3), max_leaves=6)
keys = {
    "openai": ["choices", "usage", "error", "model", "id"],
    "anthropic": ["type", "delta", "index", "usage", "message"],
    "responses": ["type", "delta", "response", "item"],
}
kinds = st.sampled_from(["content_block_delta", "text_delta", "input_json_delta", "message_delta",
                         "response.output_text.delta", "response.completed", "error", "ping"])


@st.composite
def events(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    """Events of every shape, near the ones the shortcut takes (so both of its answers are drawn often)."""
    data: dict[str, Any] = draw(st.dictionaries(st.sampled_from(keys[fmt]), values, max_size=3))
    if fmt == "openai" and draw(st.booleans()):
        delta = draw(st.dictionaries(st.sampled_from(["content", "role", "refusal", "tool_calls", "reasoning"]),
                                     st.sampled_from(["", "hi", None, 5, []]), max_size=2))
        choice = {"index": 0, "delta": delta, "finish_reason": draw(st.sampled_from([None, "stop", 3])),
                  **draw(st.dictionaries(st.just("logprobs"), values, max_size=1))}
        data["choices"] = draw(st.sampled_from([[choice], [choice, choice], [], [None]]))
    elif fmt != "openai" and draw(st.booleans()):
        data["type"] = draw(kinds)
        data["delta"] = draw(st.sampled_from(["", "hi", None, 5]) if fmt == "responses" else st.fixed_dictionaries(
            {"type": kinds, "text": st.sampled_from(["", "hi", None, 5, ["x"]])}))
    return data


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@given(data=st.data())
def test_the_shortcut_never_disagrees_with_inspect(fmt: str, data: st.DataObject) -> None:
    name = data.draw(st.none() | kinds)
    check_shortcut(fmt, data.draw(events(fmt)), name)


# ---------------------------------------------------------------- frames

def parsed(stream: bytes) -> list[tuple[bytes | None, Any]]:
    out = []
    for frame in stream.split(b"\n\n")[:-1]:
        lines = frame.split(b"\n")
        name = lines[0][7:] if lines[0].startswith(b"event: ") else None
        out.append((name, orjson.loads(lines[-1][6:])))
    return out


def from_wire(frames: tuple[bytes, ...]) -> list[SSEEvent]:
    out = []
    for frame in frames:
        lines = frame.rstrip(b"\n").split(b"\n")
        name = lines[0][7:].decode() if lines[0].startswith(b"event: ") else None
        if lines[-1] != b"data: [DONE]":
            raw = lines[-1][6:]
            out.append(read_event(orjson.loads(raw), name, raw))
    return out


def slow(codec: Codec, events: list[SSEEvent], keep_usage: bool) -> bytes:
    return b"".join(codec.encode_event(ev) for ev in events if keep_usage or not codec.is_usage_only(ev))


@pytest.mark.parametrize(("codec", "frames"), [(OPENAI, OPENAI_BASE), (ANTHROPIC, ANTHROPIC_BASE)],
                         ids=["openai", "anthropic"])
@pytest.mark.parametrize("keep_usage", [True, False])
def test_forwarded_frames_are_the_providers_text_and_parse_as_the_encoded_ones(
        codec: Codec, frames: tuple[bytes, ...], keep_usage: bool) -> None:
    events = from_wire(frames)
    fast = codec.frames(events, keep_usage)
    assert parsed(fast) == parsed(slow(codec, events, keep_usage))
    for ev in events:
        if keep_usage or not codec.is_usage_only(ev):
            assert ev.raw is not None and ev.raw in fast  # forwarded as sent, not written again
    if codec is OPENAI:
        assert (b'"usage"' in fast) is keep_usage


def test_events_without_raw_text_are_encoded() -> None:
    built = [SSEEvent({"type": "message_stop"}, "message_stop"), SSEEvent({"type": 7}, "x")]
    assert ANTHROPIC.frames(built, True) == slow(ANTHROPIC, built, True)
    assert OPENAI.frames([SSEEvent({"choices": []})], True) == b'data: {"choices":[]}\n\n'


def test_anthropic_events_are_named_by_their_type_as_encode_event_names_them() -> None:
    raw = b'{"type":"content_block_stop","index":0}'
    renamed = read_event(orjson.loads(raw), "something_else", raw)
    unknown = read_event({"type": "novel"}, "x", b'{"type":"novel"}')
    assert ANTHROPIC.frames([renamed, unknown], True) == slow(ANTHROPIC, [renamed, unknown], True)
    assert ANTHROPIC.frames([renamed], True).startswith(b"event: content_block_stop\ndata: " + raw)


def test_too_deep_to_write_is_a_provider_fault_on_the_fast_path_too() -> None:
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    ev = SSEEvent({"choices": [], "x": deep})  # the reader keeps no raw text for it (gateway.wire.forwardable)
    with pytest.raises(ProviderError):
        OPENAI.frames([ev], True)


def test_the_responses_door_never_forwards_raw_text() -> None:
    # It numbers each event in place before writing it: the raw text would be the event before the change.
    ev = read_event({"type": "response.output_text.delta", "delta": "x", "sequence_number": 3}, None,
                    b'{"type":"response.output_text.delta","delta":"x"}')
    assert RESPONSES.frames([ev], True) == RESPONSES.encode_event(ev)


def assembled(chunks: list[dict[str, Any]], *, shortcut: bool) -> Any:
    from gateway.formats import openai_answer

    aggregator = openai_answer.Aggregator()
    if not shortcut:  # every chunk through the full `_feed`, broken the same way as `feed` breaks
        def slow(ev: SSEEvent, text: str) -> None:
            if aggregator._broken is None:
                try:
                    aggregator._feed(ev.data)
                except Exception as exc:
                    aggregator._broken = f"{type(exc).__name__} in a chunk"

        aggregator.feed_text = slow  # type: ignore[method-assign]
    for data in chunks:
        aggregator.feed(SSEEvent(data))
    try:
        return aggregator.result()
    except ProviderError as exc:
        return exc.message


@given(data=st.data())
def test_the_aggregators_shortcut_assembles_the_same_answer(data: st.DataObject) -> None:
    real = base_events(OPENAI_BASE)
    chunks = [data.draw(st.sampled_from(real) | events("openai")) for _ in range(data.draw(st.integers(0, 8)))]
    if data.draw(st.booleans()):
        chunks.insert(0, real[0])  # the usual start: an id and a creation time first
    assert assembled(chunks, shortcut=True) == assembled(chunks, shortcut=False)
