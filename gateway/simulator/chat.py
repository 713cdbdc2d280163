"""What both wire formats share: the parsed request, the generated answer, and the dialect interface."""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson

from gateway.simulator.answers import ToolCall

if TYPE_CHECKING:
    from gateway.simulator.billing import Billing


class Finish(enum.Enum):
    """Why an answer ended, before each format names it (stop/end_turn, length/max_tokens, tool_calls/tool_use)."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALL = "tool_call"


class BadRequest(Exception):
    """The request is malformed: answered with 400 in the request's own error shape."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a chat request, in either format, that decide the simulated answer."""

    model: str
    stream: bool
    max_tokens: int | None
    input_tokens: int  # deterministic estimate: characters of all text // 4, at least 1
    include_usage: bool = False  # OpenAI `stream_options.include_usage`
    tool: ToolCall | None = None  # the call this request is answered with (see `answers.choose_tool`)
    json_pieces: tuple[str, ...] | None = None  # a structured answer's tokens, else `tok0 tok1 ...` text
    billing: Billing | None = None  # prompt-cache reads/writes and reasoning (gateway.simulator.billing)

    def text(self, output_tokens: int) -> str:
        """The whole text answer of `output_tokens` tokens."""
        if self.json_pieces is not None:
            return "".join(self.json_pieces[:output_tokens])
        return answer_text(output_tokens)

    def token(self, index: int) -> bytes:
        """Token `index` of the text answer as a JSON string."""
        if self.json_pieces is not None:
            return orjson.dumps(self.json_pieces[index])
        return token_json(index)


class StreamEncoder(Protocol):
    """Encodes one request's answer. Streaming methods return ready-to-write SSE bytes."""

    def response_body(self, output_tokens: int, finish: Finish) -> bytes: ...
    def stream_open(self) -> bytes: ...
    def stream_text_open(self) -> bytes: ...
    def stream_token(self, index: int) -> bytes: ...
    def stream_tool_open(self) -> bytes: ...
    def stream_tool_piece(self, piece: str) -> bytes: ...
    def stream_close(self, output_tokens: int, finish: Finish) -> bytes: ...
    def stream_error(self, status: int) -> bytes: ...


class Dialect(Protocol):
    """One wire format's request parsing, credentials, errors and encoders."""

    request_id_header: str

    def parse_request(self, body: object) -> ChatRequest: ...
    def encoder(self, request: ChatRequest, seq: int) -> StreamEncoder: ...
    def error_body(self, status: int, message: str, *, code: str | None = None,
                   param: str | None = None) -> bytes: ...
    def credential(self, headers: Mapping[str, str]) -> str | None: ...
    def models_body(self, models: tuple[str, ...]) -> bytes: ...
    def model_body(self, model: str) -> bytes: ...
    def unknown_model_body(self, model: str) -> bytes: ...


@functools.lru_cache(maxsize=8192)
def token_json(index: int) -> bytes:
    """Token `index` of the deterministic answer as a JSON string: `"tok0"`, `" tok1"`, ... (cached: hot path)."""
    return orjson.dumps(token_text(index))


def token_text(index: int) -> str:
    return f"tok{index}" if index == 0 else f" tok{index}"


@functools.lru_cache(maxsize=256)
def answer_text(output_tokens: int) -> str:
    """The whole answer of `output_tokens` tokens: `tok0 tok1 ...`."""
    return "".join(token_text(i) for i in range(output_tokens))


def estimate_input_tokens(*parts: object) -> int:
    """Characters of all text in messages (and system prompt) // 4, at least 1: stable across formats."""
    return max(1, sum(_text_chars(part) for part in parts) // 4)


def _text_chars(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    if isinstance(value, dict):
        # Message content and content-part text; tool_result blocks nest content again.
        return _text_chars(value.get("content")) + _text_chars(value.get("text"))
    return 0


def optional_positive_int(body: Mapping[str, object], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"{name}: must be an integer >= 1", param=name)
    return value


def require_model_and_messages(body: object) -> tuple[Mapping[str, object], str, list[object]]:
    """The checks both formats make first: a JSON object with a model and a non-empty messages list."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty list", param="messages")
    return body, model, messages
