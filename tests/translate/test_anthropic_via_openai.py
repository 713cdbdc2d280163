"""Anthropic client, OpenAI provider: Messages bodies -> chat.completions bodies, chunks -> Messages events."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming
from pydantic import TypeAdapter

from gateway.errors import GatewayError
from gateway.translate import anthropic_via_openai, stream_translator, upstream_request
from gateway.translate.anthropic_via_openai import ChatChunksToAnthropicStream, translate_request
from gateway.wire import SSEEvent, WireFormat
from tests.claude_code import CLAUDE_CODE_BODY

USER = {"role": "user", "content": "What is the weather in Paris?"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather", "input_schema": SCHEMA}
OPENAI_WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                        "parameters": SCHEMA}}
BASE = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
        "max_completion_tokens": 1024, "messages": [USER]}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def translate(**fields: Any) -> dict[str, Any]:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [USER], **fields}
    return translate_request(body, model="gpt-4o")


# ---------------------------------------------------------------------------------------------- request

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("minimal", {}, {}),
    ("system string", {"system": "Be brief."},
     {"messages": [{"role": "system", "content": "Be brief."}, USER]}),
    ("system blocks, cache_control dropped",
     {"system": [{"type": "text", "text": "Rule 1"},
                 {"type": "text", "text": "Rule 2", "cache_control": {"type": "ephemeral"}}]},
     {"messages": [{"role": "system", "content": [{"type": "text", "text": "Rule 1"},
                                                  {"type": "text", "text": "Rule 2"}]}, USER]}),
    ("system turn inside messages (API 2026-10-21)",
     {"messages": [USER, {"role": "system", "content": "Now answer in French."}]},
     {"messages": [USER, {"role": "system", "content": "Now answer in French."}]}),
    ("stop_sequences, sampling, user", {"stop_sequences": ["END"], "temperature": 0.3, "top_p": 0.8, "top_k": 5,
                                        "metadata": {"user_id": "u-42"}},
     {"stop": ["END"], "temperature": 0.3, "top_p": 0.8, "user": "u-42"}),
    ("tools", {"tools": [WEATHER_TOOL, {"type": "custom", "name": "now", "input_schema": {"type": "object"},
                                        "strict": True}]},
     {"tools": [OPENAI_WEATHER_TOOL, {"type": "function", "function": {
         "name": "now", "parameters": {"type": "object"}, "strict": True}}]}),
    ("tool_choice auto", {"tools": [WEATHER_TOOL], "tool_choice": {"type": "auto"}},
     {"tools": [OPENAI_WEATHER_TOOL], "tool_choice": "auto"}),
    ("tool_choice none", {"tools": [WEATHER_TOOL], "tool_choice": {"type": "none"}},
     {"tools": [OPENAI_WEATHER_TOOL], "tool_choice": "none"}),
    ("tool_choice any", {"tools": [WEATHER_TOOL], "tool_choice": {"type": "any"}},
     {"tools": [OPENAI_WEATHER_TOOL], "tool_choice": "required"}),
    ("tool_choice tool, parallel disabled",
     {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "get_weather",
                                               "disable_parallel_tool_use": True}},
     {"tools": [OPENAI_WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
      "parallel_tool_calls": False}),
    ("tool_choice without tools is not sent",
     {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}, {}),
    ("output_config.format to response_format",
     {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}, "effort": "high"}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA}}}),
    ("images: base64 to data URL, url to url",
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "Compare"}, {"type": "image", "source": PNG},
         {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]}]},
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "Compare"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
         {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}),
    ("documents: PDF to file part, plain text to text",
     {"messages": [{"role": "user", "content": [
         {"type": "document", "title": "q3.pdf",
          "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
         {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}]}]},
     {"messages": [{"role": "user", "content": [
         {"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
         {"type": "text", "text": "notes"}]}]}),
    ("fields without an OpenAI equivalent dropped",
     {"thinking": {"type": "enabled", "budget_tokens": 2048}, "cache_control": {"type": "ephemeral"},
      "service_tier": "auto", "speed": "fast", "inference_geo": "us", "container": "c-1", "top_k": 40,
      "metadata": {}},
     {}),
]


@pytest.mark.parametrize(("fields", "expected"), [case[1:] for case in REQUEST_CASES],
                         ids=[case[0] for case in REQUEST_CASES])
def test_request_translation(fields: dict[str, Any], expected: dict[str, Any], assert_shape: Any) -> None:
    got = translate(**fields)
    assert got == {**BASE, **expected}
    assert_shape(got, CompletionCreateParamsStreaming)


def test_tool_use_and_tool_results(assert_shape: Any) -> None:
    messages = [
        USER,
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "no data"}, {"type": "image", "source": PNG}]},
            {"type": "text", "text": "Which is warmer?", "cache_control": {"type": "ephemeral"}}]},
    ]
    got = translate(messages=messages)
    assert got["messages"] == [
        USER,
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        # Tool messages must follow the assistant's calls directly; the rest of the turn comes after them,
        # including the image the tool returned (OpenAI tool messages are text only).
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "no data"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "text", "text": "Which is warmer?"}]},
    ]
    assert_shape(got, CompletionCreateParamsStreaming)


def test_assistant_turn_of_only_thinking_is_dropped_and_tool_only_turn_has_null_content() -> None:
    messages = [USER, {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]},
                {"role": "user", "content": "go on"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]
    assert translate(messages=messages)["messages"] == [
        USER, {"role": "user", "content": "go on"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]


UNTRANSLATABLE: list[tuple[str, dict[str, Any], str]] = [
    # Paths as the Anthropic door writes them: the client speaks Anthropic.
    ("server tool", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
    ("image by file id", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]},
     "messages.0.content.0.image.source.type"),
    ("document by URL", {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]},
     "messages.0.content.0.document.source.type"),
    ("search result block", {"messages": [{"role": "user", "content": [
        {"type": "search_result", "source": "s", "title": "t", "content": []}]}]}, "messages.0.content.0.type"),
    ("server tool use in history", {"messages": [USER, {"role": "assistant", "content": [
        {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]}, "messages.1.content.0.type"),
    ("image in a system turn", {"messages": [USER, {"role": "system", "content": [
        {"type": "image", "source": PNG}]}]}, "messages.1.content.0.type"),
    ("max_tokens 0 (prompt cache pre-warming)", {"max_tokens": 0}, "max_tokens"),
]


@pytest.mark.parametrize(("fields", "param"), [case[1:] for case in UNTRANSLATABLE],
                         ids=[case[0] for case in UNTRANSLATABLE])
def test_inexpressible_requests_are_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as raised:
        translate(**fields)
    assert (raised.value.status, raised.value.param) == (400, param)
    assert raised.value.message.startswith(f"{param}: ")


def test_claude_code_request(assert_shape: Any) -> None:
    """What Claude Code sends for an unknown model name: its system turn stays a system message in its place,
    cache_control / thinking / context_management / effort have no OpenAI form and are dropped."""
    got = translate_request(copy.deepcopy(CLAUDE_CODE_BODY), model="gpt-4o")
    assert got["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332"},
                                       {"type": "text", "text": "You are a Claude agent."},
                                       {"type": "text", "text": "You are an agent working with the user."}]},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>...</system-reminder>"},
                                     {"type": "text", "text": "say hi"}]},
        {"role": "system", "content": "# Environment\n - Platform: linux"},
    ]
    assert got["user"] == CLAUDE_CODE_BODY["metadata"]["user_id"]
    assert got["max_completion_tokens"] == 32000
    assert got["tools"] == [{"type": "function", "function": {
        "name": "Bash", "description": "Run a command", "parameters": CLAUDE_CODE_BODY["tools"][0]["input_schema"]}}]
    assert set(got) == {"model", "messages", "stream", "stream_options", "max_completion_tokens", "user", "tools"}
    assert_shape(got, CompletionCreateParamsStreaming)


def test_input_body_is_never_mutated_and_outputs_are_independent() -> None:
    body = {"model": "claude", "max_tokens": 10, "system": [{"type": "text", "text": "s"}],
            "stop_sequences": ["x"], "tools": [WEATHER_TOOL], "metadata": {"user_id": "u"},
            "messages": [USER, {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t", "name": "get_weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "1C"}]}]}
    before = copy.deepcopy(body)
    first = upstream_request(WireFormat.ANTHROPIC, WireFormat.OPENAI, body, model="a", default_max_tokens=5)
    second = upstream_request(WireFormat.ANTHROPIC, WireFormat.OPENAI, body, model="b", default_max_tokens=5)
    assert body == before
    first["messages"].append({"role": "user", "content": "more"})
    first["stop"].append("y")
    first["stream_options"]["include_obfuscation"] = False
    assert body == before
    assert len(second["messages"]) == 4 and second["stop"] == ["x"]
    assert second["stream_options"] == {"include_usage": True}
    assert (first["model"], second["model"]) == ("a", "b")


def test_upstream_request_dispatches_here() -> None:
    body = {"model": "claude", "max_tokens": 9, "messages": [USER]}
    assert upstream_request(WireFormat.ANTHROPIC, WireFormat.OPENAI, body, model="g", default_max_tokens=1) == \
        translate_request(body, model="g")
    assert isinstance(stream_translator(WireFormat.ANTHROPIC, WireFormat.OPENAI), ChatChunksToAnthropicStream)


# ----------------------------------------------------------------------------------------------- stream

CHUNK_ID = "chatcmpl-CXk2d9eQp1"
MODEL = "gpt-4o-2024-08-06"
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def oa_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> SSEEvent:
    return SSEEvent({"id": CHUNK_ID, "object": "chat.completion.chunk", "created": 1764300000, "model": MODEL,
                     "service_tier": "default", "system_fingerprint": "fp_cbf1785567",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                     "usage": None, "obfuscation": "x1"})


def oa_usage(prompt: int, completion: int, cached: int = 0) -> SSEEvent:
    return SSEEvent({"id": CHUNK_ID, "object": "chat.completion.chunk", "created": 1764300000, "model": MODEL,
                     "choices": [], "usage": {
                         "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                         "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                       "accepted_prediction_tokens": 0,
                                                       "rejected_prediction_tokens": 0}}})


def call_start(index: int, call_id: str, name: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                            "function": {"name": name, "arguments": ""}}]}


def call_args(index: int, arguments: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}


ROLE = {"role": "assistant", "content": "", "refusal": None}
MESSAGE_START = {"type": "message_start", "message": {
    "id": "msg_" + CHUNK_ID, "type": "message", "role": "assistant", "model": MODEL, "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}
MESSAGE_STOP = {"type": "message_stop"}


def text_start(index: int) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}


def tool_start(index: int, tool_id: str, name: str) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def json_delta(index: int, partial: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": partial}}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output: int, input_: int, cached: int = 0) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output, "input_tokens": input_, "cache_read_input_tokens": cached}}


def run(chunks: list[SSEEvent], assert_no_extras: Any) -> list[dict[str, Any]]:
    translator = ChatChunksToAnthropicStream()
    out = [item for chunk in chunks for item in translator.feed(chunk)] + translator.finish()
    assert translator.finish() == []  # closing events are owed once only
    for item in out:
        assert item.event == item.data["type"]  # Anthropic SDKs drop events without an event: line
        if item.event == "error":
            assert_no_extras(ErrorResponse.model_validate(item.data))
        else:
            assert_no_extras(STREAM_EVENT.validate_python(item.data))
    return [item.data for item in out]


def accumulate(events: list[dict[str, Any]]) -> Any:
    """The final Message an Anthropic SDK client assembles from these events."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for data in events:
        snapshot = accumulate_event(event=STREAM_EVENT.validate_python(data), current_snapshot=snapshot,
                                    json_bufs=json_bufs)
    return snapshot


def test_text_stream(assert_no_extras: Any) -> None:
    chunks = [oa_chunk(ROLE), oa_chunk({"content": "Hello"}), oa_chunk({"content": "!"}), oa_chunk({}, "stop"),
              oa_usage(20, 2)]
    events = run(chunks, assert_no_extras)
    assert events == [MESSAGE_START, text_start(0), text_delta(0, "Hello"), text_delta(0, "!"), block_stop(0),
                      message_delta("end_turn", 2, 20), MESSAGE_STOP]
    message = accumulate(events)
    assert [block.text for block in message.content] == ["Hello!"]
    assert (message.stop_reason, message.usage.output_tokens, message.usage.input_tokens) == ("end_turn", 2, 20)


def test_text_then_two_parallel_tool_calls_with_cached_usage(assert_no_extras: Any) -> None:
    chunks = [
        oa_chunk(ROLE), oa_chunk({"content": "Checking."}),
        oa_chunk(call_start(0, "call_A", "get_weather")), oa_chunk(call_args(0, '{"ci')),
        oa_chunk(call_args(0, 'ty": "Paris"}')),
        oa_chunk(call_start(1, "call_B", "get_weather")), oa_chunk(call_args(1, '{"city": "Rome"}')),
        oa_chunk({}, "tool_calls"), oa_usage(1200, 40, cached=1024),
    ]
    events = run(chunks, assert_no_extras)
    assert events == [
        MESSAGE_START, text_start(0), text_delta(0, "Checking."), block_stop(0),
        tool_start(1, "call_A", "get_weather"), json_delta(1, '{"ci'), json_delta(1, 'ty": "Paris"}'), block_stop(1),
        tool_start(2, "call_B", "get_weather"), json_delta(2, '{"city": "Rome"}'), block_stop(2),
        message_delta("tool_use", 40, 176, cached=1024), MESSAGE_STOP,
    ]
    message = accumulate(events)
    assert [(b.id, b.input) for b in message.content[1:]] == [("call_A", {"city": "Paris"}),
                                                              ("call_B", {"city": "Rome"})]
    assert message.usage.cache_read_input_tokens == 1024


def test_tool_call_with_arguments_in_its_first_chunk(assert_no_extras: Any) -> None:
    # Some OpenAI-compatible servers send each call whole in one delta.
    first = call_start(0, "call_A", "now")
    first["tool_calls"][0]["function"]["arguments"] = "{}"
    events = run([oa_chunk({"role": "assistant", **first}), oa_chunk({}, "tool_calls"), oa_usage(5, 3)],
                 assert_no_extras)
    assert events == [MESSAGE_START, tool_start(0, "call_A", "now"), json_delta(0, "{}"), block_stop(0),
                      message_delta("tool_use", 3, 5), MESSAGE_STOP]


def test_without_usage_chunk_finish_closes_the_message(assert_no_extras: Any) -> None:
    translator = ChatChunksToAnthropicStream()
    fed = [e.data for c in [oa_chunk(ROLE), oa_chunk({"content": "Hi"}), oa_chunk({}, "length")]
           for e in translator.feed(c)]
    assert fed == [MESSAGE_START, text_start(0), text_delta(0, "Hi"), block_stop(0)]  # stop reason held back
    assert [e.data for e in translator.finish()] == [message_delta("max_tokens", 0, 0), MESSAGE_STOP]


def test_usage_on_the_finish_chunk_closes_at_once_and_only_once(assert_no_extras: Any) -> None:
    finish = oa_chunk({}, "stop")
    finish.data["usage"] = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
    events = run([oa_chunk({"role": "assistant", "content": "K"}), finish, oa_usage(7, 1)], assert_no_extras)
    assert events == [MESSAGE_START, text_start(0), text_delta(0, "K"), block_stop(0),
                      message_delta("end_turn", 1, 7), MESSAGE_STOP]


def test_error_chunk_mid_stream(assert_no_extras: Any) -> None:
    error = SSEEvent({"error": {"message": "The server had an error", "type": "server_error", "param": None,
                                "code": None}})
    events = run([oa_chunk(ROLE), oa_chunk({"content": "Hel"}), error, oa_chunk({"content": "lo"})],
                 assert_no_extras)
    assert events == [MESSAGE_START, text_start(0), text_delta(0, "Hel"),
                      {"type": "error", "error": {"type": "api_error", "message": "The server had an error"}}]


def test_known_error_type_is_kept(assert_no_extras: Any) -> None:
    error = SSEEvent({"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}})
    assert run([error], assert_no_extras) == [
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}]


@pytest.mark.parametrize(("finish_reason", "stop_reason"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal"),
    ("function_call", "tool_use")])
def test_finish_reason_mapping(finish_reason: str, stop_reason: str, assert_no_extras: Any) -> None:
    events = run([oa_chunk(ROLE), oa_chunk({}, finish_reason), oa_usage(1, 1)], assert_no_extras)
    assert events[1]["delta"]["stop_reason"] == stop_reason
    assert anthropic_via_openai.STOP_REASONS[finish_reason] == stop_reason


def test_empty_stream_owes_nothing() -> None:
    assert ChatChunksToAnthropicStream().finish() == []
