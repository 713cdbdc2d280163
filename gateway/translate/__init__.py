"""Translation between a client door's wire format and a provider's, as pure functions.

Like envoy ai-gateway's `internal/translator/`: one module per (client format, provider format) pair.
The gateway always calls providers in streaming mode (it aggregates the stream itself when the client asked
for a single JSON answer), so only two things are translated: the request body, client -> provider, and
the stream events, provider -> client.

Requests that cannot be expressed in the provider's format raise a 400 `GatewayError` naming the field.
"""

from __future__ import annotations

from typing import Protocol

from gateway.translate import anthropic_via_openai, openai_via_anthropic, passthrough
from gateway.wire import Json, SSEEvent, WireFormat


class StreamTranslator(Protocol):
    """Turns one provider stream into the client's format. One instance per attempt (it keeps state)."""

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        """One provider event in, zero or more client events out."""
        ...

    def finish(self) -> list[SSEEvent]:
        """After the provider stream ended normally: closing events still owed to the client (may be [])."""
        ...


def upstream_request(client: WireFormat, provider: WireFormat, body: Json, *, model: str,
                     default_max_tokens: int, send_sampling_params: bool = False) -> Json:
    """The provider-format body to send for the client's `body`, with `model` as the target's model.

    Always streaming: OpenAI providers get `stream_options.include_usage`, Anthropic providers get
    `max_tokens` (the client's, else `default_max_tokens`). Never mutates `body`: the same client body is
    translated for several targets concurrently. `send_sampling_params` forwards an OpenAI client's
    temperature/top_p to Anthropic (only for anthropic-version 2023-06-01 and models that still take them).
    """
    if client is provider:
        if provider is WireFormat.OPENAI:
            return passthrough.openai_request(body, model=model)
        return passthrough.anthropic_request(body, model=model, default_max_tokens=default_max_tokens)
    if provider is WireFormat.ANTHROPIC:
        return openai_via_anthropic.translate_request(body, model=model, default_max_tokens=default_max_tokens,
                                                     send_sampling_params=send_sampling_params)
    return anthropic_via_openai.translate_request(body, model=model)


def stream_translator(client: WireFormat, provider: WireFormat) -> StreamTranslator:
    """A fresh translator for one provider stream (the OpenAI passthrough one is stateless and shared)."""
    if client is provider:
        return passthrough.PASSTHROUGH if provider is WireFormat.OPENAI else passthrough.AnthropicPassthroughStream()
    if provider is WireFormat.ANTHROPIC:
        return openai_via_anthropic.AnthropicStreamToChatChunks()
    return anthropic_via_openai.ChatChunksToAnthropicStream()


__all__ = ["StreamTranslator", "stream_translator", "upstream_request"]
