"""Response cache, request coalescing and per-key rate limits, end to end with the official SDKs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from gateway.policies.cache import cache_key
from gateway.simulator import SimulatedProvider, parse_profile
from gateway.wire import WireFormat
from tests.e2e.harness import GATEWAY_KEY, Running, config_for, running
from tests.polling import eventually, eventually_equal

MESSAGES: Any = [{"role": "user", "content": "What is two plus two?"}]


@pytest.fixture
async def gw() -> AsyncIterator[Running]:
    async with SimulatedProvider(parse_profile({"ttft": 300}), name="a", seed=1) as a:
        config = config_for({"a": ("openai", a)}, {
            "cached": {"targets": [{"provider": "a", "model": "m", "price": {"input_per_mtok": 1,
                                                                             "output_per_mtok": 1}}],
                       "cache": {"ttl_s": 60, "max_entries": 100}},
        }, server={"api_keys": [GATEWAY_KEY, {"key": "second-key-5678", "name": "team-b",
                                              "limits": {"requests_per_minute": 2}}]})
        async with running(config) as r:
            r.sim = a  # type: ignore[attr-defined]
            yield r


async def post(gw: Running, body: bytes, key: str = GATEWAY_KEY, **headers: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{gw.url}/v1/chat/completions", data=body,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json", **headers}) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_deterministic_request_is_cached_whatever_its_key_order(gw: Running) -> None:
    sim: SimulatedProvider = gw.sim  # type: ignore[attr-defined]
    first = orjson.dumps({"model": "cached", "temperature": 0, "messages": MESSAGES})
    reordered = b'{ "messages": [{"content": "What is two plus two?", "role": "user"}],\n "temperature": 0,' \
                b' "model": "cached" }'
    status, headers, body = await post(gw, first)
    assert status == 200 and headers["x-gateway-cache"] == "miss"
    status, headers, again = await post(gw, reordered)
    assert status == 200 and headers["x-gateway-cache"] == "hit" and again == body
    assert sim.stats.received == 1
    assert gw.collect.records[-1].cache == "hit" and gw.collect.records[-1].cost_usd == 0
    await post(gw, first, **{"cache-control": "no-cache"})
    assert sim.stats.received == 2  # no-cache went upstream
    status, headers, _ = await post(gw, first, key="second-key-5678")
    assert headers["x-gateway-cache"] == "miss" and sim.stats.received == 3  # another key: another cache entry


async def test_non_deterministic_requests_are_not_cached(gw: Running) -> None:
    sim: SimulatedProvider = gw.sim  # type: ignore[attr-defined]
    body = orjson.dumps({"model": "cached", "temperature": 0.7, "messages": MESSAGES})
    for _ in range(2):
        _, headers, _ = await post(gw, body)
        assert "x-gateway-cache" not in headers
    assert sim.stats.received == 2


async def test_streaming_request_is_replayed_from_the_cache(gw: Running) -> None:
    sim: SimulatedProvider = gw.sim  # type: ignore[attr-defined]
    async with gw.openai() as client:
        completion = await client.chat.completions.create(model="cached", messages=MESSAGES, temperature=0)
        stream = await client.chat.completions.create(model="cached", messages=MESSAGES, temperature=0,
                                                      stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == completion.choices[0].message.content and sim.stats.received == 1
    async with gw.anthropic() as aclient:  # another door: another cache entry, then a streamed hit on it
        # anthropic 2.x has no temperature parameter any more; older clients and raw HTTP still send it
        first = await aclient.messages.create(model="cached", max_tokens=50, messages=MESSAGES,
                                              extra_body={"temperature": 0})
        async with aclient.messages.stream(model="cached", max_tokens=50, messages=MESSAGES,
                                           extra_body={"temperature": 0}) as s:
            final = await s.get_final_message()
    assert [b.text for b in final.content] == [b.text for b in first.content]  # type: ignore[union-attr]
    assert sim.stats.received == 2


async def test_a_streamed_miss_fills_the_cache(gw: Running) -> None:
    sim: SimulatedProvider = gw.sim  # type: ignore[attr-defined]
    async with gw.openai() as client:
        stream = await client.chat.completions.create(model="cached", messages=MESSAGES, temperature=0,
                                                      stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        completion = await client.chat.completions.create(model="cached", messages=MESSAGES, temperature=0)
    assert completion.choices[0].message.content == text and sim.stats.received == 1


async def test_identical_concurrent_requests_share_one_flight(gw: Running) -> None:
    sim: SimulatedProvider = gw.sim  # type: ignore[attr-defined]
    body = orjson.dumps({"model": "cached", "temperature": 0, "messages": MESSAGES})
    results = await asyncio.gather(*(post(gw, body) for _ in range(20)))
    assert sim.stats.received == 1
    assert all(status == 200 for status, _, _ in results)
    assert len({orjson.dumps(b) for _, _, b in results}) == 1
    assert sorted(h["x-gateway-cache"] for _, h, _ in results).count("miss") == 1


async def test_a_caller_leaving_does_not_cancel_the_flight_for_the_others(gw: Running) -> None:
    sim: SimulatedProvider = gw.sim  # type: ignore[attr-defined]
    request = {"model": "cached", "temperature": 0, "messages": MESSAGES}
    body = orjson.dumps(request)
    coalescer = gw.gateway.coalescer
    key = cache_key(WireFormat.OPENAI, "cached", request, GATEWAY_KEY, gw.gateway.config.models["cached"].cache)
    leaver = asyncio.create_task(post(gw, body))
    await eventually(lambda: sim.stats.in_flight, timeout_s=5, what="the flight to reach the provider")
    assert coalescer.waiters(key) == 1
    stayer = asyncio.create_task(post(gw, body))
    await eventually_equal(lambda: coalescer.waiters(key), 2, timeout_s=5, what="the second caller to join the flight")
    leaver.cancel()
    status, _, answer = await stayer
    assert status == 200 and answer["choices"][0]["message"]["content"]
    await sim.wait_idle()
    assert sim.stats.received == 1 and sim.stats.completed == 1 and sim.stats.disconnected == 0


async def test_rate_limit_per_key_answers_429_in_the_doors_shape(gw: Running) -> None:
    async with gw.openai(key="second-key-5678") as client:
        for _ in range(2):
            await client.chat.completions.create(model="cached", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="cached", messages=MESSAGES)
    assert "team-b" in info.value.message and int(info.value.response.headers["retry-after"]) >= 1
    async with gw.anthropic(key="second-key-5678") as aclient:
        with pytest.raises(anthropic.RateLimitError):
            await aclient.messages.create(model="cached", max_tokens=10, messages=MESSAGES)
    async with gw.openai() as other:  # the other key has no limit
        for _ in range(3):
            await other.chat.completions.create(model="cached", messages=MESSAGES)
