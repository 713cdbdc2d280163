"""Upstream event streams for the provider-side fuzz (test_upstream_fuzz.py): realistic ones, and hypothesis
strategies that mangle them frame by frame the way a broken provider (or a broken proxy in front of one) would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

from tests.e2e.rogue_upstream import Behaviour, Conn, anthropic_event


def _openai(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _openai({"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": "rogue-model",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})


OPENAI_BASE: tuple[bytes, ...] = (
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hel"}),
    _chunk({"content": "lo"}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "search", "arguments": ""}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    _chunk({}, "tool_calls"),
    _openai({"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": "rogue-model",
             "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
                                      "prompt_tokens_details": {"cached_tokens": 2}}}),
    b"data: [DONE]\n\n",
)

ANTHROPIC_BASE: tuple[bytes, ...] = (
    anthropic_event({"type": "message_start", "message": {
        "id": "msg_f", "type": "message", "role": "assistant", "model": "rogue-claude", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0}}}),
    anthropic_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    anthropic_event({"type": "ping"}),
    anthropic_event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
    anthropic_event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
    anthropic_event({"type": "content_block_stop", "index": 0}),
    anthropic_event({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}}),
    anthropic_event({"type": "content_block_delta", "index": 1,
                     "delta": {"type": "input_json_delta", "partial_json": '{"q": '}}),
    anthropic_event({"type": "content_block_delta", "index": 1,
                     "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
    anthropic_event({"type": "content_block_stop", "index": 1}),
    anthropic_event({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                     "usage": {"output_tokens": 4}}),
    anthropic_event({"type": "message_stop"}),
)


@dataclass
class Frames:
    """A stream to serve: its frames, where the joined bytes are split into chunks, and how it ends."""

    frames: list[bytes]
    cuts: list[int]  # offsets into the joined bytes where a new HTTP chunk starts
    end: str  # "eof" (the chunked body ends properly), "close" (FIN mid-body) or "reset" (RST)

    def behaviour(self) -> Behaviour:
        data = b"".join(self.frames)
        bounds = [0, *sorted({c for c in self.cuts if 0 < c < len(data)}), len(data)]

        async def behave(conn: Conn) -> None:
            await conn.read_request()
            await conn.head()
            for start, stop in itertools.pairwise(bounds):
                await conn.chunk(data[start:stop])
            if self.end == "eof":
                await conn.end_chunks()
            elif self.end == "close":
                conn.close()
            else:
                conn.reset()
        return behave


# ------------------------------------------------------------------------------------------ strategies

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)
# Values a field should not hold, with the likeliest mistakes first.
# (Copied on each draw: a mangled event may be mangled again, and a shared {} must not change between examples.)
wrong_values = st.sampled_from(["12", -5, 1e308, [1], {}, [], None, "", True, 0, "x" * 300, "\r\n"]).map(
    lambda v: orjson.loads(orjson.dumps(v))) | json_values
known_names = st.sampled_from(["type", "index", "delta", "content_block", "usage", "message", "choices", "text",
                               "content", "tool_calls", "function", "arguments", "finish_reason", "stop_reason",
                               "input_tokens", "output_tokens", "prompt_tokens", "completion_tokens", "error",
                               "partial_json", "id", "name", "input", "model", "role", "event"])
junk = st.sampled_from([b"\xff\xfe", b"\x00", b"data: [DONE]\n\n", b"\n\n", b": keep-alive\n\n", b"data:\n\n",
                        b"event: message_stop\n", b"data: {\n\n", b"\r", b"data: null\n\n", b"data: 5\n\n",
                        b'data: {"type": "message_stop"}\n\n', b"event: \xff\r\x0bx\n", b"retry: 1\n"]) | \
    st.binary(min_size=1, max_size=16)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


@st.composite
def _mangled_json(draw: st.DrawFn, data: dict[str, Any]) -> dict[str, Any]:
    data = orjson.loads(orjson.dumps(data))  # a deep copy
    for _ in range(draw(st.integers(1, 3))):
        spots = _paths(data)
        how = draw(st.sampled_from(["delete", "wrong", "unknown", "rename"] if spots else ["unknown"]))
        if how == "unknown":
            target = data
            key = draw(known_names | st.text(max_size=6))
            if spots and draw(st.booleans()):
                spot = draw(st.sampled_from(spots))
                nested = _at(data, spot)
                target = nested if isinstance(nested, dict) else data
            target[key] = draw(wrong_values)
            continue
        spot = draw(st.sampled_from(spots))
        parent = _at(data, spot[:-1])
        if how == "delete":
            del parent[spot[-1]]
        elif how == "wrong":
            parent[spot[-1]] = draw(wrong_values)
        elif isinstance(parent, dict):  # rename a field: it is missing, and an unknown one appears
            parent[draw(known_names)] = parent.pop(spot[-1])
    return data


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def _frame(draw: st.DrawFn, frame: bytes) -> list[bytes]:
    """One base frame, kept or mangled: zero or more frames in its place."""
    how = draw(st.sampled_from(["keep"] * 14 + ["json", "json", "truncate", "junk", "drop", "twice", "done",
                                                "event", "deep"]))
    if how == "keep" or frame.startswith(b"data: [DONE]"):
        return [frame]
    if how == "drop":
        return []
    if how == "twice":
        return [frame, frame]
    if how == "junk":
        return [frame, draw(junk)] if draw(st.booleans()) else [draw(junk), frame]
    if how == "done":
        return [b"data: [DONE]\n\n", frame]
    event, _, rest = frame.rpartition(b"data: ")
    text = rest.removesuffix(b"\n\n")
    if how == "truncate":
        return [event + b"data: " + text[: draw(st.integers(0, max(0, len(text) - 1)))] + b"\n\n"]
    if how == "event":  # an Anthropic event name that says something else than the data (or is garbage)
        name = draw(st.sampled_from([b"message_stop", b"error", b"ping", b"message_delta", b""]) | st.binary(
            max_size=8).filter(lambda b: b"\n" not in b))
        return [b"event: " + name + b"\ndata: " + text + b"\n\n"]
    data = orjson.loads(text)
    if how == "deep":  # nested deeper than orjson writes (it reads 1024 levels, writes 254)
        depth = draw(st.sampled_from([100, 253, 254, 255, 300, 1000]))
        spot = draw(st.sampled_from(["usage", "input", "delta", "content_block", "x-extra"]))
        deep = b"[" * depth + b"1" + b"]" * depth
        placeholder = "@@deep@@"
        data[spot] = placeholder
        return [event + b"data: " + orjson.dumps(data).replace(orjson.dumps(placeholder), deep) + b"\n\n"]
    return [event + b"data: " + orjson.dumps(draw(_mangled_json(data))) + b"\n\n"]


@st.composite
def mangled_streams(draw: st.DrawFn, kind: str) -> Frames:
    base = OPENAI_BASE if kind == "openai" else ANTHROPIC_BASE
    frames = [piece for frame in base for piece in draw(_frame(frame))]
    total = sum(len(f) for f in frames)
    cuts = draw(st.lists(st.integers(0, max(0, total)), max_size=6))
    end = draw(st.sampled_from(["eof"] * 4 + ["close", "reset"]))
    return Frames(frames, cuts, end)
