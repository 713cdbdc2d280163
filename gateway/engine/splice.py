"""Splicing a resumed stream: what the client has seen so far, and the continuation rewritten to follow it.

One splicer per client stream, in the client's format. It looks at every client event the committed stream
yields (`see`: a few dict lookups per event, no JSON parsing) to know what a resume would have to continue:
the text streamed so far, and whether the stream is cut somewhere a prefill cannot continue (inside a tool
call's arguments or a thinking block, after a tool call, or after the answer's finish). When a continuation
starts (`begin`), `splice` rewrites its events so that the client sees one stream: no second role chunk or
`message_start`, the first stream's ids, content block indexes that continue, the whitespace an Anthropic
prefill had to lose not repeated, and the final usage the sum of what every attempt of the stream was billed.
Spliced events are seen too, so a stream can be resumed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.wire import Json, SSEEvent, WireFormat


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a committed stream broke, as the client saw it."""

    text: str  # every text piece streamed to the client so far: the continuation's prefill
    refusal: str | None  # why it cannot be resumed ("tool_call", "thinking", "finished", ...), None if it can


class Splicer(Protocol):
    def see(self, events: list[SSEEvent]) -> None:
        """Track client events of the committed stream (the hot path)."""
        ...

    def cut(self) -> Cut: ...

    def begin(self, carried_input: int, carried_output: int, strip: str) -> None:
        """A continuation starts. `carried_*`: tokens billed by the stream's earlier attempts, added to the
        final usage; `strip`: trailing whitespace of the text that the prefill left out (the continuation
        usually generates it again; the client has it already)."""
        ...

    def splice(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """The continuation's client events, rewritten to follow what the client has, and seen."""
        ...


def splicer_for(door: WireFormat) -> Splicer | None:
    """The splicer of a door's stream format; None for a format no splicer knows (its streams are not resumed)."""
    if door is WireFormat.OPENAI:
        return OpenAISplicer()
    if door is WireFormat.ANTHROPIC:
        return AnthropicSplicer()
    return None


class _Whitespace:
    """The whitespace a prefill lost, dropped from the continuation's first text as far as it repeats it."""

    __slots__ = ("pending",)

    def __init__(self, pending: str = "") -> None:
        self.pending = pending

    def take(self, text: str) -> str:
        pending = self.pending
        if not pending or not text:
            return text
        common = 0
        for a, b in zip(pending, text, strict=False):
            if a != b:
                break
            common += 1
        rest = text[common:]
        # Text past the repeated part (or a mismatch) ends the matching: the rest is new output.
        self.pending = "" if rest or common < len(text) else pending[common:]
        return rest


# ---------------------------------------------------------------------------------------------- OpenAI


class OpenAISplicer:
    """`chat.completion.chunk`s of choice 0 (the gateway never asks for more)."""

    __slots__ = ("_carried", "_created", "_id", "_model", "_refusal", "_splicing", "_text", "_ws")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._refusal: str | None = None
        self._id: object = None
        self._created: object = None
        self._model: object = None
        self._splicing = False
        self._carried = (0, 0)
        self._ws = _Whitespace()

    def see(self, events: list[SSEEvent]) -> None:
        for ev in events:
            data = ev.data
            if self._id is None and "id" in data:
                self._id, self._created, self._model = data.get("id"), data.get("created"), data.get("model")
            choices = data.get("choices")
            if not choices:
                continue
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                if text := delta.get("content"):
                    self._text.append(text)
                    if self._refusal == "thinking":
                        self._refusal = None  # the reasoning ended where the answer began: a cut now is in text
                if delta.get("tool_calls") or delta.get("function_call"):
                    self._refusal = "tool_call"  # no end marker per call: a later cut may be inside arguments
                elif self._refusal is None and (delta.get("reasoning_content") or delta.get("reasoning")):
                    self._refusal = "thinking"
                if delta.get("refusal"):
                    self._refusal = "refusal"
            if choice.get("finish_reason"):
                self._refusal = "finished"

    def cut(self) -> Cut:
        return Cut("".join(self._text), self._refusal)

    def begin(self, carried_input: int, carried_output: int, strip: str) -> None:
        self._splicing = True
        self._carried = (carried_input, carried_output)
        self._ws = _Whitespace(strip)

    def splice(self, events: list[SSEEvent]) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for ev in events:
            data = self._rewrite(ev.data)
            if data is not None:
                out.append(SSEEvent(data, ev.event))
        self.see(out)
        return out

    def _rewrite(self, data: Json) -> Json | None:
        data = {**data, "id": self._id, "created": self._created, "model": self._model}
        choices = data.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta and ("role" in delta or "content" in delta):
                delta = {k: v for k, v in delta.items() if k != "role"}  # the client had its role chunk
                text = delta.get("content")
                if text:
                    delta["content"] = self._ws.take(text)
                if not delta.get("content") and "content" in delta:
                    del delta["content"]
                if not delta and not choice.get("finish_reason") and len(choices) == 1 and not data.get("usage"):
                    return None  # nothing left to say
                data["choices"] = [{**choice, "delta": delta}, *choices[1:]]
        usage = data.get("usage")
        if usage:
            carried_in, carried_out = self._carried
            prompt = (usage.get("prompt_tokens") or 0) + carried_in
            completion = (usage.get("completion_tokens") or 0) + carried_out
            data["usage"] = {**usage, "prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
        return data


# ------------------------------------------------------------------------------------------- Anthropic


class AnthropicSplicer:
    """Messages stream events: blocks tracked by index; a continuation's blocks renumbered after them."""

    __slots__ = ("_base", "_blocks", "_carried", "_cont_input", "_finished", "_merge", "_open", "_open_type",
                 "_splicing", "_text", "_tool_seen", "_ws")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._blocks = 0  # blocks started so far (the next block's index)
        self._base = 0  # where the continuation's new blocks are numbered from
        self._open: int | None = None  # index of the open block
        self._open_type = ""
        self._tool_seen = False
        self._finished = False
        self._splicing = False
        self._merge: int | None = None  # the client's open text block that the continuation's block 0 continues
        self._carried = (0, 0)
        self._cont_input: int | None = None  # the continuation's own input tokens (from its message_start)
        self._ws = _Whitespace()

    def see(self, events: list[SSEEvent]) -> None:
        for ev in events:
            data = ev.data
            kind = data.get("type")
            if kind == "content_block_delta":
                if self._open_type == "text":
                    delta = data.get("delta") or {}
                    if text := delta.get("text"):
                        self._text.append(text)
            elif kind == "content_block_start":
                block = data.get("content_block") or {}
                self._open = data.get("index", self._blocks)
                self._blocks = max(self._blocks, (self._open or 0) + 1)
                self._open_type = str(block.get("type") or "")
                if self._open_type in ("tool_use", "server_tool_use", "mcp_tool_use"):
                    self._tool_seen = True
                elif self._open_type == "text" and (text := block.get("text")):
                    self._text.append(text)
            elif kind == "content_block_stop":
                self._open, self._open_type = None, ""
            elif kind == "message_delta" and (data.get("delta") or {}).get("stop_reason"):
                self._finished = True

    def cut(self) -> Cut:
        refusal = None
        if self._finished:
            refusal = "finished"
        elif self._open is not None and self._open_type != "text":
            refusal = "tool_call" if self._tool_seen and self._open_type.endswith("tool_use") else "thinking"
        elif self._tool_seen:
            refusal = "after_tool_call"  # a prefill cannot end in a tool call that has no result
        return Cut("".join(self._text), refusal)

    def begin(self, carried_input: int, carried_output: int, strip: str) -> None:
        self._splicing = True
        self._carried = (carried_input, carried_output)
        self._cont_input = None
        self._ws = _Whitespace(strip)
        self._merge = self._open if self._open_type == "text" else None
        self._base = self._blocks

    def splice(self, events: list[SSEEvent]) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for ev in events:
            self._rewrite(ev, out)
        self.see(out)
        return out

    def _index(self, index: int) -> int:
        merge = self._merge
        if merge is None:
            return self._base + index
        return merge if index == 0 else self._base + index - 1

    def _rewrite(self, ev: SSEEvent, out: list[SSEEvent]) -> None:
        data = ev.data
        kind = data.get("type")
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                text = self._ws.take(delta.get("text") or "")
                if not text:
                    return
                delta = {**delta, "text": text}
            out.append(SSEEvent({**data, "index": self._index(data.get("index", 0)), "delta": delta}, ev.event))
        elif kind == "content_block_start":
            self._start(ev, data, out)
        elif kind == "content_block_stop":
            out.append(SSEEvent({**data, "index": self._index(data.get("index", 0))}, ev.event))
        elif kind == "message_start":
            usage = (data.get("message") or {}).get("usage") or {}
            self._cont_input = usage.get("input_tokens")
            self._base = self._blocks  # renumber after every block the client has
        elif kind == "message_delta":
            out.append(SSEEvent({**data, "usage": self._usage(data.get("usage") or {})}, ev.event))
        else:
            out.append(ev)

    def _start(self, ev: SSEEvent, data: Json, out: list[SSEEvent]) -> None:
        index = data.get("index", 0)
        block = data.get("content_block") or {}
        if index == 0 and self._merge is not None:
            if block.get("type") == "text":
                text = self._ws.take(block.get("text") or "")
                if text:  # the open block goes on: its opening text becomes a delta
                    out.append(SSEEvent({"type": "content_block_delta", "index": self._merge,
                                         "delta": {"type": "text_delta", "text": text}}, "content_block_delta"))
                return
            # The continuation opens with another kind of block: close the client's text block first.
            out.append(SSEEvent({"type": "content_block_stop", "index": self._merge}, "content_block_stop"))
            self._open, self._open_type = None, ""
            self._merge = None
            index_out = self._base
        else:
            index_out = self._index(index)
        if block.get("type") == "text" and block.get("text"):
            block = {**block, "text": self._ws.take(block["text"])}
        out.append(SSEEvent({**data, "index": index_out, "content_block": block}, ev.event))

    def _usage(self, usage: Json) -> Json:
        carried_in, carried_out = self._carried
        own_input = usage.get("input_tokens")
        if own_input is None:
            own_input = self._cont_input or 0
        return {**usage, "input_tokens": own_input + carried_in,
                "output_tokens": (usage.get("output_tokens") or 0) + carried_out}
