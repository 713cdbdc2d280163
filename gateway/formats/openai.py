"""OpenAI Chat Completions wire format: request checks, SSE framing, errors, stream inspection, aggregation.

Field names follow `openai.types.chat` (ChatCompletionChunk, ChatCompletion); run-time code works on plain
dicts. The gateway always streams from providers, so `Aggregator` rebuilds a non-streaming body from chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import GatewayError, known_error_type
from gateway.formats import (
    MISSING,
    NOTHING,
    EventInfo,
    Kind,
    check_bool,
    check_int,
    check_list,
    check_number,
    check_object,
    check_one_of,
    check_request_object,
    check_str,
    check_typed_parts,
    content_info,
    field,
    invalid,
    openai_usage_details,
    token_count,
)
from gateway.formats.guard import encode_json

# Every format module exports an Aggregator; `plain_text` (the chunk both the engine and the aggregator take a
# shortcut for) lives beside it.
from gateway.formats.openai_answer import Aggregator, plain_text
from gateway.wire import Json, SSEEvent

__all__ = [
    "STREAM_END",
    "Aggregator",
    "encode_event",
    "error_body",
    "error_event",
    "inspect",
    "is_usage_only",
    "plain_text",
    "validate_request",
    "wants_usage",
]

STREAM_END = b"data: [DONE]\n\n"

# ---------------------------------------------------------------- request validation

class _Wording:
    """OpenAI's words for a bad field: the path in brackets and dots (`messages[2].tool_calls`), quoted in the
    message, named again in `param`, and the fault in `code` (missing_required_parameter, invalid_type,
    invalid_value, empty_array, integer_below_min_value, array_above_max_length...)."""

    def key(self, path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    def index(self, path: str, i: int) -> str:
        return f"{path}[{i}]"

    def member(self, path: str, tag: str) -> str:
        return path

    def missing(self, path: str) -> GatewayError:
        if path == "model":  # the API's own special case, with neither param nor code
            return invalid(None, "you must provide a model parameter")
        return invalid(path, f"Missing required parameter: '{path}'.", code="missing_required_parameter")

    def missing_tag(self, path: str) -> GatewayError:
        return self.missing(self.key(path, "type"))

    def wrong_type(self, path: str, expected: Kind, value: object) -> GatewayError:
        return invalid(path, f"Invalid type for '{path}': expected {_EXPECTED[expected]}, but got "
                       f"{_type_name(value)} instead.", code="invalid_type")

    def empty(self, path: str, value: str | list[object]) -> GatewayError:
        if path == "model":
            return self.missing(path)
        if type(value) is str:
            return invalid(path, f"Invalid '{path}': empty string. Expected a string with minimum length 1, but "
                           "got an empty string instead.", code="empty_string")
        return invalid(path, f"Invalid '{path}': empty array. Expected an array with minimum length 1, but got "
                       "an empty array instead.", code="empty_array")

    def below(self, path: str, kind: Kind, minimum: float, value: float) -> GatewayError:
        number = "integer" if kind is Kind.INTEGER else "decimal"
        return invalid(path, f"Invalid '{path}': {number} below minimum value. Expected a value >= {minimum:g}, "
                       f"but got {value:g} instead.", code=f"{number}_below_min_value")

    def above(self, path: str, kind: Kind, maximum: float, value: float) -> GatewayError:
        number = "integer" if kind is Kind.INTEGER else "decimal"
        return invalid(path, f"Invalid '{path}': {number} above maximum value. Expected a value <= {maximum:g}, "
                       f"but got {value:g} instead.", code=f"{number}_above_max_value")

    def too_long(self, path: str, maximum: int, value: list[object]) -> GatewayError:
        return invalid(path, f"Invalid '{path}': array too long. Expected an array with maximum length {maximum}, "
                       f"but got an array with length {len(value)} instead.", code="array_above_max_length")

    def not_one_of(self, path: str, value: str, allowed: Sequence[str]) -> GatewayError:
        quoted = [f"'{item}'" for item in allowed]
        # "'a' and 'b'", "'a', 'b', and 'c'": the API's list, serial comma included.
        options = " and ".join(quoted) if len(quoted) <= 2 else f"{', '.join(quoted[:-1])}, and {quoted[-1]}"
        return invalid(path, f"Invalid value: '{value}'. Supported values are: {options}.", code="invalid_value")


_EXPECTED = {
    Kind.STRING: "a string",
    Kind.OBJECT: "an object",
    Kind.ARRAY: "an array",
    Kind.BOOLEAN: "a boolean",
    Kind.INTEGER: "an integer",
    Kind.NUMBER: "a number",
    Kind.CONTENT: "one of a string or array of objects",
    Kind.STRINGS: "one of a string or array of strings",
}


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is int:
        return "an integer"
    if type(value) is float:
        return "a decimal"
    if type(value) is str:
        return "a string"
    if type(value) is list:
        return "an array"
    return "an object"


W = _Wording()

# In the order the API lists them in its own error.
_ROLES = ("system", "assistant", "user", "function", "tool", "developer")


def validate_request(body: object) -> Json:
    """Check a client's Chat Completions body; raise GatewayError(400, param=<field path>) on the first fault.

    Optional fields may be null: the OpenAI API spec declares them nullable and some clients send nulls.
    Fields the gateway does not read (logprobs, seed, prediction, ...) reach an OpenAI provider as sent.
    """
    req = check_request_object(W, body)
    for i, message in enumerate(req["messages"]):
        _validate_message(message, i)
    if (stream := req.get("stream")) is not None:
        check_bool(W, stream, "stream")
    for key in ("max_tokens", "max_completion_tokens"):
        if (value := req.get(key)) is not None:
            check_int(W, value, key, minimum=1)
    # Ranges are checked (not only types) so that hedged targets of either kind judge a request alike.
    if (temperature := req.get("temperature")) is not None:
        check_number(W, temperature, "temperature", 0, 2)
    if (top_p := req.get("top_p")) is not None:
        check_number(W, top_p, "top_p", 0, 1)
    if (n := req.get("n")) is not None and check_int(W, n, "n", minimum=1) != 1:
        # Hedging races whole answers from different providers; several choices per answer do not fit.
        raise invalid("n", f"Unsupported value: 'n' does not support {n} with this gateway, which hedges "
                      "whole answers across providers: only 1 is supported.", code="unsupported_value")
    if (stop := req.get("stop")) is not None:
        _validate_stop(stop)
    if (tools := req.get("tools")) is not None:
        for i, tool in enumerate(check_list(W, tools, "tools")):
            _validate_tool(tool, i)
    if (stream_options := req.get("stream_options")) is not None:
        options = check_object(W, stream_options, "stream_options")
        if (include_usage := options.get("include_usage")) is not None:
            check_bool(W, include_usage, "stream_options.include_usage")
    # Fields the gateway translates for Anthropic providers: checked here, so a bad one is a 400 naming it
    # rather than a translation crash or a malformed upstream request.
    if (tool_choice := req.get("tool_choice")) is not None:
        _validate_tool_choice(tool_choice)
    if (response_format := req.get("response_format")) is not None:
        _validate_response_format(response_format)
    if (modalities := req.get("modalities")) is not None:
        for j, item in enumerate(check_list(W, modalities, "modalities")):
            check_str(W, item, W.index("modalities", j))
    for key in ("user", "safety_identifier"):
        if (value := req.get(key)) is not None:
            check_str(W, value, key)
    if (parallel := req.get("parallel_tool_calls")) is not None:
        check_bool(W, parallel, "parallel_tool_calls")
    return req


def _validate_tool_choice(choice: object) -> None:
    if type(choice) is str:
        check_one_of(W, choice, "tool_choice", ("none", "auto", "required"))
        return
    spec = check_object(W, choice, "tool_choice")
    kind = check_str(W, field(spec, "type"), "tool_choice.type", non_empty=True)
    if kind == "function":
        function = check_object(W, field(spec, "function"), "tool_choice.function")
        check_str(W, field(function, "name"), "tool_choice.function.name", non_empty=True)


def _validate_response_format(response_format: object) -> None:
    spec = check_object(W, response_format, "response_format")
    kind = check_one_of(W, field(spec, "type"), "response_format.type", ("text", "json_object", "json_schema"))
    if kind == "json_schema":
        json_schema = check_object(W, field(spec, "json_schema"), "response_format.json_schema")
        check_str(W, field(json_schema, "name"), "response_format.json_schema.name", non_empty=True)
        if (schema := json_schema.get("schema")) is not None:
            check_object(W, schema, "response_format.json_schema.schema")


def _validate_part(part: dict[str, object], kind: str, where: str) -> None:
    """The fields of a content part the gateway reads or translates."""
    if kind == "text":
        check_str(W, field(part, "text"), W.key(where, "text"))
    elif kind == "refusal":
        check_str(W, field(part, "refusal"), W.key(where, "refusal"))
    elif kind == "image_url":
        image = check_object(W, field(part, "image_url"), W.key(where, "image_url"))
        check_str(W, field(image, "url"), W.key(where, "image_url.url"), non_empty=True)
    elif kind in ("file", "input_audio"):
        check_object(W, field(part, kind), W.key(where, kind))


def _validate_message(message: object, i: int) -> None:
    where = W.index("messages", i)
    msg = check_object(W, message, where)
    role = check_one_of(W, field(msg, "role"), W.key(where, "role"), _ROLES)
    content = field(msg, "content")
    path = W.key(where, "content")
    if type(content) is list:
        check_typed_parts(W, content, path, _validate_part)
    elif type(content) is not str:
        # The API lets an assistant turn that only calls tools (or the legacy function) carry no content.
        may_be_null = (role == "assistant" and (msg.get("tool_calls") or msg.get("function_call"))) or (
            role == "function")
        if not (may_be_null and content in (None, MISSING)):
            raise W.missing(path) if content is MISSING else W.wrong_type(path, Kind.CONTENT, content)
    if role == "tool":
        check_str(W, field(msg, "tool_call_id"), W.key(where, "tool_call_id"), non_empty=True)
    elif role == "function":
        check_str(W, field(msg, "name"), W.key(where, "name"), non_empty=True)
    elif role == "assistant" and (tool_calls := msg.get("tool_calls")) is not None:
        calls_path = W.key(where, "tool_calls")
        for j, call in enumerate(check_list(W, tool_calls, calls_path, non_empty=True)):
            _validate_tool_call(call, W.index(calls_path, j))


def _validate_tool_call(call: object, where: str) -> None:
    tool_call = check_object(W, call, where)
    check_str(W, field(tool_call, "id"), W.key(where, "id"), non_empty=True)
    if tool_call.get("type", "function") != "function":
        return  # custom tool calls: passed through for the provider to judge
    function = check_object(W, field(tool_call, "function"), W.key(where, "function"))
    check_str(W, field(function, "name"), W.key(where, "function.name"), non_empty=True)
    check_str(W, field(function, "arguments"), W.key(where, "function.arguments"))


def _validate_stop(stop: object) -> None:
    if type(stop) is str:
        return
    if type(stop) is not list:
        raise W.wrong_type("stop", Kind.STRINGS, stop)
    if len(stop) > 4:
        raise W.too_long("stop", 4, stop)
    for j, item in enumerate(stop):
        check_str(W, item, W.index("stop", j))


def _validate_tool(tool: object, i: int) -> None:
    where = W.index("tools", i)
    spec = check_object(W, tool, where)
    # Custom (free-form) tools go to OpenAI providers as sent; only an Anthropic target refuses them.
    if check_one_of(W, field(spec, "type"), W.key(where, "type"), ("function", "custom")) != "function":
        return
    function = check_object(W, field(spec, "function"), W.key(where, "function"))
    check_str(W, field(function, "name"), W.key(where, "function.name"), non_empty=True)
    if (parameters := function.get("parameters")) is not None:
        check_object(W, parameters, W.key(where, "function.parameters"))
    if (description := function.get("description")) is not None:
        check_str(W, description, W.key(where, "function.description"))
    if (strict := function.get("strict")) is not None:
        check_bool(W, strict, W.key(where, "function.strict"))


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
        details=openai_usage_details(details, usage.get("completion_tokens_details")),
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
