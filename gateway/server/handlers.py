"""Request handlers. Every chat request reads: open its scope, admit it, run it (cache, flight or race), write.

One code path for every door: the door's `Codec` decides every byte of wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.engine import Completed, StreamingWinner, Winner
from gateway.errors import GatewayError
from gateway.formats.codecs import ANTHROPIC, OPENAI, Codec
from gateway.policies.cache import CachedAnswer, cache_key, is_cacheable
from gateway.server.admission import admit
from gateway.server.gateway import current_gateway
from gateway.server.scope import RequestScope
from gateway.server.writing import write_body, write_json, write_replay, write_stream
from gateway.wire import Json

_JSON = "application/json"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, OPENAI)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _chat(request, ANTHROPIC)


async def healthz(request: web.Request) -> web.Response:
    # Redis being away is not unhealthy: the gateway serves on local state meanwhile. It is reported, though.
    backend = current_gateway(request).state_backend
    body: dict[str, object] = {"status": "ok", "state": backend.health()}
    latency = backend.latency_health()
    if latency is not None:  # the shared latency windows, when they are shared
        body["latency"] = latency
    return web.json_response(body)


async def _chat(request: web.Request, codec: Codec) -> web.StreamResponse:
    # The gateway is captured once: a reload mid-request does not change this request's config.
    async with RequestScope(current_gateway(request), codec, request) as scope:
        try:
            body, route = await admit(scope)
        except GatewayError as err:
            return scope.reject(err)
        options = route.cache
        if options is None or not is_cacheable(body, options) or "no-cache" in request.headers.get("cache-control",
                                                                                                   ""):
            return await race(scope, body, None)
        key = cache_key(codec.format, route.alias, body, scope.key.key if scope.key else None, options)
        hit = await scope.gw.answers.get(route.alias, key)
        if hit is not None:
            scope.set_cache("hit")
            return await write_replay(scope, body, hit, "hit")
        scope.set_cache("miss")
        if scope.record.stream:  # streamed through as usual; the aggregated answer is stored for the next caller
            return await race(scope, body, key)
        return await coalesced(scope, body, key, lambda answer, how: write_replay(scope, body, answer, how),
                               lambda answer: answer.body)


async def coalesced(scope: RequestScope, body: Json, key: str,
                    replay: Callable[[CachedAnswer, str], Awaitable[web.StreamResponse]],
                    first_body: Callable[[CachedAnswer], bytes]) -> web.StreamResponse:
    """Identical concurrent requests share one upstream race (whose answer the cache keeps). A request that
    joins gets the answer through `replay`; the first caller, `first_body(answer)` as its JSON body."""
    coalescer = scope.gw.coalescer
    if coalescer.waiters(key) > 0:  # the same request is in flight: wait for its answer
        scope.set_cache("coalesced")
        try:
            answer = await coalescer.run(key, lambda: flight(scope, body, key))
        except GatewayError as err:
            return scope.reject(err)
        return await replay(answer, "coalesced")
    # The first caller: the flight runs in the coalescer's own task (a caller that leaves does not cancel it
    # for the others) and records its attempts on this caller's record, which this scope finishes as usual:
    # after the answer is written, or when the caller leaves (then as a 499; the flight goes on for the others).
    try:
        answer = await coalescer.run(key, lambda: flight(scope, body, key))
    except GatewayError as err:
        return scope.error_response(err)  # the flight recorded it on this scope's record
    return await write_body(scope, first_body(answer), {**dict(answer.headers), **scope.headers(),
                                                        "x-gateway-cache": "miss"})


async def flight(scope: RequestScope, body: Json, key: str) -> CachedAnswer:
    """One upstream race whose answer every identical concurrent request shares, and the cache keeps."""
    async with asyncio.TaskGroup() as tg:
        try:  # inside the group: TaskGroup would wrap an error from its body in an ExceptionGroup
            result = await scope.gw.engine.run(scope.record, body, tg, scope.deadline,
                                               forward_headers=scope.codec.forward_headers(scope.request.headers))
        except GatewayError as err:
            scope.failed(err)
            failure: GatewayError | None = err
        else:
            failure = None
            assert isinstance(result, Completed)
            answer = CachedAnswer(orjson.dumps(result.body), result.target.provider, result.target.model,
                                  tuple(winner_headers(result).items()))
            # Awaited (bounded by the state timeout): once this caller has its answer, so has every replica.
            await scope.gw.answers.put(scope.record.alias, key, answer)
    if failure is not None:
        raise failure
    return answer


async def race(scope: RequestScope, body: Json, store_key: str | None, *, hedge: bool = True) -> web.StreamResponse:
    """Run the hedge race for this request and write the winner's answer (stored under `store_key` if set)."""
    async with asyncio.TaskGroup() as tg:
        # Errors are handled inside the group: TaskGroup would wrap them in an ExceptionGroup. The answer is
        # written inside it too, before the group awaits the cancelled losers: teardown never delays the winner.
        try:
            winner = await scope.gw.engine.run(scope.record, body, tg, scope.deadline, hedge=hedge,
                                               forward_headers=scope.codec.forward_headers(scope.request.headers))
        except GatewayError as err:
            return scope.reject(err)
        headers = {**winner_headers(winner), **scope.headers()}
        if store_key is not None:
            headers["x-gateway-cache"] = "miss"
        if isinstance(winner, StreamingWinner):
            return await write_stream(scope, body, winner, headers, store_key)
        return await write_json(scope, winner.body, headers)


def winner_headers(winner: Winner) -> dict[str, str]:
    # Stored with a cached answer too: no request id here (each request adds its own).
    return {"x-gateway-provider": winner.target.provider, "x-gateway-model": winner.target.model,
            "x-gateway-attempts": str(winner.attempts_sent)}
