"""The OpenAI chat-completions wire format, as the simulator speaks it (`POST /v1/chat/completions`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.simulator.chat import (
    TOOL_ARGUMENT_PIECES,
    BadRequest,
    ChatRequest,
    Finish,
    answer_text,
    estimate_input_tokens,
    optional_positive_int,
    require_model_and_messages,
    token_json,
)

_FINISH_REASONS = {Finish.STOP: "stop", Finish.LENGTH: "length", Finish.TOOL_CALL: "tool_calls"}
_CHUNK_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'
_ROLE_DELTA = b'{"role":"assistant","content":"","refusal":null}'
_DONE = b"data: [DONE]\n\n"


class OpenAIDialect:
    request_id_header = "x-request-id"

    def parse_request(self, body: object) -> ChatRequest:
        request, model, messages = require_model_and_messages(body)
        stream = request.get("stream") is True
        max_tokens = optional_positive_int(request, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = optional_positive_int(request, "max_tokens")
        options = request.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        return ChatRequest(
            model=model,
            stream=stream,
            max_tokens=max_tokens,
            input_tokens=estimate_input_tokens(messages),
            include_usage=include_usage,
            forced_tool=_forced_tool(request),
        )

    def encoder(self, request: ChatRequest, seq: int) -> OpenAIEncoder:
        return OpenAIEncoder(request, seq)

    def error_body(self, status: int, message: str, *, code: str | None = None,
                   param: str | None = None) -> bytes:
        return orjson.dumps({"error": _error(status, message, code=code, param=param)})

    def credential(self, headers: Mapping[str, str]) -> str | None:
        auth = headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def models_body(self, models: tuple[str, ...]) -> bytes:
        return orjson.dumps({
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "simulator"} for m in models],
        })


def _forced_tool(request: Mapping[str, object]) -> str | None:
    """The tool a request forces: tool_choice "required" means the first tool, a named function means that one."""
    tools = request.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = request.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
        raise BadRequest("tool_choice.function.name: Field required", param="tool_choice")
    if choice != "required":
        return None
    first = tools[0]
    function = first.get("function") if isinstance(first, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest("tools[0].function.name: Field required", param="tools")
    return str(function["name"])


def _error_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    return {"message": message, "type": _error_type(status), "param": param, "code": code}


class OpenAIEncoder:
    """One request's ChatCompletion / chunk encoder. The chunk envelope is built once: per token we only splice."""

    __slots__ = ("_call_id", "_created", "_head", "_id", "_request")

    def __init__(self, request: ChatRequest, seq: int) -> None:
        self._request = request
        self._id = f"chatcmpl-sim{seq}"
        self._call_id = f"call_sim{seq}"
        self._created = int(time.time())
        self._head = (
            b'data: {"id":"' + self._id.encode() + b'","object":"chat.completion.chunk","created":'
            + str(self._created).encode() + b',"model":' + orjson.dumps(request.model)
            + b',"system_fingerprint":null,"choices":[{"index":0,"delta":'
        )

    def response_body(self, output_tokens: int, finish: Finish) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if finish is Finish.TOOL_CALL:
            message["tool_calls"] = [{
                "id": self._call_id,
                "type": "function",
                "function": {"name": self._request.forced_tool, "arguments": "".join(TOOL_ARGUMENT_PIECES)},
            }]
        else:
            message["content"] = answer_text(output_tokens)
        return orjson.dumps({
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._request.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": _FINISH_REASONS[finish]}],
            "usage": self._usage(output_tokens),
        })

    def stream_open(self) -> bytes:
        return self._head + _ROLE_DELTA + _CHUNK_TAIL

    def stream_text_open(self) -> bytes:
        return b""

    def stream_token(self, index: int) -> bytes:
        return self._head + b'{"content":' + token_json(index) + b"}" + _CHUNK_TAIL

    def stream_tool_open(self) -> bytes:
        call = {"index": 0, "id": self._call_id, "type": "function",
                "function": {"name": self._request.forced_tool, "arguments": ""}}
        return self._head + orjson.dumps({"tool_calls": [call]}) + _CHUNK_TAIL

    def stream_tool_piece(self, piece: str) -> bytes:
        return self._head + orjson.dumps({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) + _CHUNK_TAIL

    def stream_close(self, output_tokens: int, finish: Finish) -> bytes:
        out = self._head + b'{},"logprobs":null,"finish_reason":"' + _FINISH_REASONS[finish].encode() + b'"}]}\n\n'
        if self._request.include_usage:
            # The usage chunk has no choices at all: clients must not index choices[0] blindly.
            usage_chunk = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                           "model": self._request.model, "system_fingerprint": None, "choices": [],
                           "usage": self._usage(output_tokens)}
            out += b"data: " + orjson.dumps(usage_chunk) + b"\n\n"
        return out + _DONE

    def stream_error(self, status: int) -> bytes:
        # OpenAI reports a failure inside a 200 stream as a bare `data: {"error": ...}` and no [DONE].
        error = _error(status, "The server had an error while processing your request (simulated).")
        return b"data: " + orjson.dumps({"error": error}) + b"\n\n"

    def _usage(self, output_tokens: int) -> dict[str, int]:
        prompt = self._request.input_tokens
        return {"prompt_tokens": prompt, "completion_tokens": output_tokens,
                "total_tokens": prompt + output_tokens}
