"""The cacheable prefix of a prompt, what a provider's prompt cache holds of it, and the expected usage."""

from __future__ import annotations

from typing import Any

from gateway.pricing.estimate import expected_usage, learn
from gateway.pricing.prefix import prompt_prefix
from gateway.pricing.prompt_cache import PromptCacheTracker

LONG = "tok " * 5_000  # ~5k tokens


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def claude_turn(*turns: str, ttl: str | None = None) -> dict[str, Any]:
    marker: dict[str, Any] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    messages: list[Any] = []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": text}]})
    messages[-1]["content"][-1]["cache_control"] = marker
    return {"system": [{"type": "text", "text": LONG, "cache_control": marker}], "messages": messages}


def test_short_prompts_are_not_hashed() -> None:
    assert prompt_prefix({"messages": [{"role": "user", "content": "hi"}]}, "openai", 10) is None


def test_breakpoints_and_tokens_follow_the_blocks() -> None:
    prefix = prompt_prefix(claude_turn("a" * 400, "b" * 400, ttl="1h"), "anthropic", 6_000)
    assert prefix is not None
    assert prefix.breakpoints == (0, 2) and prefix.long_ttl
    assert list(prefix.tokens) == sorted(prefix.tokens) and 5_000 <= prefix.tokens[0] < 5_020


def test_a_cold_provider_is_expected_to_write_the_prefix_and_a_warm_one_to_read_it() -> None:
    clock = Clock()
    tracker = PromptCacheTracker(clock=clock)
    turn1 = prompt_prefix(claude_turn("q1"), "anthropic", 5_100)
    assert turn1 is not None
    cold = expected_usage(turn1, tracker, "anthropic", 5_100, 50)
    assert cold.cache_read_tokens == 0 and cold.cache_write_tokens == turn1.tokens[-1] and cold.cache == "cold"
    learn(tracker, turn1, "anthropic", cache_read_tokens=0, cache_write_tokens=5_000)
    # The next turn extends the conversation: the earlier breakpoints are read, only the new blocks written.
    turn2 = prompt_prefix(claude_turn("q1", "answer " * 200, "q2"), "anthropic", 5_400)
    assert turn2 is not None
    warm = expected_usage(turn2, tracker, "anthropic", 5_400, 50)
    assert warm.cache_read_tokens == turn1.tokens[-1] and warm.cache == "warm"
    assert warm.cache_write_tokens == turn2.tokens[-1] - turn1.tokens[-1]
    clock.now = 301.0  # past the 5 minute TTL: cold again
    assert expected_usage(turn2, tracker, "anthropic", 5_400, 50).cache_read_tokens == 0


def test_without_breakpoints_an_anthropic_provider_caches_nothing_and_an_openai_one_everything() -> None:
    body = {"messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "q"}]}
    prefix = prompt_prefix(body, "openai", 5_100)
    assert prefix is not None
    tracker = PromptCacheTracker()
    assert expected_usage(prefix, tracker, "anthropic", 5_100, 0).cache == "none"
    learn(tracker, prefix, "anthropic", cache_read_tokens=0, cache_write_tokens=0)
    assert len(tracker) == 0
    learn(tracker, prefix, "openai", cache_read_tokens=0, cache_write_tokens=0)  # OpenAI caches by itself
    assert expected_usage(prefix, tracker, "openai", 5_100, 0).cache_read_tokens == prefix.tokens[-1]


def test_the_tracker_is_bounded() -> None:
    tracker = PromptCacheTracker(max_entries=3)
    for i in range(10):
        prefix = prompt_prefix({"messages": [{"role": "user", "content": f"{i} " + LONG}]}, "openai", 5_000)
        assert prefix is not None
        learn(tracker, prefix, "openai", cache_read_tokens=0, cache_write_tokens=0)
    assert len(tracker) == 3
