"""What an attempt is expected to be billed, before it is sent: the hedge's cost, and a cut attempt's input.

A backup on a provider that has not seen the prompt pays its whole cacheable prefix again: as a cache write
when the request asks for caching (Anthropic's `cache_control`: 1.25x the input price), or as input; one that
has seen it recently (see `prompt_cache`) pays cache reads. The same expectation prices an attempt cut before
its provider reported usage (a stalled loser): its input and cache writes are billed all the same.
"""

from __future__ import annotations

from gateway.pricing.prefix import PromptPrefix
from gateway.pricing.prompt_cache import DEFAULT_TTL_S, LONG_TTL_S, PromptCacheTracker
from gateway.pricing.usage import Usage


def _explicit(upstream_format: str) -> bool:
    # Anthropic's Messages format caches only at `cache_control` breakpoints; OpenAI's formats cache by themselves.
    return upstream_format == "anthropic"


def cache_end(prefix: PromptPrefix | None, upstream_format: str) -> int:
    """How many of the prefix's blocks a provider speaking `upstream_format` caches (0: none)."""
    if prefix is None:
        return 0
    if _explicit(upstream_format):
        return prefix.breakpoints[-1] + 1 if prefix.breakpoints else 0
    return len(prefix.hashes)


def expected_usage(prefix: PromptPrefix | None, tracker: PromptCacheTracker | None, upstream_format: str,
                   input_tokens: int, output_tokens: int) -> Usage:
    """The usage an attempt is expected to report: `input_tokens` (the prompt estimate) split into what the
    provider's cache likely holds (reads), the rest of the cacheable prefix (writes) and uncached input."""
    end = cache_end(prefix, upstream_format)
    if prefix is None or end == 0:
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    cacheable = min(prefix.tokens[end - 1], input_tokens)
    read = min(tracker.cached_tokens(prefix, end), cacheable) if tracker is not None else 0
    write = cacheable - read
    long = write if _explicit(upstream_format) and prefix.long_ttl else 0
    return Usage(input_tokens=input_tokens, cache_read_tokens=read, cache_write_tokens=write,
                 cache_write_long_tokens=long, output_tokens=output_tokens)


def learn(tracker: PromptCacheTracker, prefix: PromptPrefix | None, upstream_format: str, *,
          cache_read_tokens: int, cache_write_tokens: int) -> None:
    """A provider reported usage for this prompt: what it has cached now (an explicit format that reported
    no cache activity cached nothing, e.g. a prompt below the model's minimum)."""
    end = cache_end(prefix, upstream_format)
    if prefix is None or end == 0:
        return
    if _explicit(upstream_format):
        if cache_read_tokens + cache_write_tokens == 0:
            return
        tracker.remember(prefix, prefix.breakpoints, LONG_TTL_S if prefix.long_ttl else DEFAULT_TTL_S)
    else:
        tracker.remember(prefix, (end - 1,), DEFAULT_TTL_S)
