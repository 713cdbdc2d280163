"""The simulator's prompt cache and reasoning: usage reported the way the real APIs bill it.

Anthropic (`POST /v1/messages`): a prompt is cached only at its `cache_control` breakpoints (blocks in the
order tools, system, messages; a top-level `cache_control` marks the last block). A request reads the longest
prefix it finds cached, looking at each breakpoint and up to 20 blocks before it, as the API does, and
writes the rest up to its last breakpoint: `cache_read_input_tokens`, `cache_creation_input_tokens` (split
in `cache_creation` by TTL: `ttl: "1h"` on the breakpoint, else 5 minutes), and `input_tokens` the rest. A
prefix shorter than `MIN_CACHEABLE_TOKENS` is not cached.

OpenAI (`POST /v1/chat/completions`): every prompt of `MIN_CACHEABLE_TOKENS` or more is cached by itself; a
later prompt with the same leading messages reads them, in 128-token steps:
`prompt_tokens_details.cached_tokens`, the rest reported as `cache_write_tokens`; `prompt_tokens` is them all.

Tokens are the simulator's usual count (characters of text / 4) up to each block. Entries live for their TTL
from the last request that read or wrote them (reads refresh, as the APIs do); a request is billed and
cached when it arrives. Reasoning: a request that asks for it (Anthropic `thinking` enabled or adaptive,
OpenAI `reasoning_effort` other than "none") spends the profile's `reasoning_tokens` (Anthropic: at most
`thinking.budget_tokens`), reported in `output_tokens_details.thinking_tokens` /
`completion_tokens_details.reasoning_tokens` and included in the output count; the thinking is not streamed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import orjson

from gateway.simulator.chat import _text_chars

MIN_CACHEABLE_TOKENS = 1024
SHORT_TTL_S = 300.0
LONG_TTL_S = 3600.0
LOOKBACK_BLOCKS = 20  # Anthropic looks this many blocks back from a breakpoint for an earlier cache entry
OPENAI_STEP = 128  # OpenAI caches in steps of this many tokens
MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class Billing:
    """What one request is billed besides its output: its prompt's cache reads and writes, and reasoning."""

    cache_read: int = 0
    cache_write_5m: int = 0  # for OpenAI: all writes
    cache_write_1h: int = 0
    reasoning: int = 0

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h


NO_BILLING = Billing()


@dataclass(frozen=True, slots=True)
class _Block:
    key: int  # chained hash of the prompt up to and including this block
    tokens: int  # prompt tokens up to and including this block
    ttl_s: float | None  # a breakpoint's TTL; None: not a breakpoint


class PromptCache:
    """One simulated provider's prompt cache. `now` is the caller's clock (the event loop's time)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[int, float] = OrderedDict()  # prefix hash -> expires at
        self._max = max_entries

    def reset(self) -> None:
        self._entries.clear()

    def bill_anthropic(self, request: Mapping[str, object], now: float) -> Billing:
        blocks = list(_chain(_anthropic_blocks(request)))
        breakpoints = [i for i, b in enumerate(blocks) if b.ttl_s is not None]
        top = request.get("cache_control")
        if isinstance(top, dict) and blocks and (not breakpoints or breakpoints[-1] != len(blocks) - 1):
            blocks[-1] = _Block(blocks[-1].key, blocks[-1].tokens, _ttl(top))
            breakpoints.append(len(blocks) - 1)
        if not breakpoints or blocks[breakpoints[-1]].tokens < MIN_CACHEABLE_TOKENS:
            return NO_BILLING
        hit = self._longest_hit(blocks, breakpoints, now)
        read = blocks[hit].tokens if hit is not None else 0
        write_5m = write_1h = 0
        previous = read
        for i in breakpoints:
            block = blocks[i]
            if hit is not None and i <= hit:
                continue
            segment = max(0, block.tokens - previous)
            previous = max(previous, block.tokens)
            if block.ttl_s == LONG_TTL_S:
                write_1h += segment
            else:
                write_5m += segment
        for i in breakpoints:  # written or refreshed: every breakpoint now holds its prefix
            self._store(blocks[i].key, now + (blocks[i].ttl_s or SHORT_TTL_S))
        if hit is not None:
            self._store(blocks[hit].key, now + SHORT_TTL_S)
        return Billing(cache_read=read, cache_write_5m=write_5m, cache_write_1h=write_1h)

    def bill_openai(self, request: Mapping[str, object], now: float) -> Billing:
        blocks = list(_chain(_openai_blocks(request)))
        if not blocks or blocks[-1].tokens < MIN_CACHEABLE_TOKENS:
            return NO_BILLING
        read = 0
        for block in reversed(blocks):
            if self._alive(block.key, now):
                read = block.tokens // OPENAI_STEP * OPENAI_STEP
                break
        if read < MIN_CACHEABLE_TOKENS:
            read = 0
        for block in blocks:  # every prefix of this prompt is cached now
            self._store(block.key, now + SHORT_TTL_S)
        return Billing(cache_read=read, cache_write_5m=blocks[-1].tokens - read)

    def _longest_hit(self, blocks: list[_Block], breakpoints: list[int], now: float) -> int | None:
        for bp in reversed(breakpoints):
            for i in range(bp, max(-1, bp - LOOKBACK_BLOCKS - 1), -1):
                if self._alive(blocks[i].key, now):
                    return i
        return None

    def _alive(self, key: int, now: float) -> bool:
        expires = self._entries.get(key)
        if expires is None:
            return False
        if expires <= now:
            del self._entries[key]
            return False
        return True

    def _store(self, key: int, expires: float) -> None:
        entries = self._entries
        entries[key] = max(expires, entries.get(key, 0.0))
        entries.move_to_end(key)
        while len(entries) > self._max:
            entries.popitem(last=False)


def reasoning_tokens(request: Mapping[str, object], anthropic: bool, budget: int) -> int:
    """The reasoning a request asks for, at most the profile's `budget` (0: the profile reasons never)."""
    if budget <= 0:
        return 0
    if anthropic:
        thinking = request.get("thinking")
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
            return 0
        limit = thinking.get("budget_tokens")
        return min(budget, limit) if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else budget
    effort = request.get("reasoning_effort")
    return budget if isinstance(effort, str) and effort != "none" else 0


def _ttl(marker: object) -> float:
    return LONG_TTL_S if isinstance(marker, dict) and marker.get("ttl") == "1h" else SHORT_TTL_S


def _chain(blocks: Iterator[tuple[object, int, object]]) -> Iterator[_Block]:
    key = 0
    chars = 0
    for content, text_chars, marker in blocks:
        # The marker is no part of the cached prompt: a later turn moves it and still reads this block.
        key = hash((key, orjson.dumps(_unmarked(content) if marker is not None else content)))
        chars += text_chars
        yield _Block(key, chars // 4, _ttl(marker) if isinstance(marker, dict) else None)


def _anthropic_blocks(request: Mapping[str, object]) -> Iterator[tuple[object, int, object]]:
    """(content, text characters counted as prompt tokens, cache_control) per block: tools, system, messages."""
    for tool in _list(request.get("tools")):
        yield tool, 0, _marker(tool)
    system = request.get("system")
    if isinstance(system, str):
        yield system, len(system), None
    for block in _list(system):
        yield block, _text_chars(block), _marker(block)
    for message in _list(request.get("messages")):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                yield (message.get("role"), block) if j == 0 else block, _text_chars(block), _marker(block)
        else:
            yield (message.get("role"), content), _text_chars(content), None


def _openai_blocks(request: Mapping[str, object]) -> Iterator[tuple[object, int, object]]:
    for tool in _list(request.get("tools")):
        yield tool, 0, None
    for message in _list(request.get("messages")):
        yield message, _text_chars(message), None


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _unmarked(content: object) -> object:
    if isinstance(content, tuple):
        return tuple(_unmarked(item) for item in content)
    if isinstance(content, dict):
        return {key: value for key, value in content.items() if key != "cache_control"}
    return content


def _marker(block: object) -> object:
    return block.get("cache_control") if isinstance(block, dict) else None
