"""A scripted provider of either wire format that answers one fixed text and continues a prefill faithfully:
given a trailing assistant message, it streams the rest of its answer from where the prefill ends. Each call
can break (an error event), stall, or open with a thinking block or a tool call. Time is the event loop's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from gateway.providers import UpstreamRequest
from gateway.wire import Json, SSEEvent, WireFormat

ANSWER = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun."


@dataclass
class Script:
    ttft_s: float = 0.1
    per_piece_s: float = 0.01
    break_after: int | None = None  # an error event after this many text pieces
    stall_after: int | None = None  # silence for `stall_s` after this many text pieces
    stall_s: float = 30.0
    thinking: bool = False  # a complete thinking block before the text
    tool_after: int | None = None  # after this many text pieces, a tool call cut inside its arguments
    leading_space: bool = True  # False: a continuation after a stripped space starts without it


@dataclass
class Received:
    body: Json
    prefill: str | None
    cancelled: bool = False


def pieces(text: str, size: int = 6) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


@dataclass
class ContinuingProvider:
    name: str
    kind: WireFormat
    scripts: list[Script] = field(default_factory=lambda: [Script()])
    answer: str = ANSWER
    received: list[Received] = field(default_factory=list)
    server_address = "127.0.0.1"
    server_port = 9
    operations = frozenset({"chat"})

    @property
    def speaks(self) -> frozenset[WireFormat]:
        return frozenset({self.kind})

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[list[SSEEvent], None]:
        return self._run(request.body)

    async def reserve(self) -> tuple[Callable[[], None], float]:
        return (lambda: None), 0.0

    async def call(self, request: UpstreamRequest) -> Json:
        raise NotImplementedError

    def redact(self, text: str) -> str:
        return text

    async def aclose(self) -> None:
        pass

    def _prefill(self, body: Json) -> str | None:
        last = (body.get("messages") or [{}])[-1]
        if last.get("role") != "assistant":
            return None
        if self.kind is WireFormat.OPENAI and not (body.get("continue_final_message") or last.get("prefix")):
            return None
        content = last.get("content")
        if isinstance(content, list):
            return "".join(b.get("text", "") for b in content)
        return str(content)

    async def _run(self, body: Json) -> AsyncGenerator[list[SSEEvent], None]:
        script = self.scripts[min(len(self.received), len(self.scripts) - 1)]
        prefill = self._prefill(body)
        got = Received(body, prefill)
        self.received.append(got)
        rest = self.answer
        if prefill is not None:
            assert self.answer.startswith(prefill), f"{prefill!r} is not how {self.answer!r} begins"
            rest = self.answer[len(prefill):]
            if not script.leading_space:
                rest = rest.lstrip()
        events = _Anthropic(self.name, len(self.received)) if self.kind is WireFormat.ANTHROPIC else \
            _OpenAI(self.name, len(self.received))
        try:
            await asyncio.sleep(script.ttft_s)
            yield events.start()
            if script.thinking:
                yield events.thinking()
            sent = 0
            for i, piece in enumerate(pieces(rest)):
                if script.tool_after == i:
                    yield events.tool_start()
                    yield [events.error()]
                    return
                if script.break_after == i:
                    yield [events.error()]
                    return
                if script.stall_after == i:
                    await asyncio.sleep(script.stall_s)
                if i:
                    await asyncio.sleep(script.per_piece_s)
                yield [events.text(piece)]
                sent += 1
            yield events.end(sent)
        except (asyncio.CancelledError, GeneratorExit):
            got.cancelled = True
            raise


class _OpenAI:
    def __init__(self, name: str, n: int) -> None:
        self.id = f"chatcmpl-{name}{n}"
        self.model = f"model-{name}"

    def _chunk(self, delta: Json, finish: str | None = None) -> SSEEvent:
        return SSEEvent({"id": self.id, "object": "chat.completion.chunk", "created": 7, "model": self.model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    def start(self) -> list[SSEEvent]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def thinking(self) -> list[SSEEvent]:
        return [self._chunk({"reasoning_content": "Let me think."})]

    def text(self, piece: str) -> SSEEvent:
        return self._chunk({"content": piece})

    def tool_start(self) -> list[SSEEvent]:
        return [self._chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                             "function": {"name": "f", "arguments": '{"a": '}}]})]

    def error(self) -> SSEEvent:
        return SSEEvent({"error": {"message": "Overloaded", "type": "overloaded_error"}})

    def end(self, sent: int) -> list[SSEEvent]:
        return [self._chunk({}, "stop"),
                SSEEvent({"id": self.id, "object": "chat.completion.chunk", "created": 7, "model": self.model,
                          "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": sent,
                                                   "total_tokens": 20 + sent}})]


def _ev(data: Json) -> SSEEvent:
    return SSEEvent(data, data["type"])


class _Anthropic:
    def __init__(self, name: str, n: int) -> None:
        self.id = f"msg_{name}{n}"
        self.model = f"model-{name}"
        self.block = 0
        self.text_open = False

    def start(self) -> list[SSEEvent]:
        return [_ev({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 1}}})]

    def thinking(self) -> list[SSEEvent]:
        out = [_ev({"type": "content_block_start", "index": self.block,
                    "content_block": {"type": "thinking", "thinking": ""}}),
               _ev({"type": "content_block_delta", "index": self.block,
                    "delta": {"type": "thinking_delta", "thinking": "Let me think."}}),
               _ev({"type": "content_block_stop", "index": self.block})]
        self.block += 1
        return out

    def text(self, piece: str) -> SSEEvent:
        if not self.text_open:
            self.text_open = True
            return _ev({"type": "content_block_start", "index": self.block,
                        "content_block": {"type": "text", "text": piece}})
        return _ev({"type": "content_block_delta", "index": self.block,
                    "delta": {"type": "text_delta", "text": piece}})

    def _close_text(self) -> list[SSEEvent]:
        if not self.text_open:
            return []
        self.text_open = False
        self.block += 1
        return [_ev({"type": "content_block_stop", "index": self.block - 1})]

    def tool_start(self) -> list[SSEEvent]:
        out = self._close_text()
        return [*out, _ev({"type": "content_block_start", "index": self.block,
                           "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
                _ev({"type": "content_block_delta", "index": self.block,
                     "delta": {"type": "input_json_delta", "partial_json": '{"a": '}})]

    def error(self) -> SSEEvent:
        return _ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    def end(self, sent: int) -> list[SSEEvent]:
        return [*self._close_text(),
                _ev({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                     "usage": {"output_tokens": sent}}),
                _ev({"type": "message_stop"})]
