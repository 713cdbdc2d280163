"""OpenAI Chat Completions format: validation, framing, errors, inspection and aggregation.

Where practical the official `openai` SDK is the judge: streams and error bodies are served to it through an
in-memory transport (no network) and aggregated bodies are validated by its models.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion

from gateway.errors import GatewayError
from gateway.formats import NOTHING, EventInfo, UsageDetails, content_info
from gateway.formats import openai as fmt
from gateway.wire import Json, SSEEvent

# ---------------------------------------------------------------- realistic provider streams

_HEAD = {"id": "chatcmpl-B9MBs8Cjcv", "object": "chat.completion.chunk", "created": 1741569952,
         "model": "gpt-4o-2024-08-06", "service_tier": "default", "system_fingerprint": "fp_f9f4fb6dbf"}


def chunk(delta: Json | None = None, finish: str | None = None, *, choices: bool = True,
          usage: Json | None = None) -> SSEEvent:
    data: Json = dict(_HEAD)
    data["choices"] = ([{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
                       if choices else [])
    data["usage"] = usage  # with include_usage every chunk carries "usage": null until the last one
    return SSEEvent(data)


USAGE = {"prompt_tokens": 1200, "completion_tokens": 9, "total_tokens": 1209,
         "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                       "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

TEXT_STREAM = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Hello"}),
    chunk({"content": ", world"}),
    chunk({}, "stop"),
    chunk(choices=False, usage=USAGE),
]

TOOL_STREAM = [
    chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"index": 0, "id": "call_abc", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '": "Paris"}'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_def", "type": "function",
                           "function": {"name": "get_time", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]}),
    chunk({}, "tool_calls"),
    chunk(choices=False, usage={"prompt_tokens": 80, "completion_tokens": 30, "total_tokens": 110,
                                "prompt_tokens_details": {"cached_tokens": 0}}),
]


# ---------------------------------------------------------------- the SDK as judge, in memory

def sdk_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def sse_response(events: list[SSEEvent], *, end: bool = True) -> Callable[[httpx2.Request], httpx2.Response]:
    body = b"".join(fmt.encode_event(ev) for ev in events) + (fmt.STREAM_END if end else b"")
    return lambda request: httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


def sdk_stream(events: list[SSEEvent]) -> list[Any]:
    client = sdk_client(sse_response(events))
    with client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                        stream=True) as stream:
        return list(stream)


# ---------------------------------------------------------------- validate_request

def ok_body(**extra: Any) -> Json:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **extra}


ACCEPTED = [
    ok_body(),
    ok_body(stream=True, stream_options={"include_usage": True}, max_tokens=10, max_completion_tokens=5,
            temperature=0, top_p=1, n=1, stop="END", seed=7, some_future_field={"x": 1}),
    ok_body(temperature=2, top_p=0.0, stop=["a", "b", "c", "d"]),
    # nulls are the API's "not given"
    ok_body(stream=None, max_tokens=None, temperature=None, top_p=None, n=None, stop=None, tools=None,
            stream_options=None),
    {"model": "gpt-4o", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "assistant", "content": "it is 42"},
        {"role": "function", "name": "legacy", "content": None},
    ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
                 {"type": "function", "function": {"name": "g"}},
                 # custom tools go to OpenAI providers as sent (only an Anthropic target refuses them)
                 {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}}]},
    ok_body(tool_choice="required", response_format={"type": "json_schema", "json_schema": {"name": "o"}},
            parallel_tool_calls=False, user="u", safety_identifier="s", modalities=["text"],
            logprobs=True, top_logprobs=2, prediction={"type": "content", "content": "x"}),
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_valid_requests_are_returned_unchanged(body: Json) -> None:
    before = copy.deepcopy(body)
    assert fmt.validate_request(body) is body
    assert body == before


def with_message(message: Any, at: int = 2) -> Json:
    messages: list[Any] = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    messages.insert(at, message)
    return {"model": "gpt-4o", "messages": messages}


def expect(param: str | None, code: str | None, message: str) -> tuple[str | None, str | None, str]:
    return param, code, message


# (body, (param, code, the whole message)). OpenAI quotes the path in the message, names it in `param` and the fault
# in `code`. Verified against errors the API returned (GitHub issues): "you must provide a model parameter"
# (param and code null), "Missing required parameter: 'messages'." / "'messages[0].role'." /
# "'messages[2].content[0].type'.", "Invalid 'messages': empty array. ...", "Invalid 'messages[18].tool_calls':
# empty array. ...", "Invalid value: 'error'. Supported values are: 'system', 'assistant', 'user', 'function',
# 'tool', and 'developer'.", "Invalid 'max_tokens': integer below minimum value. ...", "Invalid type for
# 'max_tokens': expected an integer, but got a string instead.", "Invalid 'stop': array too long. ...".
# The others follow the same patterns.
REJECTED = [
    (["not", "an", "object"], expect(None, None, "request body must be a JSON object")),
    ({"messages": [{"role": "user", "content": "x"}]}, expect(None, None, "you must provide a model parameter")),
    (ok_body(model=""), expect(None, None, "you must provide a model parameter")),
    (ok_body(model=4), expect("model", "invalid_type",
                              "Invalid type for 'model': expected a string, but got an integer instead.")),
    ({"model": "m"}, expect("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")),
    (ok_body(messages=[]), expect("messages", "empty_array", "Invalid 'messages': empty array. Expected an array "
                                  "with minimum length 1, but got an empty array instead.")),
    (ok_body(messages="hi"), expect("messages", "invalid_type",
                                    "Invalid type for 'messages': expected an array, but got a string instead.")),
    (with_message("hi"), expect("messages[2]", "invalid_type",
                                "Invalid type for 'messages[2]': expected an object, but got a string instead.")),
    (with_message({"role": "robot", "content": "x"}), expect(
        "messages[2].role", "invalid_value", "Invalid value: 'robot'. Supported values are: 'system', 'assistant', "
        "'user', 'function', 'tool', and 'developer'.")),
    (with_message({"content": "x"}), expect("messages[2].role", "missing_required_parameter",
                                            "Missing required parameter: 'messages[2].role'.")),
    (with_message({"role": "user", "content": 5}), expect(
        "messages[2].content", "invalid_type", "Invalid type for 'messages[2].content': expected one of a string or "
        "array of objects, but got an integer instead.")),
    (with_message({"role": "user", "content": None}), expect(
        "messages[2].content", "invalid_type", "Invalid type for 'messages[2].content': expected one of a string or "
        "array of objects, but got null instead.")),
    (with_message({"role": "user"}), expect("messages[2].content", "missing_required_parameter",
                                            "Missing required parameter: 'messages[2].content'.")),
    (with_message({"role": "assistant", "content": None}), expect(
        "messages[2].content", "invalid_type", "Invalid type for 'messages[2].content': expected one of a string or "
        "array of objects, but got null instead.")),
    (with_message({"role": "user", "content": ["text"]}), expect(
        "messages[2].content[0]", "invalid_type",
        "Invalid type for 'messages[2].content[0]': expected an object, but got a string instead.")),
    (with_message({"role": "user", "content": [{"text": "x"}]}), expect(
        "messages[2].content[0].type", "missing_required_parameter",
        "Missing required parameter: 'messages[2].content[0].type'.")),
    (with_message({"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]}), expect(
        "messages[2].content[0].image_url.url", "empty_string", "Invalid 'messages[2].content[0].image_url.url': "
        "empty string. Expected a string with minimum length 1, but got an empty string instead.")),
    (with_message({"role": "tool", "content": "42"}), expect(
        "messages[2].tool_call_id", "missing_required_parameter",
        "Missing required parameter: 'messages[2].tool_call_id'.")),
    (with_message({"role": "function", "content": "42"}), expect("messages[2].name", "missing_required_parameter",
                                                                 "Missing required parameter: 'messages[2].name'.")),
    (with_message({"role": "assistant", "content": None, "tool_calls": {"id": "x"}}), expect(
        "messages[2].tool_calls", "invalid_type",
        "Invalid type for 'messages[2].tool_calls': expected an array, but got an object instead.")),
    (with_message({"role": "assistant", "content": "x", "tool_calls": []}), expect(
        "messages[2].tool_calls", "empty_array", "Invalid 'messages[2].tool_calls': empty array. Expected an array "
        "with minimum length 1, but got an empty array instead.")),
    (with_message({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}), expect(
        "messages[2].tool_calls[0].function.arguments", "invalid_type",
        "Invalid type for 'messages[2].tool_calls[0].function.arguments': expected a string, but got an object "
        "instead.")),
    (ok_body(stream="yes"), expect("stream", "invalid_type",
                                   "Invalid type for 'stream': expected a boolean, but got a string instead.")),
    (ok_body(stream=1), expect("stream", "invalid_type",
                               "Invalid type for 'stream': expected a boolean, but got an integer instead.")),
    (ok_body(max_tokens=0), expect("max_tokens", "integer_below_min_value", "Invalid 'max_tokens': integer below "
                                   "minimum value. Expected a value >= 1, but got 0 instead.")),
    (ok_body(max_tokens=True), expect(
        "max_tokens", "invalid_type",
        "Invalid type for 'max_tokens': expected an integer, but got a boolean instead.")),
    (ok_body(max_tokens="100"), expect(
        "max_tokens", "invalid_type", "Invalid type for 'max_tokens': expected an integer, but got a string instead.")),
    (ok_body(max_tokens=1.5), expect("max_tokens", "invalid_type",
                                     "Invalid type for 'max_tokens': expected an integer, but got a decimal instead.")),
    (ok_body(max_completion_tokens=-3), expect(
        "max_completion_tokens", "integer_below_min_value",
        "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, but got -3 instead.")),
    (ok_body(temperature=2.01), expect("temperature", "decimal_above_max_value", "Invalid 'temperature': decimal "
                                       "above maximum value. Expected a value <= 2, but got 2.01 instead.")),
    (ok_body(temperature=-0.1), expect("temperature", "decimal_below_min_value", "Invalid 'temperature': decimal "
                                       "below minimum value. Expected a value >= 0, but got -0.1 instead.")),
    (ok_body(temperature=True), expect(
        "temperature", "invalid_type",
        "Invalid type for 'temperature': expected a number, but got a boolean instead.")),
    (ok_body(temperature="1"), expect("temperature", "invalid_type",
                                      "Invalid type for 'temperature': expected a number, but got a string instead.")),
    (ok_body(top_p=1.5), expect("top_p", "decimal_above_max_value", "Invalid 'top_p': decimal above maximum value. "
                                "Expected a value <= 1, but got 1.5 instead.")),
    (ok_body(n=2), expect("n", "unsupported_value", "Unsupported value: 'n' does not support 2 with this gateway, "
                          "which hedges whole answers across providers: only 1 is supported.")),
    (ok_body(n=True), expect("n", "invalid_type", "Invalid type for 'n': expected an integer, but got a boolean "
                             "instead.")),
    (ok_body(n=0), expect("n", "integer_below_min_value", "Invalid 'n': integer below minimum value. Expected a "
                          "value >= 1, but got 0 instead.")),
    (ok_body(stop=["a", "b", "c", "d", "e"]), expect(
        "stop", "array_above_max_length", "Invalid 'stop': array too long. Expected an array with maximum length 4, "
        "but got an array with length 5 instead.")),
    (ok_body(stop=5), expect("stop", "invalid_type", "Invalid type for 'stop': expected one of a string or array of "
                             "strings, but got an integer instead.")),
    (ok_body(stop=["a", 1]), expect("stop[1]", "invalid_type",
                                    "Invalid type for 'stop[1]': expected a string, but got an integer instead.")),
    (ok_body(tools={"type": "function"}), expect("tools", "invalid_type",
                                                 "Invalid type for 'tools': expected an array, but got an object "
                                                 "instead.")),
    (ok_body(tools=["f"]), expect("tools[0]", "invalid_type",
                                  "Invalid type for 'tools[0]': expected an object, but got a string instead.")),
    (ok_body(tools=[{"function": {"name": "f"}}]), expect("tools[0].type", "missing_required_parameter",
                                                          "Missing required parameter: 'tools[0].type'.")),
    (ok_body(tools=[{"type": "code_interpreter"}]), expect(
        "tools[0].type", "invalid_value", "Invalid value: 'code_interpreter'. Supported values are: 'function' and "
        "'custom'.")),
    (ok_body(tools=[{"type": "function"}]), expect("tools[0].function", "missing_required_parameter",
                                                   "Missing required parameter: 'tools[0].function'.")),
    (ok_body(tools=[{"type": "function", "function": {"name": ""}}]), expect(
        "tools[0].function.name", "empty_string", "Invalid 'tools[0].function.name': empty string. Expected a "
        "string with minimum length 1, but got an empty string instead.")),
    (ok_body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]), expect(
        "tools[0].function.parameters", "invalid_type",
        "Invalid type for 'tools[0].function.parameters': expected an object, but got a string instead.")),
    (ok_body(stream_options=True), expect("stream_options", "invalid_type", "Invalid type for 'stream_options': "
                                          "expected an object, but got a boolean instead.")),
    (ok_body(stream_options={"include_usage": "yes"}), expect(
        "stream_options.include_usage", "invalid_type",
        "Invalid type for 'stream_options.include_usage': expected a boolean, but got a string instead.")),
    (ok_body(tool_choice="any"), expect("tool_choice", "invalid_value", "Invalid value: 'any'. Supported values "
                                        "are: 'none', 'auto', and 'required'.")),
    (ok_body(tool_choice={"type": "function"}), expect("tool_choice.function", "missing_required_parameter",
                                                       "Missing required parameter: 'tool_choice.function'.")),
    (ok_body(response_format={"type": "xml"}), expect(
        "response_format.type", "invalid_value", "Invalid value: 'xml'. Supported values are: 'text', "
        "'json_object', and 'json_schema'.")),
    (ok_body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}), expect(
        "response_format.json_schema.name", "missing_required_parameter",
        "Missing required parameter: 'response_format.json_schema.name'.")),
    (ok_body(modalities="text"), expect("modalities", "invalid_type",
                                        "Invalid type for 'modalities': expected an array, but got a string instead.")),
    (ok_body(user=5), expect("user", "invalid_type", "Invalid type for 'user': expected a string, but got an "
                             "integer instead.")),
    (ok_body(parallel_tool_calls="no"), expect(
        "parallel_tool_calls", "invalid_type",
        "Invalid type for 'parallel_tool_calls': expected a boolean, but got a string instead.")),
]


@pytest.mark.parametrize(("body", "expected"), REJECTED)
def test_invalid_requests_are_worded_as_the_openai_api_words_them(
        body: Any, expected: tuple[str | None, str | None, str]) -> None:
    with pytest.raises(GatewayError) as caught:
        fmt.validate_request(body)
    err = caught.value
    param, code, message = expected
    assert (err.status, err.type, err.param, err.code, err.message) == (400, "invalid_request_error", param, code,
                                                                        message)
    assert fmt.error_body(err) == {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                             "code": code}}


# ---------------------------------------------------------------- framing

def test_encode_event_is_one_data_frame_that_round_trips() -> None:
    data = {"id": "x", "choices": [{"index": 0, "delta": {"content": "é\n\"q\" 🚀"}}], "usage": None}
    frame = fmt.encode_event(SSEEvent(data, event="ignored"))
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert frame.count(b"\n") == 2  # the JSON itself must not break the frame
    assert orjson.loads(frame[len(b"data: "):-2]) == data
    assert fmt.STREAM_END == b"data: [DONE]\n\n"


def test_the_sdk_reads_an_encoded_text_stream() -> None:
    received = sdk_stream(TEXT_STREAM)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello, world"
    assert received[-1].choices == [] and received[-1].usage.prompt_tokens_details.cached_tokens == 1024


def test_the_sdk_stops_at_stream_end() -> None:
    # Anything after [DONE] must never reach the client's SDK.
    client = sdk_client(lambda request: httpx2.Response(
        200, content=fmt.encode_event(TEXT_STREAM[1]) + fmt.STREAM_END + fmt.encode_event(TEXT_STREAM[2]),
        headers={"content-type": "text/event-stream"}))
    with client.chat.completions.create(model="m", messages=[], stream=True) as stream:
        assert [c.choices[0].delta.content for c in stream] == ["Hello"]


# ---------------------------------------------------------------- errors

def test_error_body_is_what_the_sdk_raises_from() -> None:
    err = GatewayError(400, "messages[0].role: must be one of ...", param="messages[0].role", code="bad_role")
    body = fmt.error_body(err)
    assert body == {"error": {"message": err.message, "type": "invalid_request_error",
                              "param": "messages[0].role", "code": "bad_role"}}
    client = sdk_client(lambda request: httpx2.Response(400, json=body))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[])
    assert (caught.value.param, caught.value.code, caught.value.type) == ("messages[0].role", "bad_role",
                                                                          "invalid_request_error")
    assert err.message in caught.value.message


@pytest.mark.parametrize(("status", "sdk_error"), [(401, openai.AuthenticationError),
                                                   (429, openai.RateLimitError),
                                                   (503, openai.InternalServerError)])
def test_error_status_maps_to_the_sdk_exception(status: int, sdk_error: type[Exception]) -> None:
    body = fmt.error_body(GatewayError(status, "nope"))
    client = sdk_client(lambda request: httpx2.Response(status, json=body))
    with pytest.raises(sdk_error):
        client.chat.completions.create(model="m", messages=[])


def test_error_event_after_content_raises_api_error_in_the_sdk() -> None:
    ev = fmt.error_event(GatewayError(502, "all providers failed", type="upstream_error"))
    assert ev.event is None and ev.data["error"]["type"] == "upstream_error"
    seen: list[str | None] = []
    with pytest.raises(openai.APIError) as caught:
        client = sdk_client(sse_response([*TEXT_STREAM[:2], ev], end=False))
        with client.chat.completions.create(model="m", messages=[], stream=True) as stream:
            seen.extend(c.choices[0].delta.content for c in stream)
    assert seen == ["", "Hello"]
    assert caught.value.message == "all providers failed"


# ---------------------------------------------------------------- inspect

def test_inspect_text_stream() -> None:
    infos = [fmt.inspect(ev) for ev in TEXT_STREAM]
    assert infos[0] is NOTHING  # role-only first chunk: no content, no allocation
    assert [i.content for i in infos] == [False, True, True, False, False]
    assert "".join(i.text for i in infos) == "Hello, world"
    assert infos[3] == EventInfo(finish_reason="stop")
    assert infos[4] == EventInfo(input_tokens=1200, output_tokens=9, cached_input_tokens=1024,
                                 details=UsageDetails(reasoning_tokens=0))
    assert not any(i.end or i.error for i in infos)


def test_inspect_tool_call_stream() -> None:
    infos = [fmt.inspect(ev) for ev in TOOL_STREAM]
    # the first chunk starts a tool call (it has an id), so it is content despite carrying the role
    assert [i.content for i in infos] == [True, True, True, True, True, False, False]
    assert "".join(i.text for i in infos) == 'get_weather{"city": "Paris"}get_time{"tz": "CET"}'
    assert infos[5].finish_reason == "tool_calls"
    assert (infos[6].input_tokens, infos[6].output_tokens, infos[6].cached_input_tokens) == (80, 30, 0)


@pytest.mark.parametrize("delta", [
    {}, {"content": ""}, {"content": None, "refusal": None}, {"role": "assistant"},
    {"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}])
def test_inspect_empty_deltas_are_nothing(delta: Json) -> None:
    assert fmt.inspect(chunk(delta)) is NOTHING


def test_inspect_refusal_and_reasoning_are_content() -> None:
    assert fmt.inspect(chunk({"refusal": "I can't"})) == EventInfo(content=True, text="I can't")
    reasoning = chunk({"content": None, "reasoning_content": "hmm"})
    assert fmt.inspect(reasoning) == EventInfo(content=True, text="hmm")


def test_inspect_usage_without_cache_details() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    info = fmt.inspect(chunk(choices=False, usage=usage))
    assert (info.input_tokens, info.output_tokens, info.cached_input_tokens) == (5, 2, None)


@pytest.mark.parametrize(("error", "expected"), [
    ({"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"},
     ("requests", "Rate limit reached")),
    ({"message": "boom", "code": "server_error"}, ("server_error", "boom")),
    ({}, None),
    ("upstream died", ("api_error", "upstream died")),
])
def test_inspect_in_stream_error(error: Any, expected: tuple[str, str] | None) -> None:
    info = fmt.inspect(SSEEvent({"error": error}))
    assert info.error == expected
    assert not info.content and not info.end


def test_usage_only_and_wants_usage() -> None:
    assert fmt.is_usage_only(TEXT_STREAM[-1])
    assert not any(fmt.is_usage_only(ev) for ev in TEXT_STREAM[:-1])
    assert not fmt.is_usage_only(SSEEvent({"error": {"message": "x"}}))
    # a final chunk that carries both a finish_reason and usage (some providers) is not usage-only
    assert not fmt.is_usage_only(chunk({}, "stop", usage=USAGE))
    assert fmt.wants_usage(ok_body(stream_options={"include_usage": True}))
    assert not fmt.wants_usage(ok_body(stream_options={"include_usage": False}))
    assert not fmt.wants_usage(ok_body(stream_options=None))
    assert not fmt.wants_usage(ok_body())


# ---------------------------------------------------------------- Aggregator

def aggregate(events: list[SSEEvent]) -> Json:
    agg = fmt.Aggregator()
    for ev in events:
        agg.feed(ev)
    return agg.result()


def test_aggregate_text_matches_the_sdk_model() -> None:
    body = aggregate(TEXT_STREAM)
    completion = ChatCompletion.model_validate(body)
    assert (completion.id, completion.object, completion.created, completion.model) == (
        "chatcmpl-B9MBs8Cjcv", "chat.completion", 1741569952, "gpt-4o-2024-08-06")
    assert completion.system_fingerprint == "fp_f9f4fb6dbf"
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert choice.message.role == "assistant"
    message = choice.message
    assert (message.content, message.refusal, message.tool_calls) == ("Hello, world", None, None)
    assert "tool_calls" not in body["choices"][0]["message"]
    assert completion.usage is not None
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1200, 9, 1209)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 1024
    orjson.dumps(body)  # serialisable as is


def test_aggregate_tool_calls_matches_the_sdk_model() -> None:
    completion = ChatCompletion.model_validate(aggregate(TOOL_STREAM))
    message = completion.choices[0].message
    assert message.content is None and completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    calls = [(c.id, c.type, c.function.name, orjson.loads(c.function.arguments))  # type: ignore[union-attr]
             for c in message.tool_calls]
    assert calls == [("call_abc", "function", "get_weather", {"city": "Paris"}),
                     ("call_def", "function", "get_time", {"tz": "CET"})]
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


def tool_calls(completion: ChatCompletion) -> list[tuple[str, str, str, str]]:
    return [(c.id, c.type, c.function.name, c.function.arguments)  # type: ignore[union-attr]
            for c in completion.choices[0].message.tool_calls or []]


def test_aggregate_agrees_with_the_sdks_own_accumulator() -> None:
    # The SDK's stream helper accumulates chunks into a final completion; ours must say the same.
    for events in (TEXT_STREAM, TOOL_STREAM):
        client = sdk_client(sse_response(events))
        with client.chat.completions.stream(model="m", messages=[]) as stream:
            theirs = stream.get_final_completion()
        ours = ChatCompletion.model_validate(aggregate(events))
        assert ours.choices[0].message.content == theirs.choices[0].message.content
        assert ours.choices[0].finish_reason == theirs.choices[0].finish_reason
        assert tool_calls(ours) == tool_calls(theirs)
        assert ours.usage == theirs.usage


def test_aggregate_refusal_and_missing_usage() -> None:
    body = aggregate([chunk({"role": "assistant", "content": None}), chunk({"refusal": "I can't "}),
                      chunk({"refusal": "help with that."}), chunk({}, "stop")])
    completion = ChatCompletion.model_validate(body)
    assert completion.choices[0].message.refusal == "I can't help with that."
    assert completion.choices[0].message.content is None
    assert completion.usage is None  # no usage chunk: unknown, not zero


def test_aggregate_tool_calls_without_index() -> None:
    # Some OpenAI-compatible providers omit `index`; a new id starts a new call.
    events = [chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]}),
              chunk({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{"}}]}),
              chunk({"tool_calls": [{"function": {"arguments": "}"}}]}), chunk({}, "tool_calls")]
    message = ChatCompletion.model_validate(aggregate(events)).choices[0].message
    assert [(c.id, c.function.arguments) for c in message.tool_calls or []] == [  # type: ignore[union-attr]
        ("a", "{}"), ("b", "{}")]


def test_aggregate_ignores_error_chunks_and_empty_streams_still_validate() -> None:
    agg = fmt.Aggregator()
    agg.feed(SSEEvent({"error": {"message": "x", "type": "server_error"}}))
    completion = ChatCompletion.model_validate(agg.result())
    assert completion.choices[0].message.content == ""
    assert completion.choices[0].finish_reason == "stop"


def test_aggregate_keeps_logprobs() -> None:
    token = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    ev = SSEEvent({**_HEAD, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None,
                                         "logprobs": {"content": [token], "refusal": None}}]})
    completion = ChatCompletion.model_validate(aggregate([ev, ev, chunk({}, "stop")]))
    assert completion.choices[0].logprobs is not None
    assert [t.token for t in completion.choices[0].logprobs.content or []] == ["Hi", "Hi"]


def test_fast_content_info_equals_the_plain_constructor() -> None:
    info = content_info("abc")
    assert info == EventInfo(content=True, text="abc")
    assert hash(info) == hash(EventInfo(content=True, text="abc"))
    with pytest.raises(AttributeError):
        info.text = "changed"  # type: ignore[misc]  # still frozen
