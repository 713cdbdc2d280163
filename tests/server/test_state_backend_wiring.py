"""How a Gateway holds its StateBackend: created once, kept across reloads, closed once, breakers re-attached."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.config import parse_config
from gateway.server.gateway import Gateway, GatewayHolder
from gateway.state.limiter import LocalLimiter
from tests.polling import eventually, eventually_equal
from tests.redis_server import running_redis, ttl_once_set


def config(state: dict[str, Any] | None = None, aliases: tuple[str, ...] = ("chat",)) -> Any:
    return parse_config({
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1",
                            "breaker": {"fail_max": 1, "reset_timeout_s": 30}}},
        "models": {alias: {"targets": [{"provider": "p", "model": "m"}]} for alias in aliases},
        "telemetry": {"traces_file": ""},
        **({"state": state} if state is not None else {})}, {})


async def test_memory_backend_keeps_one_local_limiter_across_reloads() -> None:
    first = Gateway(config())
    second = first.successor(config(aliases=("chat", "other")))
    assert isinstance(first.limiter, LocalLimiter) and second.limiter is first.limiter
    assert second.state_backend is first.state_backend and first.state_backend.health() == {"backend": "memory"}
    await GatewayHolder(second).aclose()


async def test_redis_backend_survives_a_reload_and_publishes_the_new_configs_breakers(
        caplog: pytest.LogCaptureFixture) -> None:
    async with running_redis() as server:
        state = {"backend": "redis", "url": server.url, "key_prefix": "w:"}
        first = Gateway(config(state))
        holder = GatewayHolder(first)
        await eventually_equal(first.state_backend.health, {"backend": "redis", "redis": "connected"}, timeout_s=10,
                               interval_s=0.05, what="the state backend's health")
        with caplog.at_level(logging.WARNING, "gateway.server"):
            second = first.successor(config({**state, "key_prefix": "other:"}, aliases=("chat", "new")))
        assert second.state_backend is first.state_backend
        assert any("next restart" in r.getMessage() for r in caplog.records)
        holder.swap(second)

        permit = second.runtime.breakers["p"].try_acquire()
        assert permit is not None
        permit.failure()  # fail_max 1: open
        client = aioredis.from_url(server.url)
        try:
            # Published in the background, under the prefix in use: the first one.
            ttl_ms = await eventually(lambda: ttl_once_set(client, "w:breaker:p"), timeout_s=5,
                                      what="the opening to be published as w:breaker:p")
            assert ttl_ms <= 30_000
        finally:
            await client.aclose()
        await holder.aclose()
        assert second.state_backend.health() == {"backend": "redis", "redis": "unavailable"}  # closed
        await second.state_backend.aclose()  # a second close is harmless
