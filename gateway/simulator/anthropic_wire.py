"""The Anthropic Messages wire format, as the simulator speaks it (`POST /v1/messages`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import default_error_type
from gateway.simulator.answers import JSON_OBJECT_SCHEMA, Tool, ToolRequest, choose_tool, json_answer, text_of
from gateway.simulator.chat import (
    BadRequest,
    ChatRequest,
    Finish,
    estimate_input_tokens,
    optional_positive_int,
    require_model_and_messages,
)

_STOP_REASONS = {Finish.STOP: "end_turn", Finish.LENGTH: "max_tokens", Finish.TOOL_CALL: "tool_use"}
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_TEXT_BLOCK_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
_TEXT_DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
_JSON_DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"input_json_delta","partial_json":'
)
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One Anthropic SSE event: the SDK drops events that lack an `event:` line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicDialect:
    request_id_header = "request-id"

    def parse_request(self, body: object) -> ChatRequest:
        request, model, messages = require_model_and_messages(body)
        max_tokens = optional_positive_int(request, "max_tokens")
        if max_tokens is None:
            raise BadRequest("max_tokens: Field required", param="max_tokens")
        # Without tools, a text answer whatever tool_choice says: the check of a stray tool_choice is the gateway's.
        tool = choose_tool(_tool_request(request, messages)) if request.get("tools") else None
        schema = _answer_schema(request)
        return ChatRequest(
            model=model,
            stream=request.get("stream") is True,
            max_tokens=max_tokens,
            input_tokens=count_input_tokens(request, messages),
            tool=tool,
            json_pieces=None if tool is not None or schema is None else json_answer(schema),
        )

    def encoder(self, request: ChatRequest, seq: int) -> AnthropicEncoder:
        return AnthropicEncoder(request, seq)

    def error_body(self, status: int, message: str, *, code: str | None = None,
                   param: str | None = None) -> bytes:
        # Anthropic errors carry only a type and a message; `code`/`param` are OpenAI notions.
        return orjson.dumps({"type": "error", "error": {"type": default_error_type(status), "message": message}})

    def credential(self, headers: Mapping[str, str]) -> str | None:
        # anthropic <= 1.17 sends x-api-key, >= 2.0 sends Authorization: Bearer; accept both.
        key = headers.get("x-api-key", "").strip()
        if key:
            return key
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def models_body(self, models: tuple[str, ...]) -> bytes:
        data = [_model(m) for m in models]
        return orjson.dumps({"data": data, "has_more": False, "first_id": models[0], "last_id": models[-1]})

    def model_body(self, model: str) -> bytes:
        return orjson.dumps(_model(model))

    def unknown_model_body(self, model: str) -> bytes:
        return self.error_body(404, f"model: {model}")


def _model(model: str) -> dict[str, Any]:
    # `lifecycle` is required in the SDK's ModelInfo since 2.x; the rest of its optional fields are left out.
    return {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z",
            "lifecycle": "active"}


def count_tokens_body(body: object) -> bytes:
    """`POST /v1/messages/count_tokens`: the input tokens a message request with this body would report."""
    request, _model_name, messages = require_model_and_messages(body)
    return orjson.dumps({"input_tokens": count_input_tokens(request, messages)})


def count_input_tokens(request: Mapping[str, object], messages: list[object]) -> int:
    """The prompt's tokens, as usage.input_tokens and `/v1/messages/count_tokens` both report them."""
    return estimate_input_tokens(request.get("system"), messages)


def _tool_request(request: Mapping[str, object], messages: list[object]) -> ToolRequest:
    """The tools, `tool_choice` and the last user text, as `answers.choose_tool` takes them."""
    tools = request.get("tools")
    listed = tuple(Tool(str(t["name"]), t.get("input_schema")) for t in (tools if isinstance(tools, list) else [])
                   if isinstance(t, dict) and isinstance(t.get("name"), str))
    choice = request.get("tool_choice")
    kind: str | None = None
    named = None
    if isinstance(choice, dict) and isinstance(choice.get("type"), str):
        kind = "required" if choice["type"] == "any" else str(choice["type"])
        if kind == "tool":
            if not isinstance(choice.get("name"), str):
                raise BadRequest("tool_choice.name: Field required", param="tool_choice")
            kind, named = "named", str(choice["name"])
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = messages[-1]
    last_blocks = last.get("content") if isinstance(last, dict) else None
    return ToolRequest(
        tools=listed,
        choice=kind,
        named=named,
        last_user_text=text_of(users[-1].get("content")) if users else "",
        after_tool_result=isinstance(last_blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last_blocks),
    )


def _answer_schema(request: Mapping[str, object]) -> object | None:
    """The schema of `output_config.format` (or the older beta's top-level `output_format`), else None."""
    config = request.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        fmt = request.get("output_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    return schema if isinstance(schema, dict) else JSON_OBJECT_SCHEMA


class AnthropicEncoder:
    """One request's Message / event encoder. Per-token events are constant byte strings plus the token."""

    __slots__ = ("_id", "_request", "_tool_id")

    def __init__(self, request: ChatRequest, seq: int) -> None:
        self._request = request
        self._id = f"msg_sim{seq}"
        self._tool_id = f"toolu_sim{seq}"

    def response_body(self, output_tokens: int, finish: Finish) -> bytes:
        tool = self._request.tool
        if finish is Finish.TOOL_CALL and tool is not None:
            content: list[dict[str, Any]] = [{"type": "tool_use", "id": self._tool_id, "name": tool.name,
                                              "input": orjson.Fragment(tool.arguments)}]
        else:
            content = [{"type": "text", "text": self._request.text(output_tokens)}]
        return orjson.dumps({
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._request.model,
            "content": content,
            "stop_reason": _STOP_REASONS[finish],
            "stop_sequence": None,
            "usage": self._usage(output_tokens),
        })

    def stream_open(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id, "type": "message", "role": "assistant", "model": self._request.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            # As the real API does, message_start reports one output token; message_delta has the total.
            "usage": self._usage(1, final=False),
        }
        return sse("message_start", {"type": "message_start", "message": message})

    def stream_text_open(self) -> bytes:
        return _TEXT_BLOCK_START + _PING

    def stream_token(self, index: int) -> bytes:
        return _TEXT_DELTA_HEAD + self._request.token(index) + b"}}\n\n"

    def stream_tool_open(self) -> bytes:
        name = self._request.tool.name if self._request.tool is not None else ""
        block: dict[str, Any] = {"type": "tool_use", "id": self._tool_id, "name": name, "input": {}}
        return sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}) + _PING

    def stream_tool_piece(self, piece: str) -> bytes:
        return _JSON_DELTA_HEAD + orjson.dumps(piece) + b"}}\n\n"

    def stream_close(self, output_tokens: int, finish: Finish) -> bytes:
        usage: dict[str, Any] = {"output_tokens": output_tokens}  # cumulative, as the real API reports it
        billing = self._request.billing
        if billing is not None and billing.reasoning:
            usage = {"output_tokens": output_tokens + billing.reasoning,
                     "output_tokens_details": {"thinking_tokens": billing.reasoning}}
        delta = {"type": "message_delta", "delta": {"stop_reason": _STOP_REASONS[finish], "stop_sequence": None},
                 "usage": usage}
        return _BLOCK_STOP + sse("message_delta", delta) + _MESSAGE_STOP

    def stream_error(self, status: int) -> bytes:
        message = "Overloaded" if status == 529 else "Internal server error"
        error = {"type": default_error_type(status), "message": message}
        return sse("error", {"type": "error", "error": error})

    def _usage(self, output_tokens: int, *, final: bool = True) -> dict[str, Any]:
        # input_tokens excludes the cache reads and writes, reported apart (cache_creation split by TTL).
        billing = self._request.billing
        if billing is None:
            return {"input_tokens": self._request.input_tokens, "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        usage: dict[str, Any] = {
            "input_tokens": max(0, self._request.input_tokens - billing.cache_read - billing.cache_write),
            "output_tokens": output_tokens + (billing.reasoning if final else 0),
            "cache_creation_input_tokens": billing.cache_write, "cache_read_input_tokens": billing.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": billing.cache_write_5m,
                               "ephemeral_1h_input_tokens": billing.cache_write_1h}}
        if final and billing.reasoning:
            usage["output_tokens_details"] = {"thinking_tokens": billing.reasoning}
        return usage
