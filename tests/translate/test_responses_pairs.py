"""The Responses door's translation pairs: native pass-through, via chat completions, via Anthropic Messages."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.formats.responses import Aggregator
from gateway.translate import translation
from gateway.translate.responses_via_anthropic import AnthropicStreamToResponses
from gateway.translate.responses_via_openai import ChatChunksToResponses
from gateway.wire import SSEEvent, WireFormat

R, CHAT, A = WireFormat.RESPONSES, WireFormat.OPENAI, WireFormat.ANTHROPIC
CONVERSATION: Any = {
    "model": "alias", "instructions": "be brief", "max_output_tokens": 100, "temperature": 0.2,
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"},
                                     {"type": "input_image", "image_url": "https://x/a.png", "detail": "low"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ],
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}],
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
    "reasoning": {"effort": "low"}, "metadata": {"k": "v"}, "store": True,
}


def test_native_pass_through_stores_nothing_upstream() -> None:
    body = {**CONVERSATION, "previous_response_id": "resp_1", "unknown_field": 1}
    sent = translation(R, R).request(body, model="gpt-n", default_max_tokens=10)
    assert sent["model"] == "gpt-n" and sent["stream"] is True and sent["store"] is False
    assert "previous_response_id" not in sent and sent["unknown_field"] == 1  # unknown fields forwarded
    # A reasoning item that only names one by id has nothing upstream to find; one with its content stays.
    assert [item.get("type") for item in sent["input"]].count("reasoning") == 0
    kept = translation(R, R).request({**body, "input": [{"type": "reasoning", "encrypted_content": "e"}]},
                                     model="m", default_max_tokens=1)
    assert kept["input"] == [{"type": "reasoning", "encrypted_content": "e"}]
    assert body["store"] is True and body["previous_response_id"] == "resp_1"  # never mutated


def test_via_chat_completions() -> None:
    sent = translation(R, CHAT).request(CONVERSATION, model="gpt-x", default_max_tokens=10)
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}}]},
        {"role": "assistant", "content": "let me look", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"},
                                                               "strict": True}}]
    assert sent["tool_choice"] == "auto"  # the Responses default, said explicitly
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "w", "schema": {"type": "object"}}}
    assert (sent["max_completion_tokens"], sent["temperature"], sent["reasoning_effort"]) == (100, 0.2, "low")
    assert sent["stream_options"] == {"include_usage": True} and "metadata" not in sent and "store" not in sent


def test_via_anthropic_messages() -> None:
    sent = translation(R, A).request(CONVERSATION, model="claude-x", default_max_tokens=10)
    assert sent["system"] == "be brief" and sent["max_tokens"] == 100 and "temperature" not in sent
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"][-1] == {"type": "tool_use", "id": "call_1", "name": "get_weather",
                                                  "input": {"city": "Paris"}}
    assert sent["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert sent["tools"][0]["input_schema"] == {"type": "object"}


@pytest.mark.parametrize(("pair", "body", "param"), [
    (CHAT, {"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    (A, {"input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type"),
    (CHAT, {"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    (CHAT, {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input[0].content[0].file_id"),
    # Refused by the second step (chat -> Messages), named in the client's terms.
    (A, {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}, "input[0]"),
    (A, {"instructions": "only rules", "input": []}, "input"),
    (CHAT, {"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
])
def test_what_a_format_cannot_express_is_a_400_naming_the_clients_field(pair: WireFormat, body: dict[str, Any],
                                                                        param: str) -> None:
    with pytest.raises(GatewayError) as info:
        translation(R, pair).request({"model": "m", **body}, model="m", default_max_tokens=10)
    assert info.value.status == 400 and info.value.param == param, info.value.message


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None,
          ) -> SSEEvent:
    data: dict[str, Any] = {"id": "c1", "model": "gpt-x",
                            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        data["usage"] = usage
    return SSEEvent(data)


def run(translator: Any, events: list[SSEEvent]) -> tuple[list[SSEEvent], dict[str, Any]]:
    out = [e for event in events for e in translator.feed(event)] + translator.finish()
    aggregator = Aggregator()
    for e in out:
        aggregator.feed(e)
    return out, aggregator.result()


def test_chat_chunks_become_a_responses_stream() -> None:
    out, body = run(ChatChunksToResponses(), [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}), chunk({}, "length"),
        chunk(usage={"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}})])
    assert out[-1].data["type"] == "response.incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"} and body["model"] == "gpt-x"
    assert body["usage"]["input_tokens"] == 10 and body["usage"]["input_tokens_details"] == {"cached_tokens": 4}
    assert [(i["type"], i.get("call_id")) for i in body["output"]] == [("message", None), ("function_call", "call_1")]
    assert [e.data["sequence_number"] for e in out] == list(range(len(out)))


def test_a_chat_stream_without_usage_still_ends() -> None:
    out, body = run(ChatChunksToResponses(), [chunk({"content": "Hi"}), chunk({}, "stop")])
    assert out[-1].data["type"] == "response.completed" and body["usage"] is None


def anthropic(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(data, data["type"])


def test_anthropic_events_become_a_responses_stream() -> None:
    out, body = run(AnthropicStreamToResponses(), [anthropic(e) for e in (
        {"type": "message_start", "message": {"model": "claude-x", "usage": {
            "input_tokens": 3, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 2}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                      "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ": 1}"}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"})])
    assert out[-1].data["type"] == "response.completed"
    assert [i["type"] for i in body["output"]] == ["reasoning", "message", "function_call"]
    assert body["output"][0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert body["output"][2]["call_id"] == "toolu_1" and body["output"][2]["arguments"] == '{"a": 1}'
    # OpenAI counts every prompt token as input, cached ones included.
    assert body["usage"]["input_tokens"] == 15 and body["usage"]["input_tokens_details"]["cached_tokens"] == 10
    assert body["usage"]["output_tokens"] == 9 and body["model"] == "claude-x"


def test_an_anthropic_max_tokens_stop_is_an_incomplete_response() -> None:
    out, body = run(AnthropicStreamToResponses(), [anthropic(e) for e in (
        {"type": "message_start", "message": {"usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"})])
    assert out[-1].data["type"] == "response.incomplete" and body["output"][0]["content"][0]["text"] == "Hi"
