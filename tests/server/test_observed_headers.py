"""Observers get only the request's trace context of its headers: a hook (telemetry, a request log, a plugin)
never sees the gateway key the client sent, in `Authorization` or `x-api-key` (regression of cdb4ce9)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.simulator import SimulatedProvider
from tests.e2e.harness import config_for
from tests.server.observed import served

SECRET = "sk-secret-gateway-7Hq2Lm9Xv4Rt8Wz1"  # the gateway key the client sends, in both headers
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "vendor=opaque-value"
MESSAGES: Any = [{"role": "user", "content": "hello"}]

DOORS = {
    "openai": ("/v1/chat/completions", {"model": "chat", "messages": MESSAGES}),
    "anthropic": ("/v1/messages", {"model": "chat", "max_tokens": 20, "messages": MESSAGES}),
    "responses": ("/v1/responses", {"model": "chat", "input": "hello"}),
}


@pytest.mark.parametrize("door", DOORS)
async def test_request_started_carries_the_trace_headers_and_no_secret(door: str) -> None:
    path, body = DOORS[door]
    async with SimulatedProvider(name="p", seed=1) as sim:
        config = config_for({"p": ("openai", sim)}, {"chat": {"targets": [{"provider": "p", "model": "m"}]}},
                            server={"api_keys": [SECRET]})
        async with served(config) as gw, aiohttp.ClientSession() as http:
            headers = {"authorization": f"Bearer {SECRET}", "x-api-key": SECRET, "traceparent": TRACEPARENT,
                       "tracestate": TRACESTATE, "anthropic-version": "2023-06-01"}
            async with http.post(gw.url + path, json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
    [started] = gw.observed.started
    assert dict(started.headers) == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    assert started.trace_id == int(TRACEPARENT.split("-")[1], 16)  # the caller's trace goes on
    assert SECRET not in repr(started)  # nowhere in what the observer gets
    [finished] = gw.observed.finished
    assert finished.status == 200 and SECRET not in repr(finished)
