"""OpenAI client, Anthropic provider: chat.completions bodies -> Messages bodies, Messages events -> chunks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from anthropic.types.message_create_params import MessageCreateParamsStreaming
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from gateway.errors import GatewayError
from gateway.translate import openai_via_anthropic, stream_translator, upstream_request
from gateway.translate.openai_via_anthropic import AnthropicStreamToChatChunks, translate_request
from gateway.wire import SSEEvent, WireFormat

USER = {"role": "user", "content": "What is the weather in Paris?"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                 "parameters": SCHEMA}}
ANTHROPIC_WEATHER_TOOL = {"name": "get_weather", "description": "Current weather", "input_schema": SCHEMA}


def translate(**fields: Any) -> dict[str, Any]:
    body = {"model": "gpt-4o", "messages": [USER], **fields}
    return translate_request(body, model="claude-sonnet-4-5", default_max_tokens=4096)


# ---------------------------------------------------------------------------------------------- request

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("minimal", {},
     {"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": True, "messages": [USER]}),
    ("system message to top-level system",
     {"messages": [{"role": "system", "content": "Be brief."}, USER]},
     {"system": "Be brief.", "messages": [USER]}),
    ("system and developer messages gathered in order as text blocks",
     {"messages": [{"role": "developer", "content": [{"type": "text", "text": "Rule 1"}]}, USER,
                   {"role": "system", "content": "Rule 2"}]},
     {"system": [{"type": "text", "text": "Rule 1"}, {"type": "text", "text": "Rule 2"}], "messages": [USER]}),
    ("max_completion_tokens wins over max_tokens", {"max_completion_tokens": 300, "max_tokens": 100},
     {"max_tokens": 300}),
    ("max_tokens alone", {"max_tokens": 100}, {"max_tokens": 100}),
    ("stop string", {"stop": "END"}, {"stop_sequences": ["END"]}),
    ("stop list", {"stop": ["END", "STOP"]}, {"stop_sequences": ["END", "STOP"]}),
    ("user to metadata.user_id", {"user": "u-42"}, {"metadata": {"user_id": "u-42"}}),
    ("safety_identifier when no user", {"safety_identifier": "hash-1"}, {"metadata": {"user_id": "hash-1"}}),
    ("tools", {"tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "now", "strict": True}}]},
     {"tools": [ANTHROPIC_WEATHER_TOOL,
                {"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True}]}),
    ("tool_choice auto", {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
     {"tools": [ANTHROPIC_WEATHER_TOOL], "tool_choice": {"type": "auto"}}),
    ("tool_choice none", {"tools": [WEATHER_TOOL], "tool_choice": "none"},
     {"tools": [ANTHROPIC_WEATHER_TOOL], "tool_choice": {"type": "none"}}),
    ("tool_choice required", {"tools": [WEATHER_TOOL], "tool_choice": "required"},
     {"tools": [ANTHROPIC_WEATHER_TOOL], "tool_choice": {"type": "any"}}),
    ("tool_choice named",
     {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     {"tools": [ANTHROPIC_WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}}),
    ("parallel_tool_calls false without tool_choice", {"tools": [WEATHER_TOOL], "parallel_tool_calls": False},
     {"tools": [ANTHROPIC_WEATHER_TOOL], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
    ("parallel_tool_calls false with required",
     {"tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False},
     {"tools": [ANTHROPIC_WEATHER_TOOL], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}}),
    ("tool_choice without tools is not sent", {"tool_choice": "required", "parallel_tool_calls": False}, {}),
    ("response_format json_schema to output_config",
     {"response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}},
     {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}),
    ("images: data URL to base64 source, https URL to url source",
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "Compare"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
         {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]},
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "Compare"},
         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
         {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]}]}),
    ("inline PDF file to document",
     {"messages": [{"role": "user", "content": [
         {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}]}]},
     {"messages": [{"role": "user", "content": [
         {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]}]}),
    ("consecutive user messages merged",
     {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": [{"type": "text", "text": "?"}]}]},
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "?"}]}]}),
    ("empty assistant turn dropped, neighbours merged",
     {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""},
                   {"role": "user", "content": "b"}]},
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
    ("fields without an Anthropic equivalent dropped",
     {"logprobs": True, "top_logprobs": 2, "n": 1, "seed": 7, "frequency_penalty": 0.5, "presence_penalty": 0.1,
      "logit_bias": {"50256": -100}, "response_format": {"type": "json_object"}, "store": True,
      "metadata": {"k": "v"}, "reasoning_effort": "low", "stream_options": {"include_usage": True},
      "temperature": 0.2, "top_p": 0.9, "service_tier": "auto", "modalities": ["text"]},
     {}),
]


@pytest.mark.parametrize(("fields", "expected"), [case[1:] for case in REQUEST_CASES],
                         ids=[case[0] for case in REQUEST_CASES])
def test_request_translation(fields: dict[str, Any], expected: dict[str, Any], assert_shape: Any) -> None:
    want = {"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": True, "messages": [USER], **expected}
    got = translate(**fields)
    assert got == want
    assert_shape(got, MessageCreateParamsStreaming)


def test_tool_calls_and_results_become_tool_use_and_merged_tool_result_turn(assert_shape: Any) -> None:
    messages = [
        USER,
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "09:00"}]},
        {"role": "user", "content": "And tomorrow?"},
    ]
    got = translate(messages=messages)
    assert got["messages"] == [
        USER,
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}]},
        # Both results and the next question share one user turn: Anthropic requires alternation.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "09:00"}]},
            {"type": "text", "text": "And tomorrow?"}]},
    ]
    assert_shape(got, MessageCreateParamsStreaming)


def test_assistant_with_only_tool_calls_has_no_text_block() -> None:
    messages = [USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]
    assert translate(messages=messages)["messages"][1] == {
        "role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]}


def test_temperature_dropped_by_default_and_clamped_when_sampling_params_are_sent() -> None:
    body = {"model": "gpt-4o", "messages": [USER], "temperature": 1.7, "top_p": 0.9}
    assert "temperature" not in translate_request(body, model="c", default_max_tokens=10)
    got = translate_request(body, model="c", default_max_tokens=10, send_sampling_params=True)
    assert (got["temperature"], got["top_p"]) == (1.0, 0.9)
    low = translate_request({**body, "temperature": 0.3}, model="c", default_max_tokens=10,
                            send_sampling_params=True)
    assert low["temperature"] == 0.3


UNTRANSLATABLE: list[tuple[str, dict[str, Any], str]] = [
    ("n above 1", {"n": 2}, "n"),
    ("legacy functions", {"functions": [{"name": "f"}]}, "functions"),
    ("audio output", {"modalities": ["text", "audio"]}, "modalities"),
    ("audio input", {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}, "messages[0].content[0].type"),
    ("unsupported image type", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]},
     "messages[0].content[0].image_url.url"),
    ("non-http image URL", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]},
     "messages[0].content[0].image_url.url"),
    ("file by id", {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
     "messages[0].content[0].file"),
    ("arguments not a JSON object", {"messages": [USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ("custom tool", {"tools": [{"type": "custom", "custom": {"name": "grep"}}]}, "tools[0].type"),
    ("allowed_tools choice", {"tools": [WEATHER_TOOL], "tool_choice": {
        "type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}, "tool_choice"),
    # OpenAI answers system messages alone; Anthropic needs a turn, and its own 400 would end the hedge.
    ("system messages alone", {"messages": [{"role": "system", "content": "Say hi."},
                                            {"role": "developer", "content": "Be brief."}]}, "messages"),
    ("only empty turns besides system", {"messages": [{"role": "system", "content": "s"},
                                                      {"role": "user", "content": ""}]}, "messages"),
]


@pytest.mark.parametrize(("fields", "param"), [case[1:] for case in UNTRANSLATABLE],
                         ids=[case[0] for case in UNTRANSLATABLE])
def test_inexpressible_requests_are_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as raised:
        translate(**fields)
    assert (raised.value.status, raised.value.param) == (400, param)
    assert raised.value.message.startswith(param)


def test_input_body_is_never_mutated_and_outputs_are_independent() -> None:
    body = {"model": "gpt-4o", "stop": ["x"], "tools": [WEATHER_TOOL], "parallel_tool_calls": False, "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "r"}, {"role": "user", "content": "d"}]}
    before = copy.deepcopy(body)
    first = upstream_request(WireFormat.OPENAI, WireFormat.ANTHROPIC, body, model="m1", default_max_tokens=5)
    second = upstream_request(WireFormat.OPENAI, WireFormat.ANTHROPIC, body, model="m2", default_max_tokens=5)
    assert body == before
    first["messages"][0]["content"].append({"type": "text", "text": "changed"})
    first["stop_sequences"].append("y")
    assert body == before
    assert second["messages"] != first["messages"] and second["stop_sequences"] == ["x"]
    assert (first["model"], second["model"]) == ("m1", "m2")


def test_upstream_request_dispatches_here() -> None:
    body = {"model": "gpt-4o", "messages": [USER], "max_tokens": 9}
    assert upstream_request(WireFormat.OPENAI, WireFormat.ANTHROPIC, body, model="c", default_max_tokens=1) == \
        translate_request(body, model="c", default_max_tokens=1)
    assert isinstance(stream_translator(WireFormat.OPENAI, WireFormat.ANTHROPIC), AnthropicStreamToChatChunks)


# ----------------------------------------------------------------------------------------------- stream

MSG_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
MODEL = "claude-sonnet-4-5-20250929"
CREATED = 1_764_300_000


def ev(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(data, data["type"])


def message_start(usage: dict[str, Any]) -> SSEEvent:
    return ev({"type": "message_start", "message": {
        "id": MSG_ID, "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})


def text_start(index: int) -> SSEEvent:
    return ev({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})


def tool_start(index: int, tool_id: str, name: str) -> SSEEvent:
    return ev({"type": "content_block_start", "index": index,
               "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}})


def text_delta(index: int, text: str) -> SSEEvent:
    return ev({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})


def json_delta(index: int, partial: str) -> SSEEvent:
    return ev({"type": "content_block_delta", "index": index,
               "delta": {"type": "input_json_delta", "partial_json": partial}})


def block_stop(index: int) -> SSEEvent:
    return ev({"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, usage: dict[str, Any]) -> SSEEvent:
    return ev({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
               "usage": usage})


PING = ev({"type": "ping"})
MESSAGE_STOP = ev({"type": "message_stop"})


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-" + MSG_ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def usage_chunk(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {"id": "chatcmpl-" + MSG_ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion,
                                     "prompt_tokens_details": {"cached_tokens": cached}}}


def run(events: list[SSEEvent], assert_no_extras: Any) -> list[dict[str, Any]]:
    translator = AnthropicStreamToChatChunks(clock=lambda: CREATED + 0.75)
    out = [item for event in events for item in translator.feed(event)] + translator.finish()
    assert all(item.event is None for item in out)  # OpenAI streams carry no SSE event names
    for item in out:
        if "error" not in item.data:
            assert_no_extras(ChatCompletionChunk.model_validate(item.data))
    return [item.data for item in out]


def test_text_stream(assert_no_extras: Any) -> None:
    events = [message_start({"input_tokens": 25, "output_tokens": 1}), text_start(0), PING,
              text_delta(0, "Hello"), text_delta(0, "!"), block_stop(0),
              message_delta("end_turn", {"output_tokens": 15}), MESSAGE_STOP]
    assert run(events, assert_no_extras) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": "!"}),
        chunk({}, "stop"),
        usage_chunk(25, 15),
    ]


def test_text_then_two_parallel_tool_calls(assert_no_extras: Any) -> None:
    events = [
        message_start({"input_tokens": 472, "output_tokens": 2}),
        text_start(0), text_delta(0, "Checking both cities."), block_stop(0),
        tool_start(1, "toolu_01A", "get_weather"), json_delta(1, ""), json_delta(1, '{"city": '),
        json_delta(1, '"Paris"}'), block_stop(1),
        tool_start(2, "toolu_01B", "get_weather"), json_delta(2, '{"city": "Rome"}'), block_stop(2),
        message_delta("tool_use", {"output_tokens": 89}), MESSAGE_STOP,
    ]
    out = run(events, assert_no_extras)
    assert out == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking both cities."}),
        chunk({"tool_calls": [{"index": 0, "id": "toolu_01A", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "toolu_01B", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"city": "Rome"}'}}]}),
        chunk({}, "tool_calls"),
        usage_chunk(472, 89),
    ]
    # What an OpenAI SDK client assembles from these chunks.
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for item in out:
        state.handle_chunk(ChatCompletionChunk.model_validate(item))
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Checking both cities."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("toolu_01A", "get_weather", '{"city": "Paris"}'), ("toolu_01B", "get_weather", '{"city": "Rome"}')]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 561


def test_prompt_tokens_include_cache_reads_and_writes(assert_no_extras: Any) -> None:
    events = [message_start({"input_tokens": 10, "cache_creation_input_tokens": 200,
                             "cache_read_input_tokens": 1800, "output_tokens": 1}),
              text_start(0), text_delta(0, "ok"), block_stop(0),
              message_delta("end_turn", {"output_tokens": 50}), MESSAGE_STOP]
    assert run(events, assert_no_extras)[-1] == usage_chunk(2010, 50, cached=1800)


def test_usage_repeated_on_message_delta_wins(assert_no_extras: Any) -> None:
    # Newer API versions repeat cumulative input counts on message_delta; they are the final word.
    events = [message_start({"input_tokens": 10, "output_tokens": 1}),
              message_delta("max_tokens", {"input_tokens": 12, "cache_read_input_tokens": 100,
                                           "cache_creation_input_tokens": 0, "output_tokens": 7}), MESSAGE_STOP]
    out = run(events, assert_no_extras)
    assert out[-2:] == [chunk({}, "length"), usage_chunk(112, 7, cached=100)]


def test_thinking_blocks_are_not_forwarded(assert_no_extras: Any) -> None:
    events = [message_start({"input_tokens": 5, "output_tokens": 1}),
              ev({"type": "content_block_start", "index": 0,
                  "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
              ev({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}),
              ev({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}}),
              block_stop(0), text_start(1), text_delta(1, "42"), block_stop(1),
              message_delta("end_turn", {"output_tokens": 30}), MESSAGE_STOP]
    assert [c["choices"][0]["delta"] for c in run(events, assert_no_extras)[:-1]] == [
        {"role": "assistant", "content": ""}, {"content": "42"}, {}]


def test_error_event_mid_stream(assert_no_extras: Any) -> None:
    events = [message_start({"input_tokens": 5, "output_tokens": 1}), text_start(0), text_delta(0, "Hel"),
              ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    assert run(events, assert_no_extras) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}},
    ]


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter")])
def test_stop_reason_mapping(stop_reason: str, finish_reason: str, assert_no_extras: Any) -> None:
    events = [message_start({"input_tokens": 1, "output_tokens": 1}),
              message_delta(stop_reason, {"output_tokens": 1}), MESSAGE_STOP]
    assert run(events, assert_no_extras)[1]["choices"][0]["finish_reason"] == finish_reason
    assert openai_via_anthropic.FINISH_REASONS[stop_reason] == finish_reason
