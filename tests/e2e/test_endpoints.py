"""Real apps work unchanged: the endpoints beside chat (token counting, embeddings, one model's details), rejected
requests in the log and /metrics, and the headers that reach (or never reach) each provider kind.

The official SDKs are the clients, over HTTP to the gateway on 127.0.0.1, which talks HTTP to simulated providers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from anthropic.types import MessageParam

from gateway.config.model import TelemetryConfig
from gateway.engine import Launch, Outcome
from gateway.simulator import SimProfile, SimulatedProvider, parse_profile
from gateway.simulator.embeddings import embedding
from gateway.simulator.stats import key_fingerprint
from gateway.telemetry import setup_telemetry
from tests.e2e.harness import GATEWAY_KEY, Running, config_for, running
from tests.telemetry.prom_text import parse

CONVERSATION: list[MessageParam] = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
    {"role": "user", "content": [{"type": "text", "text": "And of Italy?"}]},
]
SYSTEM = "Answer in one word."
# As the simulator counts (characters of the text // 4): 19 + 30 + 6 + 13 = 68 -> 17. The gateway's local estimate
# counts JSON bytes instead, so the two differ and a test can tell who counted.
SIM_COUNT = 17
EMBED_PRICE = 3.0  # USD per million input tokens of the fast embeddings target
HEDGE_DELAY_S = 0.1


@dataclass
class Env:
    r: Running
    oa: SimulatedProvider  # OpenAI kind, fast
    an: SimulatedProvider  # Anthropic kind
    slow: SimulatedProvider  # OpenAI kind, 5 s before answering


def _models() -> dict[str, Any]:
    hedge = {"delay_ms": HEDGE_DELAY_S * 1000, "budget_percent": 100}
    fast_embed = {"provider": "oa", "model": "emb-fast", "price": {"input_per_mtok": EMBED_PRICE}}
    return {
        "claude": {"targets": [{"provider": "an", "model": "claude-x"}]},
        "team/claude": {"targets": [{"provider": "an", "model": "claude-x"}]},  # a slash, as many aliases have
        "gpt": {"targets": [{"provider": "oa", "model": "gpt-x"}]},
        # An OpenAI-kind target first: it cannot count tokens, so it is skipped and the Anthropic one counts.
        "gpt-then-claude": {"targets": [{"provider": "oa", "model": "gpt-x"}, {"provider": "an", "model": "claude-x"}]},
        "embed": {"targets": [{"provider": "slow", "model": "emb-slow", "price": {"input_per_mtok": 1.0}},
                              fast_embed], "hedge": hedge},
        "embed-claude": {"targets": [{"provider": "an", "model": "claude-x"}]},
        "embed-mixed": {"targets": [{"provider": "an", "model": "claude-x"}, fast_embed]},
    }


async def _env(**running_options: Any) -> AsyncIterator[Env]:
    async with SimulatedProvider(name="oa", seed=1) as oa, SimulatedProvider(name="an", seed=2) as an, \
            SimulatedProvider(parse_profile({"ttft": 5000}), name="slow", seed=3) as slow:
        config = config_for({"oa": ("openai", oa), "an": ("anthropic", an), "slow": ("openai", slow)}, _models())
        async with running(config, **running_options) as r:
            yield Env(r, oa, an, slow)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async for e in _env():
        yield e


@pytest.fixture
async def observed() -> AsyncIterator[Env]:
    """The gateway as `gateway serve` builds it: a Telemetry (so /metrics) and the request log among the hooks."""
    async for e in _env(telemetry=setup_telemetry(TelemetryConfig(traces_file=""), {}), request_log=True):
        yield e


# ---- messages.count_tokens ---------------------------------------------------------------------------------

@pytest.mark.parametrize("alias", ["claude", "gpt-then-claude"])
async def test_count_tokens_is_the_anthropic_providers_count(env: Env, alias: str) -> None:
    async with env.r.anthropic() as client:
        raw = await client.messages.with_raw_response.count_tokens(model=alias, system=SYSTEM,
                                                                   messages=CONVERSATION)
    assert (await raw.parse()).input_tokens == SIM_COUNT
    assert "x-gateway-token-count" not in raw.headers
    assert raw.headers["x-gateway-provider"] == "an"
    assert env.an.stats.received_by_route == {"count_tokens": 1}
    sent = env.an.stats.recent[-1]
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["body"]["model"] == "claude-x" and sent["body"]["system"] == SYSTEM  # only the model rewritten
    assert env.oa.stats.received == 0  # an OpenAI-kind target is never asked to count
    record = (await env.r.collect.wait_for(1))[-1]
    assert record.endpoint == "count_tokens" and record.status == 200
    assert record.winner is not None and record.winner.provider == "an"
    assert record.cost_usd == 0  # counting is free
    if alias == "gpt-then-claude":
        assert record.attempts[0].skip_reason == "unsupported_request"


async def test_count_tokens_without_an_anthropic_target_is_a_local_estimate(env: Env) -> None:
    async with env.r.anthropic() as client:
        raw = await client.messages.with_raw_response.count_tokens(model="gpt", system=SYSTEM,
                                                                   messages=CONVERSATION)
    assert raw.headers["x-gateway-token-count"] == "estimated"
    # About 4 bytes of the request's JSON a token: not the simulator's count (which nobody was asked for).
    expected = (len(orjson.dumps(SYSTEM)) + len(orjson.dumps(CONVERSATION))) // 4
    assert (await raw.parse()).input_tokens == expected != SIM_COUNT
    assert env.oa.stats.received == 0 and env.an.stats.received == 0


# ---- embeddings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("encoding", "dimensions"), [("float", None), (None, None), (None, 256)],
                         ids=["float", "base64-default", "dimensions"])
async def test_embeddings_hedge_over_a_slow_primary(env: Env, encoding: str | None, dimensions: int | None) -> None:
    options: dict[str, Any] = {}
    if encoding is not None:
        options["encoding_format"] = encoding
    if dimensions is not None:
        options["dimensions"] = dimensions
    async with env.r.openai() as client:
        raw = await client.embeddings.with_raw_response.create(model="embed", input="hello world", **options)
    answer = raw.parse()
    assert raw.headers["x-gateway-provider"] == "oa"
    assert answer.model == "emb-fast"
    # The backup's vector for the backup's model, whatever the encoding on the wire (the SDK decodes base64).
    assert answer.data[0].embedding == embedding("emb-fast", "hello world", dimensions or 1536).tolist()
    sent = env.oa.stats.last_body
    assert sent["encoding_format"] == (encoding or "base64") and sent.get("dimensions") == dimensions
    await env.slow.wait_idle()
    assert (env.slow.stats.received, env.slow.stats.disconnected, env.slow.stats.completed) == (1, 1, 0)
    assert env.slow.stats.last_body["model"] == "emb-slow"
    assert env.oa.stats.completed == 1
    record = (await env.r.collect.wait_for(1))[-1]
    assert record.endpoint == "embeddings" and record.status == 200
    assert [(a.provider, a.launch, a.outcome) for a in record.attempts] == [
        ("slow", Launch.PRIMARY, Outcome.CANCELLED), ("oa", Launch.HEDGE, Outcome.WON)]
    assert record.attempts[1].started - record.attempts[0].started >= HEDGE_DELAY_S  # never before the delay
    assert record.latency_s < 4.0  # far less than the primary's 5 s
    winner = record.winner
    assert winner is not None and winner.input_tokens == answer.usage.prompt_tokens == 2  # 11 characters // 4
    assert winner.cost_usd == pytest.approx(2 * EMBED_PRICE / 1_000_000)
    assert record.cost_usd - record.wasted_cost_usd == pytest.approx(winner.cost_usd)


async def test_embeddings_of_an_alias_without_openai_targets_is_400_naming_it(env: Env) -> None:
    async with env.r.openai() as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.embeddings.create(model="embed-claude", input="hello")
    assert "embed-claude" in bad.value.message and bad.value.param == "model"
    assert isinstance(bad.value.body, dict) and bad.value.body["type"] == "invalid_request_error"  # OpenAI's shape
    assert env.an.stats.received == 0
    record = (await env.r.collect.wait_for(1))[-1]
    assert record.status == 400 and [a.skip_reason for a in record.attempts] == ["unsupported_request"]


async def test_embeddings_skip_an_anthropic_target_for_an_openai_one(env: Env) -> None:
    async with env.r.openai() as client:
        answer = await client.embeddings.create(model="embed-mixed", input=["a b c", "d"], encoding_format="float")
    assert [len(d.embedding) for d in answer.data] == [1536, 1536]
    assert env.an.stats.received == 0 and env.oa.stats.received_by_route == {"embeddings": 1}
    record = (await env.r.collect.wait_for(1))[-1]
    assert [(a.provider, a.outcome, a.skip_reason) for a in record.attempts] == [
        ("an", Outcome.SKIPPED, "unsupported_request"), ("oa", Outcome.WON, None)]


# ---- models.retrieve ----------------------------------------------------------------------------------------

async def test_models_retrieve_with_both_sdks(env: Env) -> None:
    async with env.r.openai() as client:
        model = await client.models.retrieve("claude")
    assert (model.id, model.object, model.owned_by) == ("claude", "model", "gateway")
    async with env.r.anthropic() as aclient:
        info = await aclient.models.retrieve("gpt")
    assert (info.id, info.type, info.display_name) == ("gpt", "model", "gpt")
    assert info.created_at.year == 1970
    async with env.r.openai() as client, env.r.anthropic() as aclient:  # both SDKs send the slash as %2F
        assert (await client.models.retrieve("team/claude")).id == "team/claude"
        assert (await aclient.models.retrieve("team/claude")).id == "team/claude"
    assert env.oa.stats.received == env.an.stats.received == 0  # answered from the config


async def test_models_retrieve_answer_is_a_complete_anthropic_model_info(env: Env) -> None:
    async with env.r.anthropic() as aclient:
        raw = await aclient.models.with_raw_response.retrieve("claude")
    anthropic.types.ModelInfo.model_validate(raw.http_response.json())  # the SDK's own type, strictly
    assert (await raw.parse()).lifecycle == "active"


async def test_unknown_model_is_not_found_in_each_sdks_shape(env: Env) -> None:
    async with env.r.openai() as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("nope")
    assert missing.value.code == "model_not_found" and "nope" in missing.value.message
    async with env.r.anthropic() as aclient:
        with pytest.raises(anthropic.NotFoundError) as gone:
            await aclient.models.retrieve("nope")
    assert gone.value.body == {"type": "error", "error": {"type": "not_found_error", "message": "model: nope"}}
    assert "model: nope" in gone.value.message  # the SDK read the message out of Anthropic's shape
    async with env.r.anthropic() as aclient:
        with pytest.raises(anthropic.NotFoundError) as uncounted:
            await aclient.messages.count_tokens(model="nope", messages=CONVERSATION)
    assert isinstance(uncounted.value.body, dict) and uncounted.value.body["type"] == "error"
    assert uncounted.value.body["error"]["type"] == "not_found_error" and "nope" in uncounted.value.message
    assert env.oa.stats.received == env.an.stats.received == 0


# ---- rejected requests: the request log and /metrics --------------------------------------------------------

async def _reject_401(e: Env) -> None:
    async with e.r.openai(key="wrong-key") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])


async def _reject_400(e: Env) -> None:
    async with e.r.anthropic() as client:
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(model="gpt", max_tokens=-1, messages=[{"role": "user", "content": "hi"}])


async def _reject_404_alias(e: Env) -> None:
    async with e.r.openai() as client:
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="no-such-alias", input="hi")


async def _reject_404_path(e: Env) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{e.r.url}/v1/nothing-here", json={},
                                                          headers={"authorization": f"Bearer {GATEWAY_KEY}"}) as resp:
        assert resp.status == 404


async def _reject_405(e: Env) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{e.r.url}/v1/chat/completions",
                                                         headers={"authorization": f"Bearer {GATEWAY_KEY}"}) as resp:
        assert resp.status == 405


async def _reject_413(e: Env) -> None:
    async with e.r.openai() as client:
        with pytest.raises(openai.APIStatusError) as too_big:  # max_body_mb is 1
            await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x" * 1_500_000}])
    assert too_big.value.status_code == 413
    assert isinstance(too_big.value.body, dict) and too_big.value.body["type"] == "request_too_large"


REJECTIONS = [(401, "", _reject_401), (400, "", _reject_400), (404, "no-such-alias", _reject_404_alias),
              (404, "", _reject_404_path), (405, "", _reject_405), (413, "", _reject_413)]


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.request" and r.getMessage() == "request"]


async def _request_counts(e: Env) -> dict[int, float]:
    """Requests by status, as GET /metrics counts them (the request-duration histogram's _count)."""
    async with aiohttp.ClientSession() as http, http.get(f"{e.r.url}/metrics") as resp:
        assert resp.status == 200
        exposition = parse(await resp.text())
    counts: dict[int, float] = {}
    for name, labels, value in exposition.samples:
        if name == "gateway_request_duration_seconds_count":
            status = int(labels["http_response_status_code"])
            counts[status] = counts.get(status, 0) + value
    return counts


async def test_every_rejected_request_is_logged_once_and_counted_by_status(
        observed: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.request")
    expected: dict[int, float] = {}
    for n, (status, alias, reject) in enumerate(REJECTIONS, 1):
        await reject(observed)
        await observed.r.collect.wait_for(n)
        lines = _request_lines(caplog)
        assert len(lines) == n, f"{status}: {len(lines) - n + 1} request log lines"
        line: Any = lines[-1]
        assert (line.status, line.alias, line.winner, line.attempts) == (status, alias, None, [])
        expected[status] = expected.get(status, 0) + 1
        assert await _request_counts(observed) == expected, f"after the {status}"
    assert observed.oa.stats.received == observed.an.stats.received == 0  # nothing rejected went upstream


async def test_a_served_request_is_logged_and_counted_beside_the_rejected(
        observed: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.request")
    await _reject_401(observed)
    async with observed.r.anthropic() as client:
        await client.messages.count_tokens(model="claude", messages=CONVERSATION)
    await observed.r.collect.wait_for(2)
    lines: list[Any] = _request_lines(caplog)
    assert [(x.status, x.endpoint, x.winner) for x in lines] == [(401, "chat", None),
                                                                  (200, "count_tokens", "an/claude-x")]
    assert await _request_counts(observed) == {401: 1, 200: 1}


# ---- headers: what reaches each provider kind --------------------------------------------------------------

BETA = "output-128k-2025-02-19,fine-grained-tool-streaming-2025-05-14"
CLIENT_VERSION = "2099-01-01"  # not the provider's configured default (2023-06-01): only the client sends this


def _smuggled(key: str) -> dict[str, str]:
    """The Anthropic SDK's headers plus a client's attempt to pass its own credentials upstream."""
    return {"anthropic-beta": BETA, "anthropic-version": CLIENT_VERSION, "x-api-key": key,
            "authorization": f"Bearer {key}", "api-key": "client-smuggled"}


async def test_anthropic_beta_and_version_reach_anthropic_providers_only(env: Env) -> None:
    messages: list[MessageParam] = [{"role": "user", "content": "hi"}]
    async with env.r.anthropic() as client:
        await client.messages.create(model="claude", max_tokens=10, messages=messages,
                                     extra_headers=_smuggled(GATEWAY_KEY))
        an_chat = env.an.stats.last_headers
        async with client.messages.stream(model="claude", max_tokens=10, messages=messages,
                                          extra_headers=_smuggled(GATEWAY_KEY)) as stream:
            await stream.get_final_message()
        an_stream = env.an.stats.last_headers
        await client.messages.count_tokens(model="claude", messages=messages, extra_headers=_smuggled(GATEWAY_KEY))
        an_count = env.an.stats.last_headers
        # The same headers to an OpenAI-kind provider (translated): none of them reaches it.
        await client.messages.create(model="gpt", max_tokens=10, messages=messages,
                                     extra_headers=_smuggled(GATEWAY_KEY))
        oa_chat = env.oa.stats.last_headers
    for seen in (an_chat, an_stream, an_count):
        assert seen["anthropic-beta"] == BETA and seen["anthropic-version"] == CLIENT_VERSION
        assert seen["x-api-key"] == key_fingerprint("provider-secret-an")
        assert "authorization" not in seen and "api-key" not in seen
    assert not {"anthropic-beta", "anthropic-version", "x-api-key", "api-key"} & set(oa_chat)
    assert oa_chat["authorization"] == key_fingerprint("provider-secret-oa")
    assert env.an.stats.received == 3 and env.oa.stats.received == 1


async def test_openai_door_forwards_no_client_header_to_either_kind(env: Env) -> None:
    async with env.r.openai() as client:
        for alias in ("claude", "gpt"):
            await client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "hi"}],
                                                 extra_headers=_smuggled(GATEWAY_KEY))
        await client.embeddings.create(model="embed-mixed", input="hi", extra_headers=_smuggled(GATEWAY_KEY))
    an_seen = env.an.stats.last_headers
    assert "anthropic-beta" not in an_seen and an_seen["anthropic-version"] == "2023-06-01"  # the configured one
    assert an_seen["x-api-key"] == key_fingerprint("provider-secret-an") and "authorization" not in an_seen
    for seen in [r["headers"] for r in env.oa.stats.recent]:
        assert not {"anthropic-beta", "anthropic-version", "x-api-key", "api-key"} & set(seen)
        assert seen["authorization"] == key_fingerprint("provider-secret-oa")
    assert env.oa.stats.received_by_route == {"chat.completions": 1, "embeddings": 1}


async def test_a_client_key_header_never_replaces_the_providers_key(env: Env) -> None:
    # A provider that checks its key would refuse any other: every request below must still get through.
    env.an.profile = SimProfile(require_key="provider-secret-an")
    env.oa.profile = SimProfile(require_key="provider-secret-oa")
    messages: list[MessageParam] = [{"role": "user", "content": "hi"}]
    async with env.r.anthropic() as client:
        for alias in ("claude", "gpt"):
            message = await client.messages.create(model=alias, max_tokens=50, messages=messages,
                                                   extra_headers={"x-api-key": GATEWAY_KEY,
                                                                  "anthropic-beta": "x-api-key=sk-client"})
            assert message.stop_reason == "end_turn"
    async with env.r.openai() as oclient:
        await oclient.embeddings.create(model="embed-mixed", input="hi",
                                        extra_headers={"api-key": "sk-client", "x-api-key": "sk-client"})
    assert env.an.stats.errors == env.oa.stats.errors == 0
    assert env.an.stats.completed == 1 and env.oa.stats.completed == 2
