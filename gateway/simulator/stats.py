"""Counters a simulated provider keeps, so tests and the load tool can see what reached it and how it ended."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Header names whose values are credentials: never stored or shown as they are.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"})
_SECRET_NAME_PARTS = ("key", "token", "secret")
KEEP_REQUESTS = 8  # requests `SimStats.recent` keeps: enough to see one exchange, small with 100 KB bodies


def key_fingerprint(secret: str) -> str:
    """A short, stable, one-way stand-in for a credential: lets tests compare keys without holding them."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def credential_of(header_value: str) -> str:
    """The credential in an auth header value: the token after a `Bearer ` scheme, else the whole value."""
    scheme, _, token = header_value.partition(" ")
    return token.strip() if token and scheme.lower() == "bearer" else header_value.strip()


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased header names to values, credentials replaced by `key_fingerprint` of the credential.

    The fingerprint is of the bare credential (no `Bearer `), so `x-api-key: k` and
    `Authorization: Bearer k` fingerprint alike and a test can check which key was forwarded.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname in _SECRET_HEADERS or any(part in lname for part in _SECRET_NAME_PARTS):
            out[lname] = key_fingerprint(credential_of(value))
        else:
            out[lname] = value
    return out


@dataclass(slots=True)
class SimStats:
    """What one simulated provider has seen since it started or was last reset.

    Counted requests are chat completions, messages, embeddings and token counts (control `/_sim/...` and
    `/v1/models` calls are not). Each ends as exactly one of `completed`, `errors` or `disconnected`, so once
    idle `received == completed + errors + disconnected`.
    """

    received: int = 0
    completed: int = 0  # a success response written to the end
    disconnected: int = 0  # the client went away before the response was complete
    errors: int = 0  # error responses sent, including errors sent inside a stream
    in_flight: int = 0  # gauge: counted requests being handled now
    tokens_sent: int = 0  # output tokens actually written to clients
    errors_by_status: dict[int, int] = field(default_factory=dict)
    received_by_route: dict[str, int] = field(default_factory=dict)  # "chat.completions", "messages", ...
    last_headers: dict[str, str] = field(default_factory=dict)  # redacted: see `redact_headers`
    last_body: Any = None  # the last counted request's JSON body (None if it was not JSON)
    # The last KEEP_REQUESTS counted requests, oldest first: {"route", "path" (with the query), "headers"
    # (redacted), "body"}. Not in `as_dict` (bodies can be large): `GET /_sim/requests` shows them.
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEEP_REQUESTS))

    def record(self, route: str, path: str, headers: Mapping[str, str], body: Any) -> None:
        """Note one counted request as it arrives: its route, path, headers (redacted) and body."""
        self.received_by_route[route] = self.received_by_route.get(route, 0) + 1
        self.last_headers = redact_headers(headers)
        self.last_body = body
        self.recent.append({"route": route, "path": path, "headers": self.last_headers, "body": body})

    def count_error(self, status: int) -> None:
        self.errors += 1
        self.errors_by_status[status] = self.errors_by_status.get(status, 0) + 1

    def reset(self) -> None:
        """Zero the counters. `in_flight` is left alone: it is a gauge the live requests will still decrement."""
        self.received = self.completed = self.disconnected = self.errors = self.tokens_sent = 0
        self.errors_by_status = {}
        self.received_by_route = {}
        self.last_headers = {}
        self.last_body = None
        self.recent.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "completed": self.completed,
            "disconnected": self.disconnected,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "tokens_sent": self.tokens_sent,
            # JSON object keys are strings.
            "errors_by_status": {str(status): n for status, n in sorted(self.errors_by_status.items())},
            "received_by_route": dict(sorted(self.received_by_route.items())),
            "last_headers": dict(self.last_headers),
            "last_body": self.last_body,
        }
