"""Wire formats: one module per format (`openai`, `anthropic`), each exporting the same names.

Every format module exports `validate_request`, `encode_event`, `STREAM_END`, `error_body`, `error_event`,
`inspect`, `Aggregator`, `wants_usage` and `is_usage_only`, so the server can pick a module by
`WireFormat` and use it without knowing which format it is.

This package module holds what the format modules share: `EventInfo` (what `inspect` reports about one
provider event) and the request-validation helpers, which take the format's `Wording` so that each door's 400s
read like the errors of the API it imitates.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import GatewayError
from gateway.wire import Json, SSEEvent


@dataclass(frozen=True, slots=True)
class UsageDetails:
    """The parts of a usage report that price differently from plain input and output. Both formats bill cache
    writes above the input price (Anthropic 1.25x, 2x for the 1 h TTL), and reasoning is output, counted apart."""

    cache_write_tokens: int | None = None  # prompt tokens written to the provider's prompt cache (all TTLs)
    cache_write_long_tokens: int | None = None  # of which with the long TTL (Anthropic's 1 h, OpenAI's 12 h)
    reasoning_tokens: int | None = None  # output tokens spent reasoning (included in output_tokens)


def openai_usage_details(inputs: object, outputs: object) -> UsageDetails | None:
    """The cache writes and reasoning of an OpenAI-style usage report, from its input details
    (`cache_write_tokens`, split by TTL in `cache_write_tokens_details`) and its output details
    (`reasoning_tokens`): Chat Completions names them prompt/completion_tokens_details, the Responses API
    input/output_tokens_details. None when it reports neither."""
    write = long = reasoning = None
    if type(inputs) is dict:
        write = token_count(inputs.get("cache_write_tokens"))
        ttl = inputs.get("cache_write_tokens_details")
        if type(ttl) is dict:
            long = token_count(ttl.get("ttl_12h_tokens"))
    if type(outputs) is dict:
        reasoning = token_count(outputs.get("reasoning_tokens"))
    if write is None and long is None and reasoning is None:
        return None
    return UsageDetails(cache_write_tokens=write, cache_write_long_tokens=long, reasoning_tokens=reasoning)


@dataclass(frozen=True, slots=True)
class EventInfo:
    """What one provider stream event means to the engine (hedging, usage, cost, end of stream)."""

    # The event carries generated output: the first such event is the attempt's first token.
    content: bool = False
    # Token counts as this format reports them; None when the event says nothing about them.
    input_tokens: int | None = None  # prompt tokens including cached ones
    output_tokens: int | None = None  # cumulative completion tokens so far
    cached_input_tokens: int | None = None  # cache reads
    # Only usage events carry details: one slot (not three) keeps the per-delta `content_info` cheap.
    details: UsageDetails | None = None
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

    def feed_text(self, ev: SSEEvent, text: str) -> None:
        """`feed(ev)` of an event whose `plain_text` is `text` (the engine computed it for its accounting): the
        same answer, without looking at the event again."""
        ...

    def result(self) -> Json: ...

# A frozen dataclass's __init__ costs ~1.5 us on CPython 3.11 (keyword defaults, then object.__setattr__
# per field); a text delta is nearly every chunk of every stream, so `content_info` fills the slots
# directly (~0.45 us). Same result as EventInfo(content=True, text=text); tests check they are equal.
_new_event_info = object.__new__
(_set_content, _set_input, _set_output, _set_cached, _set_details, _set_finish, _set_error, _set_end,
 _set_text) = (getattr(EventInfo, name).__set__ for name in (
    "content", "input_tokens", "output_tokens", "cached_input_tokens", "details", "finish_reason", "error", "end",
    "text"))


def content_info(text: str) -> EventInfo:
    """EventInfo(content=True, text=text), built fast for the per-chunk hot path."""
    info = _new_event_info(EventInfo)
    _set_content(info, True)
    _set_input(info, None)
    _set_output(info, None)
    _set_cached(info, None)
    _set_details(info, None)
    _set_finish(info, None)
    _set_error(info, None)
    _set_end(info, False)
    _set_text(info, text)
    return info


# JSON nesting a request may have. Real requests stay far below (a tool schema is rarely 20 deep); the bound
# keeps every later step safe: orjson writes at most 254 levels (the upstream body, a level or two deeper after
# translation), and anything recursive over a body would otherwise meet the interpreter's recursion limit.
MAX_NESTING = 128


# ---------------------------------------------------------------- request validation
#
# A door checks only what the gateway itself reads to route, hedge, translate and account; every other field goes
# to a provider of the same format as the client sent it. What it does reject, it words as the API it imitates
# would: clients act on that text (Claude Code drops a beta and retries only when a 400 reads like Anthropic's).


class Kind(enum.Enum):
    """The JSON type a field must have."""

    STRING = "string"
    OBJECT = "object"
    ARRAY = "array"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMBER = "number"
    CONTENT = "content"  # message content: a string or an array of blocks/parts
    STRINGS = "strings"  # a string or an array of strings (OpenAI's stop)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


# What `field` returns for an absent key: "Field required" and "expected a string, got null" are different faults.
MISSING: object = _Missing()


def field(obj: Mapping[str, object], name: str) -> object:
    return obj.get(name, MISSING)


class Wording(Protocol):
    """How one API names a field and words each kind of fault; every method returns the 400 to raise."""

    def key(self, path: str, name: str) -> str:
        """The path of field `name` inside the object at `path` ("" is the body)."""
        ...

    def index(self, path: str, i: int) -> str:
        """The path of item `i` of the array at `path`."""
        ...

    def member(self, path: str, tag: str) -> str:
        """The path inside the `tag` member of a tagged union at `path` (Anthropic names it; OpenAI does not)."""
        ...

    def missing(self, path: str) -> GatewayError: ...
    def missing_tag(self, path: str) -> GatewayError: ...
    def wrong_type(self, path: str, expected: Kind, value: object) -> GatewayError: ...
    def empty(self, path: str, value: str | list[object]) -> GatewayError: ...
    def below(self, path: str, kind: Kind, minimum: float, value: float) -> GatewayError: ...
    def above(self, path: str, kind: Kind, maximum: float, value: float) -> GatewayError: ...
    def too_long(self, path: str, maximum: int, value: list[object]) -> GatewayError: ...
    def not_one_of(self, path: str, value: str, allowed: Sequence[str]) -> GatewayError: ...


def invalid(param: str | None, message: str, *, code: str | None = None) -> GatewayError:
    """A 400 for one request field (`param`, also what the OpenAI error body names), worded by the caller."""
    return GatewayError(400, message, type="invalid_request_error", param=param, code=code)


def is_number(value: object) -> bool:
    # `type(...) is` rather than isinstance: bool is an int subclass and must not pass as a number.
    return type(value) is int or type(value) is float


def check_str(w: Wording, value: object, path: str, *, non_empty: bool = False) -> str:
    if type(value) is not str:
        raise w.missing(path) if value is MISSING else w.wrong_type(path, Kind.STRING, value)
    if non_empty and not value:
        raise w.empty(path, value)
    return value


def check_object(w: Wording, value: object, path: str) -> dict[str, object]:
    if type(value) is not dict:
        raise w.missing(path) if value is MISSING else w.wrong_type(path, Kind.OBJECT, value)
    return value


def check_list(w: Wording, value: object, path: str, *, non_empty: bool = False) -> list[object]:
    if type(value) is not list:
        raise w.missing(path) if value is MISSING else w.wrong_type(path, Kind.ARRAY, value)
    if non_empty and not value:
        raise w.empty(path, value)
    return value


def check_bool(w: Wording, value: object, path: str) -> bool:
    if type(value) is not bool:
        raise w.missing(path) if value is MISSING else w.wrong_type(path, Kind.BOOLEAN, value)
    return value


def check_int(w: Wording, value: object, path: str, *, minimum: int) -> int:
    if type(value) is not int:
        raise w.missing(path) if value is MISSING else w.wrong_type(path, Kind.INTEGER, value)
    if value < minimum:
        raise w.below(path, Kind.INTEGER, minimum, value)
    return value


def check_number(w: Wording, value: object, path: str, low: float, high: float) -> float:
    if not is_number(value):
        raise w.missing(path) if value is MISSING else w.wrong_type(path, Kind.NUMBER, value)
    number: float = value  # type: ignore[assignment]  # is_number checked it is int or float
    if number < low:
        raise w.below(path, Kind.NUMBER, low, number)
    if number > high:
        raise w.above(path, Kind.NUMBER, high, number)
    return number


def check_one_of(w: Wording, value: object, path: str, allowed: Sequence[str]) -> str:
    text = check_str(w, value, path)
    if text not in allowed:
        raise w.not_one_of(path, text, allowed)
    return text


def check_typed_parts(w: Wording, parts: list[object], path: str,
                      each: Callable[[dict[str, object], str, str], None] | None = None) -> None:
    """Content parts/blocks: each an object with a string `type` (the union's tag); `each(part, type, path)`
    checks the fields the gateway itself reads or translates (the provider judges the rest)."""
    for j, part in enumerate(parts):
        where = w.index(path, j)
        block = check_object(w, part, where)
        kind = block.get("type", MISSING)
        if kind is MISSING:
            raise w.missing_tag(where)
        kind = check_str(w, kind, w.key(where, "type"))
        if each is not None:
            each(block, kind, where)


def check_nesting(body: object, limit: int = MAX_NESTING) -> None:
    """Raise a 400 if arrays/objects nest deeper than `limit` levels (the body itself is level 1).

    The gateway's own limit, so its own words: neither API documents one."""
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


def check_request_object(w: Wording, body: object) -> Json:
    """The body itself, `model` and the `messages` array: what both formats check first."""
    if type(body) is not dict:
        raise GatewayError(400, "request body must be a JSON object", type="invalid_request_error")
    check_nesting(body)
    model = field(body, "model")
    check_str(w, model, "model", non_empty=True)
    check_list(w, field(body, "messages"), "messages", non_empty=True)
    return body
