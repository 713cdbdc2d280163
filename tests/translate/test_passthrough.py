"""Same format on both sides: bodies copied with the target's model and streaming fields, events untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.translate import passthrough, stream_translator, upstream_request
from gateway.wire import SSEEvent, WireFormat

OPENAI_BODY: dict[str, Any] = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2,
                               "logprobs": True, "n": 2}
ANTHROPIC_BODY: dict[str, Any] = {"model": "fast", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
                                  "thinking": {"type": "adaptive"}}


@pytest.mark.parametrize(("fields", "expected_options"), [
    ({}, {"include_usage": True}),
    ({"stream": False}, {"include_usage": True}),
    ({"stream_options": {"include_usage": False, "include_obfuscation": False}},
     {"include_usage": True, "include_obfuscation": False}),
    ({"stream_options": None}, {"include_usage": True}),
])
def test_openai_request(fields: dict[str, Any], expected_options: dict[str, Any]) -> None:
    body = {**OPENAI_BODY, **fields}
    before = copy.deepcopy(body)
    got = upstream_request(WireFormat.OPENAI, WireFormat.OPENAI, body, model="gpt-4o-mini", default_max_tokens=7)
    assert got == {**OPENAI_BODY, "model": "gpt-4o-mini", "stream": True, "stream_options": expected_options}
    assert body == before  # the client's own stream_options dict was not updated in place either
    assert "max_tokens" not in got  # OpenAI does not require it: no default forced on the client


@pytest.mark.parametrize(("fields", "expected_max_tokens"), [
    ({}, 100),
    ({"max_tokens": 0}, 0),  # a real value (cache pre-warming), not "absent"
    ({"max_tokens": None}, 4096),
])
def test_anthropic_request(fields: dict[str, Any], expected_max_tokens: int) -> None:
    body = {**ANTHROPIC_BODY, **fields}
    before = copy.deepcopy(body)
    got = upstream_request(WireFormat.ANTHROPIC, WireFormat.ANTHROPIC, body, model="claude-haiku-4-5",
                           default_max_tokens=4096)
    assert got == {**ANTHROPIC_BODY, "model": "claude-haiku-4-5", "stream": True, "max_tokens": expected_max_tokens}
    assert body == before


def test_anthropic_request_without_max_tokens_gets_the_default() -> None:
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    got = passthrough.anthropic_request(body, model="c", default_max_tokens=512)
    assert got["max_tokens"] == 512 and "max_tokens" not in body


def test_copies_are_independent_at_the_top_level() -> None:
    first = passthrough.openai_request(OPENAI_BODY, model="a")
    second = passthrough.openai_request(OPENAI_BODY, model="b")
    first["temperature"] = 1.5
    first["stream_options"]["include_obfuscation"] = True
    assert (second["temperature"], second["stream_options"], OPENAI_BODY["temperature"]) == (
        0.2, {"include_usage": True}, 0.2)


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_stream_events_pass_through_untouched(fmt: WireFormat) -> None:
    translator = stream_translator(fmt, fmt)
    events = [SSEEvent({"type": "message_start", "message": {"id": "msg_1"}}, "message_start"),
              SSEEvent({"id": "chatcmpl-1", "choices": []}),
              SSEEvent({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")]
    for event in events:
        out = translator.feed(event)
        assert out == [event] and out[0] is event  # not even copied: this is the hot path
    # No message_stop came: an Anthropic client's stream still gets its end (see the next test).
    assert translator.finish() == ([] if fmt is WireFormat.OPENAI else [
        SSEEvent({"type": "message_stop"}, "message_stop")])


def test_anthropic_stream_ends_with_exactly_one_message_stop() -> None:
    translator = stream_translator(WireFormat.ANTHROPIC, WireFormat.ANTHROPIC)
    delta = SSEEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta")
    stop = SSEEvent({"type": "message_stop"}, "message_stop")
    assert translator.feed(delta) == [delta] and translator.feed(stop) == [stop]
    assert translator.feed(delta) == [] and translator.feed(stop) == []  # nothing after the end
    assert translator.finish() == []
    assert stream_translator(WireFormat.ANTHROPIC, WireFormat.ANTHROPIC) is not translator  # one per stream
