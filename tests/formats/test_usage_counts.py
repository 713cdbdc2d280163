"""Token counts from a provider are taken only when they are plausible counts; anything else is missing."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.formats import MAX_TOKENS, token_count
from gateway.formats import anthropic as an
from gateway.formats import openai as oa
from gateway.translate.anthropic_via_openai import ChatChunksToAnthropicStream
from gateway.translate.openai_via_anthropic import AnthropicStreamToChatChunks
from gateway.translate.responses_via_anthropic import AnthropicStreamToResponses
from gateway.translate.responses_via_openai import ChatChunksToResponses
from gateway.wire import SSEEvent

BAD: list[Any] = ["12", -1, -50_000_000, 1e308, 12.0, True, None, [1], {"n": 1}, MAX_TOKENS]


def test_token_count() -> None:
    assert token_count(0) == 0 and token_count(12) == 12 and token_count(MAX_TOKENS - 1) == MAX_TOKENS - 1
    for value in BAD:
        assert token_count(value) is None, value


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_openai_usage(bad: Any) -> None:
    chunk = {"choices": [], "usage": {"prompt_tokens": bad, "completion_tokens": 7, "total_tokens": bad,
                                      "prompt_tokens_details": {"cached_tokens": bad}}}
    info = oa.inspect(SSEEvent(chunk))
    assert (info.input_tokens, info.output_tokens, info.cached_input_tokens) == (None, 7, None)
    aggregator = oa.Aggregator()
    aggregator.feed(SSEEvent({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}))
    aggregator.feed(SSEEvent(chunk))
    usage = aggregator.result()["usage"]
    assert usage == {"prompt_tokens": 0, "completion_tokens": 7, "total_tokens": 7,
                     "prompt_tokens_details": {"cached_tokens": 0}}
    for usage_value in (bad, [bad], "x"):  # the usage object itself of the wrong type: as if none
        if usage_value:
            assert oa.inspect(SSEEvent({"choices": [], "usage": usage_value})).input_tokens is None


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_anthropic_usage(bad: Any) -> None:
    start = SSEEvent({"type": "message_start", "message": {"id": "m", "usage": {
        "input_tokens": bad, "output_tokens": bad, "cache_read_input_tokens": bad,
        "cache_creation_input_tokens": bad}}})
    delta = SSEEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                      "usage": {"output_tokens": bad, "input_tokens": bad}})
    for ev in (start, delta):
        info = an.inspect(ev)
        assert (info.input_tokens, info.output_tokens) == (None, None)
    aggregator = an.Aggregator()
    for ev in (start, delta):
        aggregator.feed(ev)
    usage = aggregator.result()["usage"]
    assert all(usage[k] == 0 for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                       "cache_creation_input_tokens"))
    assert an.inspect(SSEEvent({"type": "message_delta", "usage": [1]})).output_tokens is None


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_translated_usage(bad: Any) -> None:
    to_chunks = AnthropicStreamToChatChunks()
    to_chunks.feed(SSEEvent({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": bad}}}))
    out = to_chunks.feed(SSEEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                   "usage": {"output_tokens": bad}}))
    assert out[-1].data["usage"]["prompt_tokens"] == 0 and out[-1].data["usage"]["completion_tokens"] == 0
    to_events = ChatChunksToAnthropicStream()
    to_events.feed(SSEEvent({"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"},
                                                     "finish_reason": "stop"}]}))
    out = to_events.feed(SSEEvent({"id": "c", "choices": [], "usage": {
        "prompt_tokens": bad, "completion_tokens": bad, "prompt_tokens_details": {"cached_tokens": bad}}}))
    usage = next(ev.data["usage"] for ev in out if ev.data["type"] == "message_delta")
    assert usage == {"output_tokens": 0, "input_tokens": 0, "cache_read_input_tokens": 0}


def _completed_usage(events: list[SSEEvent]) -> Any:
    (done,) = [ev.data for ev in events if ev.data["type"] == "response.completed"]
    return done["response"]["usage"]


ZERO_RESPONSES_USAGE = {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_responses_translated_usage(bad: Any) -> None:
    # Before: a string count was summed (a TypeError, the answer a 502), a negative one handed on as it was.
    from_anthropic = AnthropicStreamToResponses()
    out = from_anthropic.feed(SSEEvent({"type": "message_start", "message": {"id": "m", "model": "c", "usage": {
        "input_tokens": bad, "cache_read_input_tokens": bad, "cache_creation_input_tokens": bad}}}))
    out += from_anthropic.feed(SSEEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                         "usage": {"output_tokens": bad}}))
    out += from_anthropic.feed(SSEEvent({"type": "message_stop"}))
    assert _completed_usage(out) == ZERO_RESPONSES_USAGE
    from_chat = ChatChunksToResponses()
    out = from_chat.feed(SSEEvent({"id": "c", "model": "m", "choices": [
        {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}))
    out += from_chat.feed(SSEEvent({"id": "c", "choices": [], "usage": {
        "prompt_tokens": bad, "completion_tokens": bad, "prompt_tokens_details": {"cached_tokens": bad},
        "completion_tokens_details": {"reasoning_tokens": bad}}}))
    assert _completed_usage(out) == ZERO_RESPONSES_USAGE


@pytest.mark.parametrize("details", ["x", [1], 5], ids=repr)
def test_responses_translated_usage_details_of_the_wrong_type(details: Any) -> None:
    from_chat = ChatChunksToResponses()
    out = from_chat.feed(SSEEvent({"id": "c", "model": "m", "choices": [
        {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}))
    out += from_chat.feed(SSEEvent({"id": "c", "choices": [], "usage": {
        "prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": details,
        "completion_tokens_details": details}}))
    assert _completed_usage(out)["total_tokens"] == 5
    from_anthropic = AnthropicStreamToResponses()
    out = from_anthropic.feed(SSEEvent({"type": "message_start", "message": {"id": "m", "usage": details}}))
    out += from_anthropic.feed(SSEEvent({"type": "message_stop"}))
    assert _completed_usage(out) == ZERO_RESPONSES_USAGE
