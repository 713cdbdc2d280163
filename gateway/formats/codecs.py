"""One codec per wire format, behind one typed interface: everything a door or an attempt needs of a format.

A codec parses and validates a client request, inspects a provider's stream events (usage, first token, end),
aggregates a stream into a complete answer, writes events and errors in its own shape, and replays a stored
answer as a stream. The format modules (`gateway.formats.openai`, `.anthropic`) hold the functions; the codecs
here bind them, and mypy checks each against `Codec`. Adding a wire format is a module and one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gateway.errors import GatewayError
from gateway.formats import Aggregator, EventInfo, forward, replay, responses_events
from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.formats import responses as responses_format
from gateway.wire import Json, SSEEvent, WireFormat


class Codec(Protocol):
    @property
    def format(self) -> WireFormat: ...

    @property
    def stream_end(self) -> bytes:
        """What ends a stream after its last event (OpenAI `data: [DONE]`, nothing for Anthropic)."""
        ...

    def validate_request(self, body: object) -> Json:
        """The parsed body if the gateway can route, hedge and translate it; else a 400 in the API's words."""
        ...

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The client headers a provider of the same format must see (e.g. `anthropic-beta`)."""
        ...

    def inspect(self, ev: SSEEvent) -> EventInfo: ...

    def plain_text(self, data: Json) -> str | None:
        """The text of an event that carries text and nothing else the engine reads (for it `inspect` is
        `content_info(text)`, or NOTHING for ""); None for any other event. The hot path's shortcut."""
        ...

    def aggregator(self) -> Aggregator: ...
    def encode_event(self, ev: SSEEvent) -> bytes: ...

    def frames(self, events: list[SSEEvent], keep_usage: bool) -> bytes:
        """The SSE frames of `events` for a client of this format, usage-only events only with `keep_usage`: a
        provider's event passed on untouched is forwarded as it came (see `gateway.formats.forward`)."""
        ...

    def error_body(self, err: GatewayError) -> Json: ...
    def error_event(self, err: GatewayError) -> SSEEvent: ...

    def wants_usage(self, body: Json) -> bool:
        """Whether the client asked for usage in its stream (OpenAI `stream_options.include_usage`)."""
        ...

    def is_usage_only(self, ev: SSEEvent) -> bool: ...

    def replay(self, body: Json) -> list[SSEEvent]:
        """A complete answer as the stream events of this format (a cache hit served to a streaming client)."""
        ...


class _OpenAICodec:
    format = WireFormat.OPENAI
    stream_end = openai_format.STREAM_END
    validate_request = staticmethod(openai_format.validate_request)
    inspect = staticmethod(openai_format.inspect)
    plain_text = staticmethod(openai_format.plain_text)
    aggregator = staticmethod(openai_format.Aggregator)
    encode_event = staticmethod(openai_format.encode_event)
    frames = staticmethod(forward.openai_frames)
    error_body = staticmethod(openai_format.error_body)
    error_event = staticmethod(openai_format.error_event)
    wants_usage = staticmethod(openai_format.wants_usage)
    is_usage_only = staticmethod(openai_format.is_usage_only)
    replay = staticmethod(replay.openai_stream)

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {}


class _AnthropicCodec:
    format = WireFormat.ANTHROPIC
    stream_end = anthropic_format.STREAM_END
    validate_request = staticmethod(anthropic_format.validate_request)
    inspect = staticmethod(anthropic_format.inspect)
    plain_text = staticmethod(anthropic_format.plain_text)
    aggregator = staticmethod(anthropic_format.Aggregator)
    encode_event = staticmethod(anthropic_format.encode_event)
    frames = staticmethod(forward.anthropic_frames)
    error_body = staticmethod(anthropic_format.error_body)
    error_event = staticmethod(anthropic_format.error_event)
    wants_usage = staticmethod(anthropic_format.wants_usage)
    is_usage_only = staticmethod(anthropic_format.is_usage_only)
    replay = staticmethod(replay.anthropic_stream)
    # Anthropic betas and the API version the client was written against: a body field that needs a beta must
    # reach an Anthropic upstream with that beta, or be refused there.
    _FORWARDED = ("anthropic-beta", "anthropic-version")

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {name: value for name in self._FORWARDED if (value := headers.get(name)) is not None}


class _ResponsesCodec:
    format = WireFormat.RESPONSES
    stream_end = responses_format.STREAM_END
    validate_request = staticmethod(responses_format.validate_request)
    inspect = staticmethod(responses_format.inspect)
    plain_text = staticmethod(responses_format.plain_text)
    aggregator = staticmethod(responses_format.Aggregator)
    encode_event = staticmethod(responses_format.encode_event)
    # Never forwarded as they came: the Responses door numbers every event in place before writing it.
    frames = staticmethod(forward.encoded_frames(responses_format.encode_event, responses_format.is_usage_only))
    error_body = staticmethod(responses_format.error_body)
    error_event = staticmethod(responses_format.error_event)
    wants_usage = staticmethod(responses_format.wants_usage)
    is_usage_only = staticmethod(responses_format.is_usage_only)
    replay = staticmethod(responses_events.replay)

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {}


OPENAI: Codec = _OpenAICodec()
ANTHROPIC: Codec = _AnthropicCodec()
RESPONSES: Codec = _ResponsesCodec()

CODECS: Mapping[WireFormat, Codec] = {WireFormat.OPENAI: OPENAI, WireFormat.ANTHROPIC: ANTHROPIC,
                                      WireFormat.RESPONSES: RESPONSES}


def codec_for(fmt: WireFormat) -> Codec:
    return CODECS[fmt]
