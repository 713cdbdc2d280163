"""Same format on both sides: bodies copied with the target's model and streaming fields, events untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.translate import passthrough, stream_translator, upstream_request
from gateway.wire import SSEEvent, WireFormat
from tests.claude_code import CLAUDE_CODE_BODY

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


def test_claude_code_request_reaches_an_anthropic_provider_as_sent() -> None:
    """Everything the gateway does not own (system turns inside messages, cache_control, thinking,
    context_management, output_config.effort, metadata.user_id, tools) goes upstream unchanged."""
    body = copy.deepcopy(CLAUDE_CODE_BODY)
    got = upstream_request(WireFormat.ANTHROPIC, WireFormat.ANTHROPIC, body, model="claude-haiku-4-5",
                           default_max_tokens=4096)
    assert got == {**CLAUDE_CODE_BODY, "model": "claude-haiku-4-5"}
    assert body == CLAUDE_CODE_BODY  # the client's body is the same after
    assert got["messages"][1] == {"role": "system", "content": [
        {"type": "text", "text": "# Environment\n - Platform: linux", "cache_control": {"type": "ephemeral"}}]}


def test_unknown_fields_reach_an_openai_provider_as_sent() -> None:
    body = {"model": "fast", "messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "hi"}],
            "reasoning_effort": "high", "verbosity": "low", "prediction": {"type": "content", "content": "x"},
            "prompt_cache_key": "k", "metadata": {"a": "b"}, "web_search_options": {}, "a_field_from_2027": [1]}
    got = upstream_request(WireFormat.OPENAI, WireFormat.OPENAI, copy.deepcopy(body), model="gpt-5",
                           default_max_tokens=7)
    assert got == {**body, "model": "gpt-5", "stream": True, "stream_options": {"include_usage": True}}


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
    assert translator.finish() == ([] if fmt is not WireFormat.ANTHROPIC else [
        SSEEvent({"type": "message_stop"}, "message_stop")])


def test_anthropic_stream_ends_with_exactly_one_message_stop() -> None:
    translator = stream_translator(WireFormat.ANTHROPIC, WireFormat.ANTHROPIC)
    delta = SSEEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta")
    stop = SSEEvent({"type": "message_stop"}, "message_stop")
    assert translator.feed(delta) == [delta] and translator.feed(stop) == [stop]
    assert translator.feed(delta) == [] and translator.feed(stop) == []  # nothing after the end
    assert translator.finish() == []
    assert stream_translator(WireFormat.ANTHROPIC, WireFormat.ANTHROPIC) is not translator  # one per stream


def test_translated_pairs_list_the_fields_they_leave_out_and_pass_through_lists_none() -> None:
    from gateway.translate import translation
    from gateway.wire import WireFormat

    claude_code_like = {
        "model": "m", "max_tokens": 10, "stream": True, "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"}, "context_management": {"edits": []},
        "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]}
    pair = translation(WireFormat.ANTHROPIC, WireFormat.OPENAI)
    assert pair.dropped_fields(claude_code_like) == (
        "cache_control", "context_management", "output_config.effort", "thinking")
    assert translation(WireFormat.ANTHROPIC, WireFormat.ANTHROPIC).dropped_fields(claude_code_like) == ()
    openai_body = {"model": "m", "messages": [], "temperature": 0.2, "logprobs": True, "seed": 1, "n": 1}
    assert translation(WireFormat.OPENAI, WireFormat.ANTHROPIC).dropped_fields(openai_body) == (
        "logprobs", "seed", "temperature")
