"""The Anthropic Messages wire format, as the simulator speaks it (`POST /v1/messages`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import default_error_type
from gateway.simulator.chat import (
    TOOL_ARGUMENTS,
    BadRequest,
    ChatRequest,
    Finish,
    answer_text,
    estimate_input_tokens,
    optional_positive_int,
    require_model_and_messages,
    token_json,
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
        return ChatRequest(
            model=model,
            stream=request.get("stream") is True,
            max_tokens=max_tokens,
            input_tokens=estimate_input_tokens(request.get("system"), messages),
            forced_tool=_forced_tool(request),
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
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
        return orjson.dumps({"data": data, "has_more": False, "first_id": models[0], "last_id": models[-1]})


def _forced_tool(request: Mapping[str, object]) -> str | None:
    """The tool a request forces: tool_choice {"type":"any"} means the first tool, {"type":"tool"} the named one."""
    tools = request.get("tools")
    choice = request.get("tool_choice")
    if not isinstance(tools, list) or not tools or not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool":
        if not isinstance(choice.get("name"), str):
            raise BadRequest("tool_choice.name: Field required", param="tool_choice")
        return str(choice["name"])
    if choice.get("type") != "any":
        return None
    first = tools[0]
    if not isinstance(first, dict) or not isinstance(first.get("name"), str):
        raise BadRequest("tools.0.name: Field required", param="tools")
    return str(first["name"])


class AnthropicEncoder:
    """One request's Message / event encoder. Per-token events are constant byte strings plus the token."""

    __slots__ = ("_id", "_request", "_tool_id")

    def __init__(self, request: ChatRequest, seq: int) -> None:
        self._request = request
        self._id = f"msg_sim{seq}"
        self._tool_id = f"toolu_sim{seq}"

    def response_body(self, output_tokens: int, finish: Finish) -> bytes:
        if finish is Finish.TOOL_CALL:
            content: list[dict[str, Any]] = [{"type": "tool_use", "id": self._tool_id,
                                              "name": self._request.forced_tool, "input": TOOL_ARGUMENTS}]
        else:
            content = [{"type": "text", "text": answer_text(output_tokens)}]
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
            "usage": self._usage(1),
        }
        return sse("message_start", {"type": "message_start", "message": message})

    def stream_text_open(self) -> bytes:
        return _TEXT_BLOCK_START + _PING

    def stream_token(self, index: int) -> bytes:
        return _TEXT_DELTA_HEAD + token_json(index) + b"}}\n\n"

    def stream_tool_open(self) -> bytes:
        block: dict[str, Any] = {"type": "tool_use", "id": self._tool_id, "name": self._request.forced_tool,
                                 "input": {}}
        return sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}) + _PING

    def stream_tool_piece(self, piece: str) -> bytes:
        return _JSON_DELTA_HEAD + orjson.dumps(piece) + b"}}\n\n"

    def stream_close(self, output_tokens: int, finish: Finish) -> bytes:
        delta = {"type": "message_delta", "delta": {"stop_reason": _STOP_REASONS[finish], "stop_sequence": None},
                 "usage": {"output_tokens": output_tokens}}  # cumulative, as the real API reports it
        return _BLOCK_STOP + sse("message_delta", delta) + _MESSAGE_STOP

    def stream_error(self, status: int) -> bytes:
        message = "Overloaded" if status == 529 else "Internal server error"
        error = {"type": default_error_type(status), "message": message}
        return sse("error", {"type": "error", "error": error})

    def _usage(self, output_tokens: int) -> dict[str, int]:
        return {"input_tokens": self._request.input_tokens, "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
