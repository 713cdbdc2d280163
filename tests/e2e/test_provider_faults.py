"""Provider faults end to end: a rogue upstream misbehaves on purpose, the official SDKs are the clients.

Every fault must end in a clear error in the door's own shape (or a fallback win when a healthy backup
exists), count one breaker failure for the faulty provider, never show the provider's key, and leave the
gateway healthy: afterwards the same provider, behaving again, answers through the same gateway.

Providers: `rogue` (OpenAI wire) and `rogue-an` (Anthropic wire) are `RogueUpstream`s with `timeout_s` 0.5;
`dead` points at a closed port; `backup` is a simulated provider. Aliases: `solo`/`solo-an`/`dead-solo` have
the faulty provider alone; `hedged`/`hedged-an`/`dead-hedged` have it first and `backup` second, with hedging
off, so the backup only ever runs as a fallback after the fault. Bounds hold on a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from gateway.config import parse_config
from gateway.engine.attempt import Launch, Outcome
from gateway.simulator import SimulatedProvider
from tests.e2e.harness import GATEWAY_KEY, Running, running
from tests.e2e.rogue_upstream import (
    ANTHROPIC_HEAD,
    ANTHROPIC_TOKENS,
    OPENAI_ANSWER,
    OPENAI_HEAD,
    OPENAI_TAIL,
    OPENAI_TOKENS,
    Behaviour,
    Conn,
    RogueUpstream,
    anthropic_event,
    close_after_request,
    closed_port,
    healthy,
    huge_line,
    never_answer,
    reset_after_request,
    respond,
    stream_then,
)
from tests.polling import eventually, eventually_equal

SECRET = "sk-rogue-SECRET-7f3a9c2e5b1d"  # the rogue providers' key: must never reach a client
SECRET_AN = "sk-ant-rogue-SECRET-4c8e1a9f"
TIMEOUT_S = 0.5  # the rogue providers' timeout_s: per attempt before commit, and between chunks
MESSAGES: Any = [{"role": "user", "content": "Hello there"}]
BACKUP_TEXT = " ".join(f"tok{i}" for i in range(16))


@dataclass
class Env:
    r: Running
    oa: RogueUpstream  # provider "rogue"
    an: RogueUpstream  # provider "rogue-an"
    backup: SimulatedProvider

    def failures(self, provider: str) -> int:
        return self.r.gateway.runtime.breakers[provider].consecutive_failures


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with RogueUpstream(healthy("openai")) as oa, RogueUpstream(healthy("anthropic")) as an, \
            SimulatedProvider(name="backup", seed=3) as backup:
        rogue: dict[str, Any] = {"timeout_s": TIMEOUT_S, "connect_timeout_s": 2,
                                 "breaker": {"fail_max": 50, "reset_timeout_s": 30}}
        config = parse_config({
            "server": {"api_keys": [GATEWAY_KEY], "max_body_mb": 1},
            "providers": {
                "rogue": {"kind": "openai", "base_url": oa.base_url + "/v1", "api_key": SECRET, **rogue},
                "rogue-an": {"kind": "anthropic", "base_url": an.base_url, "api_key": SECRET_AN, **rogue},
                "dead": {"kind": "openai", "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                         "api_key": SECRET, **rogue},
                "backup": {"kind": "openai", "base_url": backup.base_url + "/v1", "api_key": "backup-key",
                           "timeout_s": 20},
            },
            "models": {
                **{alias: {"targets": [{"provider": provider, "model": "m"}], "hedge": "off", "timeout_s": 10}
                   for alias, provider in (("solo", "rogue"), ("solo-an", "rogue-an"), ("dead-solo", "dead"),
                                           ("healthy", "backup"))},
                **{alias: {"targets": [{"provider": provider, "model": "m"}, {"provider": "backup", "model": "b"}],
                           "hedge": "off", "timeout_s": 10}
                   for alias, provider in (("hedged", "rogue"), ("hedged-an", "rogue-an"),
                                           ("dead-hedged", "dead"))},
            },
            "telemetry": {"traces_file": ""},
        }, {})
        async with running(config) as r:
            yield Env(r, oa, an, backup)


# ------------------------------------------------------------------------------------------------ helpers

def assert_clear(message: str, provider: str, *causes: str) -> None:
    """The message names the faulty provider and the cause, and holds no provider key."""
    assert provider in message, message
    for cause in causes:
        assert cause.lower() in message.lower(), f"{cause!r} not in {message!r}"
    assert SECRET not in message and SECRET_AN not in message, message
    assert "Traceback" not in message


async def openai_fails(env: Env, alias: str, *, stream: bool) -> openai.APIStatusError:
    """A request the gateway must refuse before streaming anything: an HTTP error in OpenAI's shape."""
    async with env.r.openai() as client:
        with pytest.raises(openai.APIStatusError) as info:
            if stream:
                chunks = await client.chat.completions.create(model=alias, messages=MESSAGES, stream=True)
                async for _ in chunks:
                    pass
            else:
                await client.chat.completions.create(model=alias, messages=MESSAGES)
    body = info.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert SECRET not in info.value.response.text and SECRET_AN not in info.value.response.text
    return info.value


async def anthropic_fails(env: Env, alias: str, *, stream: bool) -> anthropic.APIStatusError:
    async with env.r.anthropic() as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            if stream:
                async with client.messages.stream(model=alias, max_tokens=50, messages=MESSAGES) as s:
                    async for _ in s.text_stream:
                        pass
            else:
                await client.messages.create(model=alias, max_tokens=50, messages=MESSAGES)
    body = info.value.response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    assert SECRET not in info.value.response.text and SECRET_AN not in info.value.response.text
    return info.value


def openai_message(exc: openai.APIStatusError) -> str:
    message: str = exc.response.json()["error"]["message"]
    return message


def anthropic_message(exc: anthropic.APIStatusError) -> str:
    message: str = exc.response.json()["error"]["message"]
    return message


async def ask_openai(env: Env, alias: str, *, stream: bool) -> tuple[str, str]:
    """(text, winning provider) of a successful request through the OpenAI door."""
    async with env.r.openai() as client:
        if stream:
            raw = await client.chat.completions.with_raw_response.create(model=alias, messages=MESSAGES, stream=True)
            chunks = raw.parse()
            text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        else:
            raw = await client.chat.completions.with_raw_response.create(model=alias, messages=MESSAGES)
            text = raw.parse().choices[0].message.content or ""
    return text, raw.headers["x-gateway-provider"]


async def ask_anthropic(env: Env, alias: str, *, stream: bool) -> tuple[str, str]:
    async with env.r.anthropic() as client:
        if stream:
            async with client.messages.stream(model=alias, max_tokens=50, messages=MESSAGES) as s:
                text = "".join([t async for t in s.text_stream])
                provider = s.response.headers["x-gateway-provider"]
            return text, provider
        raw = await client.messages.with_raw_response.create(model=alias, max_tokens=50, messages=MESSAGES)
        block = (await raw.parse()).content[0]
        assert block.type == "text"
        return block.text, raw.headers["x-gateway-provider"]


async def assert_fallback_won(env: Env, alias: str, provider: str, *, stream: bool,
                              door: str = "openai") -> None:
    """The faulty primary failed, the backup was launched as a fallback and its answer reached the client."""
    before, records = env.backup.stats.completed, env.r.collect.records
    n = len(records)
    ask = ask_openai if door == "openai" else ask_anthropic
    text, winner = await ask(env, alias, stream=stream)
    assert (text, winner) == (BACKUP_TEXT, "backup")
    assert env.backup.stats.completed == before + 1
    # The record is written once the response is sent: the client may have its answer before.
    await eventually(lambda: len(records) > n, timeout_s=5, what="the request record")
    first, second = records[n].attempts
    assert (first.provider, first.outcome) == (provider, Outcome.FAILED)
    assert first.error is not None and SECRET not in first.error.message
    assert (second.provider, second.launch, second.outcome) == ("backup", Launch.FALLBACK, Outcome.WON)


async def assert_recovers(env: Env, provider: str = "rogue") -> None:
    """The gateway is healthy after the fault: health check, the backup alone, and the faulty provider
    itself once it behaves again (so no broken connection was pooled and no state is stuck)."""
    async with aiohttp.ClientSession() as http, http.get(f"{env.r.url}/healthz") as resp:
        assert resp.status == 200
    assert await ask_openai(env, "healthy", stream=False) == (BACKUP_TEXT, "backup")
    if provider == "rogue":
        env.oa.behaviour = healthy("openai")
        assert await ask_openai(env, "solo", stream=True) == (OPENAI_ANSWER, "rogue")
        assert await ask_anthropic(env, "solo", stream=False) == (OPENAI_ANSWER, "rogue")
    elif provider == "rogue-an":
        env.an.behaviour = healthy("anthropic")
        assert await ask_anthropic(env, "solo-an", stream=True) == (OPENAI_ANSWER, "rogue-an")
        assert await ask_openai(env, "solo-an", stream=False) == (OPENAI_ANSWER, "rogue-an")
    assert env.failures(provider) == 0  # a success closes the streak


# ------------------------------------------------------------------------------------- connection faults

async def test_connection_refused(env: Env) -> None:
    exc = await openai_fails(env, "dead-solo", stream=False)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "dead", "connect")
    aexc = await anthropic_fails(env, "dead-solo", stream=True)
    assert aexc.status_code == 502 and aexc.response.json()["error"]["type"] == "api_error"
    assert_clear(anthropic_message(aexc), "dead", "connect")
    assert env.failures("dead") == 2
    await assert_fallback_won(env, "dead-hedged", "dead", stream=True)
    assert env.failures("dead") == 3
    await assert_recovers(env, "backup")


@pytest.mark.parametrize("behaviour", [reset_after_request, close_after_request], ids=["rst", "fin"])
async def test_connection_dropped_before_the_response(env: Env, behaviour: Callable[[], Behaviour]) -> None:
    env.oa.behaviour = behaviour()
    exc = await openai_fails(env, "solo", stream=True)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "rogue", "connection")
    assert env.failures("rogue") == 1
    await assert_fallback_won(env, "hedged", "rogue", stream=False)
    assert env.failures("rogue") == 2
    assert len(env.oa.seen) == 2  # the request did reach it each time: the fault is in the answer
    await assert_recovers(env)


@pytest.mark.parametrize(("then", "cause"), [("reset", "stream broken"), ("close", "stream broken"),
                                             ("eof", "ended before the answer was complete")])
async def test_stream_cut_before_the_first_token_falls_back(env: Env, then: str, cause: str) -> None:
    # Headers and a role-only chunk arrived, then the stream was cut: nothing reached the client yet.
    env.oa.behaviour = stream_then([OPENAI_HEAD], then)
    await assert_fallback_won(env, "hedged", "rogue", stream=True)
    assert env.failures("rogue") == 1
    exc = await anthropic_fails(env, "solo", stream=True)
    assert exc.status_code == 502
    assert_clear(anthropic_message(exc), "rogue", cause)
    assert env.failures("rogue") == 2
    await assert_recovers(env)


@pytest.mark.parametrize("then", ["reset", "close"])
async def test_stream_cut_after_the_first_token_ends_the_client_stream_with_an_error(env: Env, then: str) -> None:
    seen_token = asyncio.Event()  # the cut comes once the client has the first token
    env.oa.behaviour = stream_then([OPENAI_HEAD, OPENAI_TOKENS[0]], then, gate=seen_token)
    received: list[str] = []
    async with env.r.openai() as client:
        chunks = await client.chat.completions.create(model="hedged", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as info:
            async for c in chunks:
                if c.choices and c.choices[0].delta.content:
                    received.append(c.choices[0].delta.content)
                    seen_token.set()
    assert "".join(received) == "Hello"  # the first token was the commit point: the stream is the rogue's
    assert_clear(info.value.message, "rogue", "stream broken")
    # No silent switch after the commit: once the request is over (its record written), the backup was never asked.
    await eventually_equal(lambda: len(env.r.collect.records), 1, timeout_s=5, what="the request record")
    assert env.backup.stats.received == 0
    await eventually_equal(lambda: env.failures("rogue"), 1, timeout_s=5, what="the breaker failure")
    await assert_recovers(env)


async def test_stream_cut_after_the_first_token_anthropic_door_and_wire(env: Env) -> None:
    seen_token = asyncio.Event()
    env.an.behaviour = stream_then([ANTHROPIC_HEAD, ANTHROPIC_TOKENS[0]], "reset", gate=seen_token)
    text: list[str] = []
    async with env.r.anthropic() as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model="hedged-an", max_tokens=50, messages=MESSAGES) as s:
                async for t in s.text_stream:
                    text.append(t)
                    seen_token.set()
    assert text == ["Hello"]
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert_clear(body["error"]["message"], "rogue-an", "stream broken")
    await eventually_equal(lambda: len(env.r.collect.records), 1, timeout_s=5, what="the request record")
    assert env.backup.stats.received == 0
    await eventually_equal(lambda: env.failures("rogue-an"), 1, timeout_s=5, what="the breaker failure")
    await assert_recovers(env, "rogue-an")


async def test_stream_cut_after_the_first_token_of_a_non_streaming_request_falls_back(env: Env) -> None:
    # A JSON client commits only to a complete answer, so a half-streamed answer is still hedged over.
    env.oa.behaviour = stream_then([OPENAI_HEAD, *OPENAI_TOKENS], "reset")
    await assert_fallback_won(env, "hedged", "rogue", stream=False)
    env.an.behaviour = stream_then([ANTHROPIC_HEAD, *ANTHROPIC_TOKENS], "reset")
    await assert_fallback_won(env, "hedged-an", "rogue-an", stream=False, door="anthropic")
    assert env.failures("rogue") == 1 and env.failures("rogue-an") == 1
    await assert_recovers(env)


# --------------------------------------------------------------------------------------------- timeouts

async def test_stall_between_tokens_after_the_first_token_ends_the_stream_after_timeout_s(env: Env) -> None:
    env.oa.behaviour = stream_then([OPENAI_HEAD, OPENAI_TOKENS[0]], "stall")
    async with env.r.openai() as client:
        chunks = await client.chat.completions.create(model="solo", messages=MESSAGES, stream=True)
        started = time.monotonic()
        with pytest.raises(openai.APIError) as info:
            async for _ in chunks:
                pass
        waited = time.monotonic() - started
    assert_clear(info.value.message, "rogue", f"no data for {TIMEOUT_S:g} s")
    # The provider's timeout_s (its clock started when the gateway read the token, a little before ours),
    # not the alias's 10 s.
    assert TIMEOUT_S / 2 <= waited < 5.0
    await eventually_equal(lambda: env.oa.peer_closed, 1, timeout_s=5, what="the stalled connection to be closed")
    assert env.failures("rogue") == 1
    await assert_recovers(env)


@pytest.mark.parametrize("stream", [True, False])
async def test_stall_before_the_answer_is_committed_falls_back_after_timeout_s(env: Env, stream: bool) -> None:
    # Streaming: silent after the role chunk. Non-streaming: silent after a token (not complete = not won).
    env.oa.behaviour = stream_then([OPENAI_HEAD] if stream else [OPENAI_HEAD, OPENAI_TOKENS[0]], "stall")
    started = time.monotonic()
    await assert_fallback_won(env, "hedged", "rogue", stream=stream)
    assert TIMEOUT_S <= time.monotonic() - started < 5.0
    first, second = env.r.collect.records[0].attempts
    assert first.error is not None and first.error.error_type == "timeout"
    assert second.started - first.started >= TIMEOUT_S * 0.8  # launched by the timeout, not before
    await eventually_equal(lambda: env.oa.peer_closed, 1, timeout_s=5, what="the stalled connection to be closed")
    exc = await openai_fails(env, "solo", stream=stream)
    assert exc.status_code == 504 and exc.response.json()["error"]["type"] == "timeout_error"
    assert_clear(openai_message(exc), "rogue", f"{TIMEOUT_S:g} s")
    assert env.failures("rogue") == 2
    await assert_recovers(env)


@pytest.mark.parametrize("read", [True, False], ids=["reads-request", "never-reads"])
async def test_provider_that_accepts_and_never_answers_times_out_and_falls_back(env: Env, read: bool) -> None:
    env.oa.behaviour = never_answer(read=read)
    started = time.monotonic()
    await assert_fallback_won(env, "hedged", "rogue", stream=True)
    assert TIMEOUT_S <= time.monotonic() - started < 5.0
    await eventually_equal(lambda: env.oa.peer_closed, 1, timeout_s=5, what="the silent connection to be closed")
    exc = await anthropic_fails(env, "solo", stream=False)
    assert exc.status_code == 504 and exc.response.json()["error"]["type"] == "timeout_error"
    assert_clear(anthropic_message(exc), "rogue", f"no answer within {TIMEOUT_S:g} s")
    assert env.failures("rogue") == 2
    await assert_recovers(env)


# ------------------------------------------------------------------------------------ malformed answers

async def test_malformed_json_before_the_first_token(env: Env) -> None:
    env.oa.behaviour = stream_then([OPENAI_HEAD, b'data: {"choices": [{"delta": {"content": "Hel\n\n'], "eof")
    await assert_fallback_won(env, "hedged", "rogue", stream=True)
    exc = await openai_fails(env, "solo", stream=False)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "rogue", "malformed JSON")
    env.an.behaviour = stream_then([ANTHROPIC_HEAD, b"event: content_block_delta\ndata: {not json}\n\n"], "eof")
    aexc = await anthropic_fails(env, "solo-an", stream=True)
    assert aexc.status_code == 502
    assert_clear(anthropic_message(aexc), "rogue-an", "malformed JSON")
    assert env.failures("rogue") == 2 and env.failures("rogue-an") == 1
    await assert_recovers(env)


async def test_malformed_json_after_the_first_token_ends_the_stream_with_an_error(env: Env) -> None:
    env.oa.behaviour = stream_then([OPENAI_HEAD, OPENAI_TOKENS[0], b"data: {oops\n\n"], "stall")
    async with env.r.openai() as client:
        chunks = await client.chat.completions.create(model="hedged", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as info:
            async for _ in chunks:
                pass
    assert_clear(info.value.message, "rogue", "malformed JSON")
    await eventually_equal(lambda: len(env.r.collect.records), 1, timeout_s=5, what="the request record")
    assert env.backup.stats.received == 0
    await eventually_equal(lambda: env.oa.peer_closed, 1,
                           timeout_s=5, what="the broken stream's connection to be closed")
    assert env.failures("rogue") == 1
    await assert_recovers(env)


@pytest.mark.parametrize("event", [
    b'data: {"choices": "not a list"}\n\n',
    b'data: {"choices": [null]}\n\n',
    b'data: {"choices": [{"delta": {"content": 42}}]}\n\n',
    b'data: {"choices": [{"delta": {"tool_calls": [7]}}]}\n\n',
    b"data: [1, 2]\n\n",
], ids=["choices-str", "choice-null", "content-int", "tool-call-int", "array"])
async def test_valid_json_of_the_wrong_shape_is_a_provider_fault_not_a_crash(env: Env, event: bytes) -> None:
    for stream in (True, False):
        env.oa.behaviour = stream_then([OPENAI_HEAD, event], "stall")
        await assert_fallback_won(env, "hedged", "rogue", stream=stream)
    env.oa.behaviour = stream_then([OPENAI_HEAD, event], "stall")
    exc = await anthropic_fails(env, "solo", stream=True)
    assert exc.status_code in (502, 504)
    assert_clear(anthropic_message(exc), "rogue")
    # After the commit point too: the client's stream ends with an error event, not a dropped connection.
    env.oa.behaviour = stream_then([OPENAI_HEAD, OPENAI_TOKENS[0], event], "stall")
    async with env.r.openai() as client:
        chunks = await client.chat.completions.create(model="solo", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as info:
            async for _ in chunks:
                pass
    assert_clear(info.value.message, "rogue")
    await eventually_equal(lambda: env.failures("rogue"), 4, timeout_s=5, what="four breaker failures")
    await assert_recovers(env)


# An Anthropic stream that ends after its message_delta (a complete answer to the engine) whose usage is not a
# number: the Responses door's translator owes the client a closing `response.completed` with usage. A count that
# is not a count is taken as missing (0 there; the engine estimates the attempt's cost from its text), as every
# translation does (tests/formats/test_usage_counts.py). It used to be added up as sent: a TypeError at the end of
# the stream, a failover before the first token, an error event after it. (The engine's handling of closing events
# that cannot be built is tested in tests/engine/test_attempt.py.)
MALFORMED_USAGE_END = anthropic_event({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                           "stop_sequence": None},
                                       "usage": {"output_tokens": "two"}})


@pytest.mark.parametrize("tokens", [False, True], ids=["empty-answer", "with-text"])
async def test_a_usage_count_that_is_not_a_number_still_ends_the_answer_completed(
        env: Env, caplog: pytest.LogCaptureFixture, tokens: bool) -> None:
    close_block = anthropic_event({"type": "content_block_stop", "index": 0})
    body = [*ANTHROPIC_TOKENS, close_block] if tokens else []
    env.an.behaviour = stream_then([ANTHROPIC_HEAD, *body, MALFORMED_USAGE_END], "eof")
    async with env.r.openai() as client:
        stream = await client.responses.create(model="hedged-an", input="Hello there", stream=True)
        events = [event async for event in stream]
    completed = events[-1]
    assert completed.type == "response.completed", [e.type for e in events]
    assert completed.response.usage is not None and completed.response.usage.output_tokens == 0
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == (OPENAI_ANSWER if tokens else "")
    [record] = await env.r.collect.wait_for(1)
    assert record.status == 200
    [only] = record.attempts
    assert (only.provider, only.outcome) == ("rogue-an", Outcome.WON)
    assert env.backup.stats.received == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert env.failures("rogue-an") == 0


async def test_undecodable_event_name_is_ignored(env: Env) -> None:
    # OpenAI streams carry no event names; bytes that are not UTF-8 in one must not break the stream.
    junk = b"event: \xff\xfe\n"
    env.oa.behaviour = stream_then([OPENAI_HEAD, *(junk + token for token in OPENAI_TOKENS), OPENAI_TAIL], "eof")
    assert await ask_openai(env, "solo", stream=True) == (OPENAI_ANSWER, "rogue")
    assert env.failures("rogue") == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_undecodable_content_encoding(env: Env, encoding: str) -> None:
    env.oa.behaviour = respond(200, "text/event-stream", b"this is not " + encoding.encode(),
                               extra=[("Content-Encoding", encoding)])
    await assert_fallback_won(env, "hedged", "rogue", stream=True)
    exc = await openai_fails(env, "solo", stream=False)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "rogue")
    assert env.failures("rogue") == 2
    await assert_recovers(env)


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": '
                         b'{"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}'),
    ("text/html; charset=utf-8", b"<html><body><h1>Welcome to nginx!</h1></body></html>"),
    (None, b"data: {}\n\n"),
], ids=["json", "html", "none"])
async def test_wrong_content_type(env: Env, content_type: str | None, body: bytes) -> None:
    env.oa.behaviour = respond(200, content_type, body)
    await assert_fallback_won(env, "hedged", "rogue", stream=False)
    exc = await openai_fails(env, "solo", stream=True)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "rogue", "expected an event stream",
                 (content_type or "no content type").split(";")[0])
    assert env.failures("rogue") == 2
    await assert_recovers(env)


async def test_200_with_an_error_body(env: Env) -> None:
    error = b'{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota"}}'
    env.oa.behaviour = respond(200, "application/json", error)
    await assert_fallback_won(env, "hedged", "rogue", stream=True)
    exc = await openai_fails(env, "solo", stream=False)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "rogue", "expected an event stream", "exceeded your current quota")
    # The same error as the stream's first event (how OpenAI-compatible servers report it mid-flight).
    env.oa.behaviour = stream_then([b"data: " + error + b"\n\n"], "eof")
    await assert_fallback_won(env, "hedged", "rogue", stream=False)
    aexc = await anthropic_fails(env, "solo", stream=True)
    assert aexc.status_code == 502
    assert_clear(anthropic_message(aexc), "rogue", "insufficient_quota", "exceeded your current quota")
    env.an.behaviour = stream_then([anthropic_event({"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}})], "eof")
    await assert_fallback_won(env, "hedged-an", "rogue-an", stream=True, door="anthropic")
    assert env.failures("rogue") == 4 and env.failures("rogue-an") == 1
    await assert_recovers(env)


async def test_upstream_error_that_echoes_the_key_is_redacted(env: Env) -> None:
    echo = b'{"error": {"message": "Incorrect API key provided: ' + SECRET.encode() + b'", "type": "server_error"}}'
    for status, content_type in ((500, "application/json"), (200, "application/json"), (401, "application/json")):
        env.oa.behaviour = respond(status, content_type, echo)
        exc = await openai_fails(env, "solo", stream=False)
        assert exc.status_code == (401 if status == 401 else 502)
        assert_clear(openai_message(exc), "rogue", "Incorrect API key provided")
    env.oa.behaviour = stream_then([OPENAI_HEAD, OPENAI_TOKENS[0], b"data: " + echo + b"\n\n"], "eof")
    async with env.r.openai() as client:
        chunks = await client.chat.completions.create(model="solo", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as info:
            async for _ in chunks:
                pass
    assert_clear(info.value.message, "rogue", "Incorrect API key provided")
    await assert_recovers(env)


async def test_redirect_is_not_followed(env: Env) -> None:
    # A provider must never bounce the request (and the key headers with it) to another server.
    async with RogueUpstream(healthy("openai")) as elsewhere:
        env.oa.behaviour = respond(307, "text/plain", b"moved",
                                   extra=[("Location", elsewhere.base_url + "/v1/chat/completions")])
        exc = await openai_fails(env, "solo", stream=True)
        assert exc.status_code == 502
        assert_clear(openai_message(exc), "rogue", "HTTP 307")
        assert elsewhere.seen == []
    assert env.failures("rogue") == 1
    await assert_recovers(env)


# ------------------------------------------------------------------------------------------ size limits

async def test_event_stream_line_over_the_limit(env: Env) -> None:
    # 8 MiB with no newline: the gateway must give up at its 1 MiB bound, not buffer it all or crash.
    env.oa.behaviour = huge_line(OPENAI_HEAD + b'data: {"choices": [{"delta": {"content": "', 8 << 20)
    await assert_fallback_won(env, "hedged", "rogue", stream=True)
    exc = await openai_fails(env, "solo", stream=False)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "rogue", "1 MiB")
    assert len(openai_message(exc)) < 1000
    assert env.failures("rogue") == 2
    await assert_recovers(env)


async def test_event_over_the_limit_in_many_data_lines(env: Env) -> None:
    line = b"data: " + b"x" * 60_000 + b"\n"
    env.an.behaviour = stream_then([ANTHROPIC_HEAD, b"event: content_block_delta\n" + line * 40], "stall")
    exc = await anthropic_fails(env, "solo-an", stream=True)
    assert exc.status_code == 502
    assert_clear(anthropic_message(exc), "rogue-an", "1 MiB")
    assert env.failures("rogue-an") == 1
    await assert_recovers(env, "rogue-an")


async def test_huge_error_body_is_read_only_up_to_its_bound(env: Env) -> None:
    env.oa.behaviour = huge_line(b'{"error": {"message": "', 16 << 20, status=500, content_type="application/json")
    started = time.monotonic()
    exc = await openai_fails(env, "solo", stream=False)
    assert time.monotonic() - started < 5.0
    assert exc.status_code == 502
    message = openai_message(exc)
    assert_clear(message, "rogue", "HTTP 500")
    assert len(message) < 1000
    env.oa.behaviour = huge_line(b"", 16 << 20, content_type="application/json")  # the same with status 200
    exc = await openai_fails(env, "solo", stream=True)
    assert exc.status_code == 502 and len(openai_message(exc)) < 1000
    assert env.failures("rogue") == 2
    await assert_recovers(env)


async def test_response_header_over_the_limit(env: Env) -> None:
    env.oa.behaviour = respond(200, "text/event-stream", b"", extra=[("x-junk", "j" * 100_000)])
    await assert_fallback_won(env, "hedged", "rogue", stream=True)
    exc = await openai_fails(env, "solo", stream=False)
    assert exc.status_code == 502
    assert_clear(openai_message(exc), "rogue")
    assert len(openai_message(exc)) < 1000
    assert env.failures("rogue") == 2
    await assert_recovers(env)


# ----------------------------------------------------------------------------------- many faults at once

async def test_every_fault_at_once_leaves_nothing_behind(env: Env) -> None:
    """Concurrent requests over a mix of faults: every one ends (won by the backup), nothing stays open."""
    faults: list[Behaviour] = [reset_after_request(), stream_then([OPENAI_HEAD], "reset"), never_answer(),
                               stream_then([OPENAI_HEAD, b"data: {bad\n\n"], "stall"),
                               respond(200, "text/html", b"<html/>"), stream_then([OPENAI_HEAD], "stall")]
    turn = 0

    async def rotate(conn: Conn) -> None:
        nonlocal turn
        behaviour = faults[turn % len(faults)]
        turn += 1
        await behaviour(conn)

    env.oa.behaviour = rotate
    results = await asyncio.gather(*(ask_openai(env, "hedged", stream=i % 2 == 0) for i in range(24)))
    assert results == [(BACKUP_TEXT, "backup")] * 24
    assert env.failures("rogue") == 24
    await env.backup.wait_idle()
    await eventually_equal(lambda: len(env.r.collect.records), 24, timeout_s=5, what="every request record")
    await assert_recovers(env)
