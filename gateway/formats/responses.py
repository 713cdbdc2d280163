"""OpenAI Responses API wire format: request checks, SSE framing, errors, stream inspection, aggregation.

Field names follow `openai.types.responses` (ResponseCreateParams, ResponseStreamEvent, Response); run-time
code works on plain dicts. Errors are worded as OpenAI words them (the chat door's `Wording`), since the
official SDKs and the Agents SDK read them the same way. The gateway always streams from providers, so
`Aggregator` rebuilds the non-streaming `response` object from the events.

Every stream event carries a `sequence_number`, and the terminal one (`response.completed`,
`response.incomplete`, `response.failed`) the whole response object with its usage; a stream ends after it
(no `[DONE]`). A failure after the commit point is one `error` event, as the API sends it.
"""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.formats import (
    MISSING,
    NOTHING,
    EventInfo,
    Kind,
    check_bool,
    check_int,
    check_list,
    check_nesting,
    check_number,
    check_object,
    check_one_of,
    check_str,
    check_typed_parts,
    content_info,
    field,
    invalid,
    openai_usage_details,
    token_count,
)
from gateway.formats.guard import encode_json, malformed_answer, whole_answer
from gateway.formats.openai import W
from gateway.formats.openai import error_body as openai_error_body
from gateway.wire import Json, SSEEvent

__all__ = [
    "STREAM_END",
    "TERMINAL_EVENTS",
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

STREAM_END = b""  # the terminal event ends the stream; the API sends no `data: [DONE]`
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# The API's own floor for max_output_tokens.
MIN_OUTPUT_TOKENS = 16
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_FORMATS = ("text", "json_object", "json_schema")

# ---------------------------------------------------------------- request validation


def validate_request(body: object) -> Json:
    """Check a client's Responses body; raise GatewayError(400, param=<field path>) on the first fault.

    Only what the gateway reads to route, hedge, keep the conversation and translate is checked; every other
    field reaches a native provider as sent. Optional fields may be null, as the API's spec allows.
    """
    if type(body) is not dict:
        raise GatewayError(400, "request body must be a JSON object", type="invalid_request_error")
    check_nesting(body)
    check_str(W, field(body, "model"), "model", non_empty=True)
    _refuse_server_state(body)
    if (data := body.get("input")) is not None:
        _validate_input(data)
    if (data is None or data == []) and not body.get("previous_response_id"):
        # Nothing to answer (an empty list included, as the API words it): refused here, so that targets of
        # every kind judge it alike (a native one refuses it, a chat one would get no user turn).
        raise W.missing("input")
    for key in ("stream", "store", "parallel_tool_calls", "background"):
        if (value := body.get(key)) is not None:
            check_bool(W, value, key)
    for key in ("instructions", "previous_response_id", "user", "safety_identifier", "prompt_cache_key"):
        if (value := body.get(key)) is not None:
            check_str(W, value, key, non_empty=key == "previous_response_id")
    if (max_out := body.get("max_output_tokens")) is not None:
        check_int(W, max_out, "max_output_tokens", minimum=MIN_OUTPUT_TOKENS)
    # Ranges are checked (not only types) so that hedged targets of every kind judge a request alike.
    if (temperature := body.get("temperature")) is not None:
        check_number(W, temperature, "temperature", 0, 2)
    if (top_p := body.get("top_p")) is not None:
        check_number(W, top_p, "top_p", 0, 1)
    if (tools := body.get("tools")) is not None:
        for i, tool in enumerate(check_list(W, tools, "tools")):
            _validate_tool(tool, W.index("tools", i))
    if (choice := body.get("tool_choice")) is not None:
        _validate_tool_choice(choice)
    if (text := body.get("text")) is not None:
        _validate_text(text)
    if (reasoning := body.get("reasoning")) is not None:
        spec = check_object(W, reasoning, "reasoning")
        for key in ("effort", "summary"):
            if (value := spec.get(key)) is not None:
                check_str(W, value, W.key("reasoning", key))
    if (metadata := body.get("metadata")) is not None:
        check_object(W, metadata, "metadata")
    if (include := body.get("include")) is not None:
        for j, item in enumerate(check_list(W, include, "include")):
            check_str(W, item, W.index("include", j))
    return body


def _refuse_server_state(body: Json) -> None:
    """What needs state kept upstream, which the gateway (that may send each turn elsewhere) cannot hold."""
    if body.get("background") is True:
        raise invalid("background", "Unsupported value: 'background' is not supported by this gateway, which "
                      "streams every response to the client that asked: only false is supported.",
                      code="unsupported_value")
    if body.get("conversation") is not None:
        raise invalid("conversation", "Unsupported parameter: 'conversation' is not supported by this gateway, "
                      "which keeps conversations itself: use 'previous_response_id'.", code="unsupported_parameter")


def _validate_input(data: object) -> None:
    if type(data) is str:
        return
    if type(data) is not list:
        raise W.wrong_type("input", Kind.CONTENT, data)
    for i, item in enumerate(data):
        _validate_item(item, W.index("input", i))


def _validate_item(item: object, where: str) -> None:
    spec = check_object(W, item, where)
    kind = spec.get("type")
    if kind is None or kind == "message":
        _validate_message(spec, where)
        return
    kind = check_str(W, kind, W.key(where, "type"), non_empty=True)
    if kind == "function_call":
        check_str(W, field(spec, "call_id"), W.key(where, "call_id"), non_empty=True)
        check_str(W, field(spec, "name"), W.key(where, "name"), non_empty=True)
        check_str(W, field(spec, "arguments"), W.key(where, "arguments"))
    elif kind == "function_call_output":
        check_str(W, field(spec, "call_id"), W.key(where, "call_id"), non_empty=True)
        output = field(spec, "output")
        if type(output) is list:
            check_typed_parts(W, output, W.key(where, "output"), _validate_part)
        elif type(output) is not str:
            path = W.key(where, "output")
            raise W.missing(path) if output is MISSING else W.wrong_type(path, Kind.CONTENT, output)
    elif kind == "reasoning":
        if (summary := spec.get("summary")) is not None:
            check_typed_parts(W, check_list(W, summary, W.key(where, "summary")), W.key(where, "summary"))
    elif kind == "item_reference":
        check_str(W, field(spec, "id"), W.key(where, "id"), non_empty=True)
    # Other items (built-in tool calls and their outputs) go to a native provider as sent.


def _validate_message(spec: dict[str, object], where: str) -> None:
    check_one_of(W, field(spec, "role"), W.key(where, "role"), _ROLES)
    content = field(spec, "content")
    path = W.key(where, "content")
    if type(content) is list:
        check_typed_parts(W, content, path, _validate_part)
    elif type(content) is not str:
        raise W.missing(path) if content is MISSING else W.wrong_type(path, Kind.CONTENT, content)


def _validate_part(part: dict[str, object], kind: str, where: str) -> None:
    """The fields of a content part that the translations read."""
    if kind in ("input_text", "output_text"):
        check_str(W, field(part, "text"), W.key(where, "text"))
    elif kind == "refusal":
        check_str(W, field(part, "refusal"), W.key(where, "refusal"))
    elif kind == "input_image":
        for key in ("image_url", "file_id"):
            if (value := part.get(key)) is not None:
                check_str(W, value, W.key(where, key), non_empty=True)
        if part.get("image_url") is None and part.get("file_id") is None:
            raise W.missing(W.key(where, "image_url"))
    elif kind == "input_file":
        for key in ("file_data", "file_id", "file_url", "filename"):
            if (value := part.get(key)) is not None:
                check_str(W, value, W.key(where, key))


def _validate_tool(tool: object, where: str) -> None:
    spec = check_object(W, tool, where)
    kind = check_str(W, field(spec, "type"), W.key(where, "type"), non_empty=True)
    if kind != "function":
        return  # built-in tools (web_search, file_search, mcp, ...): a native provider's to judge
    check_str(W, field(spec, "name"), W.key(where, "name"), non_empty=True)
    if (parameters := spec.get("parameters")) is not None:
        check_object(W, parameters, W.key(where, "parameters"))
    if (description := spec.get("description")) is not None:
        check_str(W, description, W.key(where, "description"))
    if (strict := spec.get("strict")) is not None:
        check_bool(W, strict, W.key(where, "strict"))


def _validate_tool_choice(choice: object) -> None:
    if type(choice) is str:
        check_one_of(W, choice, "tool_choice", ("none", "auto", "required"))
        return
    spec = check_object(W, choice, "tool_choice")
    kind = check_str(W, field(spec, "type"), "tool_choice.type", non_empty=True)
    if kind == "function":
        check_str(W, field(spec, "name"), "tool_choice.name", non_empty=True)
    elif kind == "allowed_tools":
        check_one_of(W, field(spec, "mode"), "tool_choice.mode", ("auto", "required"))
        for i, tool in enumerate(check_list(W, field(spec, "tools"), "tool_choice.tools")):
            check_object(W, tool, W.index("tool_choice.tools", i))


def _validate_text(text: object) -> None:
    spec = check_object(W, text, "text")
    if (verbosity := spec.get("verbosity")) is not None:
        check_str(W, verbosity, "text.verbosity")
    if (fmt := spec.get("format")) is None:
        return
    fmt_spec = check_object(W, fmt, "text.format")
    if check_one_of(W, field(fmt_spec, "type"), "text.format.type", _TEXT_FORMATS) == "json_schema":
        check_str(W, field(fmt_spec, "name"), "text.format.name", non_empty=True)
        check_object(W, field(fmt_spec, "schema"), "text.format.schema")
        if (strict := fmt_spec.get("strict")) is not None:
            check_bool(W, strict, "text.format.strict")


# ---------------------------------------------------------------- framing and errors


def encode_event(ev: SSEEvent) -> bytes:
    """One SSE frame with its `event:` line, as the API writes them (clients key on `data.type` too). A name
    that could break the framing (not a string, a line break in it) is never written; ProviderError if a
    provider's event cannot be written again (see `gateway.formats.guard`)."""
    name = ev.event
    if not name or "\n" in name or "\r" in name:
        name = ev.data.get("type")
        if type(name) is not str or not name or "\n" in name or "\r" in name:
            name = "message"
    return b"event: " + name.encode() + b"\ndata: " + encode_json(ev.data) + b"\n\n"


def error_body(err: GatewayError) -> Json:
    return openai_error_body(err)


def error_event(err: GatewayError) -> SSEEvent:
    """A failure after the stream started, as the API reports one: an `error` event (the Agents SDK and the AI
    SDK end the run on it; the openai SDK yields it). The door numbers it like every other event."""
    code = err.code or err.type or "server_error"
    return SSEEvent({"type": "error", "code": code, "message": err.message, "param": err.param,
                     "sequence_number": 0}, "error")


def wants_usage(body: Json) -> bool:
    return True  # usage is part of the terminal event: Responses clients always get it


def is_usage_only(ev: SSEEvent) -> bool:
    return False


# ---------------------------------------------------------------- stream inspection

_END = EventInfo(end=True)
# Items whose opening says nothing yet (their text follows as deltas). Any other item opening is itself output:
# a call the model decided to make, as a chat tool call's first delta is.
_NOT_CONTENT_ITEMS = frozenset({"message", "reasoning"})
_DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta",
                     "response.refusal.delta", "response.reasoning_text.delta",
                     "response.reasoning_summary_text.delta", "response.custom_tool_call_input.delta"})


def inspect(ev: SSEEvent) -> EventInfo:
    """Classify one event from a provider speaking the Responses API. Deltas first: they are nearly all."""
    data = ev.data
    kind = data.get("type") or ev.event
    if kind in _DELTAS:
        piece = data.get("delta")
        return content_info(piece) if piece and type(piece) is str else NOTHING
    if kind == "response.output_item.added":
        item = data.get("item") or {}
        if item.get("type") in _NOT_CONTENT_ITEMS:
            return NOTHING
        name = item.get("name")
        return EventInfo(content=True, text=name if type(name) is str else "")
    if kind in ("response.completed", "response.incomplete"):
        return _terminal_info(data.get("response") or {})
    if kind == "response.failed":
        error = (data.get("response") or {}).get("error") or {}
        return EventInfo(error=(str(error.get("code") or "server_error"),
                                str(error.get("message") or "response failed")))
    if kind == "error":
        nested = data.get("error")
        error = nested if type(nested) is dict else data
        return EventInfo(error=(str(error.get("code") or error.get("type") or "server_error"),
                                str(error.get("message") or "error in stream")))
    return NOTHING


def plain_text(data: Json) -> str | None:
    """The text of a delta event (output text, arguments, refusal, reasoning): nearly every event of a stream.
    For it `inspect` is `content_info(text)` (NOTHING for ""), so the engine counts it without calling
    `inspect`; None for every other event."""
    kind = data.get("type")
    if type(kind) is str and kind in _DELTAS:
        text = data.get("delta")
        if type(text) is str:
            return text
    return None


def _terminal_info(response: Json) -> EventInfo:
    usage = response.get("usage")
    details = (response.get("incomplete_details") or {}).get("reason")
    reason = str(details) if details else str(response.get("status") or "completed")
    if not usage:
        return EventInfo(finish_reason=reason, end=True)
    if type(usage) is not dict:
        return EventInfo(finish_reason=reason, end=True)
    inputs = usage.get("input_tokens_details")
    cached = token_count(inputs.get("cached_tokens")) if type(inputs) is dict else None
    # Provider numbers, trusted only as sane counts (else missing: estimated and flagged downstream).
    return EventInfo(input_tokens=token_count(usage.get("input_tokens")),
                     output_tokens=token_count(usage.get("output_tokens")),
                     cached_input_tokens=cached,
                     details=openai_usage_details(inputs, usage.get("output_tokens_details")),
                     finish_reason=reason, end=True)


# ---------------------------------------------------------------- aggregation


class Aggregator:
    """Builds the complete `response` object from a stream of Responses events.

    The terminal event carries the whole response; output items it lacks (some servers send an empty
    `output` there) are taken from the `response.output_item.done` events, by output index."""

    def __init__(self) -> None:
        self._response: Json = {}
        self._items: dict[int, Json] = {}
        self._broken: str | None = None  # why the answer cannot be assembled

    def feed(self, ev: SSEEvent) -> None:
        if self._broken is not None:
            return
        try:
            self._feed(ev)
        except Exception as exc:  # a field of a type nothing here can read: the answer cannot be assembled
            self._broken = f"{type(exc).__name__} in an event"

    def feed_text(self, ev: SSEEvent, text: str) -> None:
        """A delta (see `plain_text`): nothing to keep, the answer is read from the items and the terminal event."""

    def _feed(self, ev: SSEEvent) -> None:
        data = ev.data
        kind = data.get("type") or ev.event
        if kind == "response.output_item.done":
            item = data.get("item")
            index = data.get("output_index", len(self._items))
            if type(item) is dict and type(index) is int:
                self._items[index] = item
        elif kind in TERMINAL_EVENTS or kind in ("response.created", "response.in_progress"):
            response = data.get("response")
            if type(response) is dict:
                self._response = response

    def result(self) -> Json:
        """The answer; ProviderError if the events could not be assembled into one."""
        if self._broken is not None:
            raise malformed_answer(self._broken)
        response = dict(self._response)
        response.setdefault("object", "response")
        if not response.get("output"):
            response["output"] = [self._items[i] for i in sorted(self._items)]
        return whole_answer(response)
