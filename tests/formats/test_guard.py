"""Provider garbage the formats contain: what a client would get is always writable, or a ProviderError."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import ProviderError
from gateway.formats import anthropic as an
from gateway.formats import openai as oa
from gateway.wire import SSEEvent


def deep(depth: int) -> Any:
    return orjson.loads(b"[" * depth + b"1" + b"]" * depth)  # orjson reads deeper than it writes


@pytest.mark.parametrize("fmt", [oa, an], ids=["openai", "anthropic"])
def test_an_event_that_cannot_be_written_again_is_a_provider_fault(fmt: Any) -> None:
    with pytest.raises(ProviderError, match="cannot be passed on"):
        fmt.encode_event(SSEEvent({"type": "content_block_delta", "x": deep(300)}))
    assert fmt.encode_event(SSEEvent({"type": "ping", "x": deep(100)})).endswith(b"\n\n")


def test_anthropic_event_names_come_from_the_data_and_never_break_the_framing() -> None:
    assert an.encode_event(SSEEvent({"type": "message_stop"}, "ping")).startswith(b"event: message_stop\n")
    for data, name in (({"type": 5}, "content_block_delta"), ({"type": "a\nb"}, "ping"), ({}, "x\ry"), ({}, None)):
        frame = an.encode_event(SSEEvent(data, name))
        head = frame.split(b"\ndata: ", 1)[0]
        assert b"\r" not in head and b"\n" not in head, frame
    assert an.encode_event(SSEEvent({"type": 5}, "content_block_delta")).startswith(b"event: content_block_delta\n")


GARBAGE_OPENAI: list[dict[str, Any]] = [
    {"choices": [{"index": [1], "delta": {"content": "hi"}}]},  # an index that is no index: choice 0
    {"choices": [{"delta": {"tool_calls": [{"index": "x", "function": {"name": 5, "arguments": [1]}}]}}]},
    {"id": [1], "created": "now", "model": {"a": 1}, "usage": [1], "system_fingerprint": 3},
    {"choices": [{"delta": {"content": "hi"}, "logprobs": {"content": 5}}]},
    {"choices": [{"delta": {"content": "hi"}}], "model": deep(250)},
    {"choices": [{"delta": {"content": "hi"}}], "service_tier": "x", "usage": {"completion_tokens_details": deep(250)}},
]


@pytest.mark.parametrize("chunk", GARBAGE_OPENAI)
def test_openai_aggregator_answers_or_raises_provider_error(chunk: dict[str, Any]) -> None:
    aggregator = oa.Aggregator()
    aggregator.feed(SSEEvent({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}))
    aggregator.feed(SSEEvent(chunk))  # never raises
    try:
        body = aggregator.result()
    except ProviderError:
        return
    orjson.dumps(body)  # what the handler does with it
    assert body["object"] == "chat.completion" and isinstance(body["id"], str) and isinstance(body["model"], str)


GARBAGE_ANTHROPIC: list[dict[str, Any]] = [
    {"type": "content_block_start", "index": "1", "content_block": {"type": "text", "text": "x"}},
    {"type": "content_block_start", "index": 1, "content_block": [1, 2]},
    {"type": "content_block_delta", "index": [0], "delta": {"type": "text_delta", "text": "x"}},
    {"type": "message_delta", "delta": [1], "usage": {"output_tokens": "4"}},
    {"type": "message_start", "message": {"id": 5, "model": [1], "usage": [1]}},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": 5}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "extra": deep(250)}},
]


@pytest.mark.parametrize("event", GARBAGE_ANTHROPIC)
def test_anthropic_aggregator_answers_or_raises_provider_error(event: dict[str, Any]) -> None:
    aggregator = an.Aggregator()
    aggregator.feed(SSEEvent({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}))
    aggregator.feed(SSEEvent(event))  # never raises
    try:
        body = aggregator.result()
    except ProviderError:
        return
    orjson.dumps(body)
    assert body["type"] == "message" and isinstance(body["id"], str) and isinstance(body["model"], str)
