"""The minimal pass-through proxy forwards bodies and streams answers back unchanged."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.simulator import Latency, SimProfile, SimulatedProvider
from loadtest.client import send_request
from loadtest.driver import client_session
from loadtest.passthrough import build_app
from loadtest.schedule import PlannedRequest


async def test_proxy_forwards_json_and_streams() -> None:
    profile = SimProfile(ttft=Latency.fixed(10), per_token=Latency.fixed(5), output_tokens=4)
    async with SimulatedProvider(profile, name="upstream", seed=1) as sim:
        runner = web.AppRunner(build_app(sim.base_url))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        proxy = f"http://127.0.0.1:{runner.addresses[0][1]}"
        loop = asyncio.get_running_loop()
        try:
            async with client_session() as session:
                async with session.get(proxy + "/healthz") as health:
                    assert health.status == 200
                for door in ("openai", "anthropic"):
                    for stream in (False, True):
                        req = PlannedRequest(index=0, at_s=0, door=door, stream=stream,
                                             prompt_tokens=12, max_tokens=50)
                        result = await send_request(session, proxy, "m", req, loop.time(), 5.0)
                        assert result.ok, (door, stream, result.error)
                        assert (result.input_tokens, result.output_tokens) == (12, 4)
                        assert (result.ttft_s is not None) == stream
        finally:
            await runner.cleanup()
    assert sim.stats.received == 4
    assert sim.stats.completed == 4
