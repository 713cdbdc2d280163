"""The client and the open-loop driver against in-process simulated providers (no gateway needed)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.simulator import Latency, SimProfile, SimulatedProvider
from loadtest.client import send_request
from loadtest.driver import client_session, drive_open_loop
from loadtest.progress import Progress
from loadtest.schedule import PlannedRequest


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedProvider]:
    profile = SimProfile(ttft=Latency.fixed(30), per_token=Latency.fixed(5), output_tokens=6)
    async with SimulatedProvider(profile, name="client-sim", seed=1) as provider:
        yield provider


@pytest.mark.parametrize("door", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [True, False])
async def test_one_request_is_read_and_timed(sim: SimulatedProvider, door: str, stream: bool) -> None:
    req = PlannedRequest(index=0, at_s=0.0, door=door, stream=stream, prompt_tokens=40, max_tokens=100)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    async with client_session() as session:
        result = await send_request(session, sim.base_url, "m", req, loop.time(), 5.0)
    assert result.ok, result.error
    assert result.status == 200
    assert result.output_tokens == 6
    assert result.input_tokens == 40  # the simulator counts characters // 4, as the prompt was built for
    assert result.latency_s is not None and result.latency_s >= 0.03 + 5 * 0.005
    if stream:
        assert result.ttft_s is not None and 0.03 <= result.ttft_s < result.latency_s
    else:
        assert result.ttft_s is None


async def test_http_errors_and_timeouts_are_results_not_exceptions(sim: SimulatedProvider) -> None:
    req = PlannedRequest(index=0, at_s=0.0, door="openai", stream=True, prompt_tokens=4, max_tokens=10)
    loop = asyncio.get_running_loop()
    async with client_session() as session:
        sim.profile = SimProfile(error_rate=1.0, error_status=503)
        failed = await send_request(session, sim.base_url, "m", req, loop.time(), 5.0)
        sim.profile = SimProfile(midstream_error_rate=1.0, output_tokens=5)
        broken = await send_request(session, sim.base_url, "m", req, loop.time(), 5.0)
        sim.profile = SimProfile(hang=True)
        hung = await send_request(session, sim.base_url, "m", req, loop.time(), 0.2)
    assert (failed.status, failed.error, failed.latency_s) == (503, "http 503", None)
    assert broken.error == "stream error"
    assert (hung.status, hung.error) == (0, "timeout")


async def test_open_loop_sends_on_schedule_however_slow_the_answers(sim: SimulatedProvider) -> None:
    """No coordinated omission: with answers taking 300 ms, 20 requests 10 ms apart still all leave on time."""
    sim.profile = SimProfile(ttft=Latency.fixed(300), output_tokens=2)
    plan = [PlannedRequest(index=i, at_s=i * 0.01, door="openai", stream=i % 2 == 0, prompt_tokens=8, max_tokens=8)
            for i in range(20)]
    progress = Progress("t", len(plan), io.StringIO())
    loop = asyncio.get_running_loop()
    async with client_session() as session:
        results = await drive_open_loop(session, sim.base_url, "m", plan, start_at=loop.time() + 0.05,
                                        request_timeout_s=5.0, hard_timeout_s=10.0, progress=progress)
    assert all(r.ok for r in results)
    assert max(r.send_lag_s for r in results) < 0.1
    assert sim.stats.received == 20
    assert all(r.latency_s is not None and r.latency_s >= 0.3 for r in results)
    assert (progress.sent, progress.done, progress.errors) == (20, 20, 0)


async def test_hard_timeout_ends_the_run_and_counts_what_was_left(sim: SimulatedProvider) -> None:
    sim.profile = SimProfile(hang=True)
    plan = [PlannedRequest(index=i, at_s=i * 0.2, door="openai", stream=True, prompt_tokens=8, max_tokens=8)
            for i in range(5)]  # the last two are due after the hard timeout
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client_session() as session:
        results = await drive_open_loop(session, sim.base_url, "m", plan, start_at=loop.time(),
                                        request_timeout_s=30.0, hard_timeout_s=0.5, progress=Progress("t", 5,
                                                                                                      io.StringIO()))
    assert loop.time() - started < 2.0
    assert [r.error for r in results] == ["hard timeout"] * 3 + ["not sent"] * 2


async def test_prompt_size_reported_late_in_a_translated_anthropic_stream() -> None:
    """A gateway translating an OpenAI upstream sends message_start with 0 input tokens, the count at the end."""
    canned = (b'data: {"type":"message_start","message":{"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
              b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}\n\n'
              b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"b"}}\n\n'
              b'data: {"type":"message_delta","delta":{},"usage":{"output_tokens":2,"input_tokens":77}}\n\n'
              b'data: {"type":"message_stop"}\n\n')

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=canned, content_type="text/event-stream",
                            headers={"x-gateway-provider": "p", "x-gateway-attempts": "2"})

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    req = PlannedRequest(index=0, at_s=0.0, door="anthropic", stream=True, prompt_tokens=5, max_tokens=10)
    try:
        async with client_session() as session:
            result = await send_request(session, f"http://127.0.0.1:{runner.addresses[0][1]}", "m", req,
                                        asyncio.get_running_loop().time(), 5.0)
    finally:
        await runner.cleanup()
    assert result.ok, result.error
    assert (result.input_tokens, result.output_tokens) == (77, 2)
    assert (result.provider, result.attempts) == ("p", 2)
