"""Client speaks the OpenAI Responses API, provider speaks Anthropic Messages.

The request goes through the chat completions form: `responses_via_openai.chat_request` (Responses -> chat),
then `openai_via_anthropic.translate_request` (chat -> Messages), so each mapping is written once. What the
second step refuses is named back in the client's terms: a chat message's path becomes the Responses input
item it came from (`messages[3].tool_calls[0].function.arguments` -> `input[5]`).

The stream is translated directly, `AnthropicStreamToResponses`: text deltas -> output_text, tool_use blocks ->
function_call items (input_json_delta -> arguments), thinking -> a reasoning item with reasoning_text (the
signature is not kept: it can only go back to Anthropic, and the next turn may run elsewhere); stop reasons
max_tokens / model_context_window_exceeded -> `response.incomplete` (max_output_tokens), refusal ->
`response.incomplete` (content_filter); usage from message_start and message_delta (input tokens counted with
cache reads and writes, as OpenAI counts them).
"""

from __future__ import annotations

import re

import orjson

from gateway.errors import GatewayError
from gateway.formats import token_count
from gateway.formats.responses_events import ResponseStreamBuilder, usage_body
from gateway.translate import openai_via_anthropic
from gateway.translate.responses_via_openai import chat_request
from gateway.wire import Json, SSEEvent

INCOMPLETE = {"max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
              "refusal": "content_filter"}
_MESSAGE_PATH = re.compile(r"^messages\[(\d+)\]")


def translate_request(body: Json, *, model: str, default_max_tokens: int) -> Json:
    """The Messages body (always streaming) for a Responses `body`. Never mutates `body`."""
    chat, origins = chat_request(body, model=model)
    try:
        # temperature and top_p stay behind, as for the chat door: newer Anthropic API versions refuse them.
        return openai_via_anthropic.translate_request(chat, model=model, default_max_tokens=default_max_tokens)
    except GatewayError as exc:
        raise _in_client_terms(exc, origins) from None


def _in_client_terms(exc: GatewayError, origins: list[str]) -> GatewayError:
    param = exc.param or ""
    match = _MESSAGE_PATH.match(param)
    if match is None:  # tools[i] and tool_choice have the same paths in both forms; "messages" is the input
        client = "input" if param == "messages" else param
    else:
        index = int(match.group(1))
        client = origins[index] if index < len(origins) else "input"
    problem = exc.message.split(": ", 1)[-1]
    return GatewayError(400, f"{client}: {problem}", type="invalid_request_error", param=client)


class AnthropicStreamToResponses:
    """Anthropic Messages stream events in, Responses events out."""

    __slots__ = ("_blocks", "_builder", "_cache_read", "_cache_write", "_incomplete", "_input", "_output")

    def __init__(self) -> None:
        self._builder = ResponseStreamBuilder()
        self._blocks: dict[int, str] = {}  # Anthropic block index -> its type
        self._input = self._cache_read = self._cache_write = self._output = 0
        self._incomplete: str | None = None

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        builder = self._builder
        if builder.finished:
            return []
        data = ev.data
        kind = data.get("type")
        if kind == "content_block_delta":  # by far the most frequent: test it first
            return self._delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_stop":
            return builder.end_item() if self._blocks.get(data.get("index", -1)) in ("text", "thinking") else []
        if kind == "message_start":
            message = data.get("message") or {}
            builder.model = str(message.get("model") or "")
            self._take_usage(message.get("usage"))
            return builder.start()
        if kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            self._incomplete = INCOMPLETE.get(reason) if isinstance(reason, str) else None
            self._take_usage(data.get("usage"))
            return []
        if kind == "message_stop":
            return self._end()
        if kind == "error":
            error = data.get("error") or {}
            return builder.error(str(error.get("type") or "api_error"), str(error.get("message") or ""))
        return []  # ping, and event types added after this was written

    def finish(self) -> list[SSEEvent]:
        return self._end() if self._builder.started else []

    def _take_usage(self, usage: object) -> None:
        # message_start has the prompt side; message_delta the cumulative output (newer versions repeat input).
        # Provider numbers: only plausible counts are taken (see `token_count`); anything else is as if missing.
        if type(usage) is not dict:
            return
        if (count := token_count(usage.get("input_tokens"))) is not None:
            self._input = count
        if (count := token_count(usage.get("cache_read_input_tokens"))) is not None:
            self._cache_read = count
        if (count := token_count(usage.get("cache_creation_input_tokens"))) is not None:
            self._cache_write = count
        if (count := token_count(usage.get("output_tokens"))) is not None:
            self._output = count

    def _block_start(self, data: Json) -> list[SSEEvent]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        index = data.get("index", -1)
        self._blocks[index] = str(kind)
        if kind == "text":
            return self._builder.text(block["text"]) if block.get("text") else []
        if kind == "thinking":
            return self._builder.reasoning(block["thinking"]) if block.get("thinking") else []
        if kind != "tool_use":
            return []  # redacted thinking and server tools have no Responses form through this pair
        out = self._builder.tool_call(index, str(block.get("id") or ""), str(block.get("name") or ""))
        initial = block.get("input")
        if initial:  # Anthropic opens with `input: {}` and streams the JSON; a non-empty one is the whole input
            out += self._builder.tool_arguments(index, orjson.dumps(initial).decode())
        return out

    def _delta(self, data: Json) -> list[SSEEvent]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return self._builder.text(delta["text"])
        if kind == "input_json_delta" and delta.get("partial_json"):
            return self._builder.tool_arguments(data.get("index", -1), delta["partial_json"])
        if kind == "thinking_delta" and delta.get("thinking"):
            return self._builder.reasoning(delta["thinking"])
        return []  # signatures, citations, empty partials

    def _end(self) -> list[SSEEvent]:
        prompt = self._input + self._cache_read + self._cache_write
        return self._builder.finish(usage=usage_body(prompt, self._output, self._cache_read),
                                    incomplete=self._incomplete)
