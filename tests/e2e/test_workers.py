"""`gateway serve --workers 2` as one gateway, without Redis: the workers share their state through the hub
that the supervisor runs (`gateway.state.hub`). Real processes on 127.0.0.1; the simulated providers run in
this process, so their counters show what reached them from either worker.

Which worker a request reaches is the kernel's choice (SO_REUSEPORT hashes each new connection). Where it
matters, a test uses connections pinned to a known worker: a session with one keep-alive connection
(`limit=1`) whose /healthz said which worker it reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from gateway.simulator import SimulatedProvider, parse_profile
from tests.e2e.test_operations import free_port
from tests.polling import eventually
from tests.redis_server import running_redis

ROOT = Path(__file__).resolve().parents[2]
LIMITED_KEY = "gw-limited-key-1234"
ROOMY_KEY = "gw-roomy-key-5678"  # limits far away: every request goes through the hub's limiter
LIMIT_RPM = 20
FAIL_MAX = 3


@dataclass
class Gateway:
    proc: asyncio.subprocess.Process
    url: str
    log: Path

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if text in line]

    async def post(self, http: aiohttp.ClientSession, alias: str = "chat", content: str = "hi",
                   key: str = ROOMY_KEY, **extra: Any) -> tuple[int, dict[str, str]]:
        body = orjson.dumps({"model": alias, "messages": [{"role": "user", "content": content}], **extra})
        async with http.post(f"{self.url}/v1/chat/completions", data=body,
                             headers={"authorization": f"Bearer {key}", "content-type": "application/json"}) as resp:
            await resp.read()
            return resp.status, dict(resp.headers)

    async def metrics(self, http: aiohttp.ClientSession) -> str:
        async with http.get(f"{self.url}/metrics") as resp:
            assert resp.status == 200
            return await resp.text()

    async def hub_states(self, http: aiohttp.ClientSession, tries: int = 20) -> set[str]:
        """What the workers reached by `tries` new connections say about the hub (both, most likely)."""
        states = set()
        for _ in range(tries):
            async with http.get(f"{self.url}/healthz") as resp:
                state = (await resp.json())["state"]
                up = state["hub"] if state["backend"] == "memory" else f"{state['hub']}+redis {state['redis']}"
                states.add(f"{state['worker']}:{up}")
        return states

    async def children(self, pattern: str) -> list[int]:
        pgrep = await asyncio.create_subprocess_exec("pgrep", "-P", str(self.proc.pid), "-f", pattern,
                                                     stdout=asyncio.subprocess.PIPE)
        return [int(pid) for pid in (await pgrep.communicate())[0].split()]


def write_config(path: Path, port: int, steady: SimulatedProvider, flaky: SimulatedProvider,
                 state: dict[str, Any] | None) -> None:
    path.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_s": 1, "api_keys": [
            {"key": LIMITED_KEY, "name": "limited", "limits": {"requests_per_minute": LIMIT_RPM}},
            {"key": ROOMY_KEY, "name": "roomy", "limits": {"requests_per_minute": 1_000_000,
                                                           "tokens_per_minute": 1_000_000_000}}]},
        "providers": {
            "steady": {"kind": "openai", "base_url": f"{steady.base_url}/v1", "api_key": "k"},
            "flaky": {"kind": "openai", "base_url": f"{flaky.base_url}/v1", "api_key": "k",
                      "breaker": {"fail_max": FAIL_MAX, "reset_timeout_s": 60}}},
        "models": {
            "chat": {"targets": [{"provider": "steady", "model": "m"}]},
            "cached": {"targets": [{"provider": "steady", "model": "m"}], "cache": {"ttl_s": 60}},
            "fragile": {"targets": [{"provider": "flaky", "model": "m"}, {"provider": "steady", "model": "m"}],
                        "hedge": "off"},
            "cached-flaky": {"targets": [{"provider": "flaky", "model": "m"}], "cache": {"ttl_s": 60}}},
        # Generous: on a loaded test machine a slow hub call must not fall back (and count locally) by accident.
        "state": {"timeout_ms": 2000, **(state or {})},
        "telemetry": {"traces_file": ""},
    }))


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    """`eventually`, returning the seconds it took."""
    started = asyncio.get_running_loop().time()
    await eventually(check, timeout_s=timeout_s, what=what, interval_s=0.02)
    return asyncio.get_running_loop().time() - started


@dataclass
class Setup:
    gw: Gateway
    steady: SimulatedProvider
    flaky: SimulatedProvider
    http: aiohttp.ClientSession  # a new connection per request: spread over both workers
    stack: contextlib.AsyncExitStack

    async def pinned(self, per_worker: int) -> dict[str, list[aiohttp.ClientSession]]:
        """`per_worker` sessions of one keep-alive connection each, by the worker ("1", "2") they reach."""
        found: dict[str, list[aiohttp.ClientSession]] = {"1": [], "2": []}
        for _ in range(50 * per_worker):
            if all(len(sessions) >= per_worker for sessions in found.values()):
                return found
            session = await self.stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)))
            async with session.get(f"{self.gw.url}/healthz") as resp:
                worker = (await resp.json())["state"]["worker"]
            if len(found[worker]) < per_worker:
                found[worker].append(session)
        raise AssertionError(f"no {per_worker} connections to each worker: {found}")


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, steady: SimulatedProvider, flaky: SimulatedProvider, http: aiohttp.ClientSession,
                  state: dict[str, Any] | None = None) -> AsyncIterator[Gateway]:
    """`gateway serve --workers 2`, once both workers answer and say they are connected."""
    port = free_port()
    write_config(tmp_path / "g.yaml", port, steady, flaky, state)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(tmp_path / "g.yaml"), "--workers", "2",
            "--log-format", "json", cwd=ROOT, stdout=out, stderr=asyncio.subprocess.STDOUT)
    gw = Gateway(proc, f"http://127.0.0.1:{port}", log)
    try:
        async def both_connected() -> bool:
            assert proc.returncode is None, log.read_text()[-2000:]
            try:
                states = await gw.hub_states(http)
            except aiohttp.ClientError:
                return False
            return {s.partition(":")[0] for s in states if s.partition(":")[2].startswith("connected")} == {"1", "2"}

        await until(both_connected, 30, "both workers serving, connected to the hub")  # slow imports under load
        yield gw
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()  # the workers and the hub get SIGTERM from the kernel (PR_SET_PDEATHSIG)
                await proc.wait()


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Setup]:
    async with SimulatedProvider(parse_profile({"ttft": 600}), name="steady") as steady, \
            SimulatedProvider(parse_profile({"error_rate": 1.0, "error_status": 500}), name="flaky") as flaky, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as http, \
            serving(tmp_path, steady, flaky, http) as gw, contextlib.AsyncExitStack() as stack:
        yield Setup(gw, steady, flaky, http, stack)


async def test_ten_identical_concurrent_cacheable_requests_reach_the_provider_once(workers: Setup) -> None:
    gw, http = workers.gw, workers.http
    pinned = await workers.pinned(5)
    sessions = [*pinned["1"], *pinned["2"]]  # five on each worker
    results = await asyncio.gather(*(gw.post(session, "cached", "two plus two?", temperature=0)
                                     for session in sessions))
    assert [status for status, _ in results] == [200] * 10
    how = [headers["x-gateway-cache"] for _, headers in results]
    # One flight. Its worker's identical requests joined it ("coalesced"); the other worker's waited in the hub
    # for its answer ("hit").
    assert how.count("miss") == 1 and how.count("hit") >= 5 and set(how) <= {"miss", "coalesced", "hit"}, how
    assert workers.steady.stats.received == 1
    status, headers = await gw.post(http, "cached", "two plus two?", temperature=0)
    assert status == 200 and headers["x-gateway-cache"] == "hit" and workers.steady.stats.received == 1


async def test_a_failed_flight_hands_its_lease_on_at_once(tmp_path: Path) -> None:
    # The provider fails each request half a second in (right after its first token): no answer to share.
    async with SimulatedProvider(name="steady") as steady, \
            SimulatedProvider(parse_profile({"ttft": 500, "midstream_error_rate": 1.0}), name="flaky") as flaky, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as http, \
            serving(tmp_path, steady, flaky, http) as gw, contextlib.AsyncExitStack() as stack:
        pinned = await Setup(gw, steady, flaky, http, stack).pinned(3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(gw.post(session, "cached-flaky", "doomed", temperature=0)
                                         for session in [*pinned["1"], *pinned["2"]]))
        assert all(status >= 500 for status, _ in results)  # everyone got the error, nobody a stale answer
        # One flight per worker at most: the first worker's failed, its lease passed to the other, which tried
        # once for its own requests. Not one per request, and no one waited for the 60 s backstop.
        assert flaky.stats.received == 2
        assert loop.time() - started < 5


async def test_a_per_key_limit_admits_exactly_the_limit_across_two_workers(workers: Setup) -> None:
    gw, http = workers.gw, workers.http
    results = await asyncio.gather(*(gw.post(http, key=LIMITED_KEY) for _ in range(2 * LIMIT_RPM)))
    statuses = [status for status, _ in results]
    assert statuses.count(200) == LIMIT_RPM and statuses.count(429) == LIMIT_RPM
    assert workers.steady.stats.received == LIMIT_RPM


async def test_a_breaker_opened_through_one_worker_is_open_on_both_within_a_second(workers: Setup) -> None:
    gw, http, flaky = workers.gw, workers.http, workers.flaky
    pinned = await workers.pinned(1)
    loop = asyncio.get_running_loop()
    for _ in range(FAIL_MAX):  # worker 1 alone sees the failures
        status, headers = await gw.post(pinned["1"][0], "fragile")
        assert status == 200 and headers["x-gateway-provider"] == "steady"  # the fallback answered
    opened = loop.time()
    assert flaky.stats.received == FAIL_MAX

    async def open_on_both() -> bool:
        states = re.findall(r'gateway_breaker_state\{gateway_provider="flaky",worker="(\d)"\} (\d)',
                            await gw.metrics(http))
        return sorted(states) == [("1", "2"), ("2", "2")]  # 2: open

    await until(open_on_both, 1.0, "the breaker open on both workers")
    assert loop.time() - opened < 1.0
    for _ in range(5):  # worker 2 never saw a failure, and skips the provider too
        status, headers = await gw.post(pinned["2"][0], "fragile")
        assert status == 200 and headers["x-gateway-provider"] == "steady"
    assert flaky.stats.received == FAIL_MAX
    # Informational log lines are written in batches (within 0.1 s): waited for, not read at once.
    await eventually(lambda: gw.log_lines("opened by another worker"), timeout_s=5, what="the opening logged")
    assert len(gw.log_lines("opened by another worker")) == 1


def request_count(exposition: str) -> int:
    return sum(int(value) for value in re.findall(r"^gateway_request_duration_seconds_count\{.*\} (\d+)$",
                                                  exposition, re.MULTILINE))


async def test_metrics_scraped_several_times_count_every_workers_requests(workers: Setup) -> None:
    gw, http = workers.gw, workers.http
    sent = 30
    results = await asyncio.gather(*(gw.post(http) for _ in range(sent)))
    assert all(status == 200 for status, _ in results)

    async def all_counted() -> bool:  # a request is counted just after its answer was sent
        return request_count(await gw.metrics(http)) == sent

    await until(all_counted, 5, f"{sent} requests counted")
    pinned = await workers.pinned(1)
    scrapes = [await gw.metrics(pinned[worker][0]) for worker in "12121212"]  # answered by each worker in turn
    assert [request_count(text) for text in scrapes] == [sent] * 8
    for text in scrapes:  # every scrape has both workers' gauges, whichever worker answered it
        assert 'gateway_breaker_state{gateway_provider="steady",worker="1"}' in text
        assert 'gateway_breaker_state{gateway_provider="steady",worker="2"}' in text
        assert text.count("# TYPE gateway_request_duration_seconds histogram") == 1


async def test_the_hub_dying_degrades_to_local_state_without_failed_requests(workers: Setup) -> None:
    gw, http = workers.gw, workers.http
    statuses: list[int] = []
    warmed_up = asyncio.Event()
    killed = asyncio.Event()
    after_kill: list[int] = []

    async def client(worker: int) -> None:
        for i in range(12):
            # Unique cacheable prompts: each request is rate limited, reads and writes the shared cache.
            status, _ = await gw.post(http, "cached", f"question {worker}-{i}", temperature=0)
            (after_kill if killed.is_set() else statuses).append(status)
            if len(statuses) >= 8:
                warmed_up.set()

    clients = asyncio.gather(*(client(w) for w in range(4)))
    await warmed_up.wait()
    [hub] = await gw.children("gateway.state.hub")
    os.kill(hub, signal.SIGKILL)
    killed.set()
    await clients
    assert set(statuses) == {200} and len(after_kill) >= 16 and set(after_kill) == {200}

    async def logged_by_both(text: str) -> bool:
        return len(gw.log_lines(text)) >= 2

    await until(lambda: logged_by_both("unavailable (connection lost)"), 5, "the outage logged")
    # The supervisor starts a new hub, and the workers find it.
    await until(lambda: logged_by_both("is back"), 10, "both workers reconnected")
    assert await gw.hub_states(http) <= {"1:connected", "2:connected"}
    assert len(gw.log_lines("unavailable (connection lost)")) == 2  # once per worker, not once per request
    assert len(gw.log_lines("is back")) == 2
    assert len(await gw.children("gateway.state.hub")) == 1
    # Shared again (the new hub starts from full buckets): exactly the limit across both workers.
    results = await asyncio.gather(*(gw.post(http, key=LIMITED_KEY) for _ in range(2 * LIMIT_RPM)))
    assert [status for status, _ in results].count(200) == LIMIT_RPM


async def test_with_redis_the_workers_share_through_redis_and_one_scrape_still_counts_both(
        tmp_path: Path) -> None:
    async with running_redis() as redis, SimulatedProvider(name="steady") as steady, \
            SimulatedProvider(name="flaky") as flaky, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as http:
        state = {"backend": "redis", "url": redis.url, "key_prefix": "gw-workers:"}
        async with serving(tmp_path, steady, flaky, http, state) as gw:
            async def redis_connected() -> bool:
                return await gw.hub_states(http) == {"1:connected+redis connected", "2:connected+redis connected"}

            await until(redis_connected, 20, "both workers connected to redis")
            results = await asyncio.gather(*(gw.post(http, key=LIMITED_KEY) for _ in range(2 * LIMIT_RPM)))
            assert [status for status, _ in results].count(200) == LIMIT_RPM  # the limit in Redis
            assert steady.stats.received == LIMIT_RPM

            async def all_counted() -> bool:
                return request_count(await gw.metrics(http)) == 2 * LIMIT_RPM  # the 429s are requests too

            await until(all_counted, 5, "every worker's requests in one scrape")
