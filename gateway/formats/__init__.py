"""Wire formats: one module per format (`openai`, `anthropic`), each exporting the same names.

Every format module exports `validate_request`, `encode_event`, `STREAM_END`, `error_body`, `error_event`,
`inspect`, `Aggregator`, `wants_usage` and `is_usage_only`, so the server can pick a module by
`WireFormat` and use it without knowing which format it is.

This package module holds what the format modules share: `EventInfo` (what `inspect` reports about one
provider event) and small request-validation helpers that build the door's 400 errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import GatewayError
from gateway.wire import Json, SSEEvent


@dataclass(frozen=True, slots=True)
class EventInfo:
    """What one provider stream event means to the engine (hedging, usage, cost, end of stream)."""

    # The event carries generated output: the first such event is the attempt's first token.
    content: bool = False
    # Token counts as this format reports them; None when the event says nothing about them.
    input_tokens: int | None = None  # prompt tokens including cached ones
    output_tokens: int | None = None  # cumulative completion tokens so far
    cached_input_tokens: int | None = None
    finish_reason: str | None = None  # native value (OpenAI "stop", Anthropic "end_turn", ...)
    error: tuple[str, str] | None = None  # (type, message) of an error reported inside the stream
    end: bool = False  # the format's own end-of-message event (Anthropic message_stop)
    text: str = ""  # generated text/arguments carried, to estimate tokens when a stream is cut


# Token counts a provider may report. Bigger is no real count (context windows are a few million tokens) and
# would turn into an absurd cost; such a count, and any count that is not a non-negative int, is treated as
# missing: the engine then estimates it, and flags the attempt's usage as estimated.
MAX_TOKENS = 100_000_000


def token_count(value: object) -> int | None:
    """`value` if it is a plausible token count, else None. `type(...) is int`: a bool is an int subclass,
    and "12", 12.0 or 1e308 are not counts (they would break the sums and the cost downstream)."""
    if type(value) is int and 0 <= value < MAX_TOKENS:
        return value
    return None


# Shared by every event that means nothing to the engine (pings, role-only chunks, block stops...):
# `inspect` returns this constant instead of building an object per chunk.
NOTHING = EventInfo()


class Aggregator(Protocol):
    """Builds a format's complete (non-streaming) response from its stream events."""

    def feed(self, ev: SSEEvent) -> None: ...
    def result(self) -> Json: ...

# A frozen dataclass's __init__ costs ~1.5 us on CPython 3.11 (keyword defaults, then object.__setattr__
# per field); a text delta is nearly every chunk of every stream, so `content_info` fills the slots
# directly (~0.45 us). Same result as EventInfo(content=True, text=text); tests check they are equal.
_new_event_info = object.__new__
(_set_content, _set_input, _set_output, _set_cached, _set_finish, _set_error, _set_end, _set_text) = (
    getattr(EventInfo, name).__set__ for name in (
        "content", "input_tokens", "output_tokens", "cached_input_tokens", "finish_reason", "error", "end",
        "text"))


def content_info(text: str) -> EventInfo:
    """EventInfo(content=True, text=text), built fast for the per-chunk hot path."""
    info = _new_event_info(EventInfo)
    _set_content(info, True)
    _set_input(info, None)
    _set_output(info, None)
    _set_cached(info, None)
    _set_finish(info, None)
    _set_error(info, None)
    _set_end(info, False)
    _set_text(info, text)
    return info


# JSON nesting a request may have. Real requests stay far below (a tool schema is rarely 20 deep); the bound
# keeps every later step safe: orjson writes at most 254 levels (the upstream body, a level or two deeper after
# translation), and anything recursive over a body would otherwise meet the interpreter's recursion limit.
MAX_NESTING = 128


def invalid(param: str, problem: str) -> GatewayError:
    """A 400 for one request field; the message starts with the field path so clients see what is wrong."""
    return GatewayError(400, f"{param}: {problem}", type="invalid_request_error", param=param)


def is_number(value: object) -> bool:
    # `type(...) is` rather than isinstance: bool is an int subclass and must not pass as a number.
    return type(value) is int or type(value) is float


def check_number(value: object, param: str, low: float, high: float) -> None:
    if not is_number(value):
        raise invalid(param, f"must be a number between {low:g} and {high:g}")
    if not low <= value <= high:  # type: ignore[operator]  # is_number checked it is int or float
        raise invalid(param, f"must be between {low:g} and {high:g}, got {value}")


def check_positive_int(value: object, param: str) -> None:
    if type(value) is not int or value < 1:
        raise invalid(param, "must be a positive integer")


def check_bool(value: object, param: str) -> None:
    if type(value) is not bool:
        raise invalid(param, "must be a boolean")


def check_non_empty_str(value: object, param: str) -> None:
    if type(value) is not str or not value:
        raise invalid(param, "must be a non-empty string")


def check_str(value: object, param: str) -> None:
    if type(value) is not str:
        raise invalid(param, "must be a string")


def check_object(value: object, param: str) -> dict[str, object]:
    if type(value) is not dict:
        raise invalid(param, "must be an object")
    return value


def check_list(value: object, param: str, *, non_empty: bool = False) -> list[object]:
    if type(value) is not list:
        raise invalid(param, "must be a non-empty array" if non_empty else "must be an array")
    if non_empty and not value:
        raise invalid(param, "must be a non-empty array")
    return value


def check_typed_parts(parts: list[object], param: str,
                      each: Callable[[dict[str, object], str], None] | None = None) -> None:
    """Content parts/blocks: each an object with a string `type`; `each(part, path)` checks the fields the
    gateway itself reads or translates (the provider checks the rest)."""
    for j, part in enumerate(parts):
        block = check_object(part, f"{param}[{j}]")
        if type(block.get("type")) is not str:
            raise invalid(f"{param}[{j}].type", "must be a string naming the part type")
        if each is not None:
            each(block, f"{param}[{j}]")


def check_nesting(body: object, limit: int = MAX_NESTING) -> None:
    """Raise a 400 if arrays/objects nest deeper than `limit` levels (the body itself is level 1)."""
    if not nests_within(body, limit):
        raise GatewayError(400, f"request body is nested more than {limit} levels deep",
                           type="invalid_request_error")


def nests_within(value: object, limit: int) -> bool:
    """Whether arrays/objects in `value` nest at most `limit` levels (`value` itself is level 1)."""
    return not (type(value) is dict or type(value) is list) or _nests_within(value, limit - 1)


def _nests_within(value: dict[str, object] | list[object], budget: int) -> bool:
    # Recursive (faster than an explicit stack), but never deeper than `budget` frames.
    for child in value.values() if type(value) is dict else value:
        if (type(child) is dict or type(child) is list) and (
                budget == 0 or not _nests_within(child, budget - 1)):
            return False
    return True


def check_request_object(body: object) -> Json:
    """The body itself, `model` and the `messages` array: the same rules in both formats."""
    if type(body) is not dict:
        raise GatewayError(400, "request body must be a JSON object", type="invalid_request_error")
    check_nesting(body)
    if "model" not in body:
        raise invalid("model", "required")
    check_non_empty_str(body["model"], "model")
    if "messages" not in body:
        raise invalid("messages", "required")
    check_list(body["messages"], "messages", non_empty=True)
    return body
