"""The simulators' HTTP control plane: reset, stats, profile changes (GET/POST/PUT /_sim/...)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson


async def _call(session: aiohttp.ClientSession, method: str, url: str, body: object = None) -> dict[str, Any]:
    data = None if body is None else orjson.dumps(body)
    async with session.request(method, url, data=data, headers={"content-type": "application/json"}) as resp:
        payload = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {url}: {resp.status} {payload[:200]!r}")
        result = orjson.loads(payload)
        if not isinstance(result, dict):
            raise RuntimeError(f"{method} {url}: expected a JSON object")
        return result


async def reset(session: aiohttp.ClientSession, base_url: str) -> None:
    """Zero the counters, re-seed and restart the outage clock: each policy faces the same provider."""
    await _call(session, "POST", base_url + "/_sim/reset")


async def stats(session: aiohttp.ClientSession, base_url: str) -> dict[str, Any]:
    data = await _call(session, "GET", base_url + "/_sim/stats")
    # The last request's headers and body are for debugging one request, not for a load report.
    data.pop("last_headers", None)
    data.pop("last_body", None)
    return data


async def set_profile(session: aiohttp.ClientSession, base_url: str, profile: Mapping[str, Any]) -> None:
    await _call(session, "PUT", base_url + "/_sim/profile", dict(profile))


async def wait_idle(session: aiohttp.ClientSession, urls: Mapping[str, str], timeout_s: float = 5.0) -> bool:
    """Wait until no simulator has a request in flight (cancelled hedge losers take a moment to be noticed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        busy = [name for name, url in urls.items() if (await stats(session, url))["in_flight"] > 0]
        if not busy:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
