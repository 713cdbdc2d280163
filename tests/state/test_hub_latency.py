"""Latency windows shared by the workers of one machine through the hub: the hub's merged buckets and their
bounds, then two workers' `StateBackend`s on a real hub socket, the hub stopped and started again."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.clock import FakeClock
from gateway.config.model import StateConfig
from gateway.policies.sketch import BUCKET_S, MAX_BIN, MAX_WINDOW_S, RELATIVE_ACCURACY, bin_of, bucket_of
from gateway.state import StateBackend
from gateway.state.hub_latency import HubLatency
from gateway.state.latency import MAX_TARGETS, SharedLatency
from tests.polling import eventually
from tests.state.test_hub import HubServer

START = 1_700_000_000.0
NOW = bucket_of(START)
KEY = ("a", "m", True)


def exchange(hub: HubLatency, publish: list[list[object]], reads: list[list[object]]) -> list[list[int]]:
    answer = orjson.loads(hub.exchange(orjson.dumps([publish, reads])))
    assert isinstance(answer, list)
    return answer


def test_the_hub_adds_every_workers_bins_and_answers_from_the_merge() -> None:
    hub = HubLatency(wall=FakeClock(START))
    k1, k2 = bin_of(0.4), bin_of(0.8)
    assert exchange(hub, [["a", "m", True, NOW, [k1, 3]]], []) == []
    merged = exchange(hub, [["a", "m", True, NOW, [k1, 2, k2, 1]]], [["a", "m", True, NOW], ["a", "m", False, NOW],
                                                                      ["a", "m", True, NOW - 1]])
    assert [dict(zip(m[0::2], m[1::2], strict=True)) for m in merged] == [{k1: 5, k2: 1}, {}, {}]


def test_the_hub_keeps_its_buckets_targets_and_bins_bounded() -> None:
    wall = FakeClock(START)
    hub = HubLatency(wall=wall)
    kept = int(MAX_WINDOW_S / BUCKET_S) + 1
    exchange(hub, [["a", "m", True, NOW - kept - 1, [bin_of(0.1), 1]],  # older than any window: refused
                   ["a", "m", True, NOW + 5, [bin_of(0.1), 1]],  # from a clock far ahead: refused
                   ["a", "m", True, NOW, [MAX_BIN + 1, 9, bin_of(0.1), -3, bin_of(0.2), 1]]], [])
    assert hub.buckets == {KEY: {NOW: {bin_of(0.2): 1}}}
    wall.advance(MAX_WINDOW_S + 2 * BUCKET_S)
    exchange(hub, [], [])
    assert hub.buckets == {}  # the bucket left every window
    exchange(hub, [[f"p{i}", "m", False, bucket_of(wall()), [bin_of(0.1), 1]] for i in range(MAX_TARGETS + 5)], [])
    assert len(hub.buckets) == MAX_TARGETS


@pytest.mark.parametrize("payload", [b"not json", b"[]", b"[[1], []]", b'[[["a", "m", true, "x", []]], []]',
                                     b'[[], [["a"]]]'])
def test_a_malformed_message_is_an_error_the_hub_reports(payload: bytes) -> None:
    with pytest.raises((ValueError, TypeError)):
        HubLatency(wall=FakeClock(START)).exchange(payload)


class Worker:
    def __init__(self, path: str, monkeypatch: pytest.MonkeyPatch, number: str) -> None:
        monkeypatch.setenv("GATEWAY_WORKER", number)
        self.state = StateBackend(StateConfig(timeout_ms=1000), hub=path)
        assert self.state.latency is not None
        self.latency: SharedLatency = self.state.latency
        self.latency.watch({KEY: 60.0})

    def record(self, latency_s: float, times: int) -> None:
        window = self.latency.window(KEY)
        assert window is not None
        for _ in range(times):
            window.record(latency_s)

    def p95(self) -> float | None:
        window = self.latency.window(KEY)
        assert window is not None
        return window.quantile_s(0.95, min_samples=20, window_s=60.0)


@pytest.fixture
async def hub_and_workers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[HubServer, Worker, Worker]]:
    directory = tempfile.mkdtemp(prefix="hub-")  # short: a Unix socket path has ~100 bytes
    server = HubServer(str(Path(directory) / "hub.sock"))
    await server.start()
    first, second = Worker(server.path, monkeypatch, "1"), Worker(server.path, monkeypatch, "2")
    await first.state.ready(5)
    await second.state.ready(5)
    try:
        yield server, first, second
    finally:
        await first.state.aclose()
        await second.state.aclose()
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_workers_share_their_latency_through_the_hub(hub_and_workers: tuple[HubServer, Worker, Worker]) -> None:
    _, first, second = hub_and_workers
    assert first.latency.current and first.state.latency_health() is not None  # fetched at start
    first.record(0.35, 30)
    assert await first.latency.sync_once() and await second.latency.sync_once()
    assert second.p95() == pytest.approx(0.35, rel=RELATIVE_ACCURACY)
    assert first.p95() == pytest.approx(0.35, rel=RELATIVE_ACCURACY)


async def test_the_hub_away_the_workers_go_local_and_share_again_with_a_new_hub(
        hub_and_workers: tuple[HubServer, Worker, Worker]) -> None:
    server, first, second = hub_and_workers
    first.record(0.35, 30)
    await first.latency.sync_once()
    await second.latency.sync_once()
    await server.stop()
    await eventually(lambda: first.state.health()["hub"] != "connected", timeout_s=5,
                     what="worker 1 to see the hub gone")
    first.record(0.35, 25)
    assert not await first.latency.sync_once() and first.p95() is None  # its trackers use local windows
    await server.start()  # a new hub, empty
    for worker in (first, second):
        await eventually(lambda w=worker: w.state.health()["hub"] == "connected", timeout_s=10,
                         what="the workers to reconnect")
    assert await first.latency.sync_once() and await second.latency.sync_once()
    assert second.p95() == pytest.approx(0.35, rel=RELATIVE_ACCURACY)
    window = second.latency.window(KEY)
    assert window is not None and window.samples(60) == 25  # what worker 1 held while the hub was away


async def test_a_bad_latency_message_is_answered_so_the_worker_keeps_its_hub(
        hub_and_workers: tuple[HubServer, Worker, Worker]) -> None:
    _, first, _ = hub_and_workers
    hub_state = first.state._hub
    assert hub_state is not None
    _, payload = await hub_state.link.request("latency", payload=b"garbage")
    assert payload == b"[]" and hub_state.link.up
