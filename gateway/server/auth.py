"""Gateway keys: accepted as `Authorization: Bearer` or `x-api-key` on either door, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.types import GatewayError


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


def check_key(request: web.Request, keys: tuple[str, ...]) -> None:
    """Raise 401 unless the request carries one of `keys` (no keys configured: open gateway)."""
    if not keys:
        return
    presented = presented_key(request)
    if not presented:
        raise GatewayError(401, "missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'",
                           type="authentication_error", code="invalid_api_key")
    candidate = presented.encode()
    matched = False
    for key in keys:  # compare against every key, so timing does not reveal which one matched
        matched |= hmac.compare_digest(candidate, key.encode())
    if not matched:
        raise GatewayError(401, "invalid API key", type="authentication_error", code="invalid_api_key")
