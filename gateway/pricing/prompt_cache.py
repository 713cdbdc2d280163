"""What one provider likely holds in its prompt cache: prefix hashes it has recently cached, with their TTL.

Learned only from what the provider reported: a usage with cache reads or writes (Anthropic), or any usage
for a long enough prompt (OpenAI caches every prompt by itself). A read refreshes the entry, as providers
do. Bounded: at most `max_entries` hashes, the least recently touched forgotten first, expired ones on the way.
"""

from __future__ import annotations

from collections import OrderedDict

from gateway.clock import Clock, monotonic
from gateway.pricing.prefix import PromptPrefix

# The providers' cache lifetimes: Anthropic 5 minutes (1 hour on request), OpenAI's in-memory retention about
# as long (a longer one only makes the tracker's "cold" a cautious overestimate of a hedge's cost).
DEFAULT_TTL_S = 300.0
LONG_TTL_S = 3600.0
MAX_ENTRIES = 10_000


class PromptCacheTracker:
    def __init__(self, *, clock: Clock = monotonic, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[int, tuple[float, int]] = OrderedDict()  # hash -> (expires at, tokens)

    def __len__(self) -> int:
        return len(self._entries)

    def cached_tokens(self, prefix: PromptPrefix, end: int) -> int:
        """Tokens of the longest prefix among the first `end` blocks that this provider has cached (0: cold)."""
        entries = self._entries
        if not entries:
            return 0
        now = self._clock()
        for i in range(min(end, len(prefix.hashes)) - 1, -1, -1):
            entry = entries.get(prefix.hashes[i])
            if entry is not None:
                if entry[0] > now:
                    return prefix.tokens[i]
                del entries[prefix.hashes[i]]
        return 0

    def remember(self, prefix: PromptPrefix, blocks: tuple[int, ...], ttl_s: float) -> None:
        """The provider has cached the prompt up to each of `blocks` (or refreshed it) just now."""
        expires = self._clock() + ttl_s
        entries = self._entries
        for i in blocks:
            key = prefix.hashes[i]
            entries[key] = (expires, prefix.tokens[i])
            entries.move_to_end(key)
        while len(entries) > self._max:
            entries.popitem(last=False)
