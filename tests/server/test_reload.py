"""Reload in process: in-flight requests keep their config; breakers and latency windows of unchanged providers
survive; changed providers get fresh state; the replaced gateway closes once its last request is done."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web

from gateway.config import load_config
from gateway.server import Gateway, build_app
from gateway.server.app import reload_config
from gateway.server.gateway import GATEWAY
from gateway.simulator import SimulatedProvider, parse_profile
from tests.polling import NotYet, eventually


def config_text(a: SimulatedProvider, b: SimulatedProvider, primary: str, b_timeout: float = 20) -> str:
    return yaml.safe_dump({
        "providers": {"a": {"kind": "openai", "base_url": f"{a.base_url}/v1"},
                      "b": {"kind": "anthropic", "base_url": b.base_url, "timeout_s": b_timeout}},
        "models": {"chat": {"targets": [{"provider": primary, "model": "m"}], "hedge": "off"}},
        "telemetry": {"traces_file": ""}})


async def test_reload_swaps_config_but_not_for_running_requests(tmp_path: Path) -> None:
    async with SimulatedProvider(parse_profile({"ttft": 800}), name="a") as a, SimulatedProvider(name="b") as b:
        path = tmp_path / "g.yaml"
        path.write_text(config_text(a, b, "a"))
        app = build_app(Gateway(load_config(path)), config_path=str(path))
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
        body = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        holder = app[GATEWAY]
        old = holder.current
        breaker_a = old.runtime.breakers["a"]
        provider_b = old.runtime.providers["b"]
        try:
            async with aiohttp.ClientSession() as http:
                async def post() -> Any:
                    async with http.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                        return resp.status, resp.headers.get("x-gateway-provider")

                running = asyncio.create_task(post())
                # It must be running on the old config before the reload, or the test proves nothing.
                await eventually(lambda: a.stats.in_flight, timeout_s=5, what="the first request to reach provider a")
                path.write_text(config_text(a, b, "b", b_timeout=5))  # b changed, a did not
                assert await reload_config(app) is None
                assert await post() == (200, "b")  # new requests: the new config
                assert await running == (200, "a")  # the running one finished on the old config
                new = holder.current
                assert new is not old
                assert new.runtime.breakers["a"] is breaker_a  # unchanged provider: state carried over
                assert new.runtime.providers["b"] is not provider_b  # changed provider: fresh
                # The old gateway closes its dropped provider's connections once its last request is done.
                await eventually(lambda: provider_b._session is None or NotYet(provider_b._session), timeout_s=5,
                                 what="the replaced provider b to close its session")
                assert new.runtime.providers["a"]._session is not None  # still in use: not closed
                path.write_text("models: [\n")
                assert "not valid YAML" in (await reload_config(app) or "")
                assert holder.current is new
        finally:
            await runner.cleanup()


async def test_two_reloads_in_a_row_do_not_cut_a_stream_started_on_the_oldest_config(tmp_path: Path) -> None:
    # A: the stream starts. B: an extra alias (provider a unchanged, so B shares A's provider object). C: a's
    # timeout changes, so C gets a new provider object and B, idle at once, retires. B must not close the
    # provider object A's stream still uses.
    slow_stream = {"ttft": 50, "per_token": 40, "output_tokens": 40}
    async with SimulatedProvider(parse_profile(slow_stream), name="a") as a, SimulatedProvider(name="b") as b:
        path = tmp_path / "g.yaml"
        path.write_text(config_text(a, b, "a"))
        app = build_app(Gateway(load_config(path)), config_path=str(path))
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
        body = orjson.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        try:
            async with aiohttp.ClientSession() as http, http.post(
                    url, data=body, headers={"content-type": "application/json"}) as resp:
                assert resp.status == 200
                first = await resp.content.readline()  # the stream is running on config A
                assert first.startswith(b"data: ")
                extra = yaml.safe_load(config_text(a, b, "a"))
                extra["models"]["other"] = extra["models"]["chat"]
                path.write_text(yaml.safe_dump(extra))
                assert await reload_config(app) is None  # B
                changed = yaml.safe_load(config_text(a, b, "a"))
                changed["providers"]["a"]["timeout_s"] = 30
                path.write_text(yaml.safe_dump(changed))
                assert await reload_config(app) is None  # C
                rest = await resp.content.read()
            assert rest.rstrip().endswith(b"data: [DONE]")
            assert b'"error"' not in rest
        finally:
            await runner.cleanup()
