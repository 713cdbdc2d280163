"""One turn of a Responses conversation: what the race sends, how the response is named, and what is stored.

The gateway, not the provider, keeps conversations: a turn may be served by any target (a native Responses
provider, or one reached through chat completions or Messages), and hedging may send it to two at once.
So at admission `previous_response_id` is expanded into the whole input, from the gateway's own store (the
previous turn's input, then its output items), and no provider ever needs, or gets, stored state.

A stored response holds the full input of its turn (so expanding the next turn is one lookup, whatever the
conversation's length, and an evicted turn never breaks a later one), the ids the input items are listed
under (`GET /v1/responses/{id}/input_items`), and the finished response object. `instructions` are not
carried over from a previous response, as the API documents.

The response's id, `created_at` and the request's echoes (tools, instructions, store...) belong to the
response, not to the attempt that won, so `finish` sets them on whatever the winner produced; streamed
events get their `sequence_number` here too (`stamp`), one count per response.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.formats.responses_events import new_id
from gateway.state.conversations import ConversationStore
from gateway.wire import Json, SSEEvent

log = logging.getLogger("gateway.responses")

_STORED_VERSION = 1


def _echo_defaults() -> tuple[tuple[str, Any], ...]:
    """What the API echoes in a response when the request did not set it (fresh containers each time)."""
    return (("instructions", None), ("metadata", {}), ("parallel_tool_calls", True), ("temperature", None),
            ("top_p", None), ("tool_choice", "auto"), ("tools", []), ("max_output_tokens", None),
            ("text", {"format": {"type": "text"}}), ("truncation", "disabled"),
            ("reasoning", {"effort": None, "summary": None}), ("background", False), ("user", None))


def not_found(response_id: str, *, previous: bool = False) -> GatewayError:
    """The API's own words: a 404 for the response endpoints, a 400 naming the field for a request."""
    if previous:
        return GatewayError(400, f"Previous response with id '{response_id}' not found.", type="invalid_request_error",
                            param="previous_response_id", code="previous_response_not_found")
    return GatewayError(404, f"Response with id '{response_id}' not found.", type="invalid_request_error")


@dataclass(slots=True)
class Stored:
    """A stored response, as the response endpoints and the next turn read it."""

    input: list[Json]  # every input item of its turn, the previous turns' included
    input_ids: list[str]  # the id each of them is listed under
    response: Json

    @staticmethod
    def decode(raw: bytes | None) -> Stored | None:
        try:
            data = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or data.get("v") != _STORED_VERSION:
            return None  # not ours, or written by a version that stored something else
        return Stored(data["input"], data["input_ids"], data["response"])

    def encode(self) -> bytes:
        return orjson.dumps({"v": _STORED_VERSION, "input": self.input, "input_ids": self.input_ids,
                             "response": self.response})

    def as_history(self) -> tuple[list[Json], list[str]]:
        """(input items, their ids) for the turn after this one: this turn's input, then its output."""
        items, ids = list(self.input), list(self.input_ids)
        for item in self.response.get("output") or ():
            # A reasoning item that only names one by id cannot be replayed: nothing upstream keeps it.
            if item.get("type") == "reasoning" and not item.get("encrypted_content"):
                continue
            items.append(item)
            ids.append(str(item.get("id") or new_id("item")))
        return items, ids


@dataclass(slots=True)
class Turn:
    owner: str  # the gateway key's name: stored responses are found by their owner only
    request: Json  # the client's body, as validated
    body: Json  # what the race sends: the input expanded, no previous_response_id
    store: bool
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    input: list[Json] = field(default_factory=list)  # this turn's whole input, as stored
    input_ids: list[str] = field(default_factory=list)
    _seq: int = 0

    @staticmethod
    async def begin(conversations: ConversationStore, owner: str, request: Json) -> Turn:
        """The turn for a validated request: its previous response expanded (a 400 if there is none)."""
        own = _as_items(request.get("input"))
        own_ids = [str(item.get("id") or new_id("msg" if item.get("type", "message") == "message" else "item"))
                   for item in own]
        previous_id = request.get("previous_response_id")
        history: list[Json] = []
        history_ids: list[str] = []
        if previous_id:
            previous = Stored.decode(await conversations.get(owner, previous_id))
            if previous is None:
                raise not_found(previous_id, previous=True)
            history, history_ids = previous.as_history()
        body = {key: value for key, value in request.items() if key != "previous_response_id"}
        if history:
            body["input"] = history + own
        return Turn(owner, request, body, request.get("store") is not False, input=history + own,
                    input_ids=history_ids + own_ids)

    def finish(self, response: Json) -> Json:
        """The response as this gateway answers it: its id, time and the request's echoes set."""
        out = dict(response)
        out.update(id=self.response_id, object="response", created_at=self.created_at, store=self.store,
                   previous_response_id=self.request.get("previous_response_id"))
        for key, default in _echo_defaults():
            if key in self.request:
                out[key] = self.request[key]
            elif out.get(key) is None and default is not None:
                out[key] = default
            else:
                out.setdefault(key, default)
        return out

    def stamp(self, ev: SSEEvent) -> SSEEvent:
        """Number a streamed event (one count per response, whichever attempt produced it) and name its
        response. The event is the winner's own (nobody else reads it), so it is changed in place."""
        data = ev.data
        data["sequence_number"] = self._seq
        self._seq += 1
        response = data.get("response")
        if isinstance(response, dict):
            data["response"] = self.finish(response)
        return ev

    async def save(self, conversations: ConversationStore, response: Json) -> None:
        """Store the finished response, when the client asked for it (`store`, true by default)."""
        if not self.store:
            return
        stored = Stored(self.input, self.input_ids, response).encode()
        if not await conversations.put(self.owner, self.response_id, stored):
            log.warning("response %s not stored: %d bytes is more than the store holds", self.response_id,
                        len(stored))


def _as_items(data: object) -> list[Json]:
    if isinstance(data, str):
        return [{"type": "message", "role": "user", "content": data}]
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def listed_item(item: Json, item_id: str) -> Json:
    """An input item as `GET /v1/responses/{id}/input_items` lists it: with its id and status, a message's
    content always a list of parts (input_text for the caller's turns, output_text for the model's)."""
    out = {**item, "id": item_id}
    if out.get("type", "message") == "message":
        out["type"] = "message"
        content = out.get("content")
        if isinstance(content, str):
            kind = "output_text" if out.get("role") == "assistant" else "input_text"
            out["content"] = [{"type": kind, "text": content, **({"annotations": []} if kind == "output_text"
                                                                  else {})}]
    out.setdefault("status", "completed")
    return out
