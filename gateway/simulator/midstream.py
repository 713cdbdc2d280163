"""Mid-stream faults at a chosen or random point, and the faithful continuation of a prefilled answer.

- `FaultPoint`: after how many tokens a stream fails (`midstream_error_at`) or stalls (`midstream_stall_at`):
  a number, or `[lo, hi]` for a uniform draw. The draws use their own random stream (`FaultDraws`), so adding
  a stall to a profile changes nothing else a seeded run does.
- `continue_prefill`: a request whose final assistant message is a prefix of the answer the simulator would
  give (Anthropic: any final assistant message; OpenAI: with `continue_final_message: true`, or `prefix: true`
  on the message, as vLLM and DeepSeek take them) is answered with the rest of that answer, starting exactly
  where the prefill ends, so a test can check a resumed stream character by character. Like the Anthropic
  API, a prefill ending in whitespace is a 400.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.simulator.chat import BadRequest, ChatRequest, token_text


@dataclass(frozen=True, slots=True)
class FaultPoint:
    """Tokens sent before the fault: `lo` exactly, or uniform in [lo, hi]."""

    lo: int = 1
    hi: int = 1

    def __post_init__(self) -> None:
        if self.lo < 1:
            raise ValueError("must be >= 1 (a mid-stream fault comes after the first token)")
        if self.hi < self.lo:
            raise ValueError("the range's end must be >= its start")

    def draw(self, rng: random.Random, units: int) -> int:
        at = self.lo if self.hi == self.lo else rng.randint(self.lo, self.hi)
        return max(1, min(at, units))  # never past the answer: a fault that is drawn happens

    def to_plain(self) -> int | list[int]:
        return self.lo if self.lo == self.hi else [self.lo, self.hi]


AFTER_FIRST_TOKEN = FaultPoint()


def parse_fault_point(field: str, value: object) -> FaultPoint:
    if isinstance(value, int) and not isinstance(value, bool):
        lo = hi = value
    elif isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        lo, hi = value
    else:
        raise ValueError(f"{field}: must be a token count or a [lo, hi] range of them")
    try:
        return FaultPoint(lo, hi)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


class FaultDraws:
    """Where this request's mid-stream fault and stall fall (None: none), from a random stream of their own."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(seed ^ 0x5EED)

    def reset(self) -> None:
        self._rng.seed(self._seed ^ 0x5EED)

    def stall_after(self, rate: float, at: FaultPoint, units: int) -> int | None:
        if rate <= 0.0 or self._rng.random() >= rate:
            return None
        return at.draw(self._rng, units)

    def error_after(self, at: FaultPoint, units: int) -> int:
        return at.draw(self._rng, units)


def _prefill_text(body: Mapping[str, object], anthropic: bool) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "assistant":
        return None
    if not anthropic and body.get("continue_final_message") is not True and last.get("prefix") is not True:
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text") or "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return None


def continue_prefill(chat: ChatRequest, body: Mapping[str, object], *, anthropic: bool,
                     output_tokens: int) -> ChatRequest:
    """`chat` answering with the rest of its answer after the request's prefill; unchanged without one, for a
    tool call, or when the prefill is not how the answer begins."""
    prefill = _prefill_text(body, anthropic)
    if not prefill or chat.tool is not None:
        return chat
    if anthropic and prefill != prefill.rstrip():
        raise BadRequest("messages: final assistant content cannot end with trailing whitespace",
                         param="messages")
    full = list(chat.json_pieces) if chat.json_pieces is not None else [token_text(i) for i in range(output_tokens)]
    offset = 0
    for k, piece in enumerate(full):
        end = offset + len(piece)
        if end > len(prefill):
            head = piece[len(prefill) - offset:]
            if "".join(full[:k]) + piece[:len(prefill) - offset] != prefill:
                return chat
            rest = ([head] if head else []) + full[k + 1:]
            return dataclasses.replace(chat, json_pieces=tuple(rest))
        offset = end
    return dataclasses.replace(chat, json_pieces=()) if "".join(full) == prefill else chat
