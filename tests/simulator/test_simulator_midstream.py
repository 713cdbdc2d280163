"""Mid-stream faults at a chosen or random point, stalls, and the faithful continuation of a prefill."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest

from gateway.simulator import SimProfile, SimulatedProvider
from gateway.simulator.chat import answer_text
from gateway.simulator.midstream import FaultPoint
from gateway.simulator.profile import parse_profile

USER = [{"role": "user", "content": "Hello"}]


async def _openai_text(oai: openai.AsyncOpenAI, **extra: object) -> tuple[str, BaseException | None]:
    text, error = "", None
    stream = await oai.chat.completions.create(model="m", messages=USER, stream=True, **extra)  # type: ignore
    try:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    except openai.APIError as exc:
        error = exc
    finally:
        await stream.close()
    return text, error


async def _anthropic_text(claude: anthropic.AsyncAnthropic, messages: list[dict[str, str]]
                          ) -> tuple[str, BaseException | None]:
    text, error = "", None
    try:
        async with claude.messages.stream(model="m", max_tokens=100, messages=messages) as stream:  # type: ignore
            async for piece in stream.text_stream:
                text += piece
    except anthropic.APIError as exc:
        error = exc
    return text, error


async def test_openai_stream_fails_after_the_chosen_token(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(output_tokens=10, midstream_error_rate=1.0, midstream_error_at=FaultPoint(4, 4))
    text, error = await _openai_text(oai)
    assert text == answer_text(4) and error is not None


async def test_anthropic_stream_fails_at_a_random_point_in_the_range(sim: SimulatedProvider,
                                                                      claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SimProfile(output_tokens=20, midstream_error_rate=1.0, midstream_error_at=FaultPoint(3, 8))
    seen = set()
    for _ in range(12):
        text, error = await _anthropic_text(claude, USER)
        assert error is not None
        count = len(text.split())
        assert 3 <= count <= 8 and text == answer_text(count)
        seen.add(count)
    assert len(seen) > 1  # random, not fixed


async def test_a_stall_is_silence_mid_answer(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(output_tokens=6, midstream_stall_rate=1.0, midstream_stall_ms=400,
                             midstream_stall_at=FaultPoint(2, 2))
    loop = asyncio.get_running_loop()
    stream = await oai.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
    arrivals: list[tuple[float, str]] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((loop.time(), chunk.choices[0].delta.content))
    assert "".join(t for _, t in arrivals) == answer_text(6)
    assert arrivals[2][0] - arrivals[1][0] >= 0.39  # the gap falls after the second token
    assert arrivals[1][0] - arrivals[0][0] < 0.2


async def test_anthropic_continues_a_prefill_where_it_ends(claude: anthropic.AsyncAnthropic) -> None:
    full = answer_text(5)  # the fixture's profile: 5 tokens
    for cut in (3, 7, 12, len(full) - 1):
        prefill = full[:cut].rstrip()
        text, error = await _anthropic_text(claude, [*USER, {"role": "assistant", "content": prefill}])
        assert error is None and prefill + text == full


async def test_anthropic_refuses_a_prefill_ending_in_whitespace(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="trailing whitespace"):
        await claude.messages.create(model="m", max_tokens=10,
                                     messages=[*USER, {"role": "assistant", "content": "tok0 "}])


async def test_openai_continues_only_when_asked(oai: openai.AsyncOpenAI) -> None:
    messages = [*USER, {"role": "assistant", "content": "tok0 to"}]
    plain = await oai.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == answer_text(5)  # a new answer, as the OpenAI API gives
    cont = await oai.chat.completions.create(model="m", messages=messages,  # type: ignore[arg-type]
                                             extra_body={"continue_final_message": True,
                                                         "add_generation_prompt": False})
    assert "tok0 to" + str(cont.choices[0].message.content) == answer_text(5)
    prefixed = await oai.chat.completions.create(  # type: ignore[call-overload]
        model="m", messages=[*USER, {"role": "assistant", "content": "tok0 tok1", "prefix": True}])
    assert "tok0 tok1" + str(prefixed.choices[0].message.content) == answer_text(5)


def test_profile_parses_fault_points() -> None:
    profile = parse_profile({"midstream_error_at": [5, 9], "midstream_stall_rate": 0.5, "midstream_stall_ms": 100,
                             "midstream_stall_at": 3})
    assert profile.midstream_error_at == FaultPoint(5, 9) and profile.midstream_stall_at == FaultPoint(3, 3)
    assert parse_profile(profile.to_dict(include_secrets=True)) == profile
    with pytest.raises(ValueError, match="midstream_error_at"):
        parse_profile({"midstream_error_at": [9, 2]})
    with pytest.raises(ValueError, match="midstream_stall_at"):
        parse_profile({"midstream_stall_at": 0})
