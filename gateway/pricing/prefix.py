"""A prompt's cacheable prefix: a chained hash at each block boundary, and where the cache breakpoints are.

Providers cache prompt prefixes: Anthropic at the blocks marked `cache_control` (up to four, in the order tools,
system, messages; a top-level `cache_control` marks the last block), OpenAI every prefix of 1,024 tokens or
more, by itself. A request whose prefix a provider has seen within the cache's TTL is billed cache reads for
it; otherwise the prefix is written (Anthropic: 1.25x the input price, 2x with the 1 h TTL). To tell which, a
request's prefix is hashed block by block (once per request, only for prompts long enough to be cached), and
`prompt_cache.PromptCacheTracker` remembers per provider which hashes it has recently cached.

The hash is taken over the client's body: the same body always becomes the same upstream prompt for a given
provider, so it identifies the provider's prefix as well. Python's `hash` (64 bits, randomised per process) is
enough: the tracker lives in one process, and a collision only misjudges one cost estimate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from gateway.wire import Json

CHARS_PER_TOKEN = 4  # the same estimate as the engine's input estimate (request bytes / 4)
# Neither provider caches a shorter prompt (Anthropic's minimum is 1,024 to 4,096 tokens by model, OpenAI's 1,024):
# below it nothing is hashed, so ordinary short requests pay nothing for this.
MIN_CACHEABLE_TOKENS = 1024


@dataclass(frozen=True, slots=True)
class PromptPrefix:
    hashes: tuple[int, ...]  # the prompt up to and including block i
    tokens: tuple[int, ...]  # estimated prompt tokens up to and including block i
    breakpoints: tuple[int, ...]  # blocks marked `cache_control`, ascending
    long_ttl: bool  # some breakpoint asks for the 1 h TTL

    @property
    def cacheable_tokens(self) -> int:
        return self.tokens[-1] if self.tokens else 0


def prompt_prefix(body: Json, door: str, input_estimate: int) -> PromptPrefix | None:
    """The prefix of a chat request in the door's format; None for prompts too short to be cached."""
    if input_estimate < MIN_CACHEABLE_TOKENS:
        return None
    blocks = _anthropic_blocks(body) if door == "anthropic" else _chat_blocks(body)
    hashes: list[int] = []
    tokens: list[int] = []
    breakpoints: list[int] = []
    long_ttl = False
    chain = 0
    size = 0
    for i, (block, marker) in enumerate(blocks):
        data = orjson.dumps(_without_marker(block) if marker is not None else block)
        chain = hash((chain, data))
        size += len(data)
        hashes.append(chain)
        tokens.append(size // CHARS_PER_TOKEN)
        if marker is not None:
            breakpoints.append(i)
            long_ttl = long_ttl or (type(marker) is dict and marker.get("ttl") == "1h")
    if not hashes:
        return None
    top = body.get("cache_control")  # Anthropic's automatic caching: the breakpoint is the last block
    if type(top) is dict and (not breakpoints or breakpoints[-1] != len(hashes) - 1):
        breakpoints.append(len(hashes) - 1)
        long_ttl = long_ttl or top.get("ttl") == "1h"
    return PromptPrefix(tuple(hashes), tuple(tokens), tuple(breakpoints), long_ttl)


Block = tuple[object, object]  # (what is hashed, its cache_control marker or None)


def _anthropic_blocks(body: Json) -> Iterator[Block]:
    for tool in _items(body.get("tools")):
        yield tool, _marker(tool)
    system = body.get("system")
    if type(system) is str:
        yield system, None
    else:
        for block in _items(system):
            yield block, _marker(block)
    for message in _items(body.get("messages")):
        if type(message) is not dict:
            continue
        content = message.get("content")
        role = message.get("role")
        if type(content) is list:
            for j, block in enumerate(content):
                # The role goes into the message's first block: the same text from another role is another prompt.
                yield (role, block) if j == 0 else block, _marker(block)
        else:
            yield (role, content), None


def _chat_blocks(body: Json) -> Iterator[Block]:
    """OpenAI-style bodies (and any format with a `messages` or `input` list): one block per tool and message;
    no breakpoints (OpenAI caches by itself), but a translated Anthropic provider sees none either."""
    for tool in _items(body.get("tools")):
        yield tool, None
    messages = body.get("messages")
    for message in _items(messages if messages is not None else body.get("input")):
        yield message, None


def _items(value: object) -> list[object]:
    return value if type(value) is list else []


def _without_marker(block: object) -> object:
    """The block as the provider's cache sees it: a breakpoint's marker is no part of the cached prompt (the
    next turn moves it to its last block, and still reads this one)."""
    if type(block) is tuple:
        return tuple(_without_marker(item) for item in block)
    if type(block) is dict:
        return {key: value for key, value in block.items() if key != "cache_control"}
    return block


def _marker(block: object) -> object:
    return block.get("cache_control") if type(block) is dict else None
