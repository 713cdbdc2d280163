"""The simulator bills prompt caching and reasoning like the real APIs, in each format's fields."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from gateway.simulator import SimulatedProvider, parse_profile
from gateway.simulator.billing import PromptCache

PREFIX = "tok " * 4_000  # 4,000 tokens


def claude(*extra: str, ttl: str | None = None) -> dict[str, Any]:
    marker: dict[str, Any] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    blocks = [{"type": "text", "text": text, "cache_control": marker} for text in extra]
    return {"system": [{"type": "text", "text": PREFIX, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": blocks or "hi"}]}


def test_anthropic_writes_then_reads_within_the_ttl_then_writes_again() -> None:
    cache = PromptCache()
    first = cache.bill_anthropic(claude(), now=0.0)
    assert (first.cache_read, first.cache_write_5m) == (0, 4_000)
    second = cache.bill_anthropic(claude(), now=200.0)
    assert (second.cache_read, second.cache_write) == (4_000, 0)
    # Read at 200 s: the entry lives until 500 s; after that it is written again.
    assert cache.bill_anthropic(claude(), now=450.0).cache_read == 4_000
    assert cache.bill_anthropic(claude(), now=800.0).cache_write == 4_000


def test_anthropic_writes_only_the_new_part_and_splits_it_by_ttl() -> None:
    cache = PromptCache()
    cache.bill_anthropic(claude(), now=0.0)
    billing = cache.bill_anthropic(claude("new " * 500, ttl="1h"), now=1.0)
    assert (billing.cache_read, billing.cache_write_5m, billing.cache_write_1h) == (4_000, 0, 500)


def test_a_moved_breakpoint_still_reads_the_earlier_turns() -> None:
    # Claude Code marks the last block of each turn: the next turn's earlier blocks lose their marker.
    cache = PromptCache()
    turn1 = claude("q1 " * 100)
    cache.bill_anthropic(turn1, now=0.0)
    turn2 = claude("q1 " * 100)
    del turn2["messages"][0]["content"][0]["cache_control"]
    turn2["messages"] += [{"role": "assistant", "content": "a"},
                          {"role": "user", "content": [{"type": "text", "text": "q2 " * 100,
                                                        "cache_control": {"type": "ephemeral"}}]}]
    billing = cache.bill_anthropic(turn2, now=1.0)
    assert billing.cache_read == 4_075 and billing.cache_write == 75


def test_without_cache_control_or_below_the_minimum_anthropic_caches_nothing() -> None:
    cache = PromptCache()
    plain = {"system": PREFIX, "messages": [{"role": "user", "content": "hi"}]}
    assert cache.bill_anthropic(plain, now=0.0).cache_write == 0
    short = {"system": [{"type": "text", "text": "tok " * 100, "cache_control": {"type": "ephemeral"}}],
             "messages": [{"role": "user", "content": "hi"}]}
    assert cache.bill_anthropic(short, now=0.0).cache_write == 0


def test_openai_caches_every_long_prompt_and_reads_in_128_token_steps() -> None:
    cache = PromptCache()
    messages: list[Any] = [{"role": "system", "content": PREFIX + "abcd" * 50}, {"role": "user", "content": "q1"}]
    first = cache.bill_openai({"messages": messages}, now=0.0)
    assert (first.cache_read, first.cache_write) == (0, 4_050)
    later = cache.bill_openai({"messages": [*messages, {"role": "assistant", "content": "a"},
                                            {"role": "user", "content": "q2"}]}, now=1.0)
    assert later.cache_read == 4_050 // 128 * 128 and later.cache_read + later.cache_write == 4_051


async def test_each_provider_has_its_own_cache_and_reports_it_in_its_format() -> None:
    profile = parse_profile({"reasoning_tokens": 40, "output_tokens": 5})
    async with SimulatedProvider(profile, name="a") as a, SimulatedProvider(profile, name="b") as b:
        async with anthropic.AsyncAnthropic(base_url=a.base_url, api_key="k", max_retries=0) as client:
            request: Any = {"model": "m", "max_tokens": 100, "thinking": {"type": "enabled", "budget_tokens": 30},
                            **claude()}
            cold = (await client.messages.create(**request)).usage
            warm = (await client.messages.create(**request)).usage
        async with anthropic.AsyncAnthropic(base_url=b.base_url, api_key="k", max_retries=0) as client:
            other = (await client.messages.create(**request)).usage
        async with openai.AsyncOpenAI(base_url=a.base_url + "/v1", api_key="k", max_retries=0) as oa:
            messages: Any = [{"role": "system", "content": PREFIX}, {"role": "user", "content": "hi"}]
            reply = await oa.chat.completions.create(model="m", messages=messages, reasoning_effort="low")
    assert (cold.cache_creation_input_tokens, cold.cache_read_input_tokens, cold.input_tokens) == (4_000, 0, 0)
    assert cold.cache_creation is not None and cold.cache_creation.ephemeral_5m_input_tokens == 4_000
    assert (warm.cache_read_input_tokens, warm.cache_creation_input_tokens) == (4_000, 0)
    assert other.cache_creation_input_tokens == 4_000  # provider b had never seen it
    # Thinking is billed as output, capped by the request's budget.
    assert cold.output_tokens == 5 + 30 and cold.output_tokens_details is not None
    assert cold.output_tokens_details.thinking_tokens == 30
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == 4_000 and usage.prompt_tokens_details.cache_write_tokens == 4_000
    assert usage.completion_tokens == 45 and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 40
