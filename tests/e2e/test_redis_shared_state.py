"""Two real `gateway serve` processes sharing one real redis-server: rate limits, cache and breaker openings
are shared; killing Redis loses no request; a restarted Redis is found again.

The simulated providers run in this process, so their counters show what reached them from either replica.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from gateway.simulator import SimulatedProvider, parse_profile
from tests.polling import eventually, eventually_equal
from tests.redis_server import RedisServer, free_port, running_redis

ROOT = Path(__file__).resolve().parents[2]
LIMITED_KEY = "gw-limited-key-1234"  # 6 requests per minute, for both replicas together
ROOMY_KEY = "gw-roomy-key-5678"  # limits far away, so every request goes through the limiter and settles
LIMIT_RPM = 6


@dataclass
class Replica:
    proc: asyncio.subprocess.Process
    url: str
    log: Path

    async def post(self, http: aiohttp.ClientSession, alias: str, content: str = "hi", key: str = ROOMY_KEY,
                   **extra: Any) -> tuple[int, dict[str, str], Any]:
        body = orjson.dumps({"model": alias, "messages": [{"role": "user", "content": content}], **extra})
        async with http.post(f"{self.url}/v1/chat/completions", data=body,
                             headers={"authorization": f"Bearer {key}", "content-type": "application/json"}) as resp:
            return resp.status, dict(resp.headers), await resp.json()

    async def redis_state(self, http: aiohttp.ClientSession) -> str:
        async with http.get(f"{self.url}/healthz") as resp:
            return str((await resp.json())["state"].get("redis"))

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if text in line]


@dataclass
class Cluster:
    a: Replica
    b: Replica
    redis: RedisServer
    steady: SimulatedProvider
    flaky: SimulatedProvider
    http: aiohttp.ClientSession

    async def wait_connected(self, timeout_s: float = 20.0) -> None:
        for replica in (self.a, self.b):
            await eventually_equal(lambda r=replica: r.redis_state(self.http), "connected", timeout_s=timeout_s,
                                   interval_s=0.05, what=f"{replica.url} to connect to redis")


def write_config(path: Path, port: int, redis_url: str, steady: SimulatedProvider, flaky: SimulatedProvider,
                 flaky_fail_max: int) -> None:
    path.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_s": 1, "api_keys": [
            {"key": LIMITED_KEY, "name": "limited", "limits": {"requests_per_minute": LIMIT_RPM}},
            {"key": ROOMY_KEY, "name": "roomy", "limits": {"requests_per_minute": 1_000_000,
                                                           "tokens_per_minute": 1_000_000_000}}]},
        "providers": {
            "steady": {"kind": "openai", "base_url": f"{steady.base_url}/v1", "api_key": "k"},
            "flaky": {"kind": "openai", "base_url": f"{flaky.base_url}/v1", "api_key": "k",
                      "breaker": {"fail_max": flaky_fail_max, "reset_timeout_s": 60}}},
        "models": {
            "chat": {"targets": [{"provider": "steady", "model": "m"}]},
            "cached": {"targets": [{"provider": "steady", "model": "m"}], "cache": {"ttl_s": 60}},
            "fragile": {"targets": [{"provider": "flaky", "model": "m"}, {"provider": "steady", "model": "m"}],
                        "hedge": "off"}},
        # A generous timeout: on a loaded test machine a slow Redis call must not fall back (and so count
        # locally) by accident. Killing Redis fails calls at once (connection refused), not by timeout.
        "state": {"backend": "redis", "url": redis_url, "key_prefix": "gw-test:", "timeout_ms": 1000},
        "telemetry": {"traces_file": ""},
    }))


async def launch(config: Path, port: int, log: Path) -> Replica:
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "1",
            "--log-format", "json", cwd=ROOT, stdout=out, stderr=asyncio.subprocess.STDOUT)
    replica = Replica(proc, f"http://127.0.0.1:{port}", log)
    async with aiohttp.ClientSession() as http:
        async def healthy() -> bool:
            assert proc.returncode is None, f"gateway exited: {replica.log_tail()}"
            async with http.get(f"{replica.url}/healthz") as resp:
                return resp.status == 200

        # Imports are slow on a loaded machine; refused connections until it listens.
        await eventually(healthy, timeout_s=30, interval_s=0.1, what=f"the gateway at {replica.url} to start",
                         ignoring=(aiohttp.ClientError,))
    return replica


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_redis() as redis, \
            SimulatedProvider(name="steady") as steady, \
            SimulatedProvider(parse_profile({"error_rate": 1.0, "error_status": 500}), name="flaky") as flaky, \
            aiohttp.ClientSession() as http:
        ports = free_port(), free_port()
        # Replica B can never open the flaky provider's breaker on its own evidence (fail_max 1000): if it stops
        # sending there, it learned of A's opening through Redis.
        for name, port, fail_max in (("a", ports[0], 3), ("b", ports[1], 1000)):
            write_config(tmp_path / f"{name}.yaml", port, redis.url, steady, flaky, fail_max)
        a, b = await asyncio.gather(*(launch(tmp_path / f"{name}.yaml", port, tmp_path / f"{name}.log")
                                      for name, port in zip("ab", ports, strict=True)))
        cluster = Cluster(a, b, redis, steady, flaky, http)
        try:
            await cluster.wait_connected()
            yield cluster
        finally:
            for replica in (a, b):
                if replica.proc.returncode is None:
                    replica.proc.kill()
                    await replica.proc.wait()


async def test_a_rate_limit_is_shared_by_the_replicas(cluster: Cluster) -> None:
    statuses = [(await replica.post(cluster.http, "chat", key=LIMITED_KEY))[0]
                for _ in range(LIMIT_RPM) for replica in (cluster.a, cluster.b)]
    # Twice the limit was sent, half through each replica: only the limit got through, not once per replica.
    assert statuses.count(200) == LIMIT_RPM and statuses.count(429) == LIMIT_RPM
    assert cluster.steady.stats.received == LIMIT_RPM


async def test_a_response_cached_through_one_replica_is_a_hit_through_the_other(cluster: Cluster) -> None:
    status, headers, first = await cluster.a.post(cluster.http, "cached", "two plus two?", temperature=0)
    assert status == 200 and headers["x-gateway-cache"] == "miss"
    status, headers, again = await cluster.b.post(cluster.http, "cached", "two plus two?", temperature=0)
    assert status == 200 and headers["x-gateway-cache"] == "hit" and again == first
    assert cluster.steady.stats.received == 1


async def test_a_breaker_opened_through_one_replica_keeps_the_other_off_the_provider(cluster: Cluster) -> None:
    flaky, http = cluster.flaky, cluster.http
    for _ in range(3):  # fail_max on A: its breaker opens (each request still answered by the fallback)
        status, headers, _ = await cluster.a.post(http, "fragile")
        assert status == 200 and headers["x-gateway-provider"] == "steady"
    assert flaky.stats.received == 3
    await cluster.a.post(http, "fragile")
    assert flaky.stats.received == 3  # A skips it now

    async def b_skips_flaky() -> bool:
        before = flaky.stats.received
        status, headers, _ = await cluster.b.post(http, "fragile")
        assert status == 200 and headers["x-gateway-provider"] == "steady"
        return flaky.stats.received == before

    # B learns within about a second (it polls every 0.5 s); until then its requests reach flaky.
    await eventually(b_skips_flaky, timeout_s=5, interval_s=0.05,
                     what="replica B to stop sending to the provider whose breaker A opened")
    before = flaky.stats.received
    for _ in range(5):
        status, headers, _ = await cluster.b.post(http, "fragile")
        assert status == 200 and headers["x-gateway-provider"] == "steady"
    assert flaky.stats.received == before
    # Informational log lines are written in batches (within 0.1 s): waited for, not read at once.
    await eventually(lambda: cluster.b.log_lines("opened by another replica"), timeout_s=10,
                     what="B to log the breaker another replica opened")


async def test_killing_redis_loses_no_request_and_a_restarted_redis_is_found_again(cluster: Cluster) -> None:
    http = cluster.http
    statuses: list[int] = []
    warmed_up, killed = asyncio.Event(), asyncio.Event()
    after_kill: list[int] = []

    async def client(worker: int) -> None:
        for i in range(30):
            replica = cluster.a if (worker + i) % 2 else cluster.b
            # Unique cacheable prompts: every request reads and writes the shared cache, and is rate limited.
            status, _, _ = await replica.post(http, "cached", f"question {worker}-{i}", temperature=0)
            (after_kill if killed.is_set() else statuses).append(status)
            if len(statuses) >= 20:
                warmed_up.set()

    clients = asyncio.gather(*(client(w) for w in range(4)))
    await warmed_up.wait()  # 20 requests on shared state, then Redis dies with requests in flight
    await cluster.redis.kill()
    killed.set()
    await clients
    assert set(statuses) == {200} and len(after_kill) >= 40 and set(after_kill) == {200}
    for replica in (cluster.a, cluster.b):
        assert await replica.redis_state(http) == "unavailable"
        assert len(replica.log_lines("unavailable (")) == 1  # logged once, not once per request

    await cluster.redis.start()  # same port, empty
    await cluster.wait_connected()
    for replica in (cluster.a, cluster.b):
        await eventually(lambda r=replica: r.log_lines("is back"), timeout_s=10, what="each replica to log Redis back")
        assert len(replica.log_lines("is back")) == 1
    received = cluster.steady.stats.received
    status, headers, _ = await cluster.a.post(http, "cached", "after the restart", temperature=0)
    assert status == 200 and headers["x-gateway-cache"] == "miss"
    status, headers, _ = await cluster.b.post(http, "cached", "after the restart", temperature=0)
    assert status == 200 and headers["x-gateway-cache"] == "hit"  # shared again
    assert cluster.steady.stats.received == received + 1
