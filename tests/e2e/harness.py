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
from gateway.engine import Hooks, RequestSummary
from gateway.server import Gateway, build_app

GATEWAY_KEY = "gw-test-key-1234"


class Collect(Hooks):
    def __init__(self) -> None:
        self.records: list[RequestSummary] = []

    def request_finished(self, record: RequestSummary) -> None:
        self.records.append(record)


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
async def running(config: GatewayConfig) -> AsyncIterator[Running]:
    collect = Collect()
    gateway = Gateway(config, hooks=collect)
    seen: list[tuple[str, str, int]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append((request.method, request.path_qs, response.status))

    app = build_app(gateway)
    app.on_response_prepare.append(record)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Running(f"http://127.0.0.1:{port}", gateway, collect, seen)
    finally:
        await runner.cleanup()
