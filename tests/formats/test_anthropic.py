"""Anthropic Messages format: validation, framing, errors, inspection and aggregation.

Where practical the official `anthropic` SDK is the judge: streams and error bodies are served to it through
an in-memory transport (no network) and aggregated bodies are validated by its models.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message

from gateway.errors import FailureKind, GatewayError, ProviderError
from gateway.formats import NOTHING, EventInfo, UsageDetails
from gateway.formats import anthropic as fmt
from gateway.wire import Json, SSEEvent
from tests.claude_code import CLAUDE_CODE_BODY

# ---------------------------------------------------------------- realistic provider streams


def event(data: Json) -> SSEEvent:
    return SSEEvent(data, event=data["type"])


def message_start(usage: Json | None = None) -> SSEEvent:
    return event({"type": "message_start", "message": {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
        "usage": usage or {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                           "output_tokens": 1}}})


def block_start(index: int, block: Json) -> SSEEvent:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, body: Json) -> SSEEvent:
    return event({"type": "content_block_delta", "index": index, "delta": body})


def text(index: int, piece: str) -> SSEEvent:
    return delta(index, {"type": "text_delta", "text": piece})


def partial_json(index: int, piece: str) -> SSEEvent:
    return delta(index, {"type": "input_json_delta", "partial_json": piece})


def block_stop(index: int) -> SSEEvent:
    return event({"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, output_tokens: int, **usage: int) -> SSEEvent:
    return event({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                  "usage": {"output_tokens": output_tokens, **usage}})


PING = event({"type": "ping"})
STOP = event({"type": "message_stop"})

TEXT_STREAM = [
    message_start({"input_tokens": 20, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
                   "output_tokens": 1, "service_tier": "standard"}),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text(0, "Hello"),
    text(0, ", world"),
    block_stop(0),
    message_delta("end_turn", 15),
    STOP,
]

TOOL_STREAM = [
    message_start(),
    block_start(0, {"type": "text", "text": ""}),
    text(0, "Let me check."),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                    "input": {}}),
    partial_json(1, ""),
    partial_json(1, '{"location": "San Fra'),
    partial_json(1, 'ncisco, CA", "unit": "fahrenheit"}'),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}),
    block_stop(2),  # a tool called with no arguments streams no partial JSON
    message_delta("tool_use", 89),
    STOP,
]

THINKING_STREAM = [
    message_start(),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Let me think"}),
    delta(0, {"type": "thinking_delta", "thinking": " step by step."}),
    delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    text(1, "42"),
    block_stop(1),
    message_delta("end_turn", 30),
    STOP,
]

OVERLOADED = event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


# ---------------------------------------------------------------- the SDK as judge, in memory

def sdk_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url="http://127.0.0.1:9", max_retries=0,
                               open_telemetry=False,
                               http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def sse_response(events: list[SSEEvent]) -> Callable[[httpx2.Request], httpx2.Response]:
    body = b"".join(fmt.encode_event(ev) for ev in events) + fmt.STREAM_END
    return lambda request: httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


REQUEST: Any = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


# ---------------------------------------------------------------- validate_request

def ok_body(**extra: Any) -> Json:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}],
            **extra}


ACCEPTED = [
    ok_body(),
    CLAUDE_CODE_BODY,  # a system turn inside messages, cache_control, thinking, context_management...
    ok_body(stream=False, temperature=1, top_p=0.5, top_k=5, stop_sequences=["END", "\n\nHuman:"],
            system="be brief", metadata={"user_id": "u1"}, some_future_field=[1]),
    ok_body(temperature=0.0, system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]),
    ok_body(max_tokens=0),  # fills the prompt cache without generating
    ok_body(messages=[{"role": "user", "content": "hi"}, {"role": "system", "content": "from now on, be brief"}]),
    ok_body(metadata={"user_id": None}, output_config={"format": {"type": "json_schema", "schema": {}}}),
    ok_body(tools=[{"name": "w", "input_schema": {}}], tool_choice={"type": "tool", "name": "w",
                                                                    "disable_parallel_tool_use": True}),
    ok_body(tool_choice={"type": "none"}),
    ok_body(messages=[
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "iVBOR"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        {"role": "user", "content": [{"type": "some_future_block", "payload": 1}]},  # for the provider to judge
    ], tools=[
        {"name": "w", "description": "weather", "input_schema": {"type": "object", "properties": {}}},
        {"type": "custom", "name": "c", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},  # a server tool: no schema
    ]),
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_valid_requests_are_returned_unchanged(body: Json) -> None:
    before = copy.deepcopy(body)
    assert fmt.validate_request(body) is body
    assert body == before


def with_message(message: Any) -> Json:
    return ok_body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, message])


def with_block(block: Any) -> Json:
    return with_message({"role": "user", "content": [block]})


# (body, param, the whole message). Anthropic words a fault `<path>: <problem>`, the path dotted and naming the tag
# of a union member (messages.3.content.1.tool_use.input), the problem in pydantic's phrasing. Verified against
# errors the API returned (GitHub issues): "max_tokens: Field required", "max_tokens: Input should be a valid
# integer", "stream: Input should be a valid boolean", "messages: at least one message is required",
# "messages.N.content.M.tool_use.input: Input should be a valid dictionary", "tools.N.custom.<field>: ...",
# 'messages: Unexpected role "ai". Allowed roles are "user" or "assistant"'. The others follow the same rules.
REJECTED = [
    ("hello", None, "request body must be a JSON object"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model", "model: Field required"),
    (ok_body(model=""), "model", "model: String should have at least 1 character"),
    (ok_body(model=4), "model", "model: Input should be a valid string"),
    ({"model": "m", "max_tokens": 5}, "messages", "messages: Field required"),
    (ok_body(messages=[]), "messages", "messages: at least one message is required"),
    (ok_body(messages={"role": "user"}), "messages", "messages: Input should be a valid list"),
    (with_message(["user", "x"]), "messages.2", "messages.2: Input should be a valid dictionary"),
    (with_message({"content": "x"}), "messages.2.role", "messages.2.role: Field required"),
    (with_message({"role": "tool", "content": "x"}), "messages.2.role",
     'messages: Unexpected role "tool". Allowed roles are "user", "assistant" or "system"'),
    (with_message({"role": "user"}), "messages.2.content", "messages.2.content: Field required"),
    (with_message({"role": "user", "content": None}), "messages.2.content",
     "messages.2.content: Input should be a valid list"),
    (with_message({"role": "system", "content": {"type": "text"}}), "messages.2.content",
     "messages.2.content: Input should be a valid list"),
    (with_message({"role": "user", "content": ["x"]}), "messages.2.content.0",
     "messages.2.content.0: Input should be a valid dictionary"),
    (with_message({"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}),
     "messages.2.content.1", "messages.2.content.1: Unable to extract tag using discriminator 'type'"),
    (with_block({"type": 3}), "messages.2.content.0.type", "messages.2.content.0.type: Input should be a valid string"),
    (with_block({"type": "text", "text": 5}), "messages.2.content.0.text.text",
     "messages.2.content.0.text.text: Input should be a valid string"),
    (with_block({"type": "tool_use", "id": "t", "name": "f", "input": "{}"}), "messages.2.content.0.tool_use.input",
     "messages.2.content.0.tool_use.input: Input should be a valid dictionary"),
    (with_block({"type": "tool_use", "name": "f", "input": {}}), "messages.2.content.0.tool_use.id",
     "messages.2.content.0.tool_use.id: Field required"),
    (with_block({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": 5}]}),
     "messages.2.content.0.tool_result.content.0.text.text",
     "messages.2.content.0.tool_result.content.0.text.text: Input should be a valid string"),
    (with_block({"type": "image", "source": {"data": "x"}}), "messages.2.content.0.image.source",
     "messages.2.content.0.image.source: Unable to extract tag using discriminator 'type'"),
    (with_block({"type": "image", "source": {"type": "base64", "data": "x"}}),
     "messages.2.content.0.image.source.base64.media_type",
     "messages.2.content.0.image.source.base64.media_type: Field required"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens", "max_tokens: Field required"),
    (ok_body(max_tokens=-1), "max_tokens", "max_tokens: Input should be greater than or equal to 0"),
    (ok_body(max_tokens=True), "max_tokens", "max_tokens: Input should be a valid integer"),
    (ok_body(max_tokens=None), "max_tokens", "max_tokens: Input should be a valid integer"),
    (ok_body(max_tokens="100"), "max_tokens", "max_tokens: Input should be a valid integer"),
    (ok_body(max_tokens=1.5), "max_tokens", "max_tokens: Input should be a valid integer"),
    (ok_body(stream="true"), "stream", "stream: Input should be a valid boolean"),
    (ok_body(stream=None), "stream", "stream: Input should be a valid boolean"),
    (ok_body(temperature=1.5), "temperature", "temperature: Input should be less than or equal to 1"),
    (ok_body(temperature=False), "temperature", "temperature: Input should be a valid number"),
    (ok_body(top_p=-0.5), "top_p", "top_p: Input should be greater than or equal to 0"),
    (ok_body(top_p="0.5"), "top_p", "top_p: Input should be a valid number"),
    (ok_body(stop_sequences="END"), "stop_sequences", "stop_sequences: Input should be a valid list"),
    (ok_body(stop_sequences=["a", None]), "stop_sequences.1", "stop_sequences.1: Input should be a valid string"),
    (ok_body(system=5), "system", "system: Input should be a valid list"),
    (ok_body(system=["sys"]), "system.0", "system.0: Input should be a valid dictionary"),
    (ok_body(system=[{"type": "image"}]), "system.0.type", "system.0.type: Input should be 'text'"),
    (ok_body(system=[{"type": "text", "text": 1}]), "system.0.text", "system.0.text: Input should be a valid string"),
    (ok_body(tools={"name": "x"}), "tools", "tools: Input should be a valid list"),
    (ok_body(tools=[{"input_schema": {}}]), "tools.0.custom.name", "tools.0.custom.name: Field required"),
    (ok_body(tools=[{"type": "web_search_20250305"}]), "tools.0.web_search_20250305.name",
     "tools.0.web_search_20250305.name: Field required"),
    (ok_body(tools=[{"name": "w"}]), "tools.0.custom.input_schema", "tools.0.custom.input_schema: Field required"),
    (ok_body(tools=[{"name": "w", "input_schema": "{}"}]), "tools.0.custom.input_schema",
     "tools.0.custom.input_schema: Input should be a valid dictionary"),
    (ok_body(tool_choice="auto"), "tool_choice", "tool_choice: Input should be a valid dictionary"),
    (ok_body(tool_choice={}), "tool_choice", "tool_choice: Unable to extract tag using discriminator 'type'"),
    (ok_body(tool_choice={"type": "required"}), "tool_choice",
     "tool_choice: Input tag 'required' found using 'type' does not match any of the expected tags: "
     "'auto', 'any', 'tool', 'none'"),
    (ok_body(tool_choice={"type": "tool"}), "tool_choice.tool.name", "tool_choice.tool.name: Field required"),
    (ok_body(tool_choice={"type": "auto", "disable_parallel_tool_use": "yes"}),
     "tool_choice.auto.disable_parallel_tool_use",
     "tool_choice.auto.disable_parallel_tool_use: Input should be a valid boolean"),
    (ok_body(metadata="u1"), "metadata", "metadata: Input should be a valid dictionary"),
    (ok_body(metadata={"user_id": 5}), "metadata.user_id", "metadata.user_id: Input should be a valid string"),
    (ok_body(output_config="high"), "output_config", "output_config: Input should be a valid dictionary"),
    (ok_body(output_config={"format": {"schema": {}}}), "output_config.format.type",
     "output_config.format.type: Field required"),
]


@pytest.mark.parametrize(("body", "param", "message"), REJECTED)
def test_invalid_requests_are_worded_as_the_messages_api_words_them(body: Any, param: str | None,
                                                                    message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        fmt.validate_request(body)
    err = caught.value
    assert (err.status, err.type, err.param, err.message) == (400, "invalid_request_error", param, message)
    # The body a client sees: Anthropic's shape, no OpenAI-only fields.
    assert fmt.error_body(err) == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}


def test_a_bad_role_still_reads_as_the_apis_role_error() -> None:
    """Clients match the API's text ("Unexpected role", as Claude Code does to drop its system turns): the door
    keeps those words, so such a client reacts to the gateway as it would to the API."""
    with pytest.raises(GatewayError) as caught:
        fmt.validate_request(with_message({"role": "developer", "content": "x"}))
    assert caught.value.message.startswith('messages: Unexpected role "developer".')


# ---------------------------------------------------------------- framing

def test_encode_event_has_an_event_line_and_round_trips() -> None:
    data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é\n\"q\" 🚀"}}
    frame = fmt.encode_event(SSEEvent(data, event="content_block_delta"))
    head, data_line, blank, end = frame.split(b"\n")
    assert (head, blank, end) == (b"event: content_block_delta", b"", b"")
    assert data_line.startswith(b"data: ")
    assert orjson.loads(data_line[len(b"data: "):]) == data
    assert fmt.STREAM_END == b""


def test_encode_event_without_a_name_uses_the_payload_type() -> None:
    # Translated events may come without `event`; the SDK would silently drop a frame with no event line.
    assert fmt.encode_event(SSEEvent({"type": "message_stop"})).startswith(b"event: message_stop\ndata: ")


def test_the_sdk_reads_an_encoded_stream() -> None:
    client = sdk_client(sse_response(TOOL_STREAM))
    with client.messages.create(**REQUEST, stream=True) as stream:
        received = [ev.type for ev in stream]
    # the SDK skips pings; every other event must arrive, none dropped for a missing event line
    assert received == [ev.data["type"] for ev in TOOL_STREAM]


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize(("err", "anthropic_type", "sdk_error"), [
    (GatewayError(400, "messages[0].role: bad", param="messages[0].role"), "invalid_request_error",
     anthropic.BadRequestError),
    (GatewayError(401, "bad key"), "authentication_error", anthropic.AuthenticationError),
    (GatewayError(403, "no"), "permission_error", anthropic.PermissionDeniedError),
    (GatewayError(404, "no such model", type="model_not_found"), "not_found_error", anthropic.NotFoundError),
    (GatewayError(429, "slow down", type="requests"), "rate_limit_error", anthropic.RateLimitError),
    (GatewayError(500, "oops", type="server_error"), "api_error", anthropic.InternalServerError),
    (GatewayError(502, "all providers failed", type="upstream_error"), "api_error", anthropic.InternalServerError),
    (GatewayError(503, "no provider available", type="unavailable"), "overloaded_error",
     anthropic.ServiceUnavailableError),
    (GatewayError(504, "too slow"), "timeout_error", anthropic.GatewayTimeoutError),
    (GatewayError(529, "busy"), "overloaded_error", anthropic.OverloadedError),
])
def test_error_body_is_what_the_sdk_raises_from(err: GatewayError, anthropic_type: str,
                                                sdk_error: type[anthropic.APIStatusError]) -> None:
    body = fmt.error_body(err)
    assert body == {"type": "error", "error": {"type": anthropic_type, "message": err.message}}
    client = sdk_client(lambda request: httpx2.Response(err.status, json=body))
    with pytest.raises(sdk_error) as caught:
        client.messages.create(**REQUEST)
    assert (caught.value.type, caught.value.api_message) == (anthropic_type, err.message)


@pytest.mark.parametrize(("err", "anthropic_type"), [
    (GatewayError(413, "too big"), "request_too_large"),
    (GatewayError(422, "odd"), "invalid_request_error"),
    (GatewayError(408, "slow client", type="timeout"), "timeout_error"),
    (GatewayError(400, "cached", type="overloaded_error"), "overloaded_error"),  # a known type wins over status
    (GatewayError(418, "teapot", type="weird"), "invalid_request_error"),
    (GatewayError(599, "odd", type="weird"), "api_error"),
])
def test_error_types_map_to_anthropic_types(err: GatewayError, anthropic_type: str) -> None:
    assert fmt.error_body(err)["error"]["type"] == anthropic_type


def test_error_event_mid_stream_raises_in_the_sdk() -> None:
    ev = fmt.error_event(GatewayError(529, "Overloaded"))
    assert ev.event == "error" and ev.data == {"type": "error", "error": {"type": "overloaded_error",
                                                                         "message": "Overloaded"}}
    seen: list[str] = []
    client = sdk_client(sse_response([*TEXT_STREAM[:4], ev]))
    with pytest.raises(anthropic.APIStatusError) as caught, client.messages.create(**REQUEST, stream=True) as s:
        seen.extend(e.type for e in s)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    assert caught.value.type == "overloaded_error"


# ---------------------------------------------------------------- inspect

def test_inspect_text_stream() -> None:
    infos = [fmt.inspect(ev) for ev in TEXT_STREAM]
    # message_start: prompt tokens include cache reads and writes; output_tokens is the running total
    assert infos[0] == EventInfo(input_tokens=1120, output_tokens=1, cached_input_tokens=1000,
                                 details=UsageDetails(cache_write_tokens=100))
    assert infos[1] is NOTHING and infos[2] is NOTHING and infos[5] is NOTHING  # empty block start, ping, stop
    assert infos[3] == EventInfo(content=True, text="Hello")
    assert infos[4] == EventInfo(content=True, text=", world")
    assert infos[6] == EventInfo(output_tokens=15, finish_reason="end_turn")
    assert infos[7].end and not infos[7].content
    assert [i.end for i in infos].count(True) == 1
    assert not any(i.error for i in infos)


def test_inspect_tool_stream() -> None:
    infos = [fmt.inspect(ev) for ev in TOOL_STREAM]
    assert [i.content for i in infos] == [False, False, True, False, True, False, True, True, False, True,
                                          False, False, False]
    assert infos[4].text == "get_weather"  # a tool call's start is content: the model has committed to it
    assert infos[5] is NOTHING  # the empty input_json_delta every tool block opens with
    assert "".join(i.text for i in infos[6:8]) == '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    assert infos[11] == EventInfo(output_tokens=89, finish_reason="tool_use")


def test_inspect_thinking_stream() -> None:
    infos = [fmt.inspect(ev) for ev in THINKING_STREAM]
    assert infos[2] == EventInfo(content=True, text="Let me think")
    assert infos[4] is NOTHING  # signature_delta
    assert "".join(i.text for i in infos) == "Let me think step by step.42"


def test_inspect_message_delta_with_full_usage() -> None:
    # Newer API versions repeat the input counts in message_delta (they can grow with server tools).
    ev = message_delta("end_turn", 40, input_tokens=30, cache_read_input_tokens=5, cache_creation_input_tokens=2)
    assert fmt.inspect(ev) == EventInfo(input_tokens=37, output_tokens=40, cached_input_tokens=5,
                                        details=UsageDetails(cache_write_tokens=2), finish_reason="end_turn")


def test_inspect_server_tool_blocks_are_content() -> None:
    result = block_start(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []})
    assert fmt.inspect(result).content
    call = block_start(1, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}})
    assert fmt.inspect(call) == EventInfo(content=True, text="web_search")


def test_inspect_error_event() -> None:
    assert fmt.inspect(OVERLOADED) == EventInfo(error=("overloaded_error", "Overloaded"))
    assert fmt.inspect(event({"type": "error", "error": {}})).error == ("api_error", "error in stream")


def test_usage_flags() -> None:
    assert fmt.wants_usage(ok_body())
    assert not any(fmt.is_usage_only(ev) for ev in TEXT_STREAM)


# ---------------------------------------------------------------- Aggregator

def aggregate(events: list[SSEEvent]) -> Json:
    agg = fmt.Aggregator()
    for ev in events:
        agg.feed(ev)
    return agg.result()


def test_aggregate_text_matches_the_sdk_model() -> None:
    body = aggregate(TEXT_STREAM)
    message = Message.model_validate(body)
    assert (message.id, message.type, message.role, message.model) == (
        "msg_01XFDUDYJgAACzvnptvVoYEL", "message", "assistant", "claude-sonnet-4-5-20250929")
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {"type": "text", "text": "Hello, world"}]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (20, 15)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (1000, 100)
    assert usage.service_tier == "standard"
    orjson.dumps(body)


def test_aggregate_tool_use_matches_the_sdk_model() -> None:
    message = Message.model_validate(aggregate(TOOL_STREAM))
    assert message.stop_reason == "tool_use"
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
         "input": {"location": "San Francisco, CA", "unit": "fahrenheit"}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
    ]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (25, 89)


@pytest.mark.parametrize("events", [TEXT_STREAM, TOOL_STREAM, THINKING_STREAM], ids=["text", "tool", "thinking"])
def test_aggregate_agrees_with_the_sdks_own_accumulator(events: list[SSEEvent]) -> None:
    client = sdk_client(sse_response(events))
    with client.messages.stream(**REQUEST) as stream:
        theirs = stream.get_final_message()
    ours = Message.model_validate(aggregate(events))
    assert ours.model_dump(exclude_none=True) == theirs.model_dump(exclude_none=True)


def test_aggregate_citations() -> None:
    citation = {"type": "char_location", "cited_text": "The sky is blue.", "document_index": 0,
                "document_title": "Doc", "start_char_index": 0, "end_char_index": 16}
    events = [message_start(), block_start(0, {"type": "text", "text": ""}),
              delta(0, {"type": "citations_delta", "citation": citation}), text(0, "the sky is blue"),
              block_stop(0), message_delta("end_turn", 5), STOP]
    block = Message.model_validate(aggregate(events)).content[0]
    assert block.type == "text" and block.text == "the sky is blue"
    assert block.citations is not None and block.citations[0].cited_text == "The sky is blue."


def test_aggregate_malformed_tool_json_is_a_provider_fault() -> None:
    events = [message_start(), block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
              partial_json(0, '{"a": '), block_stop(0)]
    with pytest.raises(ProviderError) as caught:
        aggregate(events)
    assert caught.value.kind is FailureKind.FAULT


def test_aggregate_without_message_start_still_validates() -> None:
    message = Message.model_validate(aggregate([text(0, "orphan")]))
    assert message.content[0].type == "text" and message.content[0].text == "orphan"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (0, 0)
