"""The floor yardstick does the real work it stands for: the official OpenAI client reads its answers, streamed and
not, with the simulator's text and usage, and the simulator was asked for a stream with usage every time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp import web

from gateway.simulator import Latency, SimProfile, SimulatedProvider
from loadtest.floor import build_app


@pytest.fixture
async def floor() -> AsyncIterator[tuple[str, SimulatedProvider]]:
    profile = SimProfile(ttft=Latency.fixed(0), per_token=Latency.fixed(0), output_tokens=5)
    async with SimulatedProvider(profile, name="upstream", seed=1) as sim:
        runner = web.AppRunner(build_app(sim.base_url))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", sim
        finally:
            await runner.cleanup()


async def test_the_openai_client_reads_the_floors_answers(floor: tuple[str, SimulatedProvider]) -> None:
    url, sim = floor
    async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0) as client:
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]
        whole = await client.chat.completions.create(model="m", messages=messages, max_tokens=5)
        assert whole.object == "chat.completion" and whole.choices[0].finish_reason == "stop"
        text = whole.choices[0].message.content
        assert text and whole.usage is not None and whole.usage.completion_tokens == 5
        assert sim.stats.last_body is not None and sim.stats.last_body["stream"] is True
        assert sim.stats.last_body["stream_options"] == {"include_usage": True}

        chunks = [chunk async for chunk in await client.chat.completions.create(
            model="m", messages=messages, max_tokens=5, stream=True)]
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == text  # the same seed, the same answer: assembled and forwarded alike
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert sim.stats.received == sim.stats.completed == 2
