"""Shared fixtures: one running simulated provider per test, and both official SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import openai
import pytest

from gateway.simulator import SimProfile, SimulatedProvider


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedProvider]:
    # Tests that need another behaviour assign `sim.profile` (it is read once per request).
    async with SimulatedProvider(SimProfile(output_tokens=5), name="fixture-sim", seed=1) as provider:
        yield provider


@pytest.fixture
async def oai(sim: SimulatedProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
async def claude(sim: SimulatedProvider) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as client:
        yield client
