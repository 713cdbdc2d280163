"""The Responses API door: `POST /v1/responses`, hedged like chat, and the stored responses.

A create reads like a chat request: open its scope, admit it, begin its turn (the conversation so far, from
the gateway's store), run it (cache, flight or race), write it, and store it. `GET /v1/responses/{id}`,
`DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items` answer from the store, and only to the
gateway key that created the response: any other key gets the same 404 as for an id that never existed.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.engine import StreamingWinner
from gateway.errors import GatewayError
from gateway.formats import Kind
from gateway.formats.codecs import RESPONSES
from gateway.formats.openai import W
from gateway.policies.cache import CachedAnswer, cache_key, is_cacheable
from gateway.server.admission import admit
from gateway.server.auth import check_key
from gateway.server.gateway import Gateway, current_gateway
from gateway.server.handlers import coalesced, winner_headers  # the chat doors' own: the same serve this door
from gateway.server.responses_stream import write_response_stream
from gateway.server.responses_turn import Stored, Turn, listed_item, not_found
from gateway.server.scope import RequestScope, key_id
from gateway.server.writing import write_json, write_replay

_JSON = "application/json"
_MAX_PAGE = 100


async def create_response(request: web.Request) -> web.StreamResponse:
    async with RequestScope(current_gateway(request), RESPONSES, request) as scope:
        try:
            body, route = await admit(scope)
            turn = await Turn.begin(scope.gw.conversations, key_id(scope.key), body)
        except GatewayError as err:
            return scope.reject(err)
        if turn.body is not body:  # the conversation so far is part of the prompt: estimates and costs count it
            scope.record.body_bytes = len(orjson.dumps(turn.body))
        key = _cache_key(scope, turn)
        if key is None:
            return await _race(scope, turn, None)
        hit = await scope.gw.answers.get(route.alias, key)
        if hit is not None:
            scope.set_cache("hit")
            return await _replay(scope, turn, hit, "hit")
        scope.set_cache("miss")
        if scope.record.stream:
            return await _race(scope, turn, key)
        return await coalesced(scope, turn.body, key, lambda answer, how: _replay(scope, turn, answer, how),
                               lambda answer: orjson.dumps(turn.finish(orjson.loads(answer.body))))


def _cache_key(scope: RequestScope, turn: Turn) -> str | None:
    """Only an answer nobody stores may come from the cache (`store: false`, which the API does not default to):
    a stored response must be one the conversation really had."""
    route = scope.record.route
    options = route.cache if route is not None else None
    if (options is None or turn.store or not is_cacheable(turn.body, options)
            or "no-cache" in scope.request.headers.get("cache-control", "")):
        return None
    return cache_key(RESPONSES.format, scope.record.alias, turn.body, scope.key.key if scope.key else None, options)


async def _race(scope: RequestScope, turn: Turn, store_key: str | None) -> web.StreamResponse:
    """Run the hedge race, write the winner's response (named by this turn), store it."""
    async with asyncio.TaskGroup() as tg:
        # Errors are handled inside the group (TaskGroup would wrap them), and the answer is written inside it
        # too, before the group awaits the cancelled losers: teardown never delays the winner.
        try:
            winner = await scope.gw.engine.run(scope.record, turn.body, tg, scope.deadline)
        except GatewayError as err:
            return scope.reject(err)
        headers = {**winner_headers(winner), **scope.headers()}
        if store_key is not None:
            headers["x-gateway-cache"] = "miss"
        if isinstance(winner, StreamingWinner):
            return await write_response_stream(scope, turn, winner, headers, store_key)
        response = turn.finish(winner.body)
        await turn.save(scope.gw.conversations, response)  # before the client can ask for the next turn
        if store_key is not None:
            await scope.gw.answers.put(scope.record.alias, store_key, CachedAnswer(
                orjson.dumps(winner.body), winner.target.provider, winner.target.model,
                tuple(winner_headers(winner).items())))
        return await write_json(scope, response, headers)


async def _replay(scope: RequestScope, turn: Turn, answer: CachedAnswer, how: str) -> web.StreamResponse:
    """A cached answer, named as this turn's response (each gets its own id)."""
    finished = turn.finish(orjson.loads(answer.body))
    return await write_replay(scope, turn.body, CachedAnswer(orjson.dumps(finished), answer.provider, answer.model,
                                                             answer.headers), how)


# ---- the stored responses -----------------------------------------------------------------------------------


async def _stored(scope: RequestScope) -> Stored:
    """The caller's stored response named in the path, or the API's 404."""
    gw: Gateway = scope.gw
    key = check_key(scope.request, gw.config.server.keys)
    response_id = scope.request.match_info["response_id"]
    stored = Stored.decode(await gw.conversations.get(key_id(key), response_id))
    if stored is None:
        raise not_found(response_id)
    return stored


async def retrieve_response(request: web.Request) -> web.StreamResponse:
    async with RequestScope(current_gateway(request), RESPONSES, request, endpoint="responses") as scope:
        try:
            stored = await _stored(scope)
        except GatewayError as err:
            return scope.reject(err)
        scope.responded = True
        return web.json_response(stored.response, headers=scope.headers(), dumps=_dumps)


async def delete_response(request: web.Request) -> web.StreamResponse:
    async with RequestScope(current_gateway(request), RESPONSES, request, endpoint="responses") as scope:
        response_id = request.match_info["response_id"]
        try:
            key = check_key(request, scope.gw.config.server.keys)
            if not await scope.gw.conversations.delete(key_id(key), response_id):
                raise not_found(response_id)
        except GatewayError as err:
            return scope.reject(err)
        scope.responded = True
        return web.json_response({"id": response_id, "object": "response", "deleted": True},
                                 headers=scope.headers())


async def list_input_items(request: web.Request) -> web.StreamResponse:
    """The input items of a stored response, a cursor page as the API pages them (`after`, `limit`, `order`)."""
    async with RequestScope(current_gateway(request), RESPONSES, request, endpoint="responses") as scope:
        try:
            stored = await _stored(scope)
            limit, order, after = _page_query(request)
        except GatewayError as err:
            return scope.reject(err)
        items = [listed_item(item, item_id) for item, item_id in zip(stored.input, stored.input_ids, strict=True)]
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        scope.responded = True
        return web.json_response({"object": "list", "data": page, "has_more": len(items) > limit,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None}, headers=scope.headers(), dumps=_dumps)


def _page_query(request: web.Request) -> tuple[int, str, str | None]:
    query = request.query
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise W.wrong_type("limit", Kind.INTEGER, raw_limit) from None
    if not 1 <= limit <= _MAX_PAGE:
        raise (W.below if limit < 1 else W.above)("limit", Kind.INTEGER, 1 if limit < 1 else _MAX_PAGE, limit)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise W.not_one_of("order", order, ("asc", "desc"))
    return limit, order, query.get("after")


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
