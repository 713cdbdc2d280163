"""Hedging end to end, proven from the simulated providers' own counters. Bounds hold on a loaded machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from gateway.engine.attempt import Launch, Outcome
from gateway.policies.breaker import BreakerState
from gateway.simulator import SimulatedProvider, parse_profile
from tests.e2e.harness import Running, config_for, running
from tests.polling import NotYet, eventually, eventually_equal

MESSAGES: Any = [{"role": "user", "content": "Hello there"}]


class Pair:
    def __init__(self, r: Running, a: SimulatedProvider, b: SimulatedProvider) -> None:
        self.r, self.a, self.b = r, a, b


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    """make(primary_profile, backup_profile, hedge={...}, fail_max=3, reset_s=30) -> Pair"""
    stack: list[Any] = []

    async def factory(primary: dict[str, Any], backup: dict[str, Any], hedge: Any,
                      fail_max: int = 3, reset_s: float = 30.0) -> Pair:
        a = SimulatedProvider(parse_profile(primary), name="a", seed=1)
        b = SimulatedProvider(parse_profile(backup), name="b", seed=2)
        await a.start()
        await b.start()
        stack.extend([a, b])
        config = config_for({"a": ("openai", a), "b": ("anthropic", b)}, {"chat": {
            "targets": [{"provider": "a", "model": "gpt-x", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
                        {"provider": "b", "model": "claude-x", "price": {"input_per_mtok": 3, "output_per_mtok": 4}}],
            "hedge": hedge}})
        config = config.__class__(server=config.server, models=config.models, telemetry=config.telemetry,
                                  providers={n: p.__class__(**{**{f: getattr(p, f) for f in p.__slots__},
                                                               "breaker": p.breaker.__class__(fail_max, reset_s)})
                                             for n, p in config.providers.items()})
        ctx = running(config)
        r = await ctx.__aenter__()
        stack.append(ctx)
        return Pair(r, a, b)

    yield factory
    for item in reversed(stack):
        if isinstance(item, SimulatedProvider):
            await item.stop()
        else:
            await item.__aexit__(None, None, None)


async def ask(p: Pair, stream: bool = False) -> str:
    async with p.r.openai() as client:
        if stream:
            chunks = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        completion = await client.chat.completions.create(model="chat", messages=MESSAGES)
        return completion.choices[0].message.content or ""


@pytest.mark.parametrize("stream", [False, True])
async def test_slow_primary_is_hedged_and_its_connection_closed(make: Any, stream: bool) -> None:
    p = await make({"ttft": 5000}, {"ttft": 10}, {"delay_ms": 100, "budget_percent": 100})
    text = await ask(p, stream)
    assert len(text.split()) == 16
    await p.a.wait_idle()
    assert p.a.stats.received == 1 and p.a.stats.disconnected == 1 and p.a.stats.completed == 0
    assert p.b.stats.completed == 1
    record = p.r.collect.records[-1]
    assert [(x.provider, x.launch, x.outcome) for x in record.attempts] == [
        ("a", Launch.PRIMARY, Outcome.CANCELLED), ("b", Launch.HEDGE, Outcome.WON)]
    assert record.attempts[1].started - record.attempts[0].started >= 0.1  # never before the delay
    assert record.latency_s is not None and record.latency_s < 4.0  # far less than the primary's 5 s


async def test_fast_primary_is_never_hedged(make: Any) -> None:
    p = await make({"ttft": 0}, {"ttft": 0}, {"delay_ms": 3000, "budget_percent": 100})
    for stream in (False, True, False, True):
        await ask(p, stream)
    assert p.a.stats.received == 4 and p.b.stats.received == 0


async def test_delay_is_respected(make: Any) -> None:
    p = await make({"ttft": 1500}, {"ttft": 0}, {"delay_ms": 400, "budget_percent": 100})
    await ask(p)
    first, second = p.r.collect.records[-1].attempts
    assert second.launch is Launch.HEDGE and second.started - first.started >= 0.4


async def test_error_launches_the_fallback_at_once(make: Any) -> None:
    p = await make({"error_rate": 1.0, "error_status": 500}, {"ttft": 0}, {"delay_ms": 10_000})
    await ask(p)
    record = p.r.collect.records[-1]
    first, second = record.attempts
    assert first.outcome is Outcome.FAILED and second.launch is Launch.FALLBACK
    assert second.started - first.started < 5.0  # not after the 10 s delay
    assert record.latency_s is not None and record.latency_s < 5.0


async def test_client_error_is_not_hedged(make: Any) -> None:
    p = await make({"error_rate": 1.0, "error_status": 400}, {"ttft": 0}, {"delay_ms": 0, "budget_percent": 100,
                                                                          "max_attempts": 1})
    with pytest.raises(openai.BadRequestError):
        await ask(p)
    assert p.b.stats.received == 0


async def test_stream_first_token_wins_and_slow_stream_is_disconnected(make: Any) -> None:
    # The primary opens its stream at once but its first token is late: the backup's first token wins.
    p = await make({"ttft": 4000}, {"ttft": 200}, {"delay_ms": 50, "budget_percent": 100})
    async with p.r.anthropic() as client, client.messages.stream(model="chat", max_tokens=50,
                                                                 messages=MESSAGES) as s:
        text = "".join([t async for t in s.text_stream])
    assert len(text.split()) == 16
    await p.a.wait_idle()
    assert p.a.stats.disconnected == 1 and p.b.stats.completed == 1


async def test_mid_stream_failure_ends_the_stream_with_an_error_event(make: Any) -> None:
    p = await make({"midstream_error_rate": 1.0}, {"ttft": 0}, {"delay_ms": 5000})
    async with p.r.openai() as client:
        chunks = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in chunks:
                pass
    assert p.b.stats.received == 0  # committed at the first token: no silent switch
    assert p.r.gateway.runtime.breakers["a"].consecutive_failures == 1


async def test_many_concurrent_hedged_requests_leave_nothing_in_flight(make: Any) -> None:
    p = await make({"ttft": 5, "stall_prob": 0.5, "stall_ms": 3000}, {"ttft": 50},
                   {"delay_ms": 100, "budget_percent": 100})
    async with p.r.openai() as client, p.r.anthropic() as aclient:
        async def one(i: int) -> int:
            if i % 4 == 0:
                message = await aclient.messages.create(model="chat", max_tokens=50, messages=MESSAGES)
                return len(message.content[0].text.split())  # type: ignore[union-attr]
            if i % 2:
                chunks = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
                return len("".join([c.choices[0].delta.content or "" async for c in chunks if c.choices]).split())
            completion = await client.chat.completions.create(model="chat", messages=MESSAGES)
            return len((completion.choices[0].message.content or "").split())
        sizes = await asyncio.gather(*(one(i) for i in range(200)))
    assert sizes == [16] * 200
    await p.a.wait_idle(10)
    await p.b.wait_idle(10)
    for sim in (p.a, p.b):
        s = sim.stats
        assert s.in_flight == 0 and s.received == s.completed + s.disconnected + s.errors
    assert p.a.stats.disconnected >= 50  # about half the primaries stalled and were cut
    records = p.r.collect.records
    assert len(records) == 200 and all(r.status == 200 for r in records)
    assert all(a.outcome is not None for r in records for a in r.attempts)
    # No attempt or request task outlives its request (idle keep-alive connection handlers may remain).
    await eventually(lambda: not (left := _request_tasks()) or NotYet(left), timeout_s=5, interval_s=0.05,
                     what="every attempt and request task to end")


def _request_tasks() -> list[str]:
    names = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]  # type: ignore[union-attr]
    return [n for n in names if n in ("_Race.drive", "_chat", "RequestHandler._handle_request")]


async def test_breaker_opens_stops_traffic_probes_and_closes(make: Any) -> None:
    p = await make({"error_rate": 1.0, "error_status": 503}, {"ttft": 0}, {"delay_ms": 5000},
                   fail_max=3, reset_s=0.5)
    breaker = p.r.gateway.runtime.breakers["a"]
    for _ in range(3):
        await ask(p)
    assert breaker.state is BreakerState.OPEN and p.a.stats.received == 3
    for _ in range(3):
        await ask(p)  # answered by b at once: a is not even tried
    assert p.a.stats.received == 3 and p.b.stats.received == 6
    assert p.r.collect.records[-1].attempts[0].skip_reason == "breaker_open"
    p.a.profile = parse_profile({"ttft": 0})  # a recovers
    # reset_s (0.5 s) after the opening, reading the state half-opens it (as the next request would).
    await eventually_equal(lambda: breaker.state, BreakerState.HALF_OPEN, timeout_s=5,
                           what="the breaker's reset timeout")
    await ask(p)  # the probe
    assert p.a.stats.received == 4 and breaker.state is BreakerState.CLOSED
    await ask(p)
    assert p.a.stats.received == 5 and p.b.stats.received == 6


async def test_cancelled_losers_never_open_a_breaker(make: Any) -> None:
    p = await make({"ttft": 3000}, {"ttft": 0}, {"delay_ms": 50, "budget_percent": 100}, fail_max=1)
    for stream in (False, True) * 3:
        await ask(p, stream)
    await p.a.wait_idle()
    assert p.a.stats.disconnected == 6
    assert p.r.gateway.runtime.breakers["a"].state is BreakerState.CLOSED


async def test_every_attempt_failing_gives_one_clear_error(make: Any) -> None:
    p = await make({"error_rate": 1.0, "error_status": 500}, {"error_rate": 1.0, "error_status": 529},
                   {"delay_ms": 5000})
    async with p.r.anthropic() as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            await client.messages.create(model="chat", max_tokens=10, messages=MESSAGES)
    assert info.value.status_code == 502
    assert "a/gpt-x" in info.value.message and "b/claude-x" in info.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_cancels_every_attempt(make: Any, stream: bool) -> None:
    p = await make({"ttft": 10_000}, {"ttft": 10_000}, {"delay_ms": 50, "budget_percent": 100})
    task = asyncio.create_task(ask(p, stream))
    await eventually_equal(lambda: (p.a.stats.in_flight, p.b.stats.in_flight), (1, 1), timeout_s=5,
                           what="both attempts to reach their providers")
    task.cancel()  # the SDK closes its connection to the gateway
    with pytest.raises(asyncio.CancelledError):
        await task
    await p.a.wait_idle()
    await p.b.wait_idle()
    assert p.a.stats.disconnected == 1 and p.b.stats.disconnected == 1
    [record] = await eventually(lambda: p.r.collect.records, timeout_s=5, what="the request record")
    assert record.status == 499 and all(a.outcome is Outcome.CANCELLED for a in record.attempts)


async def test_client_header_shortens_the_deadline_and_a_bad_one_is_rejected(make: Any) -> None:
    p = await make({"ttft": 10_000}, {"ttft": 10_000}, {"delay_ms": 100, "budget_percent": 100})
    async with p.r.openai() as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="chat", messages=MESSAGES,
                                                 extra_headers={"x-gateway-timeout-s": "0.5"})
        assert info.value.status_code == 504 and "deadline" in info.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="chat", messages=MESSAGES,
                                                 extra_headers={"x-gateway-timeout-s": "soon"})
        assert "x-gateway-timeout-s" in bad.value.message
    record = p.r.collect.records[-1]
    assert record.latency_s is not None and record.latency_s < 5.0  # far less than the providers' 10 s
    await p.a.wait_idle()
    await p.b.wait_idle()
    assert p.a.stats.disconnected == 1 and p.b.stats.disconnected == 1  # both attempts cut at the deadline
