"""A gateway on 127.0.0.1 whose observers are watched in order: what each hook received, and when each of its
responses started (`on_response_prepare`), in one timeline, for tests of what the door reports and when."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.engine import Hooks, RequestStarted, RequestSummary
from gateway.server import Gateway, build_app
from gateway.server.connections import GatewayRunner


@dataclass
class Observed(Hooks):
    """The hooks' events, and a timeline of ("prepared", request id, status) and ("finished", request id,
    status) entries: a response's headers going out, a request's record reported."""

    started: list[RequestStarted] = field(default_factory=list)
    finished: list[RequestSummary] = field(default_factory=list)
    timeline: list[tuple[str, int, int]] = field(default_factory=list)

    def request_started(self, event: RequestStarted) -> None:
        self.started.append(event)

    def request_finished(self, record: RequestSummary) -> None:
        self.finished.append(record)
        self.timeline.append(("finished", record.request_id, record.status))

    def summary_of(self, request_id: int) -> RequestSummary | None:
        return next((r for r in self.finished if r.request_id == request_id), None)


@dataclass
class Served:
    url: str
    gateway: Gateway
    observed: Observed


@asynccontextmanager
async def served(config: GatewayConfig) -> AsyncIterator[Served]:
    """The gateway as `gateway serve` runs it (handlers cancelled when their client leaves), on a free port."""
    observed = Observed()
    gateway = Gateway(config, hooks=observed)

    async def prepared(request: web.Request, response: web.StreamResponse) -> None:
        request_id = response.headers.get("x-gateway-request-id")
        if request_id is not None:
            observed.timeline.append(("prepared", int(request_id), response.status))

    app = build_app(gateway)
    app.on_response_prepare.append(prepared)
    runner = GatewayRunner(app, config.server, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", gateway, observed)
    finally:
        await runner.cleanup()
