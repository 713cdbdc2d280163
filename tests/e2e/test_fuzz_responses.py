"""The Responses door, fuzzed as the chat doors are (tests/e2e/test_fuzz.py, whose raw client and strategies
this reuses): hypothesis mutates valid Responses bodies and throws random JSON at `POST /v1/responses`, and
garbage at the stored-response endpoints.

Properties, for every input: a 200 with a well-formed response (or stream: `response.created` first, the
terminal event last, numbered from 0 without gaps), or a 4xx in OpenAI's error shape; never a 5xx, never a
hang; a refused request reaches no provider, an accepted one reaches exactly one, and what it received passes
the gateway's own validator for that provider's format (so nothing malformed goes upstream) and was never
refused by the simulator; `/healthz` answers after every input; no error is logged.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.formats import responses as responses_format
from gateway.simulator import SimulatedProvider
from tests.e2e.harness import GATEWAY_KEY, Running, running
from tests.e2e.raw_http import Reply, exchange, parse_reply
from tests.e2e.responses_harness import responses_config
from tests.e2e.test_fuzz import (
    REQUEST_TIMEOUT_S,
    ErrorLog,
    assert_error_shape,
    encode,
    examples,
    json_values,
    locations,
    nested_json,
    parent_of,
    weird_text,
)

T = TypeVar("T")
PATH = "/v1/responses"
ALIASES = {"native": "nat", "via-openai": "oa", "via-anthropic": "an"}  # alias -> the provider behind it
VALIDATORS = {"nat": responses_format.validate_request, "oa": openai_format.validate_request,
              "an": anthropic_format.validate_request}


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    r: Running
    sims: dict[str, SimulatedProvider]
    errors: ErrorLog
    port: int

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(REQUEST_TIMEOUT_S + 5)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-responses", daemon=True)
    thread.start()

    def call(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    sims = {name: SimulatedProvider(name=name, seed=i) for i, name in enumerate(("nat", "oa", "an"))}
    for sim in sims.values():
        call(sim.start())
    config = responses_config({"nat": ("openai", sims["nat"]), "oa": ("openai", sims["oa"]),
                               "an": ("anthropic", sims["an"])},
                              {alias: {"targets": [{"provider": provider, "model": "m"}], "hedge": "off"}
                               for alias, provider in ALIASES.items()}, native=("nat",))
    ctx = running(config)
    r = call(ctx.__aenter__())
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        yield Env(loop, r, sims, errors, int(r.url.rsplit(":", 1)[1]))
    finally:
        logging.getLogger().removeHandler(errors)
        call(ctx.__aexit__(None, None, None))
        for sim in sims.values():
            call(sim.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def send(env: Env, method: str, path: str, body: bytes) -> Reply:
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
               f"content-type: application/json\r\nauthorization: Bearer {GATEWAY_KEY}\r\n\r\n").encode() + body
    return parse_reply(env.run(exchange(env.port, request, REQUEST_TIMEOUT_S)))


def assert_answer(reply: Reply, stream: bool) -> None:
    if not stream:
        body = orjson.loads(reply.body)
        assert body["object"] == "response" and body["id"].startswith("resp_") and isinstance(body["output"], list)
        return
    assert reply.headers["content-type"].startswith("text/event-stream")
    datas = [orjson.loads(line[6:]) for line in reply.body.split(b"\n") if line.startswith(b"data: ")]
    assert datas[0]["type"] == "response.created", datas[:2]
    assert datas[-1]["type"] in responses_format.TERMINAL_EVENTS, datas[-1]
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))


def check(env: Env, method: str, path: str, body: bytes) -> Reply:
    env.errors.records.clear()
    before = {name: (sim.stats.received, sim.stats.errors) for name, sim in env.sims.items()}
    reply = send(env, method, path, body)
    after = {name: (sim.stats.received, sim.stats.errors) for name, sim in env.sims.items()}
    reached = [name for name in env.sims if after[name][0] != before[name][0]]
    if reply.status == 200 and method == "POST":
        assert len(reached) == 1 and after[reached[0]][0] == before[reached[0]][0] + 1, (before, after)
        sent = env.sims[reached[0]].stats.last_body
        VALIDATORS[reached[0]](sent)  # raises if the gateway sent something malformed
        assert sent["stream"] is True and "previous_response_id" not in sent
        assert_answer(reply, orjson.loads(body).get("stream") is True)
    elif reply.status != 200:
        assert 400 <= reply.status < 500, (reply.status, reply.body[:500])
        assert_error_shape(reply, path.split("?", 1)[0])
        assert reached == [], f"a refused request reached a provider: {reply.status} {reply.body[:300]!r}"
    assert all(after[name][1] == before[name][1] for name in env.sims), "a simulator refused what it was sent"
    assert env.errors.records == [], env.errors.records
    assert send(env, "GET", "/healthz", b"").status == 200
    return reply


SEED: dict[str, Any] = {
    "model": "native",
    "instructions": "be brief",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                     {"type": "input_image", "image_url": "https://example.com/a.png"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "let me look"}]},
        {"type": "function_call", "call_id": "call_1", "name": "search", "arguments": '{"q": 1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"type": "reasoning", "summary": [], "encrypted_content": "xyz"},
        {"role": "user", "content": "and then?"},
    ],
    "tools": [{"type": "function", "name": "search", "description": "look it up",
               "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}],
    "tool_choice": "auto",
    "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
    "max_output_tokens": 64,
    "temperature": 0.5,
    "top_p": 1,
    "parallel_tool_calls": True,
    "metadata": {"k": "v"},
    "reasoning": {"effort": "low"},
    "store": False,
    "stream": False,
}


def seed(alias: str, stream: bool) -> dict[str, Any]:
    body = copy.deepcopy(SEED)
    body["model"], body["stream"] = alias, stream
    return body


def test_seeds_are_answered(env: Env) -> None:
    for alias in ALIASES:
        for stream in (False, True):
            reply = check(env, "POST", PATH, orjson.dumps(seed(alias, stream)))
            assert reply.status == 200, reply.body[:500]


MUTATIONS = ("delete", "replace", "null", "huge_string", "deep_nesting", "unicode", "wrong_container", "add_field")


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, bytes]]:
    body = seed(draw(st.sampled_from(list(ALIASES))), draw(st.booleans()))
    deep: dict[str, bytes] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        spots = locations(body)
        if not spots:
            break
        mutation = draw(st.sampled_from(MUTATIONS))
        location = draw(st.sampled_from(spots))
        parent, key = parent_of(body, location), location[-1]
        if mutation == "delete":
            del parent[key]
        elif mutation == "replace":
            parent[key] = draw(json_values)
        elif mutation == "null":
            parent[key] = None
        elif mutation == "huge_string":
            parent[key] = "x" * draw(st.sampled_from([65_536, 300_000]))
        elif mutation == "deep_nesting":
            marker = f"@@deep{len(deep)}@@"
            deep[marker] = nested_json(draw(st.sampled_from([64, 127, 128, 129, 300])), 1,
                                       draw(st.sampled_from(["list", "dict"])))
            parent[key] = marker
        elif mutation == "unicode":
            parent[key] = draw(weird_text)
        elif mutation == "wrong_container":
            parent[key] = [parent[key]] if not isinstance(parent[key], list) else {"0": parent[key]}
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(json_values)
    return body, deep


@examples(400)
@given(case=mutated_bodies())
@example(case=({"model": "via-anthropic", "input": [{"type": "function_call", "call_id": "c", "name": "f",
                                                     "arguments": "[1]"}]}, {}))
@example(case=({"model": "via-openai", "input": "hi", "tools": [{"type": "web_search"}]}, {}))
@example(case=({"model": "via-anthropic", "input": [{"role": "system", "content": "only rules"}]}, {}))
@example(case=({"model": "native", "input": "hi", "previous_response_id": "resp_nope"}, {}))
@example(case=({"model": "native", "input": [], "instructions": "be brief"}, {}))  # refused at the door
def test_mutated_valid_bodies(env: Env, case: tuple[dict[str, Any], dict[str, bytes]]) -> None:
    body, deep = case
    check(env, "POST", PATH, encode(body, deep))


@examples(150)
@given(value=json_values)
def test_random_json_values(env: Env, value: Any) -> None:
    check(env, "POST", PATH, orjson.dumps(value))


@examples(80)
@given(method=st.sampled_from(["GET", "DELETE", "POST", "PUT"]),
       tail=st.sampled_from(["", "/input_items", "/input_items?limit=0", "/input_items?limit=x&order=up",
                             "/input_items?after=zz", "/cancel"]),
       response_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789%.-", min_size=1, max_size=30))
def test_stored_response_endpoints_with_any_id(env: Env, method: str, tail: str, response_id: str) -> None:
    reply = check(env, method, f"{PATH}/{response_id}{tail}", b"")
    assert reply.status in (400, 404, 405), reply.status  # nothing was ever stored under such an id
