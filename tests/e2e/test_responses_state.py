"""The conversation store behind the Responses door: shared by replicas through Redis, bounded in memory, and
what the response cache does on this door (only `store: false` answers come from it)."""

from __future__ import annotations

import asyncio
import dataclasses

import openai
import pytest

from gateway.config.model import ResponsesConfig
from gateway.simulator import SimulatedProvider
from gateway.simulator.chat import answer_text
from gateway.state.conversations import LocalConversations
from tests.e2e.harness import running
from tests.e2e.responses_harness import received_texts, responses_config
from tests.redis_server import running_redis

ANSWER = answer_text(16)


async def test_replicas_share_conversations_through_redis() -> None:
    """Turn 1 through replica A, turn 2 through replica B; a delete through B is seen by A at once."""
    async with running_redis() as redis, SimulatedProvider(name="an", seed=1) as an:
        config = responses_config({"an": ("anthropic", an)}, {"chat": {"targets": [
            {"provider": "an", "model": "claude-x"}]}}, native=(), state={"backend": "redis", "url": redis.url,
                                                                          "key_prefix": "gwtest:"})
        async with running(config) as a, running(config) as b:
            for replica in (a, b):  # the link connects in the background
                for _ in range(200):
                    if replica.gateway.state_backend.health().get("redis") == "connected":
                        break
                    await asyncio.sleep(0.02)
            async with a.openai() as client_a, b.openai() as client_b:
                first = await client_a.responses.create(model="chat", input="My name is Ada")
                second = await client_b.responses.create(model="chat", input="What is my name?",
                                                         previous_response_id=first.id)
                assert received_texts(an) == ["My name is Ada", ANSWER, "What is my name?"]
                assert (await client_a.responses.retrieve(second.id)).previous_response_id == first.id
                await client_b.responses.delete(first.id)
                with pytest.raises(openai.NotFoundError):
                    await client_a.responses.retrieve(first.id)
                assert (await client_a.responses.retrieve(second.id)).id == second.id


async def test_the_memory_store_is_bounded_in_entries_bytes_and_time() -> None:
    now = [0.0]
    store = LocalConversations(ResponsesConfig(ttl_s=10, max_entries=2, max_bytes=100), clock=lambda: now[0])
    assert await store.put("k", "r1", b"x" * 10) and await store.put("k", "r2", b"x" * 10)
    assert await store.put("k", "r3", b"x" * 10) and len(store) == 2  # the oldest went
    assert await store.get("k", "r1") is None and await store.get("k", "r3") == b"x" * 10
    assert await store.get("other", "r3") is None  # another owner finds nothing under the same id
    assert not await store.put("k", "big", b"x" * 101)  # larger than the whole store: not kept at all
    assert await store.put("k", "r4", b"x" * 95) and await store.get("k", "r3") is None  # room made by bytes
    now[0] = 11.0
    assert await store.get("k", "r4") is None  # expired
    assert not await store.delete("k", "r4")


async def test_only_unstored_deterministic_answers_are_cached() -> None:
    async with SimulatedProvider(name="nat", seed=1) as nat:
        config = responses_config({"nat": ("openai", nat)}, {"chat": {
            "targets": [{"provider": "nat", "model": "gpt-n"}], "cache": {"ttl_s": 60}}}, native=("nat",))
        async with running(config) as r, r.openai() as client:
            ask = {"model": "chat", "input": "hi", "temperature": 0, "store": False}
            one = await client.responses.with_raw_response.create(**ask)
            two = await client.responses.with_raw_response.create(**ask)
            async with client.responses.stream(**ask) as stream:
                streamed = await stream.get_final_response()
            stored = await client.responses.with_raw_response.create(**{**ask, "store": True})
        assert [x.headers.get("x-gateway-cache") for x in (one, two, stored)] == ["miss", "hit", None]
        assert one.parse().output_text == two.parse().output_text == streamed.output_text == ANSWER
        assert len({one.parse().id, two.parse().id, streamed.id}) == 3  # every answer is a response of its own
        assert nat.stats.received == 2  # the first, and the stored one (a stored turn must really happen)
        assert dataclasses.asdict(r.collect.records[2])["cache"] == "hit"
