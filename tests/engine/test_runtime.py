"""The runtime's hooks into shared latency: which targets it watches, where samples go, and which window the
adaptive delay and the deadline rule read (the shared view while it answers, the local windows otherwise)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from gateway.clock import FakeClock
from gateway.config.model import GatewayConfig, HedgeConfig, ModelRoute, Price, ProviderConfig, ServerConfig, Target
from gateway.engine import Engine, RequestRecord, Runtime
from gateway.policies.budget import BudgetOptions
from gateway.policies.latency import AdaptiveDelayOptions
from gateway.policies.sketch import RELATIVE_ACCURACY, Bins, LatencySketch, SharedWindow, TargetKey, bin_of, bucket_of
from gateway.wire import WireFormat
from tests.engine.fakes import FakeProvider, Plan

START = 1_700_000_000.0
ADAPTIVE = AdaptiveDelayOptions(quantile=0.95, min_samples=20, fallback_ms=3000.0, window_s=120.0)


class FakeShare:
    """`LatencyShare` without an exchange: the test installs the views itself."""

    def __init__(self, wall: FakeClock) -> None:
        self.wall = wall
        self.windows: dict[TargetKey, SharedWindow] = {}
        self.watched: dict[TargetKey, float] = {}

    def watch(self, windows: Mapping[TargetKey, float]) -> None:
        self.watched.update(windows)

    def window(self, key: TargetKey) -> SharedWindow | None:
        return self.windows.setdefault(key, SharedWindow(wall=self.wall))

    def learned(self, key: TargetKey, latency_s: float, samples: int) -> None:
        """What an exchange would install after other replicas saw `samples` answers of `latency_s`."""
        bins: Bins = {bin_of(latency_s): samples}
        window = self.window(key)
        assert window is not None
        window.install({bucket_of(self.wall()): LatencySketch(bins)})


def config() -> GatewayConfig:
    providers = {name: ProviderConfig(name=name, kind=WireFormat.OPENAI, base_url="http://127.0.0.1:9/v1")
                 for name in ("a", "b")}
    adaptive = ModelRoute(alias="chat", targets=(Target("a", "model-a", Price(1.0, 2.0)),
                                                 Target("b", "model-b", Price(1.0, 2.0))),
                          hedge=HedgeConfig(max_attempts=2, adaptive=ADAPTIVE, budget=BudgetOptions(percent=100)))
    fixed = ModelRoute(alias="other", targets=(Target("b", "model-b", Price(1.0, 2.0)),))
    return GatewayConfig(server=ServerConfig(), providers=providers, models={"chat": adaptive, "other": fixed})


def runtime(share: FakeShare | None, *fakes: FakeProvider, clock: Any = None) -> Runtime:
    fakes = fakes or (FakeProvider("a", Plan(ttft_s=0.1)), FakeProvider("b", Plan(ttft_s=0.1)))
    return Runtime(config(), providers={f.name: f for f in fakes}, clock=clock or FakeClock(),
                   shared_latency=share)


def test_every_target_is_watched_streamed_and_not_over_its_longest_window() -> None:
    share = FakeShare(FakeClock(START))
    runtime(share)
    assert share.watched == {("a", "model-a", False): 120.0, ("a", "model-a", True): 120.0,
                             ("b", "model-b", False): 120.0, ("b", "model-b", True): 120.0}


def test_a_fresh_runtime_hedges_at_the_shared_delay_and_knows_the_typical_latency() -> None:
    share = FakeShare(FakeClock(START))
    share.learned(("a", "model-a", True), 0.8, samples=200)
    rt = runtime(share)
    route, target = rt.config.models["chat"], rt.config.models["chat"].targets[0]
    tracker = rt.tracker(route, target, stream=True)
    assert tracker is not None and tracker.sample_count() == 0
    assert tracker.delay_s() == pytest.approx(0.8, rel=RELATIVE_ACCURACY)
    assert rt.typical_latency_s(target, True) == pytest.approx(0.8, rel=RELATIVE_ACCURACY)
    # Streamed and full latencies are separate windows: nothing is known of the non-streamed one.
    non_stream = rt.tracker(route, target, stream=False)
    assert non_stream is not None and non_stream.delay_s() == pytest.approx(3.0)
    assert rt.typical_latency_s(target, False) is None


def test_samples_go_to_the_local_windows_and_to_the_shared_one() -> None:
    share = FakeShare(FakeClock(START))
    rt = runtime(share)
    route, target = rt.config.models["chat"], rt.config.models["chat"].targets[0]
    tracker = rt.tracker(route, target, stream=False)
    assert tracker is not None
    for _ in range(25):
        rt.record_latency(target, False, 0.25)
    assert tracker.sample_count() == 25
    window = share.window(("a", "model-a", False))
    assert window is not None and window.pending == {bucket_of(START): {bin_of(0.25): 25}}


def test_the_local_windows_serve_while_the_shared_view_is_not_current() -> None:
    clock = FakeClock()
    share = FakeShare(FakeClock(START))
    share.learned(("a", "model-a", False), 0.8, samples=200)
    rt = runtime(share, clock=clock)
    route, target = rt.config.models["chat"], rt.config.models["chat"].targets[0]
    tracker = rt.tracker(route, target, stream=False)
    assert tracker is not None and tracker.delay_s() == pytest.approx(0.8, rel=RELATIVE_ACCURACY)
    for _ in range(25):
        rt.record_latency(target, False, 0.25)
    window = share.window(("a", "model-a", False))
    assert window is not None
    window.lose()  # the exchange failed
    clock.advance(1.0)  # past the tracker's one-second reuse of its last delay
    assert tracker.delay_s() == pytest.approx(0.25)
    assert rt.typical_latency_s(target, False) == pytest.approx(0.25)


def test_without_sharing_nothing_changes() -> None:
    rt = runtime(None)
    route, target = rt.config.models["chat"], rt.config.models["chat"].targets[0]
    tracker = rt.tracker(route, target, stream=False)
    assert tracker is not None and tracker.delay_s() == pytest.approx(3.0)
    assert rt.typical_latency_s(target, False) is None


@pytest.mark.looptime
async def test_the_first_request_of_a_fresh_runtime_hedges_at_the_learned_delay() -> None:
    share = FakeShare(FakeClock(START))
    share.learned(("a", "model-a", False), 0.5, samples=100)
    a, b = FakeProvider("a", Plan(ttft_s=2.0)), FakeProvider("b", Plan(ttft_s=0.1))
    rt = runtime(share, a, b, clock=asyncio.get_running_loop().time)
    route = rt.config.models["chat"]
    loop = asyncio.get_running_loop()
    record = RequestRecord(request_id=1, door=WireFormat.OPENAI, started=loop.time(), trace_id=1, route=route,
                           alias=route.alias, stream=False)
    async with asyncio.TaskGroup() as tg:
        await Engine(rt).run(record, {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}, tg,
                             loop.time() + 60)
    summary = record.summary(loop.time())
    assert summary.hedge_delay_s == pytest.approx(0.5, rel=RELATIVE_ACCURACY)  # not the 3 s fallback
    assert record.winner_index == 1 and len(b.calls) == 1  # hedged at 0.5 s, and the backup won
