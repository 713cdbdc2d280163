"""Regressions of faults found by attacking the gateway: local overload is not a provider fault, coalesced
waiters refund their token reservations, a stream the deadline cuts is a 504 with its error event."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import orjson

from gateway.simulator import SimulatedProvider, parse_profile
from tests.e2e.harness import GATEWAY_KEY, config_for, running

HEADERS = {"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"}
MESSAGES: Any = [{"role": "user", "content": "hi"}]


async def test_a_full_connection_pool_never_opens_the_breaker_of_a_healthy_provider() -> None:
    # Two connections, both held by long streams: three more requests wait for the pool, locally, and give up.
    long_stream = {"ttft": 50, "per_token": 100, "output_tokens": 40}
    async with SimulatedProvider(parse_profile(long_stream), name="a") as a:
        config = config_for({"a": ("openai", a)}, {"chat": {"targets": [{"provider": "a", "model": "m"}],
                                                            "hedge": "off"}})
        provider = dataclasses.replace(config.providers["a"], max_connections=2, pool_timeout_s=0.3, timeout_s=2)
        config = dataclasses.replace(config, providers={"a": provider})
        async with running(config) as gw, aiohttp.ClientSession() as http:
            stream = orjson.dumps({"model": "chat", "stream": True, "messages": MESSAGES})
            holders = [await http.post(f"{gw.url}/v1/chat/completions", data=stream, headers=HEADERS)
                       for _ in range(2)]
            try:
                for resp in holders:
                    assert resp.status == 200
                    await resp.content.readline()  # streaming: both connections are in use
                plain = orjson.dumps({"model": "chat", "messages": MESSAGES})
                for _ in range(3):
                    async with http.post(f"{gw.url}/v1/chat/completions", data=plain, headers=HEADERS) as resp:
                        body = await resp.json()
                        assert resp.status == 503, body
                        assert "connections busy" in body["error"]["message"]
                assert a.stats.received == 2  # the waiting requests never reached the provider
                breaker = gw.gateway.runtime.breakers["a"]
                assert str(breaker.state) == "closed" and breaker.consecutive_failures == 0
            finally:
                for resp in holders:
                    resp.close()


async def test_coalesced_waiters_refund_their_token_reservations() -> None:
    async with SimulatedProvider(parse_profile({"ttft": 300, "output_tokens": 5}), name="a") as a:
        config = config_for({"a": ("openai", a)}, {
            "cached": {"targets": [{"provider": "a", "model": "m"}], "cache": {"ttl_s": 60, "max_entries": 10}}},
            server={"limits": {"tokens_per_minute": 12_000}})
        async with running(config) as gw, aiohttp.ClientSession() as http:
            body = orjson.dumps({"model": "cached", "temperature": 0, "max_tokens": 1000, "messages": MESSAGES})

            async def post() -> int:
                async with http.post(f"{gw.url}/v1/chat/completions", data=body, headers=HEADERS) as resp:
                    await resp.read()
                    return resp.status

            assert await asyncio.gather(*(post() for _ in range(10))) == [200] * 10
            assert a.stats.received == 1
            assert sorted(r.cache or "" for r in gw.collect.records) == ["coalesced"] * 9 + ["miss"]
            limiter = gw.gateway.state_backend.local_limiter
            key_name = gw.collect.records[-1].key_name
            assert key_name is not None
            tokens = limiter.tokens_left(key_name)
            # The one request that went upstream used ~10 tokens; every waiter's 1,000-token reservation is back.
            assert tokens is not None and tokens > 11_900, tokens


async def test_a_stream_cut_by_the_deadline_while_the_client_is_connected_is_a_504_with_its_error_event() -> None:
    slow_stream = {"ttft": 50, "per_token": 200, "output_tokens": 50}
    async with SimulatedProvider(parse_profile(slow_stream), name="a") as a:
        config = config_for({"a": ("openai", a)}, {"chat": {"targets": [{"provider": "a", "model": "m"}],
                                                            "hedge": "off"}})
        async with running(config) as gw, aiohttp.ClientSession() as http:
            body = orjson.dumps({"model": "chat", "stream": True, "messages": MESSAGES})
            async with http.post(f"{gw.url}/v1/chat/completions", data=body,
                                 headers={**HEADERS, "x-gateway-timeout-s": "1"}) as resp:
                assert resp.status == 200
                text = (await resp.read()).decode()
            assert '"timeout_error"' in text and text.rstrip().endswith("data: [DONE]")
            (record,) = gw.collect.records
            assert record.status == 504 and record.error_type == "timeout"
