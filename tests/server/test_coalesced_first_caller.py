"""The first caller of a coalesced flight is reported like any request: its record is finished after its answer
was written (so whoever reads it sees the whole request), or as a 499 the moment it leaves, while the flight
goes on for the callers that joined it (regression of cdb4ce9: the flight finished the first caller's record,
before the answer was written, and as a 200 whoever left).

The upstream holds its answer until the test opens `gate`, so both callers are surely in the flight first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.policies.cache import cache_key
from gateway.wire import WireFormat
from tests.e2e.harness import GATEWAY_KEY, config_for
from tests.e2e.rogue_upstream import OPENAI_ANSWER, OPENAI_HEAD, OPENAI_TAIL, OPENAI_TOKENS, Conn, RogueUpstream
from tests.polling import eventually, eventually_equal
from tests.server.observed import Served, served

QUESTION = "What is two plus two?"
DOORS: dict[str, tuple[WireFormat, str, dict[str, Any]]] = {
    "openai": (WireFormat.OPENAI, "/v1/chat/completions",
               {"model": "cached", "temperature": 0, "messages": [{"role": "user", "content": QUESTION}]}),
    "responses": (WireFormat.RESPONSES, "/v1/responses",  # only an answer nobody stores is shared
                  {"model": "cached", "temperature": 0, "store": False, "input": QUESTION}),
}


@dataclass
class Env:
    gw: Served
    upstream: RogueUpstream
    gate: asyncio.Event  # set: the upstream answers


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    gate = asyncio.Event()

    async def answer_when_let(conn: Conn) -> None:
        await conn.read_request()
        await conn.head()
        await conn.chunk(OPENAI_HEAD)
        await gate.wait()
        for piece in (*OPENAI_TOKENS, OPENAI_TAIL):
            await conn.chunk(piece)
        await conn.end_chunks()

    async with RogueUpstream(answer_when_let) as upstream:
        config = config_for({"up": ("openai", upstream)}, {
            "cached": {"targets": [{"provider": "up", "model": "m"}], "cache": {"ttl_s": 60, "max_entries": 100}}})
        async with served(config) as gw:
            try:
                yield Env(gw, upstream, gate)
            finally:
                gate.set()  # a failed test must not leave the upstream waiting


async def post(env: Env, door: str) -> tuple[int, dict[str, str], Any]:
    _, path, body = DOORS[door]
    async with aiohttp.ClientSession() as http, http.post(
            env.gw.url + path, json=body, headers={"authorization": f"Bearer {GATEWAY_KEY}"}) as resp:
        return resp.status, dict(resp.headers), await resp.json()


def text_of(door: str, answer: Any) -> str:
    if door == "openai":
        return str(answer["choices"][0]["message"]["content"])
    return "".join(part["text"] for item in answer["output"] for part in item["content"])


async def two_callers_in_one_flight(env: Env, door: str) -> tuple[asyncio.Task[Any], asyncio.Task[Any], int]:
    """The first caller's request (its flight at the upstream), then a second that joined it; and the first's
    request id."""
    fmt, _, body = DOORS[door]
    gateway = env.gw.gateway
    options = gateway.config.models["cached"].cache
    assert options is not None
    key = cache_key(fmt, "cached", body, GATEWAY_KEY, options)
    first = asyncio.create_task(post(env, door))
    await eventually(lambda: env.upstream.seen, timeout_s=5, what="the flight to reach the upstream")
    assert gateway.coalescer.waiters(key) == 1
    second = asyncio.create_task(post(env, door))
    await eventually_equal(lambda: gateway.coalescer.waiters(key), 2, timeout_s=5,
                           what="the second caller to join the flight")
    [started, _] = env.gw.observed.started
    return first, second, started.request_id


@pytest.mark.parametrize("door", DOORS)
async def test_the_first_callers_record_is_finished_after_its_answer_is_written(env: Env, door: str) -> None:
    first, second, first_id = await two_callers_in_one_flight(env, door)
    env.gate.set()
    (status1, headers1, answer1), (status2, headers2, answer2) = await first, await second
    assert (status1, headers1["x-gateway-cache"], int(headers1["x-gateway-request-id"])) == (200, "miss", first_id)
    assert (status2, headers2["x-gateway-cache"]) == (200, "coalesced")
    assert text_of(door, answer1) == text_of(door, answer2) == OPENAI_ANSWER
    observed = env.gw.observed
    await eventually_equal(lambda: len(observed.finished), 2, timeout_s=5, what="both records")
    timeline = observed.timeline
    assert timeline.index(("prepared", first_id, 200)) < timeline.index(("finished", first_id, 200)), timeline
    record = observed.summary_of(first_id)
    assert record is not None and (record.status, record.cache) == (200, "miss")
    assert record.winner is not None and record.winner.provider == "up"  # the flight's attempt is on it
    assert len(env.upstream.seen) == 1


@pytest.mark.parametrize("door", DOORS)
async def test_a_first_caller_that_leaves_is_recorded_as_499_and_the_others_still_get_the_answer(
        env: Env, door: str) -> None:
    first, second, first_id = await two_callers_in_one_flight(env, door)
    first.cancel()  # the client goes away: its connection closes while the flight waits for the upstream
    observed = env.gw.observed
    record = await eventually(lambda: observed.summary_of(first_id), timeout_s=5,
                              what="the leaving first caller's record")
    assert record is not None and (record.status, record.error_type) == (499, "client_disconnected")
    assert env.gw.gateway.coalescer.in_flight() == 1  # reported at once: the flight still goes on
    env.gate.set()
    status, headers, answer = await second
    assert (status, headers["x-gateway-cache"]) == (200, "coalesced") and text_of(door, answer) == OPENAI_ANSWER
    await eventually_equal(lambda: len(observed.finished), 2, timeout_s=5, what="both records")
    assert [r.request_id for r in observed.finished].count(first_id) == 1  # reported once, as what it was
    assert [(r.status, r.cache) for r in observed.finished if r.request_id != first_id] == [(200, "coalesced")]
    assert len(env.upstream.seen) == 1
