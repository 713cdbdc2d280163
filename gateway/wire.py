"""Wire-level value types every layer shares: JSON bodies, wire formats, server-sent events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


class WireFormat(enum.StrEnum):
    """A wire format: a client door speaks one, a provider kind speaks one."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    RESPONSES = "responses"  # OpenAI's Responses API: a door, and a format some OpenAI-kind providers also speak


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event with a JSON payload.

    `event` is the SSE `event:` name (Anthropic always sends one; OpenAI never does).
    OpenAI's `data: [DONE]` terminator is not an event: readers stop on it, writers add it.

    `raw` is the event's JSON text exactly as a provider sent it, kept by the SSE reader when it is
    `forwardable`, so that a door of the provider's own format can forward it instead of serialising `data`
    again (`gateway.formats.forward`). None for every event the gateway builds. Not part of equality: an event
    read from the wire equals the same event built by hand. Whoever changes `data` in place must not forward it.
    """

    data: Json
    event: str | None = None
    raw: bytes | None = field(default=None, compare=False, repr=False)


class LastBatch(list[SSEEvent]):
    """A batch of events after which the provider's stream is over (its terminator or the end of its body came in
    the same read): whoever holds it knows that asking for the next batch will not wait on the network, so what
    it has can be written together with the stream's end (one write instead of several)."""

    __slots__ = ()


# Levels orjson writes back (`gateway.formats.guard.encode_json` raises past them).
WRITABLE_NESTING = 254


def forwardable(text: bytes) -> bool:
    """Whether an event's JSON text (valid JSON: the reader parsed it) can go to a client as it is, as safely as
    the parsed event written again: on one line (a CR or LF would end the SSE line early) and nested no deeper
    than can be written back (an event nested deeper is a provider fault on both paths)."""
    # `find`, not `in`: see `gateway.providers.http._read_sse`.
    return text.find(b"\n") < 0 and text.find(b"\r") < 0 and nested_within_writable(text)


# Valid JSON nested d levels deep is at least 2d bytes long (every level opens and closes): text this short
# needs no look inside, the usual event (a token delta is a few hundred bytes) included.
# (The SSE reader tests the length itself before it calls this: a call per event is ~1% of a request.)
ALWAYS_WRITABLE_LEN = 2 * WRITABLE_NESTING + 1


def nested_within_writable(text: bytes) -> bool:
    """Whether valid JSON `text` nests at most `WRITABLE_NESTING` levels: short text always does; else its
    brackets are counted (those inside strings only make the bound stricter)."""
    return len(text) <= ALWAYS_WRITABLE_LEN or text.count(b"{") + text.count(b"[") <= WRITABLE_NESTING


# A frozen dataclass's __init__ costs ~0.8 us (keyword defaults, then object.__setattr__ per field); the SSE reader
# builds one per provider event, so it fills the slots directly (`read_event`): same result, a third of the time.
_new_event = object.__new__
_set_data, _set_name, _set_raw = (getattr(SSEEvent, name).__set__ for name in ("data", "event", "raw"))


def read_event(data: Json, event: str | None, raw: bytes | None) -> SSEEvent:
    """SSEEvent(data, event, raw), built fast for the per-event hot path of the stream readers."""
    ev = _new_event(SSEEvent)
    _set_data(ev, data)
    _set_name(ev, event)
    _set_raw(ev, raw)
    return ev
