"""Client and provider speak the same format: the body is copied with the target's fields set, and stream
events go through untouched (the hot path: one list per event, no copying)."""

from __future__ import annotations

from gateway.wire import Json, SSEEvent


def openai_request(body: Json, *, model: str) -> Json:
    """A shallow copy of a chat.completions `body` for `model`, streaming with usage reported."""
    out = dict(body)
    out["model"] = model
    out["stream"] = True
    options = body.get("stream_options")
    # Keep the client's other stream options (e.g. include_obfuscation); usage is what the gateway needs.
    out["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) \
        else {"include_usage": True}
    return out


def anthropic_request(body: Json, *, model: str, default_max_tokens: int) -> Json:
    """A shallow copy of a Messages `body` for `model`, streaming, with the required max_tokens set."""
    out = dict(body)
    out["model"] = model
    out["stream"] = True
    if body.get("max_tokens") is None:  # 0 is a real value (cache pre-warming), so test for None
        out["max_tokens"] = default_max_tokens
    return out


def responses_request(body: Json, *, model: str) -> Json:
    """A shallow copy of a Responses `body` for `model`, streaming, stored nowhere upstream.

    The gateway keeps the conversation itself (the next turn may run on another provider), so the provider
    gets `store: false`, the whole input (the door expanded `previous_response_id` into it), and no reasoning
    item that only names one by id: without upstream storage there is nothing for the id to find."""
    out = dict(body)
    out["model"] = model
    out["stream"] = True
    out["store"] = False
    out.pop("previous_response_id", None)
    data = body.get("input")
    if isinstance(data, list) and any(_stored_reasoning(item) for item in data):
        out["input"] = [item for item in data if not _stored_reasoning(item)]
    return out


def _stored_reasoning(item: object) -> bool:
    return isinstance(item, dict) and item.get("type") == "reasoning" and not item.get("encrypted_content")


class PassthroughStream:
    """Returns each event as it came. Stateless, so one shared instance serves every stream."""

    __slots__ = ()

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        return [ev]

    def finish(self) -> list[SSEEvent]:
        return []


PASSTHROUGH = PassthroughStream()


_MESSAGE_STOP = "message_stop"


class AnthropicPassthroughStream:
    """Anthropic to Anthropic: each event as it came, except that the client's stream always ends with one
    `message_stop` and nothing after it. A provider that ends its stream after `message_delta` (the stop
    reason: a complete answer to the engine) without `message_stop` would otherwise leave the client's
    stream with no end (the SDK waits for it); events after `message_stop` would follow the end.
    One per stream (it keeps that one bit of state), unlike the shared `PASSTHROUGH`."""

    __slots__ = ("_stopped",)

    def __init__(self) -> None:
        self._stopped = False

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        if self._stopped:
            return []
        if ev.data.get("type") == _MESSAGE_STOP:
            self._stopped = True
        return [ev]

    def finish(self) -> list[SSEEvent]:
        if self._stopped:
            return []
        self._stopped = True
        return [SSEEvent({"type": _MESSAGE_STOP}, _MESSAGE_STOP)]
