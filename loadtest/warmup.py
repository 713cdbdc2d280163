"""Warming a backup's prompt cache before the load (a policy's `warm:` providers).

For each session, its first turn goes once to each warmed provider, through the gateway on an alias of its
own (`{alias}-warm-{provider}`, that provider alone, no hedge): the provider caches the session's prefix and
the gateway's prompt-cache tracker learns it, as it would from earlier traffic. Their cost is traced under
that alias, apart from the load's, and reported as the warm-up's cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import aiohttp

from loadtest.client import send_request
from loadtest.gateway_config import warm_alias
from loadtest.schedule import PlannedRequest
from loadtest.spec import Policy


async def warm_up(session: aiohttp.ClientSession, gateway_url: str, alias: str, policy: Policy,
                  schedule: Sequence[PlannedRequest], timeout_s: float) -> int:
    """Send the warm-up requests; the number that failed (the run goes on: the report shows the count)."""
    firsts = {req.session: req for req in schedule if req.session >= 0 and not req.history}
    if not policy.warm or not firsts:
        return 0
    loop = asyncio.get_running_loop()
    # max_tokens 1 and no stream: the prefix is what is paid for, not an answer.
    turns = [dataclasses.replace(req, stream=False, max_tokens=1) for req in firsts.values()]
    results = await asyncio.gather(*(send_request(session, gateway_url, warm_alias(alias, provider), req,
                                                  loop.time(), timeout_s)
                                     for provider in policy.warm for req in turns))
    return sum(1 for r in results if not r.ok)
