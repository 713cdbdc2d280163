"""The Anthropic format's `Aggregator`: a complete `message` body rebuilt from a provider's events.

The gateway always streams from providers, so a client that asked for one JSON answer gets it from here. A
provider's events may hold anything (see `gateway.formats.guard`): a value the answer copies is kept only if it
has the answer's type (its id and model); anything that stops the answer from being assembled marks it broken,
and `result()` raises `ProviderError` for it rather than letting a TypeError escape the request.
"""

from __future__ import annotations

import orjson

from gateway.errors import FailureKind, ProviderError
from gateway.formats import token_count
from gateway.formats.guard import malformed_answer, whole_answer
from gateway.wire import Json, SSEEvent

__all__ = ["Aggregator"]


class Aggregator:
    """Builds the complete non-streaming `message` body from a provider's events.

    Blocks of any type are kept as they start; text/thinking/partial JSON deltas are collected as lists and
    joined once in `result()`. `result()` raises ProviderError(FAULT) if a tool's input JSON is malformed.
    """

    def __init__(self) -> None:
        self._message: Json = {}
        self._usage: Json = {}
        self._blocks: dict[int, Json] = {}
        self._pieces: dict[int, list[str]] = {}  # block index -> text, thinking or partial_json pieces
        self._broken: str | None = None  # why the answer cannot be assembled

    def feed(self, ev: SSEEvent) -> None:
        if self._broken is not None:
            return
        try:
            self._feed(ev)
        except Exception as exc:  # a field of a type nothing here can read: the answer cannot be assembled
            self._broken = f"{type(exc).__name__} in an event"

    def feed_text(self, ev: SSEEvent, text: str) -> None:
        """A `text_delta` (see `gateway.formats.anthropic.plain_text`): its text goes to its block."""
        if self._broken is not None:
            return
        try:
            self._piece(ev.data.get("index", 0), text)
        except Exception as exc:  # as in `feed`
            self._broken = f"{type(exc).__name__} in an event"

    def _feed(self, ev: SSEEvent) -> None:
        data = ev.data
        kind = data.get("type") or ev.event
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            index = data.get("index", 0)
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                self._piece(index, delta.get("text"))
            elif delta_type == "input_json_delta":
                self._piece(index, delta.get("partial_json"))
            elif delta_type == "thinking_delta":
                self._piece(index, delta.get("thinking"))
            elif delta_type == "signature_delta":
                self._block(index)["signature"] = delta.get("signature", "")
            elif delta_type == "citations_delta":
                block = self._block(index)
                citations = block.get("citations")
                block["citations"] = [*(citations or ()), delta.get("citation")]
        elif kind == "content_block_start":
            self._blocks[data.get("index", len(self._blocks))] = dict(data.get("content_block") or {})
        elif kind == "message_start":
            self._message = dict(data.get("message") or {})
            usage = self._message.get("usage")
            self._usage = dict(usage) if type(usage) is dict else {}
            for index, block in enumerate(self._message.get("content") or ()):
                self._blocks[index] = dict(block)
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            for key, value in delta.items():
                self._message[key] = value
            # message_delta usage is cumulative; a null field means "unchanged", not zero.
            usage = data.get("usage")
            for key, value in (usage.items() if type(usage) is dict else ()):
                if value is not None:
                    self._usage[key] = value

    def _piece(self, index: int, piece: str | None) -> None:
        if piece:
            pieces = self._pieces.get(index)
            if pieces is None:
                self._block(index)  # a delta for a block that never started (broken stream): keep the text
                pieces = self._pieces[index] = []
            pieces.append(piece)

    def _block(self, index: int) -> Json:
        block = self._blocks.get(index)
        if block is None:
            block = self._blocks[index] = {"type": "text", "text": ""}
        return block

    def result(self) -> Json:
        """The answer; ProviderError if the events could not be assembled into one."""
        if self._broken is not None:
            raise malformed_answer(self._broken)
        try:
            return whole_answer(self._result())
        except ProviderError:
            raise
        except Exception as exc:  # e.g. block indexes of several types, a thinking text that is not one
            raise malformed_answer(type(exc).__name__) from None

    def _result(self) -> Json:
        message = self._message
        usage = self._usage
        message_id, model = message.get("id"), message.get("model")
        return {
            **message,
            "id": message_id if type(message_id) is str else "",
            "type": "message",
            "role": "assistant",
            "model": model if type(model) is str else "",
            "content": [self._finish_block(index) for index in sorted(self._blocks)],
            "stop_reason": message.get("stop_reason"),
            "stop_sequence": message.get("stop_sequence"),
            # Counts as `inspect` reads them: one that is not a count is 0 here, as a missing one is.
            "usage": {
                **usage,
                "input_tokens": token_count(usage.get("input_tokens")) or 0,
                "output_tokens": token_count(usage.get("output_tokens")) or 0,
                "cache_read_input_tokens": token_count(usage.get("cache_read_input_tokens")) or 0,
                "cache_creation_input_tokens": token_count(usage.get("cache_creation_input_tokens")) or 0,
            },
        }

    def _finish_block(self, index: int) -> Json:
        block = dict(self._blocks[index])
        pieces = self._pieces.get(index)
        block_type = block.get("type")
        if block_type in ("tool_use", "server_tool_use", "mcp_tool_use"):
            if pieces:
                block["input"] = _parse_input("".join(pieces), index)
            elif not isinstance(block.get("input"), dict):
                block["input"] = {}
        elif block_type == "thinking":
            block["thinking"] = (block.get("thinking") or "") + "".join(pieces or ())
            block.setdefault("signature", "")
        elif block_type == "text":
            block["text"] = (block.get("text") or "") + "".join(pieces or ())
        return block


def _parse_input(raw: str, index: int) -> Json:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        # The provider streamed a tool call whose input is not a JSON object: a broken stream, not ours.
        raise ProviderError(FailureKind.FAULT, f"content[{index}]: tool input is not a JSON object",
                            error_type="bad_stream")
    return parsed
