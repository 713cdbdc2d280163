"""Hedging on the Responses door, proven from the simulated providers' own counters: the chat doors' rules.

The primary speaks the Responses API natively; the backup is an Anthropic provider, reached by translation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import openai
import pytest

from gateway.engine.attempt import Launch, Outcome
from gateway.simulator import SimulatedProvider, parse_profile
from gateway.simulator.chat import answer_text
from tests.e2e.harness import Running, running
from tests.e2e.responses_harness import responses_config

ANSWER = answer_text(16)


class Pair:
    def __init__(self, r: Running, a: SimulatedProvider, b: SimulatedProvider) -> None:
        self.r, self.a, self.b = r, a, b


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    """make(primary_profile, backup_profile, hedge) -> Pair"""
    async with AsyncExitStack() as stack:
        async def factory(primary: dict[str, Any], backup: dict[str, Any], hedge: Any) -> Pair:
            a = await stack.enter_async_context(SimulatedProvider(parse_profile(primary), name="a", seed=1))
            b = await stack.enter_async_context(SimulatedProvider(parse_profile(backup), name="b", seed=2))
            config = responses_config({"a": ("openai", a), "b": ("anthropic", b)}, {"chat": {
                "targets": [{"provider": "a", "model": "gpt-a", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
                            {"provider": "b", "model": "claude-b",
                             "price": {"input_per_mtok": 3, "output_per_mtok": 4}}],
                "hedge": hedge}}, native=("a",))
            return Pair(await stack.enter_async_context(running(config)), a, b)

        yield factory


async def ask(p: Pair, stream: bool) -> str:
    async with p.r.openai() as client:
        if stream:
            async with client.responses.stream(model="chat", input="Hello there") as s:
                return (await s.get_final_response()).output_text
        return (await client.responses.create(model="chat", input="Hello there")).output_text


@pytest.mark.parametrize("stream", [False, True])
async def test_slow_primary_is_hedged_and_cut(make: Any, stream: bool) -> None:
    p = await make({"ttft": 5000}, {"ttft": 10}, {"delay_ms": 100, "budget_percent": 100})
    assert await ask(p, stream) == ANSWER
    await p.a.wait_idle()
    assert p.a.stats.received == 1 and p.a.stats.disconnected == 1 and p.a.stats.completed == 0
    assert p.b.stats.completed == 1
    record = p.r.collect.records[-1]
    assert [(x.provider, x.launch, x.outcome) for x in record.attempts] == [
        ("a", Launch.PRIMARY, Outcome.CANCELLED), ("b", Launch.HEDGE, Outcome.WON)]
    assert record.attempts[1].started - record.attempts[0].started >= 0.1  # never before the delay
    assert record.latency_s < 4.0
    # The loser's prompt is paid for and counted as waste; the winner's whole answer too, as cost.
    loser, winner = record.attempts
    assert loser.cost_usd > 0 and record.wasted_cost_usd == pytest.approx(loser.cost_usd)
    assert winner.output_tokens == 16 and record.cost_usd == pytest.approx(loser.cost_usd + winner.cost_usd)


async def test_first_content_token_wins_a_stream(make: Any) -> None:
    # Both open their streams at once; the backup's first token comes first and wins.
    p = await make({"ttft": 4000}, {"ttft": 200}, {"delay_ms": 50, "budget_percent": 100})
    async with p.r.openai() as client, client.responses.stream(model="chat", input="Hello there") as s:
        events = [event async for event in s]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    await p.a.wait_idle()
    assert p.a.stats.disconnected == 1 and p.b.stats.completed == 1
    assert p.r.collect.records[-1].ttft_s is not None


async def test_an_error_launches_the_fallback_at_once(make: Any) -> None:
    p = await make({"error_rate": 1.0, "error_status": 500}, {"ttft": 0}, {"delay_ms": 10_000})
    assert await ask(p, False) == ANSWER
    first, second = p.r.collect.records[-1].attempts
    assert first.outcome is Outcome.FAILED and second.launch is Launch.FALLBACK
    assert second.started - first.started < 5.0  # not after the 10 s delay
    assert p.r.gateway.runtime.breakers["a"].consecutive_failures == 1


async def test_a_client_error_is_not_hedged(make: Any) -> None:
    p = await make({"error_rate": 1.0, "error_status": 400}, {"ttft": 0}, {"delay_ms": 0, "budget_percent": 100,
                                                                          "max_attempts": 1})
    with pytest.raises(openai.BadRequestError):
        await ask(p, False)
    assert p.a.stats.received == 1 and p.b.stats.received == 0


async def test_a_failure_after_the_first_token_is_an_error_event_not_a_switch(make: Any) -> None:
    p = await make({"midstream_error_rate": 1.0}, {"ttft": 0}, {"delay_ms": 5000})
    async with p.r.openai() as client:
        stream = await client.responses.create(model="chat", input="Hello there", stream=True)
        events = [event async for event in stream]
    assert events[-1].type == "error" and events[-1].sequence_number == len(events) - 1
    assert "response.completed" not in [e.type for e in events]
    assert p.b.stats.received == 0  # committed at the first token: no silent switch
    assert p.r.collect.records[-1].status == 502
    async with p.r.openai() as client:  # and nothing half-answered was stored
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(events[0].response.id)  # type: ignore[union-attr]
