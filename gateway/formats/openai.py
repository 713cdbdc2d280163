"""OpenAI Chat Completions wire format: request checks, SSE framing, errors, stream inspection, aggregation.

Field names follow `openai.types.chat` (ChatCompletionChunk, ChatCompletion); run-time code works on plain
dicts. The gateway always streams from providers, so `Aggregator` rebuilds a non-streaming body from chunks.
"""

from __future__ import annotations

from gateway.errors import GatewayError, known_error_type
from gateway.formats import (
    NOTHING,
    EventInfo,
    check_bool,
    check_list,
    check_non_empty_str,
    check_number,
    check_object,
    check_positive_int,
    check_request_object,
    check_str,
    check_typed_parts,
    content_info,
    invalid,
    token_count,
)
from gateway.formats.guard import encode_json
from gateway.formats.openai_answer import Aggregator  # every format module exports one
from gateway.wire import Json, SSEEvent

__all__ = [
    "STREAM_END",
    "Aggregator",
    "encode_event",
    "error_body",
    "error_event",
    "inspect",
    "is_usage_only",
    "validate_request",
    "wants_usage",
]

STREAM_END = b"data: [DONE]\n\n"

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_ROLES_TEXT = ", ".join(_ROLES)


# ---------------------------------------------------------------- request validation

def validate_request(body: object) -> Json:
    """Check a client's Chat Completions body; raise GatewayError(400, param=<field path>) on the first fault.

    Optional fields may be null: the OpenAI API spec declares them nullable and some clients send nulls.
    """
    req = check_request_object(body)
    for i, message in enumerate(req["messages"]):
        _validate_message(message, i)
    if (stream := req.get("stream")) is not None:
        check_bool(stream, "stream")
    for key in ("max_tokens", "max_completion_tokens"):
        if (value := req.get(key)) is not None:
            check_positive_int(value, key)
    if (temperature := req.get("temperature")) is not None:
        check_number(temperature, "temperature", 0, 2)
    if (top_p := req.get("top_p")) is not None:
        check_number(top_p, "top_p", 0, 1)
    if (n := req.get("n")) is not None and (type(n) is not int or n != 1):
        # Hedging races whole answers from different providers; several choices per answer do not fit.
        raise invalid("n", "only n=1 is supported by this gateway")
    if (stop := req.get("stop")) is not None:
        _validate_stop(stop)
    if (tools := req.get("tools")) is not None:
        for i, tool in enumerate(check_list(tools, "tools")):
            _validate_tool(tool, i)
    if (stream_options := req.get("stream_options")) is not None:
        options = check_object(stream_options, "stream_options")
        if (include_usage := options.get("include_usage")) is not None:
            check_bool(include_usage, "stream_options.include_usage")
    # Fields the gateway translates for Anthropic providers: checked here, so a bad one is a 400 naming it
    # rather than a translation crash or a malformed upstream request.
    if (tool_choice := req.get("tool_choice")) is not None:
        _validate_tool_choice(tool_choice)
    if (response_format := req.get("response_format")) is not None:
        _validate_response_format(response_format)
    if (modalities := req.get("modalities")) is not None:
        for j, item in enumerate(check_list(modalities, "modalities")):
            check_str(item, f"modalities[{j}]")
    for key in ("user", "safety_identifier"):
        if (value := req.get(key)) is not None:
            check_str(value, key)
    if (parallel := req.get("parallel_tool_calls")) is not None:
        check_bool(parallel, "parallel_tool_calls")
    return req


_TOOL_CHOICE_MODES = ("none", "auto", "required")


def _validate_tool_choice(choice: object) -> None:
    if type(choice) is str:
        if choice not in _TOOL_CHOICE_MODES:
            raise invalid("tool_choice", "must be none, auto, required or an object naming a tool")
        return
    spec = check_object(choice, "tool_choice")
    kind = spec.get("type")
    check_non_empty_str(kind, "tool_choice.type")
    if kind == "function":
        function = check_object(spec.get("function"), "tool_choice.function")
        check_non_empty_str(function.get("name"), "tool_choice.function.name")


def _validate_response_format(response_format: object) -> None:
    spec = check_object(response_format, "response_format")
    kind = spec.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid("response_format.type", "must be text, json_object or json_schema")
    if kind == "json_schema":
        json_schema = check_object(spec.get("json_schema"), "response_format.json_schema")
        check_non_empty_str(json_schema.get("name"), "response_format.json_schema.name")
        if (schema := json_schema.get("schema")) is not None:
            check_object(schema, "response_format.json_schema.schema")


def _validate_part(part: dict[str, object], where: str) -> None:
    """The fields of a content part the gateway reads or translates."""
    kind = part["type"]
    if kind == "text":
        check_str(part.get("text"), f"{where}.text")
    elif kind == "refusal":
        check_str(part.get("refusal"), f"{where}.refusal")
    elif kind == "image_url":
        image = check_object(part.get("image_url"), f"{where}.image_url")
        check_non_empty_str(image.get("url"), f"{where}.image_url.url")
    elif kind in ("file", "input_audio"):
        check_object(part.get(kind), f"{where}.{kind}")


def _validate_message(message: object, i: int) -> None:
    where = f"messages[{i}]"
    msg = check_object(message, where)
    role = msg.get("role")
    if role not in _ROLES:
        raise invalid(f"{where}.role", f"must be one of {_ROLES_TEXT}")
    content = msg.get("content")
    if type(content) is list:
        check_typed_parts(content, f"{where}.content", _validate_part)
    elif type(content) is not str:
        # The API lets an assistant turn that only calls tools (or the legacy function) carry no content.
        may_be_null = (role == "assistant" and (msg.get("tool_calls") or msg.get("function_call"))) or (
            role == "function")
        if content is not None or not may_be_null:
            raise invalid(f"{where}.content", "must be a string or an array of content parts"
                          + (" (or null when tool_calls is set)" if role == "assistant" else ""))
    if role == "tool":
        check_non_empty_str(msg.get("tool_call_id"), f"{where}.tool_call_id")
    elif role == "function":
        check_non_empty_str(msg.get("name"), f"{where}.name")
    elif role == "assistant" and (tool_calls := msg.get("tool_calls")) is not None:
        for j, call in enumerate(check_list(tool_calls, f"{where}.tool_calls")):
            _validate_tool_call(call, f"{where}.tool_calls[{j}]")


def _validate_tool_call(call: object, where: str) -> None:
    tool_call = check_object(call, where)
    check_non_empty_str(tool_call.get("id"), f"{where}.id")
    if tool_call.get("type", "function") != "function":
        return  # custom tool calls: passed through for the provider to judge
    function = check_object(tool_call.get("function"), f"{where}.function")
    check_non_empty_str(function.get("name"), f"{where}.function.name")
    if type(function.get("arguments")) is not str:
        raise invalid(f"{where}.function.arguments", "must be a string of JSON")


def _validate_stop(stop: object) -> None:
    if type(stop) is str:
        return
    if type(stop) is not list or len(stop) > 4:
        raise invalid("stop", "must be a string or an array of at most 4 strings")
    for j, item in enumerate(stop):
        if type(item) is not str:
            raise invalid(f"stop[{j}]", "must be a string")


def _validate_tool(tool: object, i: int) -> None:
    where = f"tools[{i}]"
    spec = check_object(tool, where)
    if spec.get("type") != "function":
        raise invalid(f"{where}.type", "must be 'function' (the only tool type this gateway supports)")
    function = check_object(spec.get("function"), f"{where}.function")
    check_non_empty_str(function.get("name"), f"{where}.function.name")
    if (parameters := function.get("parameters")) is not None:
        check_object(parameters, f"{where}.function.parameters")
    if (description := function.get("description")) is not None:
        check_str(description, f"{where}.function.description")
    if (strict := function.get("strict")) is not None:
        check_bool(strict, f"{where}.function.strict")


# ---------------------------------------------------------------- framing and errors

def encode_event(ev: SSEEvent) -> bytes:
    """One SSE frame. OpenAI streams carry no `event:` line. ProviderError if a provider's event cannot be
    written again (see `gateway.formats.guard`)."""
    return b"data: " + encode_json(ev.data) + b"\n\n"


def error_body(err: GatewayError) -> Json:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def error_event(err: GatewayError) -> SSEEvent:
    """An error after the stream started: the openai SDK raises APIError on a `{"error": ...}` chunk."""
    return SSEEvent(error_body(err))


def wants_usage(body: Json) -> bool:
    options = body.get("stream_options")
    return type(options) is dict and options.get("include_usage") is True


def is_usage_only(ev: SSEEvent) -> bool:
    data = ev.data
    return not data.get("choices") and bool(data.get("usage"))


# ---------------------------------------------------------------- stream inspection

def inspect(ev: SSEEvent) -> EventInfo:
    """Classify one provider chunk. Runs on every chunk: role-only and empty chunks allocate nothing."""
    data = ev.data
    error = data.get("error")
    if error:
        return _error_info(error)
    content = False
    text = ""
    finish_reason = None
    choices = data.get("choices")
    if choices:
        for choice in choices:
            delta = choice.get("delta")
            if delta:
                if piece := delta.get("content"):
                    content = True
                    text += piece
                if piece := delta.get("refusal"):
                    content = True
                    text += piece
                # OpenAI-compatible reasoning models (DeepSeek, vLLM) stream their thinking here first.
                piece = delta.get("reasoning_content") or delta.get("reasoning")
                if piece and type(piece) is str:
                    content = True
                    text += piece
                if tool_calls := delta.get("tool_calls"):
                    for call in tool_calls:
                        function = call.get("function") or {}
                        arguments = function.get("arguments") or ""
                        name = function.get("name") or ""
                        if call.get("id") or name or arguments:
                            content = True
                            text += name + arguments
                if function_call := delta.get("function_call"):
                    content = True
                    text += (function_call.get("name") or "") + (function_call.get("arguments") or "")
            # A string only: the engine reports it (span attribute, request record) as the finish reason.
            if (reason := choice.get("finish_reason")) and type(reason) is str:
                finish_reason = reason
    usage = data.get("usage")
    if not usage or type(usage) is not dict:  # no usage, or not an object of counts: as good as none
        if finish_reason:
            return EventInfo(content=content, finish_reason=finish_reason, text=text)
        return content_info(text) if content else NOTHING
    details = usage.get("prompt_tokens_details")
    return EventInfo(
        content=content,
        input_tokens=token_count(usage.get("prompt_tokens")),
        output_tokens=token_count(usage.get("completion_tokens")),
        cached_input_tokens=token_count(details.get("cached_tokens")) if type(details) is dict else None,
        finish_reason=finish_reason,
        text=text,
    )


def _error_info(error: object) -> EventInfo:
    # The type becomes the attempt's error type (a client's error type, a metric label): known words only.
    # The message is upstream text: the engine redacts it before it goes anywhere.
    if type(error) is dict:
        kind = known_error_type(error.get("type")) or known_error_type(error.get("code")) or "api_error"
        message = error.get("message") or "error in stream"
        return EventInfo(error=(kind, str(message)))
    return EventInfo(error=("api_error", str(error)))
