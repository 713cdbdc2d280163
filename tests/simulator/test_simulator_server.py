"""Simulator behaviour beyond the wire formats: timing, outages, hangs, cancellation, seeds, control plane."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from gateway.simulator import Latency, Outage, SimProfile, SimulatedProvider, key_fingerprint
from tests.polling import eventually_equal

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
SLOW_STREAM = SimProfile(per_token=Latency.fixed(200), output_tokens=100)  # 20 s if nobody cancels


async def _post_openai(http: aiohttp.ClientSession, sim: SimulatedProvider, **extra: Any) -> int:
    async with http.post(sim.base_url + "/v1/chat/completions",
                         json={"model": "m", "messages": MESSAGES, **extra}) as resp:
        await resp.read()
        return resp.status


async def test_lifecycle_and_base_url() -> None:
    sim = SimulatedProvider()
    with pytest.raises(RuntimeError, match="not started"):
        _ = sim.base_url
    await sim.start()
    try:
        assert sim.base_url.startswith("http://127.0.0.1:") and sim.port > 0
        with pytest.raises(RuntimeError, match="already started"):
            await sim.start()
    finally:
        await sim.stop()
    await sim.stop()  # idempotent


async def test_ttft_and_stall_delay_the_first_token(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    # Lower bounds only: they hold however loaded the machine is.
    sim.profile = SimProfile(ttft=Latency.fixed(150), stall_prob=1.0, stall_ms=250, output_tokens=2)
    started = time.monotonic()
    stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    first_token_s = time.monotonic() - started
    await stream.close()
    assert first_token_s >= 0.4


async def test_non_streaming_waits_for_ttft_plus_token_gaps(sim: SimulatedProvider,
                                                            oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(ttft=Latency.fixed(100), per_token=Latency.fixed(50), output_tokens=5)
    started = time.monotonic()
    await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started >= 0.1 + 4 * 0.05


async def test_outage_window_fails_fast_then_recovers(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    window_s = 1.5
    sim.profile = SimProfile(outages=(Outage(0, window_s),), outage_status=503)
    sim.reset()  # the outage clock starts now
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 503
    await asyncio.sleep(max(0.0, window_s - sim.elapsed_s()) + 0.01)
    reply = await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content
    assert sim.stats.errors_by_status == {503: 1} and sim.stats.completed == 1


async def test_reset_restarts_the_outage_clock(sim: SimulatedProvider) -> None:
    await asyncio.sleep(0.3)
    assert sim.elapsed_s() >= 0.3
    sim.reset()
    assert sim.elapsed_s() < 0.3


async def test_cancelled_openai_stream_counts_as_disconnected(sim: SimulatedProvider,
                                                             oai: openai.AsyncOpenAI) -> None:
    sim.profile = SLOW_STREAM
    got_first = asyncio.Event()

    async def consume() -> None:
        stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sim.wait_idle()
    assert sim.stats.disconnected == 1
    assert sim.stats.completed == 0
    assert sim.stats.in_flight == 0
    assert 1 <= sim.stats.tokens_sent < 100


async def test_cancelled_anthropic_stream_counts_as_disconnected(sim: SimulatedProvider,
                                                                claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SLOW_STREAM
    got_first = asyncio.Event()

    async def consume() -> None:
        async with claude.messages.stream(model="m", max_tokens=1000,
                                          messages=[{"role": "user", "content": "hi"}]) as stream:
            async for _ in stream.text_stream:
                got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sim.wait_idle()
    assert (sim.stats.disconnected, sim.stats.completed, sim.stats.errors) == (1, 0, 0)


async def test_cancelled_whole_body_request_counts_as_disconnected(sim: SimulatedProvider,
                                                                  oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(ttft=Latency.fixed(30_000))
    task = asyncio.create_task(oai.chat.completions.create(model="m", messages=MESSAGES))
    await eventually_equal(lambda: sim.stats.received, 1, timeout_s=10, what="the request to reach the handler")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sim.wait_idle()
    assert (sim.stats.disconnected, sim.stats.completed) == (1, 0)


async def test_hang_never_answers_until_the_client_leaves(sim: SimulatedProvider) -> None:
    sim.profile = SimProfile(hang=True)
    async with openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0,
                                  timeout=0.5) as impatient:
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(model="m", messages=MESSAGES)
    await sim.wait_idle()
    assert (sim.stats.received, sim.stats.disconnected, sim.stats.completed, sim.stats.errors) == (1, 1, 0, 0)


async def test_wait_idle_times_out_while_a_request_hangs(sim: SimulatedProvider) -> None:
    sim.profile = SimProfile(hang=True)
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(_post_openai(http, sim))
        await eventually_equal(lambda: sim.stats.in_flight, 1, timeout_s=10, what="the request to reach the handler")
        with pytest.raises(TimeoutError, match="still in flight"):
            await sim.wait_idle(timeout=0.05)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    await sim.wait_idle()
    assert sim.stats.disconnected == 1


async def _outcomes(seed: int, n: int = 24) -> list[int]:
    async with SimulatedProvider(SimProfile(error_rate=0.5, output_tokens=1), seed=seed) as sim, \
            aiohttp.ClientSession() as http:
        return [await _post_openai(http, sim) for _ in range(n)]


async def test_same_seed_same_failures_and_reset_repeats_them() -> None:
    first, again, other = await _outcomes(7), await _outcomes(7), await _outcomes(8)
    assert first == again
    assert set(first) == {200, 500}
    assert other != first
    async with SimulatedProvider(SimProfile(error_rate=0.5, output_tokens=1), seed=7) as sim, \
            aiohttp.ClientSession() as http:
        await _post_openai(http, sim)
        sim.reset()  # re-seeds: the run starts over
        assert [await _post_openai(http, sim) for _ in range(24)] == first


async def test_every_request_ends_exactly_one_way(sim: SimulatedProvider) -> None:
    sim.profile = SimProfile(error_rate=0.3, midstream_error_rate=0.3, output_tokens=3)
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(_post_openai(http, sim, stream=i % 2 == 0) for i in range(40)))
    await sim.wait_idle()
    s = sim.stats
    assert s.received == 40
    assert s.received == s.completed + s.errors + s.disconnected
    assert s.errors_by_status.get(500, 0) == s.errors
    assert 0 < s.completed < 40 and statuses.count(500) > 0


async def test_control_plane_stats_reset_and_profile(sim: SimulatedProvider) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-ctl"}) as http:
        assert await _post_openai(http, sim) == 200
        async with http.get(sim.base_url + "/_sim/stats") as resp:
            stats = await resp.json()
        assert stats["name"] == "fixture-sim"
        assert (stats["received"], stats["completed"], stats["tokens_sent"]) == (1, 1, 5)
        assert stats["last_headers"]["authorization"] == key_fingerprint("sk-ctl")
        assert stats["last_body"]["messages"] == MESSAGES

        async with http.put(sim.base_url + "/_sim/profile", json={"ttft": {"median_ms": -1, "sigma": 1}}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "ttft.median_ms: must be > 0"
        async with http.put(sim.base_url + "/_sim/profile", data=b"nope") as resp:
            assert resp.status == 400

        async with http.put(sim.base_url + "/_sim/profile",
                            json={"error_rate": 1, "error_status": 503, "require_key": "sk-ctl"}) as resp:
            assert resp.status == 200
            shown = await resp.json()
        assert shown["profile"]["require_key"] == key_fingerprint("sk-ctl")  # never echoed in clear
        assert sim.profile.error_status == 503
        assert await _post_openai(http, sim) == 503
        async with http.get(sim.base_url + "/_sim/profile") as resp:
            assert (await resp.json())["profile"]["error_rate"] == 1

        async with http.post(sim.base_url + "/_sim/reset") as resp:
            after = await resp.json()
        assert (after["received"], after["errors"], after["errors_by_status"], after["last_body"]) == (0, 0, {}, None)
        async with http.get(sim.base_url + "/_sim/stats") as resp:
            assert (await resp.json())["received"] == 0  # control calls are not counted


async def test_reset_keeps_the_in_flight_gauge(sim: SimulatedProvider) -> None:
    sim.profile = SimProfile(hang=True)
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(_post_openai(http, sim))
        await eventually_equal(lambda: sim.stats.in_flight, 1, timeout_s=10, what="the request to reach the handler")
        sim.reset()
        assert sim.stats.in_flight == 1 and sim.stats.received == 0
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    await sim.wait_idle()
    assert sim.stats.in_flight == 0


async def test_stop_ends_hanging_requests_quickly() -> None:
    sim = SimulatedProvider(SimProfile(hang=True))
    await sim.start()
    async with aiohttp.ClientSession() as http:
        request = asyncio.create_task(_post_openai(http, sim))
        await eventually_equal(lambda: sim.stats.in_flight, 1, timeout_s=10, what="the request to reach the handler")
        await asyncio.wait_for(sim.stop(), 10)
        with pytest.raises(aiohttp.ClientError):
            await request
    assert sim.stats.in_flight == 0
