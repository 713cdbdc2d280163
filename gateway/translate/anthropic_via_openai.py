"""Client speaks Anthropic Messages, provider speaks OpenAI Chat Completions.

`translate_request` turns a Messages body into a streaming chat.completions body;
`ChatChunksToAnthropicStream` turns the `chat.completion.chunk` stream back into Messages events.

Request fields dropped because OpenAI Chat Completions has no equivalent: thinking, cache_control (top-level
and on every block), container, diagnostics, inference_geo, output_config.effort, service_tier, speed,
top_k, user_profile_id, workspace_id, mcp_servers, context_management, metadata other than user_id,
`citations` on text blocks, `is_error` on tool results, document context/citations (a PDF's title becomes its
filename), tool_choice when there are no tools (OpenAI rejects it), and thinking / redacted_thinking blocks
in assistant turns (OpenAI has no way to replay reasoning).

Mapped: system (and role "system" messages) -> system messages; max_tokens -> max_completion_tokens (the
field every current OpenAI model accepts; reasoning models reject max_tokens); stop_sequences -> stop;
temperature, top_p as is; metadata.user_id -> user; tools -> function tools; tool_choice and
disable_parallel_tool_use -> tool_choice and parallel_tool_calls; output_config.format -> response_format
json_schema; tool_result blocks -> role "tool" messages placed before the rest of their user turn (OpenAI
wants tool messages right after the assistant's tool_calls); images inside tool results -> image parts of
that following user message, since OpenAI tool messages carry text only.

Raises a 400 `GatewayError` naming the field for what OpenAI cannot express: max_tokens 0 (prompt cache
pre-warming), server tools (web search, code execution, bash, text editor, computer...), image/document sources
by file id or URL for documents, and block types other than text, image, document, tool_use, tool_result and
thinking.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.formats import token_count
from gateway.wire import Json, SSEEvent

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Error types Anthropic clients know (anthropic.types.shared.ErrorObject); others become api_error.
_ANTHROPIC_ERROR_TYPES = frozenset({
    "invalid_request_error", "authentication_error", "billing_error", "permission_error", "not_found_error",
    "rate_limit_error", "timeout_error", "api_error", "overloaded_error",
})


def _untranslatable(param: str, problem: str) -> GatewayError:
    # Paths as the Anthropic door writes them (dotted, union members by tag): the client speaks Anthropic.
    return GatewayError(400, f"{param}: {problem}", type="invalid_request_error", param=param)


# ---------------------------------------------------------------------------------------------- request


def translate_request(body: Json, *, model: str) -> Json:
    """The OpenAI chat.completions body (streaming, with usage) for an Anthropic Messages `body`.

    Builds new containers and never mutates `body`; unchanged leaves (strings, JSON schemas) are shared.
    """
    out: Json = {"model": model, "messages": _messages(body), "stream": True,
                 "stream_options": {"include_usage": True}}
    if body.get("max_tokens") == 0:
        # Anthropic's 0 fills the prompt cache without generating; OpenAI has no such request (its minimum is 1).
        raise _untranslatable("max_tokens", "0 (fill the prompt cache, generate nothing) cannot be sent to OpenAI")
    if body.get("max_tokens") is not None:
        out["max_completion_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(tool, f"tools.{i}") for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and tools:  # OpenAI rejects tool_choice and parallel_tool_calls without tools
        out["tool_choice"] = _tool_choice(choice)
        if choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False
    output_format = (body.get("output_config") or {}).get("format")
    if isinstance(output_format, dict) and isinstance(output_format.get("schema"), dict):
        out["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": "output", "schema": output_format["schema"]}}
    return out


def _messages(body: Json) -> list[Json]:
    out: list[Json] = []
    if body.get("system"):
        out.append({"role": "system", "content": _text_content(body["system"], "system")})
    for i, msg in enumerate(body.get("messages") or ()):
        role = msg.get("role")
        path = f"messages.{i}.content"
        content = msg.get("content")
        if role == "user":
            out.extend(_user_messages(content, path))
        elif role == "assistant":
            assistant = _assistant_message(content, path)
            if assistant is not None:
                out.append(assistant)
        elif role == "system":  # API version 2026-10-21 allows system turns inside messages
            out.append({"role": "system", "content": _text_content(content, path)})
        else:
            raise _untranslatable(f"messages.{i}.role", f"role {role!r} cannot be sent to OpenAI")
    return out


def _joined_text(texts: list[str]) -> str | list[Json]:
    # A single text part says exactly what a plain string says; keep the common case a string.
    return texts[0] if len(texts) == 1 else [{"type": "text", "text": text} for text in texts]


def _text_content(content: Any, path: str) -> str | list[Json]:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, block in enumerate(content or ()):
        if block.get("type") != "text":
            raise _untranslatable(f"{path}.{j}.type", "only text blocks are allowed here")
        texts.append(block.get("text") or "")
    return _joined_text(texts) if texts else ""


def _user_messages(content: Any, path: str) -> list[Json]:
    """One Anthropic user turn as OpenAI messages: its tool results first, then whatever else it holds."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[Json] = []
    parts: list[Json] = []
    for j, block in enumerate(content or ()):
        block_path = f"{path}.{j}"
        if block.get("type") == "tool_result":
            text, images = _tool_result_content(block.get("content"), f"{block_path}.tool_result.content")
            tool_messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            parts.extend(images)
        else:
            parts.append(_user_part(block, block_path))
    if parts:
        tool_messages.append({"role": "user", "content": parts})
    return tool_messages


def _user_part(block: Json, path: str) -> Json:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "image":
        return _image_part(block.get("source") or {}, f"{path}.image.source")
    if kind == "document":
        return _document_part(block, f"{path}.document.source")
    raise _untranslatable(f"{path}.type", f"{kind!r} blocks cannot be sent to OpenAI")


def _image_part(source: Json, path: str) -> Json:
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url":
        url = source.get("url") or ""
    else:
        raise _untranslatable(f"{path}.type", f"{kind!r} image sources cannot be sent to OpenAI")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: Json, path: str) -> Json:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "text":  # a plain-text document is just text to a chat model
        return {"type": "text", "text": source.get("data") or ""}
    if kind == "base64" and source.get("media_type") == "application/pdf":
        # OpenAI needs a filename alongside inline file data.
        return {"type": "file", "file": {"filename": block.get("title") or "document.pdf",
                                         "file_data": f"data:application/pdf;base64,{source.get('data')}"}}
    raise _untranslatable(f"{path}.type", "only base64 PDF and plain-text documents can be sent to OpenAI")


def _tool_result_content(content: Any, path: str) -> tuple[str | list[Json], list[Json]]:
    """(tool message content, image parts that must ride in the following user message)."""
    if content is None or isinstance(content, str):
        return content or "", []
    texts: list[str] = []
    images: list[Json] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "image":
            images.append(_image_part(block.get("source") or {}, f"{path}.{j}.image.source"))
        else:
            raise _untranslatable(f"{path}.{j}.type", f"{kind!r} tool results cannot be sent to OpenAI")
    return (_joined_text(texts) if texts else ""), images


def _assistant_message(content: Any, path: str) -> Json | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[Json] = []
    for j, block in enumerate(content or ()):
        kind = block.get("type")
        if kind == "text":
            if block.get("text"):
                texts.append(block["text"])
        elif kind == "tool_use":
            # OpenAI carries arguments as a JSON string.
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": arguments}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise _untranslatable(f"{path}.{j}.type", f"{kind!r} blocks cannot be sent to OpenAI")
    if not texts and not calls:
        return None  # only thinking: OpenAI rejects an assistant message with neither content nor calls
    message: Json = {"role": "assistant", "content": _joined_text(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: Json, path: str) -> Json:
    if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
        raise _untranslatable(f"{path}.type", f"server tool {tool.get('type')!r} cannot be sent to OpenAI")
    function: Json = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Json) -> str | Json:
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return str(kind)
    if kind == "any":
        return "required"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise _untranslatable("tool_choice.type", f"{kind!r} cannot be sent to OpenAI")


# ----------------------------------------------------------------------------------------------- stream


def _event(data: Json) -> SSEEvent:
    return SSEEvent(data, data["type"])


class ChatChunksToAnthropicStream:
    """OpenAI `chat.completion.chunk` payloads in, Anthropic Messages stream events out.

    OpenAI sends usage in its own chunk after the finish chunk, while Anthropic's message_delta carries
    both the stop reason and the usage; so the stop reason waits for the usage chunk, or for `finish()`
    when the provider sent none. Only the first choice is translated (the request never asks for more).
    """

    __slots__ = ("_block", "_block_is_text", "_done", "_next_block", "_started", "_stop_reason",
                 "_tool_blocks", "_usage")

    def __init__(self) -> None:
        self._started = False
        self._done = False  # message_stop or an error went out: nothing more may follow
        self._block: int | None = None  # index of the open content block
        self._block_is_text = False
        self._next_block = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool_calls index -> Anthropic block index
        self._stop_reason: str | None = None
        self._usage: Json | None = None

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        if self._done:
            return []
        data = ev.data
        # Truthy, as the engine reads it (formats.openai.inspect): some servers send `"error": null` in
        # ordinary chunks, which must not end the client's stream with an error the engine never saw.
        if data.get("error"):
            self._done = True
            error = data.get("error") or {}
            kind = error.get("type") if error.get("type") in _ANTHROPIC_ERROR_TYPES else "api_error"
            return [_event({"type": "error", "error": {"type": kind, "message": error.get("message") or ""}})]
        out: list[SSEEvent] = []
        if not self._started:
            self._started = True
            out.append(_event({"type": "message_start", "message": {
                "id": "msg_" + str(data.get("id", "")), "type": "message", "role": "assistant",
                "model": data.get("model", ""), "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}))
        for choice in data.get("choices") or ():
            if choice.get("index", 0) == 0:
                self._choice(choice, out)
        if (usage := data.get("usage")) and type(usage) is dict:
            self._usage = usage
        if self._stop_reason is not None and self._usage is not None:
            self._end(out)
        return out

    def finish(self) -> list[SSEEvent]:
        if self._done or not self._started:
            return []
        out: list[SSEEvent] = []
        self._end(out)
        return out

    def _choice(self, choice: Json, out: list[SSEEvent]) -> None:
        delta = choice.get("delta") or {}
        # A refusal is text the model said, just flagged; Anthropic has only text for it.
        for text in (delta.get("content"), delta.get("refusal")):
            if text:
                self._text(text, out)
        for call in delta.get("tool_calls") or ():
            self._tool_call(call, out)
        reason = choice.get("finish_reason")
        if reason:
            self._close_block(out)
            self._stop_reason = STOP_REASONS.get(reason, "end_turn")

    def _open_block(self, block: Json, out: list[SSEEvent]) -> int:
        self._close_block(out)
        index = self._block = self._next_block
        self._next_block += 1
        out.append(_event({"type": "content_block_start", "index": index, "content_block": block}))
        return index

    def _close_block(self, out: list[SSEEvent]) -> None:
        if self._block is not None:
            out.append(_event({"type": "content_block_stop", "index": self._block}))
            self._block = None

    def _text(self, text: str, out: list[SSEEvent]) -> None:
        if self._block is None or not self._block_is_text:
            self._open_block({"type": "text", "text": ""}, out)
            self._block_is_text = True
        out.append(_event({"type": "content_block_delta", "index": self._block,
                           "delta": {"type": "text_delta", "text": text}}))

    def _tool_call(self, call: Json, out: list[SSEEvent]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        index = self._tool_blocks.get(position)
        if index is None:  # the first delta of a call carries its id and name
            index = self._open_block({"type": "tool_use", "id": call.get("id") or f"toolu_{position}",
                                      "name": function.get("name") or "", "input": {}}, out)
            self._block_is_text = False
            self._tool_blocks[position] = index
        # OpenAI streams one call after another; if a provider interleaved them, late arguments still go to
        # their own block's index, which accumulators (the SDK's, ours) apply by index.
        if function.get("arguments"):
            out.append(_event({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": function["arguments"]}}))

    def _end(self, out: list[SSEEvent]) -> None:
        self._close_block(out)
        usage = self._usage or {}
        # OpenAI's prompt_tokens includes cached tokens; Anthropic's input_tokens excludes cache reads. Only
        # real counts (see `token_count`): anything else is 0 here, as the engine treats it as missing.
        details = usage.get("prompt_tokens_details")
        cached = (token_count(details.get("cached_tokens")) if type(details) is dict else None) or 0
        prompt = token_count(usage.get("prompt_tokens")) or 0
        out.append(_event({"type": "message_delta",
                           "delta": {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": token_count(usage.get("completion_tokens")) or 0,
                                     "input_tokens": max(prompt - cached, 0),
                                     "cache_read_input_tokens": cached}}))
        out.append(_event({"type": "message_stop"}))
        self._done = True
