"""Two real `gateway serve` processes on one real redis-server: replica A learns its primary's latency from
traffic (through the official openai SDK, to a simulated provider on loopback); replica B, started afterwards
with an empty window, hedges at that learned delay from its very first request, as its trace shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import yaml

from gateway.simulator import SimulatedProvider, parse_profile
from tests.e2e.test_redis_shared_state import Replica, launch
from tests.polling import NotYet, eventually
from tests.redis_server import RedisServer, free_port, running_redis

FALLBACK_MS = 3000.0
TARGET = "primary/m/total"  # how /healthz names the primary's non-streamed latency window
LEARNING_REQUESTS = 40


def write_config(path: Path, port: int, redis_url: str, traces: Path, primary: SimulatedProvider,
                 backup: SimulatedProvider) -> None:
    path.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_s": 1},
        "providers": {name: {"kind": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "k"}
                      for name, sim in (("primary", primary), ("backup", backup))},
        # No hedge is ever sent (no budget): each request leaves exactly one sample, the primary's, so the
        # test knows when A's view holds them all. The delay is still chosen and traced for every request.
        "models": {"chat": {"targets": [{"provider": "primary", "model": "m"}, {"provider": "backup", "model": "m"}],
                            "hedge": {"delay_ms": "p95", "min_samples": 20, "fallback_delay_ms": FALLBACK_MS,
                                      "budget_percent": 0, "budget_min": 0}}},
        "state": {"backend": "redis", "url": redis_url, "key_prefix": "gw-latency-test:", "timeout_ms": 1000},
        "telemetry": {"traces_file": str(traces)},
    }))


def request_delays_ms(traces: Path) -> list[float]:
    """`gateway.hedge_delay_ms` of each `chat chat` request span, in the order the requests started."""
    spans = [orjson.loads(line) for line in traces.read_bytes().splitlines()] if traces.exists() else []
    requests = sorted((s for s in spans if s.get("name") == "chat chat" and s.get("kind") == "SERVER"),
                      key=lambda s: int(s["start_ns"]))
    return [float(s["attributes"]["gateway.hedge_delay_ms"]) for s in requests]


async def latency_health(http: aiohttp.ClientSession, replica: Replica) -> dict[str, Any]:
    async with http.get(f"{replica.url}/healthz") as resp:
        body = await resp.json()
    latency = body["latency"]
    assert isinstance(latency, dict)
    return latency


async def ask(replica: Replica, n: int, *, concurrency: int = 8) -> None:
    client = openai.AsyncOpenAI(base_url=f"{replica.url}/v1", api_key="none", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            reply = await client.chat.completions.create(model="chat", messages=[{"role": "user",
                                                                                  "content": f"question {i}"}])
            assert reply.choices[0].message.content

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, SimulatedProvider, SimulatedProvider]]:
    profile = parse_profile({"ttft": {"median_ms": 120, "sigma": 0.3}})
    async with running_redis() as redis, SimulatedProvider(profile, name="primary", seed=3) as primary, \
            SimulatedProvider(name="backup") as backup:
        yield redis, primary, backup


async def test_a_fresh_replica_hedges_at_the_delay_another_replica_learned(
        env: tuple[RedisServer, SimulatedProvider, SimulatedProvider], tmp_path: Path) -> None:
    redis, primary, backup = env
    replicas: list[Replica] = []
    try:
        port_a = free_port()
        write_config(tmp_path / "a.yaml", port_a, redis.url, tmp_path / "a.jsonl", primary, backup)
        a = await launch(tmp_path / "a.yaml", port_a, tmp_path / "a.log")
        replicas.append(a)
        await ask(a, LEARNING_REQUESTS)
        async with aiohttp.ClientSession() as http:
            async def a_view_has_every_sample() -> dict[str, Any] | NotYet:
                health = await latency_health(http, a)
                target = health["targets"].get(TARGET)
                return target if target is not None and target["samples"] == LEARNING_REQUESTS else NotYet(health)

            # A publishes and reads back once a second in the background.
            learned = await eventually(a_view_has_every_sample, timeout_s=10, interval_s=0.1,
                                       what="replica A's shared view to hold its samples")
            port_b = free_port()
            write_config(tmp_path / "b.yaml", port_b, redis.url, tmp_path / "b.jsonl", primary, backup)
            b = await launch(tmp_path / "b.yaml", port_b, tmp_path / "b.log")
            replicas.append(b)
            await ask(b, 1)
            assert (await latency_health(http, b))["shared_through"] == "redis"
        for replica in replicas:  # a graceful stop writes out the spans still buffered
            replica.proc.terminate()
            assert await asyncio.wait_for(replica.proc.wait(), 30) == 0
        a_delays, b_delays = request_delays_ms(tmp_path / "a.jsonl"), request_delays_ms(tmp_path / "b.jsonl")
        assert len(a_delays) == LEARNING_REQUESTS and len(b_delays) == 1
        assert a_delays[0] == FALLBACK_MS and a_delays[-1] != FALLBACK_MS  # A started with nothing, and learned
        # B's very first request: A's learned p95 (the shared view, as A's /healthz rounds it), not the fallback.
        assert b_delays[0] == pytest.approx(learned["p95_ms"], abs=0.06)
        assert b_delays[0] != FALLBACK_MS
        assert 100 < b_delays[0] < 1000  # and a real p95 of a ~120 ms provider
    finally:
        for replica in replicas:
            if replica.proc.returncode is None:
                replica.proc.kill()
                await replica.proc.wait()
