"""The workers' hub and its backend, in one process: two `StateBackend`s as two workers, a `Hub` on a real
Unix socket between them. Exact limits, leases (one flight for identical requests on several workers),
pushed breaker openings, merged metrics, and local state while the hub is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.config.model import StateConfig
from gateway.policies.breaker import BreakerOptions, BreakerState, CircuitBreaker
from gateway.policies.cache import CachedAnswer, CacheOptions, ResponseCache
from gateway.policies.ratelimit import RateLimitOptions
from gateway.state import StateBackend
from gateway.state.hub import Hub
from tests.polling import eventually

RPM_5 = RateLimitOptions(requests_per_minute=5)
ANSWER = CachedAnswer(b'{"id": "x"}', "sim", "m", (("x-gateway-provider", "sim"),))
BREAKER = BreakerOptions(fail_max=2, reset_timeout_s=30.0)


class HubServer:
    """A hub on a socket path that survives it, so a test can stop it and start another."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.hub = Hub()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.hub = Hub()
        self._server = await asyncio.get_running_loop().create_unix_server(self.hub.protocol, self.path)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self.hub.conns):
            if conn.proto is not None:
                conn.proto.close()
        await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):  # sync on purpose: one unlink of a local path
            os.unlink(self.path)


class Worker:
    def __init__(self, path: str, number: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GATEWAY_WORKER", number)
        self.state = StateBackend(StateConfig(timeout_ms=1000), hub=path)
        self.caches = {"c": ResponseCache(CacheOptions(ttl_s=60))}
        self.answers = self.state.answers(self.caches)
        self.breakers = {name: CircuitBreaker(name, BREAKER) for name in ("a", "b")}
        self.state.attach(self.breakers)  # their own state-change listener publishes the openings

    def hub_up(self) -> bool:
        return self.state.health()["hub"] == "connected"


async def until(what: str, check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    await eventually(check, timeout_s=timeout_s, what=what, interval_s=0.005)


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[HubServer, Worker, Worker]]:
    directory = tempfile.mkdtemp(prefix="hub-")  # short: a Unix socket path has ~100 bytes
    server = HubServer(str(Path(directory) / "hub.sock"))
    await server.start()
    first = Worker(server.path, "1", monkeypatch)
    second = Worker(server.path, "2", monkeypatch)
    await first.state.ready(5)
    await second.state.ready(5)
    try:
        yield server, first, second
    finally:
        await first.state.aclose()
        await second.state.aclose()
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_limit_is_exact_across_workers(setup: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = setup
    outcomes = [await worker.state.limiter.check("team", RPM_5, 0) for _ in range(5) for worker in (first, second)]
    assert outcomes.count(None) == 5
    waits = [wait for wait in outcomes if wait is not None]
    assert all(0 < wait <= 12.0 for wait in waits)  # the same exact Retry-After as one process: 60 / 5 s


async def test_token_settlements_reach_the_shared_bucket(setup: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = setup
    tpm = RateLimitOptions(tokens_per_minute=1000)
    assert await first.state.limiter.check("team", tpm, 1000) is None  # reserved the whole minute
    assert await second.state.limiter.check("team", tpm, 100) is not None
    await first.state.limiter.settle("team", tpm, 1000, 10)  # it used 10: 990 refunded
    assert await first.state.limiter.check("team", tpm, 1) is None  # ordered after the settlement
    assert await second.state.limiter.check("team", tpm, 500) is None


async def test_a_miss_takes_a_lease_and_the_other_worker_waits_for_its_answer(
        setup: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = setup
    assert await first.answers.get("c", "k") is None  # the lease: first goes upstream
    waiting = asyncio.create_task(second.answers.get("c", "k"))
    await second.state.limiter.check("team", RPM_5, 0)  # a round trip after the get: the hub has it queued
    assert not waiting.done()
    await first.answers.put("c", "k", ANSWER)
    assert await asyncio.wait_for(waiting, 5) == ANSWER
    assert second.caches["c"].get("k") == ANSWER  # copied locally: the next get costs no round trip


async def test_a_lease_whose_holder_gives_up_passes_to_a_waiting_worker(
        setup: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = setup

    async def failed_flight() -> None:  # gets the lease, then ends without an answer (upstream failed)
        assert await first.answers.get("c", "k") is None

    await asyncio.create_task(failed_flight())
    answered = asyncio.Event()

    async def second_flight() -> None:  # the lease is held by the task that asked, until it puts or ends
        # The release may reach the hub before or after this get: either way a miss, not a wait.
        async with asyncio.timeout(5):
            assert await second.answers.get("c", "k") is None
        await answered.wait()
        await second.answers.put("c", "k", ANSWER)

    flight = asyncio.create_task(second_flight())
    hub_state = second.state._hub
    assert hub_state is not None
    await until("second holds the lease", lambda: ("c", "k") in hub_state.leases._held)
    waiting = asyncio.create_task(first.answers.get("c", "k"))
    await first.state.limiter.check("team", RPM_5, 0)
    assert not waiting.done()  # first waits for second's answer
    answered.set()
    assert await asyncio.wait_for(waiting, 5) == ANSWER
    await flight


async def test_a_worker_that_goes_away_hands_its_leases_on(setup: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = setup
    holding = asyncio.Event()

    async def flight_on_a_worker_that_dies() -> None:
        assert await first.answers.get("c", "k") is None
        holding.set()
        await asyncio.Event().wait()  # never answers: its process is about to go

    flight = asyncio.create_task(flight_on_a_worker_that_dies())
    await holding.wait()
    waiting = asyncio.create_task(second.answers.get("c", "k"))
    await second.state.limiter.check("team", RPM_5, 0)
    assert not waiting.done()
    await first.state.aclose()  # its connection closes, as when a worker dies
    assert await asyncio.wait_for(waiting, 5) is None  # not 60 s: second goes upstream itself at once
    flight.cancel()
    await asyncio.gather(flight, return_exceptions=True)


async def test_a_breaker_opening_is_pushed_to_the_other_worker(setup: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = setup
    for _ in range(BREAKER.fail_max):
        permit = first.breakers["a"].try_acquire()
        assert permit is not None
        permit.failure()
    assert first.breakers["a"].state is BreakerState.OPEN
    await until("open on the other worker", lambda: second.breakers["a"].state is BreakerState.OPEN, 1.0)
    assert 29.0 < second.breakers["a"].retry_in_s() <= 30.0  # until the same moment, not a fresh 30 s
    assert second.breakers["b"].state is BreakerState.CLOSED
    assert first.breakers["a"].retry_in_s() <= 30.0  # not echoed back as a longer opening


async def test_metrics_are_merged_from_every_worker(setup: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = setup
    exposition = ("# TYPE gateway_attempts_total counter\n"
                  'gateway_attempts_total{gateway_provider="sim"} {n}\n'
                  "# TYPE gateway_breaker_state gauge\n"
                  'gateway_breaker_state{gateway_provider="sim"} {n}\n')
    second.state.serve_metrics(lambda: exposition.replace("{n}", "4"))
    merged = await first.state.metrics_text(exposition.replace("{n}", "3"))
    assert 'gateway_attempts_total{gateway_provider="sim"} 7\n' in merged
    assert 'gateway_breaker_state{gateway_provider="sim",worker="1"} 3\n' in merged
    assert 'gateway_breaker_state{gateway_provider="sim",worker="2"} 4\n' in merged


async def test_without_the_hub_workers_use_local_state_and_share_again_when_it_is_back(
        setup: tuple[HubServer, Worker, Worker], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.state")
    server, first, second = setup
    await server.stop()
    await until("both workers see the hub gone", lambda: not first.hub_up() and not second.hub_up())
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = [await worker.state.limiter.check("team", RPM_5, 0) for _ in range(5) for worker in (first, second)]
    assert outcomes == [None] * 10  # each worker's own bucket: the limit per worker
    assert await first.answers.get("c", "new") is None
    await first.answers.put("c", "new", ANSWER)  # kept locally
    assert await first.answers.get("c", "new") == ANSWER
    assert await first.state.metrics_text("local\n") == "local\n"
    assert loop.time() - started < 0.5  # no timeout paid per call
    assert len([r for r in caplog.records if "unavailable (connection lost)" in r.getMessage()]) == 2

    await server.start()  # a new hub, empty
    await until("both workers reconnected", lambda: first.hub_up() and second.hub_up())
    outcomes = [await worker.state.limiter.check("other", RPM_5, 0) for _ in range(5) for worker in (first, second)]
    assert outcomes.count(None) == 5  # shared again
    assert len([r for r in caplog.records if "is back" in r.getMessage()]) == 2
