"""Regression: a client gone between a streamed winner's commit and its response headers must still free the
winner's bulkhead slot and settle its breaker permit (found by the soak run)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from gateway.config import parse_config
from gateway.policies.breaker import BreakerState
from gateway.server import Gateway, build_app
from gateway.server.gateway import GATEWAY
from gateway.simulator import SimulatedProvider
from tests.e2e.harness import Collect
from tests.polling import eventually_equal

BODY = orjson.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]})


async def test_headers_never_sent_still_frees_the_slot_and_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    async with SimulatedProvider(name="p") as sim:
        config = parse_config({"providers": {"p": {"kind": "openai", "base_url": sim.base_url + "/v1",
                                                   "max_concurrent": 2,
                                                   "breaker": {"fail_max": 1, "reset_timeout_s": 0.05}}},
                               "models": {"chat": {"targets": [{"provider": "p", "model": "m"}], "hedge": "off"}},
                               "telemetry": {"traces_file": ""}}, {})
        collect = Collect()
        app = build_app(Gateway(config, hooks=collect))
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
        gw = app[GATEWAY].current
        original = web.StreamResponse.prepare
        fail_next = {"n": 0}
        gone: list[web.BaseRequest] = []  # the requests whose client left just before the headers

        async def prepare(self: web.StreamResponse, request: web.BaseRequest) -> Any:
            # Only the gateway's streamed answers (not the simulator's): the client left just before the headers.
            # aiohttp prepares an unprepared response the handler returns once more: that second call (the client
            # is still gone) fails too, but does not count as another request's failure.
            if any(request is r for r in gone):
                raise ClientConnectionResetError("Cannot write to closing transport")
            if fail_next["n"] and request.app is app and not isinstance(self, web.Response):
                fail_next["n"] -= 1
                gone.append(request)
                raise ClientConnectionResetError("Cannot write to closing transport")
            return await original(self, request)

        monkeypatch.setattr(web.StreamResponse, "prepare", prepare)
        try:
            async with aiohttp.ClientSession() as http:
                async def post() -> int:
                    async with http.post(url, data=BODY, headers={"content-type": "application/json"}) as resp:
                        await resp.read()
                        return resp.status

                fail_next["n"] = 2
                for _ in range(2):
                    with contextlib.suppress(aiohttp.ClientError):
                        await post()
                # The client saw its connection close; the gateway may still be unwinding: once both requests
                # are recorded as finished, nothing of theirs may hold a slot.
                await eventually_equal(lambda: len(collect.records), 2, timeout_s=5, what="both requests to finish")
                assert [(r.status, r.error_type) for r in collect.records] == [(499, "client_disconnected")] * 2
                bulkhead = gw.runtime.bulkheads["p"]
                assert bulkhead.in_use == 0
                assert await asyncio.wait_for(post(), 10) == 200  # a slot is free

                breaker = gw.runtime.breakers["p"]  # a half-open probe that wins and meets a gone client
                breaker.force_open(0.05)
                await eventually_equal(lambda: breaker.state, BreakerState.HALF_OPEN, timeout_s=5,
                                       what="the forced opening to end")
                fail_next["n"] = 1
                with contextlib.suppress(aiohttp.ClientError):
                    await post()
                await eventually_equal(lambda: len(collect.records), 4, timeout_s=5, what="the probe to finish")
                probe = collect.records[-1]
                assert (probe.status, probe.winner and probe.winner.provider) == (499, "p")  # won, then the client left
                assert await asyncio.wait_for(post(), 10) == 200  # the probe slot was freed: not stuck half-open
                assert breaker.state is BreakerState.CLOSED
        finally:
            await runner.cleanup()
