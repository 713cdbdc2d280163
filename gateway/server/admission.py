"""The checks at the door, in order: the gateway key, the body, the model alias, the deadline, the rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiohttp import web

from gateway.config.model import ModelRoute
from gateway.errors import GatewayError
from gateway.server.auth import check_key
from gateway.server.reading import read_body
from gateway.server.scope import RateLimited, RequestScope, key_id
from gateway.wire import Json


async def admit(scope: RequestScope, validate: Callable[[object], Json] | None = None) -> tuple[Json, ModelRoute]:
    """The validated body (by `validate`, else the door's chat validation) and its route, with the scope
    admitted; raises `GatewayError` to reject."""
    gw, request = scope.gw, scope.request
    config = gw.config
    api_key = check_key(request, config.server.keys)
    raw = await read_body(request, config.server.max_body_bytes, config.server.body_timeout_s)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc.msg}") from None
    body = (validate or scope.codec.validate_request)(parsed)
    alias = body["model"]
    route = config.models.get(alias)
    if route is None:
        scope.record.alias = alias if isinstance(alias, str) else ""
        raise GatewayError(404, f"model '{alias}' not found; available: {', '.join(config.models)}",
                           type="not_found_error", param="model", code="model_not_found")
    timeout_s = deadline_s(request, config.server.deadline_header, config.deadline_s(route))
    limits = api_key.limits if api_key is not None and api_key.limits is not None else config.server.limits
    max_out = (body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens")
               or route.default_max_tokens)
    estimate = len(raw) // 4 + (max_out if type(max_out) is int else 0)
    if limits.requests_per_minute is not None or limits.tokens_per_minute is not None:
        wait = await gw.limiter.check(key_id(api_key), limits, estimate)
        if wait is not None:
            raise RateLimited(wait, api_key)
    scope.admitted(route, body, key=api_key, limits=limits, token_estimate=estimate, body_bytes=len(raw),
                   deadline=asyncio.get_running_loop().time() + timeout_s)
    return body, route


def deadline_s(request: web.Request, header: str, configured: float) -> float:
    value = request.headers.get(header)
    if value is None:
        return configured
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds:
        raise GatewayError(400, f"header {header} must be a positive number of seconds, got {value!r}")
    return min(seconds, configured)  # a client may shorten the deadline, never lengthen it
