"""The same-format fast path on the way out: a provider's events written to a door of the provider's own format
as the provider sent them, instead of serialising every parsed event again.

The SSE reader keeps each one-line event's JSON text (`SSEEvent.raw`); an event the engine passed on untouched
still has it, and `frames` writes it between the door's own framing (`data: `, and Anthropic's `event:` line,
named as `encode_event` names it). Every event the gateway built or changed (a translated chunk, a spliced one,
an error event) has no raw text and is encoded as before. What the client parses is the same either way: the raw
text is what the reader parsed into `data`, and it holds no line break that could split the frame.

The guard still holds: the reader keeps raw text only when it is `gateway.wire.forwardable` (one line, nested no
deeper than can be written back), so an event nested too deep has none and goes to `encode_event`, which
raises the provider fault it always did.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.wire import SSEEvent

__all__ = ["anthropic_frames", "encoded_frames", "openai_frames"]

def openai_frames(events: list[SSEEvent], keep_usage: bool) -> bytes:
    """Chat Completions frames for `events` (a usage-only chunk only if the client asked for usage)."""
    parts: list[bytes] = []
    usage_only, encode = openai_format.is_usage_only, openai_format.encode_event
    for ev in events:
        if not keep_usage and usage_only(ev):
            continue
        raw = ev.raw
        if raw is not None:
            parts += (b"data: ", raw, b"\n\n")
        else:
            parts.append(encode(ev))
    return b"".join(parts)


# The `event:` line and `data: ` of every event type a Messages stream has, made once. `encode_event` names an
# event by its data's `type`; a type not listed here (or not a string) is left to it.
_ANTHROPIC_PREFIXES = {name: b"event: " + name.encode() + b"\ndata: " for name in (
    "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
    "message_stop", "ping", "error")}


def anthropic_frames(events: list[SSEEvent], keep_usage: bool) -> bytes:
    """Messages frames for `events` (no Anthropic event is usage alone: `keep_usage` changes nothing)."""
    parts: list[bytes] = []
    prefixes, encode = _ANTHROPIC_PREFIXES, anthropic_format.encode_event
    for ev in events:
        raw = ev.raw
        kind = ev.data.get("type")
        prefix = prefixes.get(kind) if type(kind) is str else None
        if raw is not None and prefix is not None:
            parts += (prefix, raw, b"\n\n")
        else:
            parts.append(encode(ev))
    return b"".join(parts)


def encoded_frames(encode: Callable[[SSEEvent], bytes], usage_only: Callable[[SSEEvent], bool]
                   ) -> Callable[[list[SSEEvent], bool], bytes]:
    """Frames that are always encoded again (a format whose door changes events before writing them)."""
    def frames(events: list[SSEEvent], keep_usage: bool) -> bytes:
        return b"".join(encode(ev) for ev in events if keep_usage or not usage_only(ev))
    return frames
