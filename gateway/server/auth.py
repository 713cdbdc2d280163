"""Gateway keys: accepted as `Authorization: Bearer` or `x-api-key` on either door, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.config.model import ApiKey
from gateway.errors import GatewayError


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


def check_key(request: web.Request, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The caller's key, or 401. No keys configured: an open gateway, and None."""
    if not keys:
        return None
    presented = presented_key(request)
    if not presented:
        raise GatewayError(401, "missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'",
                           type="authentication_error", code="invalid_api_key")
    # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes: map them back (a plain encode() raises).
    candidate = presented.encode("utf-8", "surrogateescape")
    found: ApiKey | None = None
    for key in keys:  # compare against every key, so timing does not reveal which one matched
        if hmac.compare_digest(candidate, key.key.encode()):
            found = key
    if found is None:
        raise GatewayError(401, "invalid API key", type="authentication_error", code="invalid_api_key")
    return found


def check_bearer(request: web.Request, secret: str, what: str) -> None:
    """For /metrics and /admin: a single bearer secret, when configured."""
    if not secret:
        return
    presented = presented_key(request) or ""
    if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), secret.encode()):
        raise GatewayError(401, f"{what} needs its key", type="authentication_error")
