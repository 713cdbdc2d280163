"""Translation between a client door's wire format and a provider's, as pure functions.

Like envoy ai-gateway's `internal/translator/`: one module per (client format, provider format) pair.
The gateway always calls providers in streaming mode (it aggregates the stream itself when the client asked
for a single JSON answer), so only two things are translated: the request body, client -> provider, and
the stream events, provider -> client.

Requests that cannot be expressed in the provider's format raise a 400 `GatewayError` naming the field.
Every pair is a `Translation`, looked up once per attempt with `translation(client, provider)`; adding a wire
format means adding its pair modules and their entries in `_PAIRS`.
"""

from __future__ import annotations

from typing import Protocol

from gateway.translate import (
    anthropic_via_openai,
    openai_via_anthropic,
    passthrough,
    responses_via_anthropic,
    responses_via_openai,
)
from gateway.wire import Json, SSEEvent, WireFormat


class StreamTranslator(Protocol):
    """Turns one provider stream into the client's format. One instance per attempt (it keeps state)."""

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        """One provider event in, zero or more client events out."""
        ...

    def finish(self) -> list[SSEEvent]:
        """After the provider stream ended normally: closing events still owed to the client (may be [])."""
        ...


class Translation(Protocol):
    """One (client format, provider format) pair."""

    @property
    def same_format(self) -> bool:
        """True when nothing is translated: the client's forwardable headers may go upstream too."""
        ...

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        """The provider-format body to send for the client's `body`, with `model` as the target's model.

        Always streaming: OpenAI providers get `stream_options.include_usage`, Anthropic providers get
        `max_tokens` (the client's, else `default_max_tokens`). Never mutates `body`: the same client body is
        translated for several targets concurrently."""
        ...

    def stream(self) -> StreamTranslator:
        """A translator for one provider stream (the passthrough one is stateless and shared)."""
        ...

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        """The client's fields this pair cannot express and leaves out (harmless hints: a field whose loss
        would change the answer raises in `request` instead). Listed on the attempt's span."""
        ...


def _unmapped(body: Json, mapped: frozenset[str], partial: dict[str, frozenset[str]]) -> tuple[str, ...]:
    """Top-level fields outside `mapped`, sub-fields outside `partial[field]`, and `cache_control` anywhere in
    the prompt (a hint no other format has)."""
    out = [key for key in body if key not in mapped and key not in partial]
    for key, kept in partial.items():
        value = body.get(key)
        if isinstance(value, dict):
            out.extend(f"{key}.{sub}" for sub in value if sub not in kept)
    if _has_cache_control(body.get("system")) or _has_cache_control(body.get("messages")) or \
            _has_cache_control(body.get("tools")):
        out.append("cache_control")
    return tuple(sorted(out))


def _has_cache_control(value: object) -> bool:
    if isinstance(value, list):
        return any(_has_cache_control(item) for item in value)
    if isinstance(value, dict):
        return "cache_control" in value or _has_cache_control(value.get("content"))
    return False


_ANTHROPIC_MAPPED_TO_OPENAI = frozenset({"model", "messages", "system", "max_tokens", "stop_sequences", "temperature",
                                         "top_p", "tools", "tool_choice", "stream"})
_ANTHROPIC_PARTIAL = {"metadata": frozenset({"user_id"}), "output_config": frozenset({"format"})}
# temperature and top_p are left out too: Anthropic's API versions and newer models refuse one or both.
_OPENAI_MAPPED_TO_ANTHROPIC = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "stop", "user",
                                         "safety_identifier", "tools", "tool_choice", "parallel_tool_calls",
                                         "response_format", "stream", "stream_options", "n"})


class _OpenAIToOpenAI:
    same_format = True

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        return passthrough.openai_request(body, model=model)

    def stream(self) -> StreamTranslator:
        return passthrough.PASSTHROUGH

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        return ()


class _AnthropicToAnthropic:
    same_format = True

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        return passthrough.anthropic_request(body, model=model, default_max_tokens=default_max_tokens)

    def stream(self) -> StreamTranslator:
        return passthrough.AnthropicPassthroughStream()  # ends the client's stream with exactly one message_stop

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        return ()


class _OpenAIViaAnthropic:
    same_format = False

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        return openai_via_anthropic.translate_request(body, model=model, default_max_tokens=default_max_tokens)

    def stream(self) -> StreamTranslator:
        return openai_via_anthropic.AnthropicStreamToChatChunks()

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        return _unmapped(body, _OPENAI_MAPPED_TO_ANTHROPIC, {})


class _AnthropicViaOpenAI:
    same_format = False

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        return anthropic_via_openai.translate_request(body, model=model)

    def stream(self) -> StreamTranslator:
        return anthropic_via_openai.ChatChunksToAnthropicStream()

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        return _unmapped(body, _ANTHROPIC_MAPPED_TO_OPENAI, _ANTHROPIC_PARTIAL)


# What the Responses pairs carry over (the rest of a Responses body is left out, and listed on the span).
_RESPONSES_MAPPED = frozenset({"model", "input", "instructions", "max_output_tokens", "parallel_tool_calls",
                               "tool_choice", "tools", "text", "reasoning", "temperature", "top_p", "stream",
                               "store", "previous_response_id", "metadata", "user"})


class _ResponsesToResponses:
    same_format = True

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        return passthrough.responses_request(body, model=model)

    def stream(self) -> StreamTranslator:
        return passthrough.PASSTHROUGH

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        return ()


class _ResponsesViaOpenAI:
    same_format = False

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        return responses_via_openai.translate_request(body, model=model)

    def stream(self) -> StreamTranslator:
        return responses_via_openai.ChatChunksToResponses()

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        return _unmapped(body, _RESPONSES_MAPPED, {})


class _ResponsesViaAnthropic:
    same_format = False

    def request(self, body: Json, *, model: str, default_max_tokens: int) -> Json:
        return responses_via_anthropic.translate_request(body, model=model, default_max_tokens=default_max_tokens)

    def stream(self) -> StreamTranslator:
        return responses_via_anthropic.AnthropicStreamToResponses()

    def dropped_fields(self, body: Json) -> tuple[str, ...]:
        return _unmapped(body, _RESPONSES_MAPPED, {})


_PAIRS: dict[tuple[WireFormat, WireFormat], Translation] = {
    (WireFormat.OPENAI, WireFormat.OPENAI): _OpenAIToOpenAI(),
    (WireFormat.ANTHROPIC, WireFormat.ANTHROPIC): _AnthropicToAnthropic(),
    (WireFormat.OPENAI, WireFormat.ANTHROPIC): _OpenAIViaAnthropic(),
    (WireFormat.ANTHROPIC, WireFormat.OPENAI): _AnthropicViaOpenAI(),
    # The Responses door: native to providers that speak it, else through chat completions or Messages.
    (WireFormat.RESPONSES, WireFormat.RESPONSES): _ResponsesToResponses(),
    (WireFormat.RESPONSES, WireFormat.OPENAI): _ResponsesViaOpenAI(),
    (WireFormat.RESPONSES, WireFormat.ANTHROPIC): _ResponsesViaAnthropic(),
}


def translation(client: WireFormat, provider: WireFormat) -> Translation:
    """How a request from a `client`-format door is sent to a `provider`-format provider, and back."""
    return _PAIRS[(client, provider)]


def upstream_request(client: WireFormat, provider: WireFormat, body: Json, *, model: str,
                     default_max_tokens: int) -> Json:
    """Shorthand for `translation(client, provider).request(...)`."""
    return _PAIRS[(client, provider)].request(body, model=model, default_max_tokens=default_max_tokens)


def stream_translator(client: WireFormat, provider: WireFormat) -> StreamTranslator:
    """Shorthand for `translation(client, provider).stream()`."""
    return _PAIRS[(client, provider)].stream()


__all__ = ["StreamTranslator", "Translation", "stream_translator", "translation", "upstream_request"]
