"""A real gateway with a `Telemetry` attached, in front of simulated providers, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.engine import CompositeHooks, Hooks, RequestSummary
from gateway.server import Gateway, build_app
from gateway.telemetry import Telemetry
from tests.e2e.harness import SdkClients
from tests.polling import NotYet, eventually


class FinishedRequests(CompositeHooks):
    """Delegates every hook to `inner`, and lets a test wait until n requests have finished.

    The request span ends after the response is sent (the TaskGroup first awaits the cancelled losers), so
    a client that has its answer cannot assume the span exists yet: it waits for request_finished instead.
    """

    def __init__(self, inner: Hooks) -> None:
        super().__init__(inner)
        self.records: list[RequestSummary] = []

    def request_finished(self, summary: RequestSummary) -> None:
        super().request_finished(summary)
        self.records.append(summary)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await eventually(lambda: len(self.records) >= count or NotYet(len(self.records)), timeout_s=timeout,
                         what=f"{count} finished requests")


@dataclass
class TracedGateway(SdkClients):
    url: str
    gateway: Gateway
    telemetry: Telemetry
    finished: FinishedRequests


@asynccontextmanager
async def traced_gateway(config: GatewayConfig, telemetry: Telemetry) -> AsyncIterator[TracedGateway]:
    """The gateway owns `telemetry`: leaving the block shuts it down (flushing every exporter)."""
    finished = FinishedRequests(telemetry.hooks)
    telemetry.hooks = finished
    gateway = Gateway(config, telemetry=telemetry)
    runner = web.AppRunner(build_app(gateway), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield TracedGateway(f"http://127.0.0.1:{runner.addresses[0][1]}", gateway, telemetry, finished)
    finally:
        await runner.cleanup()
