"""A complete (non-streaming) response replayed as the stream events of its format: cache hits for streams."""

from __future__ import annotations

import orjson

from gateway.wire import Json, SSEEvent


def openai_stream(body: Json) -> list[SSEEvent]:
    choice = body["choices"][0]
    message = choice.get("message") or {}
    head = {"id": body.get("id", "chatcmpl-cached"), "object": "chat.completion.chunk",
            "created": body.get("created", 0), "model": body.get("model", "")}

    def chunk(delta: Json, finish: str | None = None) -> SSEEvent:
        return SSEEvent({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": ""})]
    if message.get("content"):
        events.append(chunk({"content": message["content"]}))
    if message.get("refusal"):
        events.append(chunk({"refusal": message["refusal"]}))
    for i, call in enumerate(message.get("tool_calls") or []):
        events.append(chunk({"tool_calls": [{"index": i, "id": call.get("id"), "type": "function",
                                             "function": call.get("function", {})}]}))
    events.append(chunk({}, choice.get("finish_reason") or "stop"))
    if body.get("usage"):
        events.append(SSEEvent({**head, "choices": [], "usage": body["usage"]}))
    return events


def anthropic_stream(body: Json) -> list[SSEEvent]:
    usage = body.get("usage") or {}
    start = {**body, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 0}}
    events = [SSEEvent({"type": "message_start", "message": start}, "message_start")]
    for i, block in enumerate(body.get("content") or []):
        if block.get("type") == "tool_use":
            opened = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
            delta = {"type": "input_json_delta", "partial_json": orjson.dumps(block.get("input", {})).decode()}
        elif block.get("type") == "text":
            opened, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block.get("text", "")}
        else:  # thinking and other blocks: replayed whole in their start event
            opened, delta = block, None
        events.append(SSEEvent({"type": "content_block_start", "index": i, "content_block": opened},
                               "content_block_start"))
        if delta is not None:
            events.append(SSEEvent({"type": "content_block_delta", "index": i, "delta": delta},
                                   "content_block_delta"))
        events.append(SSEEvent({"type": "content_block_stop", "index": i}, "content_block_stop"))
    events.append(SSEEvent({"type": "message_delta", "delta": {"stop_reason": body.get("stop_reason"),
                                                               "stop_sequence": body.get("stop_sequence")},
                            "usage": {"output_tokens": usage.get("output_tokens", 0)}}, "message_delta"))
    events.append(SSEEvent({"type": "message_stop"}, "message_stop"))
    return events
