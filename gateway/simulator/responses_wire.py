"""The OpenAI Responses API wire format, as the simulator speaks it (`POST /v1/responses`).

A provider with `responses: true` in the gateway's config is sent this format natively. The simulator keeps
nothing between requests, as an upstream that is never asked to store (the gateway sends `store: false`):
a request naming a `previous_response_id` is answered as the API answers an unknown one, a 400, so a gateway
that forwarded one instead of expanding the conversation itself would be caught.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.simulator.answers import JSON_OBJECT_SCHEMA, Tool, ToolRequest, choose_tool, json_answer, text_of
from gateway.simulator.chat import BadRequest, ChatRequest, Finish, estimate_input_tokens, optional_positive_int
from gateway.simulator.openai_wire import OpenAIDialect

_OPENAI = OpenAIDialect()


class ResponsesDialect:
    """Errors, credentials and model listings as OpenAI's; requests and answers in the Responses shape."""

    request_id_header = _OPENAI.request_id_header
    error_body = staticmethod(_OPENAI.error_body)
    credential = staticmethod(_OPENAI.credential)
    models_body = staticmethod(_OPENAI.models_body)
    model_body = staticmethod(_OPENAI.model_body)
    unknown_model_body = staticmethod(_OPENAI.unknown_model_body)

    def parse_request(self, body: object) -> ChatRequest:
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("Missing required parameter: 'model'.", param="model")
        if body.get("previous_response_id"):
            raise BadRequest(f"Previous response with id '{body['previous_response_id']}' not found.",
                             param="previous_response_id")
        items = _items(body.get("input"))
        if not items:
            raise BadRequest("Missing required parameter: 'input'.", param="input")
        text = body.get("text")
        tool = choose_tool(_tool_request(body, items)) if body.get("tools") else None
        schema = _answer_schema(text.get("format") if isinstance(text, dict) else None)
        return ChatRequest(
            model=model,
            stream=body.get("stream") is True,
            max_tokens=optional_positive_int(body, "max_output_tokens"),
            input_tokens=estimate_input_tokens(body.get("instructions"), items),
            tool=tool,
            json_pieces=None if tool is not None or schema is None else json_answer(schema),
        )

    def encoder(self, request: ChatRequest, seq: int) -> ResponsesEncoder:
        return ResponsesEncoder(request, seq)


def _items(data: object) -> list[Any]:
    if isinstance(data, str):
        return [{"type": "message", "role": "user", "content": data}]
    return list(data) if isinstance(data, list) else []


def _tool_request(body: Mapping[str, object], items: list[Any]) -> ToolRequest:
    tools = body.get("tools")
    listed = tuple(Tool(str(t["name"]), t.get("parameters")) for t in (tools if isinstance(tools, list) else [])
                   if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str))
    choice: object = body.get("tool_choice", "auto")  # the Responses API's default, unlike the chat door's
    named = None
    if isinstance(choice, dict) and choice.get("type") == "function":
        named = str(choice.get("name"))
        choice = "named"
    users = [item for item in items if isinstance(item, dict) and item.get("role") == "user"]
    last = items[-1]
    return ToolRequest(
        tools=listed,
        choice=choice if isinstance(choice, str) else None,
        named=named,
        last_user_text=_user_text(users[-1].get("content")) if users else "",
        after_tool_result=isinstance(last, dict) and last.get("type") == "function_call_output",
    )


def _user_text(content: object) -> str:
    if isinstance(content, list):
        content = [{**part, "type": "text"} for part in content
                   if isinstance(part, dict) and part.get("type") == "input_text"]
    return text_of(content)


def _answer_schema(fmt: object) -> object | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return JSON_OBJECT_SCHEMA
    if fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    return schema if isinstance(schema, dict) else JSON_OBJECT_SCHEMA


class ResponsesEncoder:
    """One request's Response / event encoder. Every event is numbered; per token only the number changes."""

    __slots__ = ("_call_id", "_created", "_fc_id", "_id", "_msg_id", "_request", "_seq")

    def __init__(self, request: ChatRequest, seq: int) -> None:
        self._request = request
        self._id = f"resp_sim{seq}"
        self._msg_id = f"msg_sim{seq}"
        self._fc_id = f"fc_sim{seq}"
        self._call_id = f"call_sim{seq}"
        self._created = int(time.time())
        self._seq = 0

    def _event(self, data: dict[str, Any]) -> bytes:
        data["sequence_number"] = self._seq
        self._seq += 1
        return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(self, status: str, output: list[dict[str, Any]], output_tokens: int | None,
                  finish: Finish | None = None) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if finish is Finish.LENGTH else None
        usage = None if output_tokens is None else {
            "input_tokens": self._request.input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self._request.input_tokens + output_tokens}
        return {"id": self._id, "object": "response", "created_at": self._created, "status": status,
                "model": self._request.model, "output": output, "error": None, "incomplete_details": incomplete,
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "store": False, "usage": usage}

    def _message(self, text: str, status: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"id": self._msg_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def _call(self, arguments: str, status: str) -> dict[str, Any]:
        name = self._request.tool.name if self._request.tool is not None else ""
        return {"id": self._fc_id, "type": "function_call", "status": status, "call_id": self._call_id,
                "name": name, "arguments": arguments}

    def _output(self, output_tokens: int, finish: Finish) -> dict[str, Any]:
        tool = self._request.tool
        if finish is Finish.TOOL_CALL and tool is not None:
            return self._call(tool.arguments, "completed")
        status = "incomplete" if finish is Finish.LENGTH else "completed"
        return self._message(self._request.text(output_tokens), status)

    def response_body(self, output_tokens: int, finish: Finish) -> bytes:
        status = "incomplete" if finish is Finish.LENGTH else "completed"
        return orjson.dumps(self._response(status, [self._output(output_tokens, finish)], output_tokens, finish))

    def stream_open(self) -> bytes:
        return (self._event({"type": "response.created", "response": self._response("in_progress", [], None)})
                + self._event({"type": "response.in_progress", "response": self._response("in_progress", [], None)}))

    def stream_text_open(self) -> bytes:
        item = {**self._message("", "in_progress"), "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return (self._event({"type": "response.output_item.added", "output_index": 0, "item": item})
                + self._event({"type": "response.content_part.added", "item_id": self._msg_id, "output_index": 0,
                               "content_index": 0, "part": part}))

    def stream_token(self, index: int) -> bytes:
        self._seq += 1
        return (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"'
                + self._msg_id.encode() + b'","output_index":0,"content_index":0,"delta":'
                + self._request.token(index) + b',"logprobs":[],"sequence_number":'
                + str(self._seq - 1).encode() + b"}\n\n")

    def stream_tool_open(self) -> bytes:
        return self._event({"type": "response.output_item.added", "output_index": 0,
                            "item": self._call("", "in_progress")})

    def stream_tool_piece(self, piece: str) -> bytes:
        return self._event({"type": "response.function_call_arguments.delta", "item_id": self._fc_id,
                            "output_index": 0, "delta": piece})

    def stream_close(self, output_tokens: int, finish: Finish) -> bytes:
        item = self._output(output_tokens, finish)
        if item["type"] == "function_call":
            out = self._event({"type": "response.function_call_arguments.done", "item_id": self._fc_id,
                               "output_index": 0, "name": item["name"], "arguments": item["arguments"]})
        else:
            part = item["content"][0]
            out = self._event({"type": "response.output_text.done", "item_id": self._msg_id, "output_index": 0,
                               "content_index": 0, "text": part["text"], "logprobs": []})
            out += self._event({"type": "response.content_part.done", "item_id": self._msg_id, "output_index": 0,
                                "content_index": 0, "part": part})
        out += self._event({"type": "response.output_item.done", "output_index": 0, "item": item})
        status = "incomplete" if finish is Finish.LENGTH else "completed"
        return out + self._event({"type": f"response.{status}",
                                  "response": self._response(status, [item], output_tokens, finish)})

    def stream_error(self, status: int) -> bytes:
        # As the API reports a failure inside a 200 stream: one `error` event, and the stream ends.
        return self._event({"type": "error", "code": "server_error", "param": None,
                            "message": "The server had an error while processing your request (simulated)."})
