"""The endpoints besides chat, driven by the official SDKs: token counts, embeddings, and one model's details."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from anthropic.types import MessageParam

from gateway.simulator import Latency, Outage, SimProfile, SimulatedProvider
from tests.polling import eventually_equal

CONVERSATION: list[MessageParam] = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
    {"role": "user", "content": [{"type": "text", "text": "And of Italy?", "cache_control": {"type": "ephemeral"}}]},
]
SYSTEM = "Answer in one word."
# 19 + 30 + 6 + 13 characters = 68 -> 17 tokens, as the simulator counts (characters // 4).
CONVERSATION_TOKENS = 17


# ---- count_tokens ------------------------------------------------------------------------------------------

async def test_count_tokens_matches_the_usage_a_message_reports(sim: SimulatedProvider,
                                                                claude: anthropic.AsyncAnthropic) -> None:
    counted = await claude.messages.count_tokens(model="claude-sim", system=SYSTEM, messages=CONVERSATION,
                                                 tools=[{"name": "t", "input_schema": {"type": "object"}}])
    assert counted.input_tokens == CONVERSATION_TOKENS
    message = await claude.messages.create(model="claude-sim", max_tokens=10, system=SYSTEM, messages=CONVERSATION)
    assert message.usage.input_tokens == counted.input_tokens
    assert sim.stats.received_by_route == {"count_tokens": 1, "messages": 1}
    assert sim.stats.recent[0]["path"] == "/v1/messages/count_tokens"
    assert (sim.stats.completed, sim.stats.tokens_sent) == (2, 5)  # a count sends no output tokens


async def test_count_tokens_errors_are_in_anthropic_shape(sim: SimulatedProvider,
                                                          claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.count_tokens(model="m", messages=[])
    assert caught.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                            "message": "messages: must be a non-empty list"}}
    sim.profile = SimProfile(error_rate=1.0, error_status=529)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        await claude.messages.count_tokens(model="m", messages=CONVERSATION)
    assert overloaded.value.status_code == 529
    assert sim.stats.errors_by_status == {400: 1, 529: 1}


# ---- embeddings --------------------------------------------------------------------------------------------

async def test_embeddings_float_vectors_are_unit_length_and_deterministic(sim: SimulatedProvider,
                                                                          oai: openai.AsyncOpenAI) -> None:
    first = await oai.embeddings.create(model="text-embedding-3-small", input="hello world",
                                        encoding_format="float")
    again = await oai.embeddings.create(model="text-embedding-3-small", input="hello world",
                                        encoding_format="float")
    other = await oai.embeddings.create(model="text-embedding-3-small", input="hello there",
                                        encoding_format="float")
    vector = first.data[0].embedding
    assert len(vector) == 1536 and first.model == "text-embedding-3-small"
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)
    assert again.data[0].embedding == vector and other.data[0].embedding != vector
    assert first.usage.prompt_tokens == first.usage.total_tokens == 2  # 11 characters // 4
    assert sim.stats.received_by_route == {"embeddings": 3} and sim.stats.completed == 3


async def test_embeddings_default_base64_decodes_to_the_same_floats(sim: SimulatedProvider,
                                                                    oai: openai.AsyncOpenAI) -> None:
    floats = await oai.embeddings.create(model="e", input="same text", encoding_format="float")
    decoded = await oai.embeddings.create(model="e", input="same text")  # the SDK asks for base64 and decodes
    assert sim.stats.last_body["encoding_format"] == "base64"
    assert decoded.data[0].embedding == floats.data[0].embedding
    async with aiohttp.ClientSession() as http, http.post(
            sim.base_url + "/v1/embeddings", json={"model": "e", "input": "same text", "encoding_format": "base64"},
            headers={"Authorization": "Bearer k"}) as resp:
        raw = (await resp.json())["data"][0]["embedding"]
    assert isinstance(raw, str)
    packed = base64.b64decode(raw)
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == floats.data[0].embedding  # little-endian f32


async def test_embeddings_dimensions_shorten_the_same_vector(oai: openai.AsyncOpenAI) -> None:
    full = (await oai.embeddings.create(model="e", input="shorten me", encoding_format="float")).data[0].embedding
    short = (await oai.embeddings.create(model="e", input="shorten me", dimensions=256)).data[0].embedding
    assert len(short) == 256
    # Shortened embeddings are the full one's first values, renormalised, as the real API documents.
    head_norm = math.sqrt(math.fsum(v * v for v in full[:256]))
    assert all(math.isclose(s, f / head_norm, rel_tol=1e-4, abs_tol=1e-6) for s, f in zip(short, full, strict=False))


async def test_embeddings_of_a_list_and_of_token_arrays(oai: openai.AsyncOpenAI) -> None:
    batch = await oai.embeddings.create(model="e", input=["alpha", "beta gamma delta"], encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1]
    assert batch.data[0].embedding != batch.data[1].embedding
    single = await oai.embeddings.create(model="e", input="alpha", encoding_format="float")
    assert single.data[0].embedding == batch.data[0].embedding  # each input's vector is its own
    assert batch.usage.prompt_tokens == 1 + 4  # per input: characters // 4, at least 1
    tokens = await oai.embeddings.create(model="e", input=[[1, 2, 3], [4]], dimensions=8)
    assert [len(d.embedding) for d in tokens.data] == [8, 8] and tokens.usage.prompt_tokens == 4


@pytest.mark.parametrize(("extra", "param"), [
    ({"input": ""}, "input"), ({"input": []}, "input"), ({"input": [1, "x"]}, "input"),
    ({"input": "x", "dimensions": 0}, "dimensions"), ({"input": "x", "dimensions": 4096}, "dimensions"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
])
async def test_bad_embeddings_requests_are_400_in_openai_shape(sim: SimulatedProvider, extra: dict[str, Any],
                                                               param: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(sim.base_url + "/v1/embeddings",
                                                          json={"model": "e", **extra}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


async def test_embeddings_share_the_chat_fault_profile(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(error_rate=1.0, error_status=429, retry_after_s=2)
    with pytest.raises(openai.RateLimitError) as limited:
        await oai.embeddings.create(model="e", input="x")
    assert limited.value.response.headers["retry-after"] == "2"
    sim.profile = SimProfile(midstream_error_rate=1.0, error_status=503)
    with pytest.raises(openai.InternalServerError):
        await oai.embeddings.create(model="e", input="x")
    sim.profile = SimProfile(outages=(Outage(0, 3600),))
    with pytest.raises(openai.InternalServerError):
        await oai.embeddings.create(model="e", input="x")
    sim.profile = SimProfile(require_key="sk-right")
    with pytest.raises(openai.AuthenticationError):
        await oai.embeddings.create(model="e", input="x")
    assert sim.stats.errors_by_status == {429: 1, 503: 2, 401: 1}


async def test_embeddings_wait_for_ttft_and_stalls(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(ttft=Latency.fixed(150), stall_prob=1.0, stall_ms=150)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await oai.embeddings.create(model="e", input="x")
    assert loop.time() - started >= 0.3  # a lower bound only: it holds however loaded the machine is


async def test_a_hedged_embeddings_race_cancels_the_slow_one(oai: openai.AsyncOpenAI) -> None:
    # What a gateway hedge does: ask a slow and a fast provider, keep the first answer, cut the other.
    async with SimulatedProvider(SimProfile(ttft=Latency.fixed(30_000)), name="slow") as slow, \
            openai.AsyncOpenAI(base_url=slow.base_url + "/v1", api_key="k", max_retries=0) as slow_client:
        slow_task = asyncio.create_task(slow_client.embeddings.create(model="e", input="race"))
        await eventually_equal(lambda: slow.stats.in_flight, 1, timeout_s=10, what="the request to reach the handler")
        fast = await oai.embeddings.create(model="e", input="race", encoding_format="float")
        assert not slow_task.done()
        slow_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow_task
        await slow.wait_idle()
        assert (slow.stats.received, slow.stats.disconnected, slow.stats.completed) == (1, 1, 0)
    assert len(fast.data[0].embedding) == 1536


# ---- models.retrieve ---------------------------------------------------------------------------------------

async def test_models_retrieve_in_both_shapes(sim: SimulatedProvider, oai: openai.AsyncOpenAI,
                                              claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SimProfile(models=("gpt-sim", "org/claude-sim"))
    model = await oai.models.retrieve("gpt-sim")
    assert (model.id, model.object, model.owned_by, model.created) == ("gpt-sim", "model", "simulator", 0)
    info = await claude.models.retrieve("org/claude-sim")  # an id with a slash is one path parameter
    assert (info.id, info.type, info.display_name) == ("org/claude-sim", "model", "org/claude-sim")
    assert info.created_at.year == 2025
    assert sim.stats.received == 0  # not counted, like the list


async def test_unknown_model_is_404_in_each_api_shape(sim: SimulatedProvider, oai: openai.AsyncOpenAI,
                                                      claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.models.retrieve("gpt-nope")
    assert missing.value.code == "model_not_found"
    assert isinstance(missing.value.body, dict) and missing.value.body["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as gone:
        await claude.models.retrieve("claude-nope")
    assert gone.value.body == {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-nope"}}


async def test_models_retrieve_checks_the_key(sim: SimulatedProvider, claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SimProfile(require_key="sk-right")
    with pytest.raises(anthropic.AuthenticationError):
        await claude.models.retrieve("sim-model")
