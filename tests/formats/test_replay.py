"""A replayed cached answer aggregates back to the same answer, in both formats."""

from typing import Any

import pytest

from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.formats.replay import anthropic_stream, openai_stream

OPENAI_BODY: Any = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": "hello", "refusal": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
ANTHROPIC_BODY: Any = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use",
    "stop_sequence": None, "content": [{"type": "text", "text": "hi"},
                                       {"type": "tool_use", "id": "tu_1", "name": "f", "input": {"a": 1}}],
    "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 0,
              "cache_creation_input_tokens": 0}}


@pytest.mark.parametrize(("module", "replay", "body"), [
    (openai_format, openai_stream, OPENAI_BODY), (anthropic_format, anthropic_stream, ANTHROPIC_BODY)])
def test_replay_aggregates_back(module: Any, replay: Any, body: Any) -> None:
    aggregator = module.Aggregator()
    events = replay(body)
    for ev in events:
        aggregator.feed(ev)
    result = aggregator.result()
    if module is openai_format:
        assert result["choices"][0]["message"]["content"] == "hello"
        assert result["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{\"a\":1}"}
        assert result["choices"][0]["finish_reason"] == "tool_calls"
        assert result["usage"]["completion_tokens"] == 4
    else:
        assert result["content"] == ANTHROPIC_BODY["content"]
        assert result["stop_reason"] == "tool_use" and result["usage"]["output_tokens"] == 4
    assert any(module.inspect(ev).content for ev in events)
