"""Anthropic Messages wire format: request checks, SSE framing, errors, stream inspection, aggregation.

Field names follow `anthropic.types` (RawMessageStreamEvent, Message); run-time code works on plain dicts.
The gateway always streams from providers, so `Aggregator` rebuilds a non-streaming `Message` from events.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from gateway.errors import GatewayError, known_error_type
from gateway.formats import (
    MISSING,
    NOTHING,
    EventInfo,
    Kind,
    UsageDetails,
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
    "plain_text",
    "validate_request",
    "wants_usage",
]

# Anthropic streams end with the message_stop event itself; nothing follows it on the wire.
STREAM_END = b""

# ---------------------------------------------------------------- request validation

class _Wording:
    """Anthropic's words for a bad field: `<path>: <problem>`, the path dotted, with array indices and the tag of
    a union member (`messages.3.content.1.tool_use.input: Input should be a valid dictionary`), the problem in
    pydantic's phrasing ("Field required", "Input should be a valid integer")."""

    def key(self, path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    def index(self, path: str, i: int) -> str:
        return f"{path}.{i}"

    def member(self, path: str, tag: str) -> str:
        return f"{path}.{tag}"

    def missing(self, path: str) -> GatewayError:
        return _fault(path, "Field required")

    def missing_tag(self, path: str) -> GatewayError:
        return _fault(path, "Unable to extract tag using discriminator 'type'")

    def wrong_type(self, path: str, expected: Kind, value: object) -> GatewayError:
        return _fault(path, _EXPECTED[expected])

    def empty(self, path: str, value: str | list[object]) -> GatewayError:
        if path == "messages":
            return _fault(path, "at least one message is required")
        if type(value) is str:
            return _fault(path, "String should have at least 1 character")
        return _fault(path, "List should have at least 1 item after validation, not 0")

    def below(self, path: str, kind: Kind, minimum: float, value: float) -> GatewayError:
        return _fault(path, f"Input should be greater than or equal to {minimum:g}")

    def above(self, path: str, kind: Kind, maximum: float, value: float) -> GatewayError:
        return _fault(path, f"Input should be less than or equal to {maximum:g}")

    def too_long(self, path: str, maximum: int, value: list[object]) -> GatewayError:
        return _fault(path, f"List should have at most {maximum} items after validation, not {len(value)}")

    def not_one_of(self, path: str, value: str, allowed: Sequence[str]) -> GatewayError:
        quoted = [f"'{item}'" for item in allowed]
        options = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        return _fault(path, f"Input should be {options}")


def _fault(path: str, problem: str) -> GatewayError:
    return invalid(path, f"{path}: {problem}")


_EXPECTED = {
    Kind.STRING: "Input should be a valid string",
    Kind.OBJECT: "Input should be a valid dictionary",
    Kind.ARRAY: "Input should be a valid list",
    Kind.BOOLEAN: "Input should be a valid boolean",
    Kind.INTEGER: "Input should be a valid integer",
    Kind.NUMBER: "Input should be a valid number",
    Kind.CONTENT: "Input should be a valid list",
    Kind.STRINGS: "Input should be a valid list",
}

W = _Wording()


def validate_request(body: object) -> Json:
    """Check a client's Messages body; raise GatewayError(400, param=<field path>) on the first fault.

    Unlike the OpenAI door, a null optional field is rejected: the Messages API does not accept nulls.
    Fields the gateway does not read (thinking, context_management, cache_control, output_config.effort, betas
    yet to come...) are not looked at: they reach an Anthropic provider as sent.
    """
    req = check_request_object(W, body)
    for i, message in enumerate(req["messages"]):
        _validate_message(message, i)
    # 0 is valid: it fills the prompt cache without generating (anthropic.types.MessageCreateParams.max_tokens).
    check_int(W, field(req, "max_tokens"), "max_tokens", minimum=0)
    if "stream" in req:
        check_bool(W, req["stream"], "stream")
    # Ranges are checked (not only types) so that hedged targets of either kind judge a request alike.
    if "temperature" in req:
        check_number(W, req["temperature"], "temperature", 0, 1)
    if "top_p" in req:
        check_number(W, req["top_p"], "top_p", 0, 1)
    if "stop_sequences" in req:
        for j, item in enumerate(check_list(W, req["stop_sequences"], "stop_sequences")):
            check_str(W, item, W.index("stop_sequences", j))
    if "system" in req:
        _validate_system(req["system"])
    if "tools" in req:
        for i, tool in enumerate(check_list(W, req["tools"], "tools")):
            _validate_tool(tool, i)
    # Fields the gateway translates for OpenAI providers: checked here, so a bad one is a 400 naming it
    # rather than a translation crash or a malformed upstream request.
    if "tool_choice" in req:
        _validate_tool_choice(req["tool_choice"])
    if "metadata" in req:
        metadata = check_object(W, req["metadata"], "metadata")
        if (user_id := metadata.get("user_id")) is not None:  # the SDK's type lets user_id be null
            check_str(W, user_id, "metadata.user_id")
    if "output_config" in req:
        output_config = check_object(W, req["output_config"], "output_config")
        if (output_format := output_config.get("format")) is not None:
            spec = check_object(W, output_format, "output_config.format")
            check_str(W, field(spec, "type"), "output_config.format.type", non_empty=True)
            if (schema := spec.get("schema")) is not None:
                check_object(W, schema, "output_config.format.schema")
    return req


# Role "system" inside messages: mid-conversation system turns (anthropic.types.SystemMessageParam; Claude Code
# sends one for any model name it does not know). An Anthropic provider gets them as sent; OpenAI ones get a
# system message in the same place.
_ROLES = ("user", "assistant", "system")
_TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")


def _validate_message(message: object, i: int) -> None:
    where = W.index("messages", i)
    msg = check_object(W, message, where)
    role = field(msg, "role")
    if role is MISSING:
        raise W.missing(W.key(where, "role"))
    if role not in _ROLES:
        # The API's own words for a bad role (it names no index), extended by the role it now also takes.
        raise invalid(W.key(where, "role"), f"messages: Unexpected role {orjson.dumps(role).decode()}. "
                      'Allowed roles are "user", "assistant" or "system"')
    content = field(msg, "content")
    path = W.key(where, "content")
    if type(content) is list:
        check_typed_parts(W, content, path, _validate_block)
    elif type(content) is not str:
        raise W.missing(path) if content is MISSING else W.wrong_type(path, Kind.CONTENT, content)


def _validate_block(block: dict[str, object], kind: str, where: str) -> None:
    """The fields of a content block the gateway reads or translates; paths name the block's type, as the API's."""
    at = W.member(where, kind)
    if kind == "text":
        check_str(W, field(block, "text"), W.key(at, "text"))
    elif kind in ("image", "document"):
        _validate_source(field(block, "source"), W.key(at, "source"))
    elif kind == "tool_use":
        check_str(W, field(block, "id"), W.key(at, "id"), non_empty=True)
        check_str(W, field(block, "name"), W.key(at, "name"), non_empty=True)
        check_object(W, field(block, "input"), W.key(at, "input"))
    elif kind == "tool_result":
        check_str(W, field(block, "tool_use_id"), W.key(at, "tool_use_id"), non_empty=True)
        content = block.get("content")
        if content is not None and type(content) is not str:
            path = W.key(at, "content")
            check_typed_parts(W, check_list(W, content, path), path, _validate_block)


def _validate_source(source: object, where: str) -> None:
    spec = check_object(W, source, where)
    kind = field(spec, "type")
    if kind is MISSING:
        raise W.missing_tag(where)
    kind = check_str(W, kind, W.key(where, "type"), non_empty=True)
    at = W.member(where, kind)
    if kind == "base64":
        check_str(W, field(spec, "media_type"), W.key(at, "media_type"), non_empty=True)
        check_str(W, field(spec, "data"), W.key(at, "data"))
    elif kind == "url":
        check_str(W, field(spec, "url"), W.key(at, "url"), non_empty=True)
    elif kind == "text":
        check_str(W, field(spec, "data"), W.key(at, "data"))


def _validate_system(system: object) -> None:
    if type(system) is str:
        return
    # A list of text blocks, not a tagged union: the API's paths name no type here (`system.1.cache_control`).
    for j, item in enumerate(check_list(W, system, "system")):
        where = W.index("system", j)
        block = check_object(W, item, where)
        check_one_of(W, field(block, "type"), W.key(where, "type"), ("text",))
        check_str(W, field(block, "text"), W.key(where, "text"))


def _validate_tool(tool: object, i: int) -> None:
    where = W.index("tools", i)
    spec = check_object(W, tool, where)
    kind = spec.get("type")
    # Server tools (web_search_20250305, bash_20250124, ...) carry a versioned `type` and no input_schema.
    custom = kind in (None, "custom")
    at = W.member(where, "custom" if custom else check_str(W, kind, W.key(where, "type")))
    check_str(W, field(spec, "name"), W.key(at, "name"), non_empty=True)
    if "description" in spec:
        check_str(W, spec["description"], W.key(at, "description"))
    if custom:
        check_object(W, field(spec, "input_schema"), W.key(at, "input_schema"))


def _validate_tool_choice(choice: object) -> None:
    spec = check_object(W, choice, "tool_choice")
    kind = field(spec, "type")
    if kind is MISSING:
        raise W.missing_tag("tool_choice")
    if kind not in _TOOL_CHOICE_TYPES:
        tags = ", ".join(f"'{tag}'" for tag in _TOOL_CHOICE_TYPES)
        raise invalid("tool_choice", f"tool_choice: Input tag '{kind}' found using 'type' does not match any of "
                      f"the expected tags: {tags}")
    at = W.member("tool_choice", str(kind))
    if kind == "tool":
        check_str(W, field(spec, "name"), W.key(at, "name"), non_empty=True)
    if (disable := spec.get("disable_parallel_tool_use")) is not None:
        check_bool(W, disable, W.key(at, "disable_parallel_tool_use"))


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
            return EventInfo(output_tokens=token_count(usage.get("output_tokens")), details=_usage_details(usage),
                             finish_reason=reason)
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


def plain_text(data: Json) -> str | None:
    """The text of a `text_delta` event: nearly every event of a stream. For it `inspect` is `content_info(text)`
    (NOTHING for ""), so the engine counts it without calling `inspect`; None for every other event."""
    if data.get("type") == "content_block_delta":
        delta = data.get("delta")
        if type(delta) is dict and delta.get("type") == "text_delta":
            text = delta.get("text")
            if type(text) is str:
                return text
    return None


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
        details=_usage_details(usage),
        finish_reason=finish_reason,
    )


def _usage_details(usage: Json) -> UsageDetails | None:
    """Cache writes (`cache_creation_input_tokens`, split by TTL in `cache_creation`: ephemeral_5m/1h) and
    thinking (`output_tokens_details.thinking_tokens`, part of output_tokens)."""
    write = token_count(usage.get("cache_creation_input_tokens"))
    long = None
    creation = usage.get("cache_creation")
    if type(creation) is dict:
        long = token_count(creation.get("ephemeral_1h_input_tokens"))
        if write is None and long is not None:  # the split without the total: the total is its sum
            write = long + (token_count(creation.get("ephemeral_5m_input_tokens")) or 0)
    reasoning = None
    output = usage.get("output_tokens_details")
    if type(output) is dict:
        reasoning = token_count(output.get("thinking_tokens"))
    if write is None and long is None and reasoning is None:
        return None
    return UsageDetails(cache_write_tokens=write, cache_write_long_tokens=long, reasoning_tokens=reasoning)
