"""Anthropic Messages wire format: request checks, SSE framing, errors, stream inspection, aggregation.

Field names follow `anthropic.types` (RawMessageStreamEvent, Message); run-time code works on plain dicts.
The gateway always streams from providers, so `Aggregator` rebuilds a non-streaming `Message` from events.
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
from gateway.formats.anthropic_answer import Aggregator  # every format module exports one
from gateway.formats.guard import encode_json
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

# Anthropic streams end with the message_stop event itself; nothing follows it on the wire.
STREAM_END = b""

_ROLES = ("user", "assistant")


# ---------------------------------------------------------------- request validation

def validate_request(body: object) -> Json:
    """Check a client's Messages body; raise GatewayError(400, param=<field path>) on the first fault.

    Unlike the OpenAI door, a null optional field is rejected: the Messages API does not accept nulls.
    """
    req = check_request_object(body)
    for i, message in enumerate(req["messages"]):
        _validate_message(message, i)
    if "max_tokens" not in req:
        raise invalid("max_tokens", "required")
    check_positive_int(req["max_tokens"], "max_tokens")
    if "stream" in req:
        check_bool(req["stream"], "stream")
    if "temperature" in req:
        check_number(req["temperature"], "temperature", 0, 1)
    if "top_p" in req:
        check_number(req["top_p"], "top_p", 0, 1)
    if "stop_sequences" in req:
        for j, item in enumerate(check_list(req["stop_sequences"], "stop_sequences")):
            if type(item) is not str:
                raise invalid(f"stop_sequences[{j}]", "must be a string")
    if "system" in req:
        _validate_system(req["system"])
    if "tools" in req:
        for i, tool in enumerate(check_list(req["tools"], "tools")):
            _validate_tool(tool, i)
    # Fields the gateway translates for OpenAI providers: checked here, so a bad one is a 400 naming it
    # rather than a translation crash or a malformed upstream request.
    if "tool_choice" in req:
        _validate_tool_choice(req["tool_choice"])
    if "metadata" in req:
        metadata = check_object(req["metadata"], "metadata")
        if (user_id := metadata.get("user_id")) is not None:
            check_str(user_id, "metadata.user_id")
    if "output_config" in req:
        output_config = check_object(req["output_config"], "output_config")
        if (output_format := output_config.get("format")) is not None:
            spec = check_object(output_format, "output_config.format")
            check_non_empty_str(spec.get("type"), "output_config.format.type")
            if (schema := spec.get("schema")) is not None:
                check_object(schema, "output_config.format.schema")
    return req


_TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")


def _validate_tool_choice(choice: object) -> None:
    spec = check_object(choice, "tool_choice")
    kind = spec.get("type")
    if kind not in _TOOL_CHOICE_TYPES:
        raise invalid("tool_choice.type", f"must be one of {', '.join(_TOOL_CHOICE_TYPES)}")
    if kind == "tool":
        check_non_empty_str(spec.get("name"), "tool_choice.name")
    if (disable := spec.get("disable_parallel_tool_use")) is not None:
        check_bool(disable, "tool_choice.disable_parallel_tool_use")


def _validate_block(block: dict[str, object], where: str) -> None:
    """The fields of a content block the gateway reads or translates."""
    kind = block["type"]
    if kind == "text":
        check_str(block.get("text"), f"{where}.text")
    elif kind in ("image", "document"):
        _validate_source(block.get("source"), f"{where}.source")
    elif kind == "tool_use":
        check_non_empty_str(block.get("id"), f"{where}.id")
        check_non_empty_str(block.get("name"), f"{where}.name")
        check_object(block.get("input"), f"{where}.input")
    elif kind == "tool_result":
        check_non_empty_str(block.get("tool_use_id"), f"{where}.tool_use_id")
        content = block.get("content")
        if content is not None and type(content) is not str:
            parts = check_list(content, f"{where}.content")
            check_typed_parts(parts, f"{where}.content", _validate_block)


def _validate_source(source: object, where: str) -> None:
    spec = check_object(source, where)
    kind = spec.get("type")
    check_non_empty_str(kind, f"{where}.type")
    if kind == "base64":
        check_non_empty_str(spec.get("media_type"), f"{where}.media_type")
        check_str(spec.get("data"), f"{where}.data")
    elif kind == "url":
        check_non_empty_str(spec.get("url"), f"{where}.url")
    elif kind == "text":
        check_str(spec.get("data"), f"{where}.data")


def _validate_message(message: object, i: int) -> None:
    where = f"messages[{i}]"
    msg = check_object(message, where)
    if msg.get("role") not in _ROLES:
        raise invalid(f"{where}.role", "must be one of user, assistant")
    content = msg.get("content")
    if type(content) is list:
        check_typed_parts(content, f"{where}.content", _validate_block)
    elif type(content) is not str:
        raise invalid(f"{where}.content", "must be a string or an array of content blocks")


def _validate_system(system: object) -> None:
    if type(system) is str:
        return
    if type(system) is not list:
        raise invalid("system", "must be a string or an array of text blocks")
    for j, item in enumerate(system):
        block = check_object(item, f"system[{j}]")
        if block.get("type") != "text":
            raise invalid(f"system[{j}].type", "must be 'text'")
        if type(block.get("text")) is not str:
            raise invalid(f"system[{j}].text", "must be a string")


def _validate_tool(tool: object, i: int) -> None:
    where = f"tools[{i}]"
    spec = check_object(tool, where)
    check_non_empty_str(spec.get("name"), f"{where}.name")
    if "description" in spec:
        check_str(spec["description"], f"{where}.description")
    # Server tools (web_search_20250305, bash_20250124, ...) carry a versioned `type` and no input_schema.
    if spec.get("type") in (None, "custom"):
        check_object(spec.get("input_schema"), f"{where}.input_schema")


# ---------------------------------------------------------------- framing and errors

def encode_event(ev: SSEEvent) -> bytes:
    """One SSE frame. The `event:` line is mandatory: the anthropic SDK drops events without one.

    Named by the data's own `type` (what the SDK reads it as), else by the event name it came with; a name
    that could break the framing (not a string, a line break in it) is never written. ProviderError if a
    provider's event cannot be written again (see `gateway.formats.guard`)."""
    data = ev.data
    name = data.get("type")
    if type(name) is not str or not name or "\n" in name or "\r" in name:
        name = ev.event
        if not name or "\n" in name or "\r" in name:
            name = "message"
    return b"event: " + name.encode() + b"\ndata: " + encode_json(data) + b"\n\n"


_ERROR_TYPES = frozenset({
    "invalid_request_error", "authentication_error", "billing_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error",
})

# Types that arrive from OpenAI-format upstreams or from the gateway's own ProviderError.error_type.
_ERROR_TYPE_ALIASES = {
    "server_error": "api_error",
    "internal_error": "api_error",
    "connection_error": "api_error",
    "bad_stream": "api_error",
    "timeout": "timeout_error",
    "invalid_api_key": "authentication_error",
    "insufficient_quota": "billing_error",
    "model_not_found": "not_found_error",
    "context_length_exceeded": "invalid_request_error",
}

_ERROR_TYPE_BY_STATUS = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _error_type(err: GatewayError) -> str:
    """The Anthropic error type for a gateway error: its own type if Anthropic knows it, else by status."""
    if err.type in _ERROR_TYPES:
        return err.type
    if alias := _ERROR_TYPE_ALIASES.get(err.type):
        return alias
    if by_status := _ERROR_TYPE_BY_STATUS.get(err.status):
        return by_status
    return "api_error" if err.status >= 500 else "invalid_request_error"


def error_body(err: GatewayError) -> Json:
    return {"type": "error", "error": {"type": _error_type(err), "message": err.message}}


def error_event(err: GatewayError) -> SSEEvent:
    """An error after the stream started: `event: error`, which the anthropic SDK raises as APIStatusError."""
    return SSEEvent(error_body(err), event="error")


def wants_usage(body: Json) -> bool:
    return True  # usage is part of message_start/message_delta: Anthropic clients always get it


def is_usage_only(ev: SSEEvent) -> bool:
    return False  # no Anthropic event is usage alone: message_delta also carries stop_reason


# ---------------------------------------------------------------- stream inspection

_END = EventInfo(end=True)
# A block start that is itself output (a tool call, server tool results, redacted thinking).
_CONTENT_START = EventInfo(content=True)


def inspect(ev: SSEEvent) -> EventInfo:
    """Classify one event from a provider. Deltas are checked first: they are nearly every event."""
    data = ev.data
    kind = data.get("type") or ev.event
    if kind == "content_block_delta":
        delta = data.get("delta") or {}
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            piece = delta.get("text")
        elif delta_type == "input_json_delta":
            piece = delta.get("partial_json")
        elif delta_type == "thinking_delta":
            piece = delta.get("thinking")  # reasoning is generated (and billed) output too
        else:
            return NOTHING  # signature_delta, citations_delta: metadata about output, not output
        return content_info(piece) if piece else NOTHING
    if kind in ("ping", "content_block_stop"):
        return NOTHING
    if kind == "message_delta":
        usage = data.get("usage")
        if type(usage) is not dict:  # not an object of counts: as good as none
            usage = {}
        reason = (data.get("delta") or {}).get("stop_reason")
        if type(reason) is not str:  # the engine reports it (span attribute, request record): a string only
            reason = None
        if token_count(usage.get("input_tokens")) is None:
            return EventInfo(output_tokens=token_count(usage.get("output_tokens")), finish_reason=reason)
        return _usage_info(usage, reason)
    if kind == "message_start":
        usage = (data.get("message") or {}).get("usage")
        return _usage_info(usage if type(usage) is dict else {}, None)
    if kind == "content_block_start":
        block = data.get("content_block") or {}
        block_type = block.get("type")
        if block_type == "text":
            text = block.get("text")
            return EventInfo(content=True, text=text) if text else NOTHING
        if block_type == "thinking":
            thinking = block.get("thinking")
            return EventInfo(content=True, text=thinking) if thinking else NOTHING
        if block_type in ("tool_use", "server_tool_use"):
            return EventInfo(content=True, text=block.get("name") or "")
        return _CONTENT_START
    if kind == "message_stop":
        return _END
    if kind == "error":
        error = data.get("error")
        if type(error) is not dict:
            return EventInfo(error=("api_error", str(error or "error in stream")))
        # The type becomes the attempt's error type (a client's error type, a metric label): known words only.
        return EventInfo(error=(known_error_type(error.get("type")) or "api_error",
                                str(error.get("message") or "error in stream")))
    return NOTHING


def _usage_info(usage: Json, finish_reason: str | None) -> EventInfo:
    # Anthropic's input_tokens excludes cache reads and writes; the engine wants every prompt token. A count
    # that is not one (see `token_count`) is missing: no input count at all if input_tokens is not one.
    cache_read = token_count(usage.get("cache_read_input_tokens")) or 0
    cache_write = token_count(usage.get("cache_creation_input_tokens")) or 0
    input_tokens = token_count(usage.get("input_tokens"))
    return EventInfo(
        input_tokens=None if input_tokens is None else input_tokens + cache_read + cache_write,
        output_tokens=token_count(usage.get("output_tokens")),
        cached_input_tokens=cache_read,
        finish_reason=finish_reason,
    )
