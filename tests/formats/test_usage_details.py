"""Cache writes (with their TTL class) and reasoning, read from each format's usage fields by `inspect`."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.formats import UsageDetails, content_info
from gateway.formats import anthropic as anthropic_fmt
from gateway.formats import openai as openai_fmt
from gateway.wire import SSEEvent


def anthropic_start(usage: dict[str, Any]) -> SSEEvent:
    return SSEEvent({"type": "message_start", "message": {"id": "m", "usage": usage}}, event="message_start")


def openai_usage(usage: dict[str, Any]) -> SSEEvent:
    return SSEEvent({"id": "c", "choices": [], "usage": usage})


def test_anthropic_cache_writes_by_ttl_and_thinking() -> None:
    info = anthropic_fmt.inspect(anthropic_start({
        "input_tokens": 100, "cache_read_input_tokens": 90_000, "cache_creation_input_tokens": 8_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 6_000, "ephemeral_1h_input_tokens": 2_000},
        "output_tokens": 1}))
    assert info.input_tokens == 98_100 and info.cached_input_tokens == 90_000
    assert info.details == UsageDetails(cache_write_tokens=8_000, cache_write_long_tokens=2_000)
    delta = anthropic_fmt.inspect(SSEEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                            "usage": {"output_tokens": 564,
                                                      "output_tokens_details": {"thinking_tokens": 64}}},
                                           event="message_delta"))
    assert delta.output_tokens == 564 and delta.details == UsageDetails(reasoning_tokens=64)


def test_openai_cache_writes_and_reasoning() -> None:
    info = openai_fmt.inspect(openai_usage({
        "prompt_tokens": 98_100, "completion_tokens": 564,
        "prompt_tokens_details": {"cached_tokens": 90_000, "cache_write_tokens": 8_000,
                                  "cache_write_tokens_details": {"ttl_30m_tokens": 8_000, "ttl_12h_tokens": 0}},
        "completion_tokens_details": {"reasoning_tokens": 64}}))
    assert (info.input_tokens, info.cached_input_tokens, info.output_tokens) == (98_100, 90_000, 564)
    assert info.details == UsageDetails(cache_write_tokens=8_000, cache_write_long_tokens=0, reasoning_tokens=64)


@pytest.mark.parametrize("bad", ["8000", -1, 8000.0, True, 10**12, None, [1]])
def test_a_value_that_is_no_count_is_missing(bad: object) -> None:
    # (cache_creation_input_tokens itself is also summed into input_tokens: its validation lives there.)
    info = anthropic_fmt.inspect(anthropic_start({"input_tokens": 1, "output_tokens": 1,
                                                  "cache_creation": {"ephemeral_1h_input_tokens": bad},
                                                  "output_tokens_details": {"thinking_tokens": bad}}))
    assert info.details is None
    info = openai_fmt.inspect(openai_usage({"prompt_tokens": 1, "completion_tokens": 1,
                                            "prompt_tokens_details": {"cache_write_tokens": bad},
                                            "completion_tokens_details": {"reasoning_tokens": bad}}))
    assert info.details is None


def test_text_deltas_carry_no_details() -> None:
    assert content_info("x").details is None
    assert anthropic_fmt.inspect(SSEEvent({"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": "x"}})).details is None


def test_responses_cache_writes_and_reasoning() -> None:
    from gateway.formats import responses as responses_fmt

    info = responses_fmt.inspect(SSEEvent({"type": "response.completed", "response": {"status": "completed", "usage": {
        "input_tokens": 98_100, "output_tokens": 564,
        "input_tokens_details": {"cached_tokens": 90_000, "cache_write_tokens": 8_000,
                                 "cache_write_tokens_details": {"ttl_30m_tokens": 6_000, "ttl_12h_tokens": 2_000}},
        "output_tokens_details": {"reasoning_tokens": 64}}}}))
    assert (info.input_tokens, info.cached_input_tokens, info.output_tokens) == (98_100, 90_000, 564)
    assert info.details == UsageDetails(cache_write_tokens=8_000, cache_write_long_tokens=2_000, reasoning_tokens=64)
