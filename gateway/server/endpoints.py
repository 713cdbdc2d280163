"""The endpoints beside chat that apps call: model listing and lookup, embeddings, token counting."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.errors import GatewayError
from gateway.formats.codecs import ANTHROPIC, OPENAI, Codec
from gateway.formats.endpoints import estimate_input_tokens, validate_count_tokens, validate_embeddings
from gateway.server.admission import admit
from gateway.server.auth import check_key
from gateway.server.gateway import current_gateway
from gateway.server.handlers import race
from gateway.server.scope import RequestScope
from gateway.wire import Json


def _model(alias: str) -> Json:
    # One object both SDKs parse: OpenAI's fields and Anthropic's side by side.
    return {"id": alias, "object": "model", "created": 0, "owned_by": "gateway", "type": "model",
            "display_name": alias, "created_at": "1970-01-01T00:00:00Z", "lifecycle": "active"}


def door_of(request: web.Request) -> Codec:
    """For paths both SDKs call (/v1/models): the Anthropic SDK always sends `anthropic-version`."""
    return ANTHROPIC if "anthropic-version" in request.headers else OPENAI


async def models(request: web.Request) -> web.StreamResponse:
    async with RequestScope(current_gateway(request), door_of(request), request, endpoint="models") as scope:
        try:
            check_key(request, scope.gw.config.server.keys)
        except GatewayError as err:
            return scope.reject(err)
        data = [_model(alias) for alias in scope.gw.config.models]
        scope.responded = True
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None}, headers=scope.headers())


async def model(request: web.Request) -> web.StreamResponse:
    codec = door_of(request)
    async with RequestScope(current_gateway(request), codec, request, endpoint="models") as scope:
        alias = request.match_info["model"]
        scope.record.alias = alias
        try:
            check_key(request, scope.gw.config.server.keys)
            if alias not in scope.gw.config.models:
                # Each API's own words: OpenAI's SDK and Anthropic's both raise NotFoundError on these.
                message = f"model: {alias}" if codec is ANTHROPIC else f"The model '{alias}' does not exist"
                raise GatewayError(404, message, type="not_found_error" if codec is ANTHROPIC
                                   else "invalid_request_error", param="model", code="model_not_found")
        except GatewayError as err:
            return scope.reject(err)
        scope.responded = True
        return web.json_response(_model(alias), headers=scope.headers())


async def embeddings(request: web.Request) -> web.StreamResponse:
    """Hedged, budgeted and breaker-guarded like chat: the first success wins. OpenAI-kind targets only."""
    async with RequestScope(current_gateway(request), OPENAI, request, endpoint="embeddings") as scope:
        try:
            body, _ = await admit(scope, validate_embeddings)
        except GatewayError as err:
            return scope.reject(err)
        return await race(scope, body, None)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """Counted by the alias's Anthropic-kind targets (failover, no hedge: a count is cheap and fast); for an
    alias without one, estimated here, and the `x-gateway-token-count: estimated` header says so."""
    async with RequestScope(current_gateway(request), ANTHROPIC, request, endpoint="count_tokens") as scope:
        try:
            body, route = await admit(scope, validate_count_tokens)
        except GatewayError as err:
            return scope.reject(err)
        providers = scope.gw.runtime.providers
        if any("count_tokens" in providers[t.provider].operations for t in route.targets):
            return await race(scope, body, None, hedge=False)
        scope.responded = True
        return web.Response(body=orjson.dumps({"input_tokens": estimate_input_tokens(body)}),
                            content_type="application/json",
                            headers={**scope.headers(), "x-gateway-token-count": "estimated"})
