"""End-to-end harness: simulated providers and a real gateway on 127.0.0.1, driven by the official SDKs."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
from aiohttp import web

from gateway.config import GatewayConfig, parse_config
from gateway.engine import Hooks, RequestRecord
from gateway.server import Gateway, build_app
from gateway.server.connections import GatewayRunner
from gateway.simulator import SimulatedProvider

GATEWAY_KEY = "gw-test-key-1234"


class Collect(Hooks):
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def request_finished(self, record: RequestRecord) -> None:
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
    runner: web.AppRunner | None = None  # for tests that look at the server's open connections


def config_for(sims: dict[str, tuple[str, SimulatedProvider]], models: dict[str, Any],
               **extra: Any) -> GatewayConfig:
    """sims: provider name -> (kind, simulator)."""
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
    runner = GatewayRunner(build_app(gateway), config.server, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Running(f"http://127.0.0.1:{port}", gateway, collect, runner)
    finally:
        await runner.cleanup()
