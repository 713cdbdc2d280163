"""Building a Responses API event stream, item by item: what the translated pairs and the cache replay emit.

`ResponseStreamBuilder` turns "text arrived", "a tool call started", "its arguments arrived", "the answer is
over" into the events the openai SDK's stream accumulator checks (`response.created` first, every content
event after its item's `output_item.added`, every item done before `response.completed`, one output index
per item), each numbered. Ids of items it opens are random, so they never collide across the turns of a
conversation that the gateway keeps. The response's own id and the request's echoes (instructions, tools...)
are the door's to set (`gateway.server.responses_turn`), since they belong to the response, not to an attempt.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from gateway.wire import Json, SSEEvent


def new_id(prefix: str) -> str:
    """An unguessable id in the API's style: `msg_…`, `fc_…`, `rs_…`, `resp_…`."""
    return f"{prefix}_{secrets.token_hex(16)}"


def event(data: Json) -> SSEEvent:
    return SSEEvent(data, data["type"])


def usage_body(input_tokens: int, output_tokens: int, cached: int = 0, reasoning: int = 0) -> Json:
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + output_tokens}


class _Item:
    """One output item while it streams: a message, a reasoning item or a function call."""

    __slots__ = ("data", "index", "open", "parts", "pieces")

    def __init__(self, index: int, data: Json) -> None:
        self.index = index
        self.data = data  # the item as `output_item.added` showed it; completed on close
        self.open = True
        self.parts: list[Json] = []  # message/reasoning content parts, finished
        self.pieces: list[str] = []  # text (or arguments) of the part being streamed


class ResponseStreamBuilder:
    """One response's events. Feed it what the provider said; every method returns the events to send."""

    def __init__(self, *, response_id: str = "resp_pending", model: str = "",
                 make_id: Callable[[str], str] = new_id, clock: Callable[[], float] = time.time,
                 base: Json | None = None) -> None:
        self._base = base or {}  # fields every response object of the stream carries (a replay's echoes)
        self._id = response_id
        self.model = model
        self._make_id = make_id
        self._created_at = int(clock())
        self._seq = 0
        self._items: list[_Item] = []
        self._calls: dict[object, _Item] = {}  # the provider's key of a tool call -> its item
        self._current: _Item | None = None  # the open message or reasoning item text goes to
        self._part_kind = ""  # type of the part being streamed into `_current`
        self.started = False
        self.finished = False

    # ---- events ---------------------------------------------------------------------------------------

    def _event(self, data: Json) -> SSEEvent:
        data["sequence_number"] = self._seq
        self._seq += 1
        return event(data)

    def response(self, status: str, **extra: Any) -> Json:
        """The response object as it stands: finished items only (the SDK rebuilds the rest from events)."""
        output = [item.data for item in self._items if not item.open] if status != "in_progress" else []
        return {**self._base, "id": self._id, "object": "response", "created_at": self._created_at, "status": status,
                "model": self.model, "output": output, "error": None, "incomplete_details": None,
                "usage": None, **extra}

    def start(self) -> list[SSEEvent]:
        if self.started:
            return []
        self.started = True
        return [self._event({"type": "response.created", "response": self.response("in_progress")}),
                self._event({"type": "response.in_progress", "response": self.response("in_progress")})]

    # ---- text, refusals, reasoning --------------------------------------------------------------------

    def text(self, delta: str) -> list[SSEEvent]:
        return self._stream_part("message", "output_text", delta)

    def refusal(self, delta: str) -> list[SSEEvent]:
        return self._stream_part("message", "refusal", delta)

    def reasoning(self, delta: str) -> list[SSEEvent]:
        return self._stream_part("reasoning", "reasoning_text", delta)

    def _stream_part(self, item_type: str, part_kind: str, delta: str) -> list[SSEEvent]:
        out = self.start()
        item = self._current
        if item is None or item.data["type"] != item_type:
            self._close_current(out)
            item = self._current = self._open(item_type, out)
        if self._part_kind != part_kind:
            self._close_part(item, out)
            self._part_kind = part_kind
            out.append(self._event({"type": "response.content_part.added", "item_id": item.data["id"],
                                    "output_index": item.index, "content_index": len(item.parts),
                                    "part": _part(part_kind, "")}))
        item.pieces.append(delta)
        out.append(self._event({"type": _DELTA_EVENT[part_kind], "item_id": item.data["id"],
                                "output_index": item.index, "content_index": len(item.parts), "delta": delta,
                                **({"logprobs": []} if part_kind == "output_text" else {})}))
        return out

    def _open(self, item_type: str, out: list[SSEEvent]) -> _Item:
        if item_type == "message":
            data: Json = {"id": self._make_id("msg"), "type": "message", "status": "in_progress",
                          "role": "assistant", "content": []}
        else:
            data = {"id": self._make_id("rs"), "type": "reasoning", "summary": [], "content": []}
        item = _Item(len(self._items), data)
        self._items.append(item)
        out.append(self._event({"type": "response.output_item.added", "output_index": item.index, "item": data}))
        return item

    def _close_part(self, item: _Item, out: list[SSEEvent]) -> None:
        kind = self._part_kind
        if not kind:
            return
        text = "".join(item.pieces)
        item.pieces = []
        self._part_kind = ""
        base = {"item_id": item.data["id"], "output_index": item.index, "content_index": len(item.parts)}
        done: Json = {"type": _DONE_EVENT[kind], **base, _TEXT_FIELD[kind]: text}
        if kind == "output_text":
            done["logprobs"] = []
        out.append(self._event(done))
        part = _part(kind, text)
        out.append(self._event({"type": "response.content_part.done", **base, "part": part}))
        item.parts.append(part)

    def _close_current(self, out: list[SSEEvent]) -> None:
        item = self._current
        if item is None:
            return
        self._close_part(item, out)
        self._current = None
        item.open = False
        item.data = {**item.data, "content": item.parts, "status": "completed"}
        out.append(self._event({"type": "response.output_item.done", "output_index": item.index, "item": item.data}))

    def end_item(self) -> list[SSEEvent]:
        """Close the open message or reasoning item: what follows starts a new one."""
        out: list[SSEEvent] = []
        self._close_current(out)
        return out

    def whole_item(self, data: Json) -> list[SSEEvent]:
        """An item that is complete as it arrives (a built-in tool's call, from a native provider)."""
        out = self.start()
        self._close_current(out)
        item = _Item(len(self._items), data)
        item.open = False
        self._items.append(item)
        out.append(self._event({"type": "response.output_item.added", "output_index": item.index, "item": data}))
        out.append(self._event({"type": "response.output_item.done", "output_index": item.index, "item": data}))
        return out

    # ---- function calls -------------------------------------------------------------------------------

    def tool_call(self, key: object, call_id: str, name: str) -> list[SSEEvent]:
        """A function call starts (`key`: how the provider names it in later deltas)."""
        out = self.start()
        self._close_current(out)  # the model moved on from its text
        data = {"id": self._make_id("fc"), "type": "function_call", "status": "in_progress",
                "call_id": call_id or self._make_id("call"), "name": name, "arguments": ""}
        item = self._calls[key] = _Item(len(self._items), data)
        self._items.append(item)
        out.append(self._event({"type": "response.output_item.added", "output_index": item.index, "item": data}))
        return out

    def tool_arguments(self, key: object, delta: str) -> list[SSEEvent]:
        item = self._calls.get(key)
        if item is None or not item.open or not delta:
            return []
        item.pieces.append(delta)
        return [self._event({"type": "response.function_call_arguments.delta", "item_id": item.data["id"],
                             "output_index": item.index, "delta": delta})]

    def _close_call(self, item: _Item, out: list[SSEEvent]) -> None:
        arguments = "".join(item.pieces)
        item.open = False
        item.data = {**item.data, "arguments": arguments, "status": "completed"}
        out.append(self._event({"type": "response.function_call_arguments.done", "item_id": item.data["id"],
                                "output_index": item.index, "name": item.data["name"], "arguments": arguments}))
        out.append(self._event({"type": "response.output_item.done", "output_index": item.index, "item": item.data}))

    # ---- the end --------------------------------------------------------------------------------------

    def finish(self, *, usage: Json | None, incomplete: str | None = None) -> list[SSEEvent]:
        """Close every open item and end with `response.completed`, or `response.incomplete` with its reason
        (`max_output_tokens`, `content_filter`)."""
        if self.finished:
            return []
        out = self.start()
        self._close_current(out)
        for item in self._items:
            if item.open:
                self._close_call(item, out)
        self.finished = True
        if incomplete is None:
            response = self.response("completed", usage=usage)
            return [*out, self._event({"type": "response.completed", "response": response})]
        response = self.response("incomplete", usage=usage, incomplete_details={"reason": incomplete})
        return [*out, self._event({"type": "response.incomplete", "response": response})]

    def error(self, code: str, message: str) -> list[SSEEvent]:
        """An error the provider reported inside its stream."""
        self.finished = True
        return [self._event({"type": "error", "code": code, "message": message, "param": None})]


_DELTA_EVENT = {"output_text": "response.output_text.delta", "refusal": "response.refusal.delta",
                "reasoning_text": "response.reasoning_text.delta"}
_DONE_EVENT = {"output_text": "response.output_text.done", "refusal": "response.refusal.done",
               "reasoning_text": "response.reasoning_text.done"}
_TEXT_FIELD = {"output_text": "text", "refusal": "refusal", "reasoning_text": "text"}


def _part(kind: str, text: str) -> Json:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "reasoning_text", "text": text}


def replay(body: Json) -> list[SSEEvent]:
    """A complete response replayed as its stream: a cache hit served to a streaming client."""
    base = {key: value for key, value in body.items() if key not in ("output", "usage", "status")}
    builder = ResponseStreamBuilder(response_id=str(body.get("id") or "resp_cached"), model=str(body.get("model", "")),
                                    clock=lambda: float(body.get("created_at") or 0), base=base)
    out = builder.start()
    for item in body.get("output") or ():
        kind = item.get("type")
        if kind == "function_call":
            out += builder.tool_call(id(item), str(item.get("call_id", "")), str(item.get("name", "")))
            out += builder.tool_arguments(id(item), str(item.get("arguments", "")))
            continue
        if kind not in ("message", "reasoning"):
            out += builder.whole_item(item)
            continue
        for part in item.get("content") or ():
            text = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
            method = builder.refusal if part.get("type") == "refusal" else (
                builder.reasoning if kind == "reasoning" else builder.text)
            out += method(str(text or ""))
        out += builder.end_item()
    reason = (body.get("incomplete_details") or {}).get("reason") if body.get("status") == "incomplete" else None
    return out + builder.finish(usage=body.get("usage"), incomplete=reason)
