"""End-to-end harness: simulated providers and a real gateway on 127.0.0.1, driven by the official SDKs."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import openai
from aiohttp import web

from gateway.config import GatewayConfig, parse_config
from gateway.engine import CompositeHooks, Hooks, RequestSummary
from gateway.logs import RequestLog
from gateway.server import Gateway, build_app
from gateway.server.connections import GatewayRunner
from gateway.telemetry import Telemetry
from tests.polling import NotYet, eventually

GATEWAY_KEY = "gw-test-key-1234"


class Collect(Hooks):
    def __init__(self) -> None:
        self.records: list[RequestSummary] = []

    def request_finished(self, record: RequestSummary) -> None:
        self.records.append(record)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[RequestSummary]:  # noqa: ASYNC109
        """Until `count` requests have finished (a record is reported after the answer's last byte, so a client
        holding its answer may be a moment ahead of it); the records so far."""
        await eventually(lambda: len(self.records) >= count or NotYet(len(self.records)), timeout_s=timeout,
                         what=f"{count} finished requests")
        return self.records


class SdkClients:
    """The official SDKs pointed at a running gateway's `url`."""

    url: str

    def openai(self, key: str = GATEWAY_KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=30)

    def anthropic(self, key: str = GATEWAY_KEY) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=key, max_retries=0, timeout=30)


@dataclass
class Running(SdkClients):
    url: str
    gateway: Gateway
    collect: Collect
    # (method, path with query, status) of every response the gateway started, 404s included: what a client
    # really called (e.g. the paths a CLI probes at startup), which the request hooks only see for chat calls.
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    telemetry: Telemetry | None = None  # when `running` was given one: GET /metrics serves it
    runner: web.AppRunner | None = None  # for tests that look at the server's open connections


class Upstream(Protocol):
    """What a provider's config needs of the server behind it: a SimulatedProvider, or a test's own server."""

    @property
    def base_url(self) -> str: ...


def config_for(sims: Mapping[str, tuple[str, Upstream]], models: dict[str, Any],
               **extra: Any) -> GatewayConfig:
    """sims: provider name -> (kind, simulator or other upstream)."""
    data: dict[str, Any] = {
        "server": {"api_keys": [GATEWAY_KEY], "max_body_mb": 1},
        "providers": {
            name: {"kind": kind, "base_url": sim.base_url + ("/v1" if kind == "openai" else ""),
                   "api_key": f"provider-secret-{name}", "timeout_s": 20,
                   "breaker": {"fail_max": 3, "reset_timeout_s": 30}}
            for name, (kind, sim) in sims.items()},
        "models": models,
        "telemetry": {"traces_file": ""},
    }
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **copy.deepcopy(value)}
    return parse_config(data, {})


@asynccontextmanager
async def running(config: GatewayConfig, *, telemetry: Telemetry | None = None,
                  request_log: bool = False) -> AsyncIterator[Running]:
    """`telemetry`: the gateway gets it (and /metrics), as `gateway serve` does, and owns it (shut down at the
    end). `request_log`: `gateway.logs.RequestLog` is among the hooks, as in `gateway serve` (one
    `"msg": "request"` line per request on logger `gateway.request`)."""
    collect = Collect()
    hooks: list[Hooks] = [collect]
    if request_log:
        hooks.insert(0, RequestLog())
    if telemetry is not None:
        telemetry.hooks = CompositeHooks(telemetry.hooks, *hooks)
        gateway = Gateway(config, telemetry=telemetry)
    else:
        gateway = Gateway(config, hooks=collect if len(hooks) == 1 else CompositeHooks(*hooks))
    seen: list[tuple[str, str, int]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append((request.method, request.path_qs, response.status))

    app = build_app(gateway)
    app.on_response_prepare.append(record)
    runner = GatewayRunner(app, config.server, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Running(f"http://127.0.0.1:{port}", gateway, collect, seen, telemetry, runner)
    finally:
        await runner.cleanup()
