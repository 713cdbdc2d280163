"""The OpenAI chat-completions wire format, as the simulator speaks it (`POST /v1/chat/completions`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.simulator.answers import JSON_OBJECT_SCHEMA, Tool, ToolRequest, choose_tool, json_answer, text_of
from gateway.simulator.chat import (
    BadRequest,
    ChatRequest,
    Finish,
    estimate_input_tokens,
    optional_positive_int,
    require_model_and_messages,
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
        # Without tools, a text answer whatever tool_choice says: the check of a stray tool_choice is the gateway's.
        tool = choose_tool(_tool_request(request, messages)) if request.get("tools") else None
        schema = _answer_schema(request.get("response_format"))
        return ChatRequest(
            model=model,
            stream=stream,
            max_tokens=max_tokens,
            input_tokens=estimate_input_tokens(messages),
            include_usage=include_usage,
            tool=tool,
            json_pieces=None if tool is not None or schema is None else json_answer(schema),
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
        return orjson.dumps({"object": "list", "data": [_model(m) for m in models]})

    def model_body(self, model: str) -> bytes:
        return orjson.dumps(_model(model))

    def unknown_model_body(self, model: str) -> bytes:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return self.error_body(404, message, code="model_not_found")


def _model(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "simulator"}


def _tool_request(request: Mapping[str, object], messages: list[object]) -> ToolRequest:
    """The function tools, `tool_choice` and the last user text, as `answers.choose_tool` takes them."""
    tools = request.get("tools")
    listed = tuple(
        Tool(str(t["function"]["name"]), t["function"].get("parameters"))
        for t in (tools if isinstance(tools, list) else [])
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str))
    choice = request.get("tool_choice")
    named = None
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest("tool_choice.function.name: Field required", param="tool_choice")
        choice, named = "named", str(function["name"])
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        choice = allowed.get("mode") if isinstance(allowed, dict) else None
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = messages[-1]
    return ToolRequest(
        tools=listed,
        choice=choice if isinstance(choice, str) else None,
        named=named,
        last_user_text=text_of(users[-1].get("content")) if users else "",
        after_tool_result=isinstance(last, dict) and last.get("role") in ("tool", "function"),
    )


def _answer_schema(response_format: object) -> object | None:
    """The schema a structured answer follows, or None for a text answer (no response_format, or type text)."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return JSON_OBJECT_SCHEMA
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else JSON_OBJECT_SCHEMA


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
        tool = self._request.tool
        if finish is Finish.TOOL_CALL and tool is not None:
            message["tool_calls"] = [{
                "id": self._call_id,
                "type": "function",
                "function": {"name": tool.name, "arguments": tool.arguments},
            }]
        else:
            message["content"] = self._request.text(output_tokens)
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
        return self._head + b'{"content":' + self._request.token(index) + b"}" + _CHUNK_TAIL

    def stream_tool_open(self) -> bytes:
        name = self._request.tool.name if self._request.tool is not None else ""
        call = {"index": 0, "id": self._call_id, "type": "function", "function": {"name": name, "arguments": ""}}
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

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        prompt = self._request.input_tokens
        billing = self._request.billing
        if billing is None:
            return {"prompt_tokens": prompt, "completion_tokens": output_tokens,
                    "total_tokens": prompt + output_tokens}
        # prompt_tokens includes the cached and the newly cached tokens; completion_tokens includes reasoning.
        completion = output_tokens + billing.reasoning
        details: dict[str, int] = {"cached_tokens": billing.cache_read}
        if billing.cache_write:
            details["cache_write_tokens"] = billing.cache_write
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion, "prompt_tokens_details": details}
        if billing.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": billing.reasoning}
        return usage
