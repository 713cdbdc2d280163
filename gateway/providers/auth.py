"""Per-request auth for `HttpProvider`: headers computed for each request (a signature over its body, a
token that expires), for the kinds whose headers cannot be built once.

The credential libraries (botocore, google-auth, azure-identity) block: on files, subprocesses or their token
endpoints. Their refreshes run in a thread (`asyncio.to_thread`), once at a time, and the result is cached
until shortly before it expires; a refresh due soon starts in the background while the cached value still
serves, so no request waits on one unless the cached value is (nearly) expired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from gateway.errors import FailureKind, ProviderError


class Auth(Protocol):
    async def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, str]:
        """The auth headers for this request (added last: they win over any other header of the same name).
        `headers` are the request's own, which a signature may cover. Raises `ProviderError` when no
        credential can be had."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """What this auth currently sends that must never reach a client or a log (for redaction)."""
        ...

    async def aclose(self) -> None:
        """Stop any refresh under way."""
        ...


T = TypeVar("T")
Token = tuple[str, float]  # a credential and when it expires (epoch seconds; inf: never)
_RETRY_S = 5.0  # after a failed refresh, the next background one waits this long (an urgent one does not)


class Refreshing(Generic[T]):
    """A credential from a blocking `fetch` (value, expiry in epoch seconds), cached until `margin_s` before
    it expires.

    Within `margin_s` of expiry a refresh starts in the background and the cached value goes on serving;
    within `urgent_s` of it (or with nothing cached) callers wait for the refresh. One refresh at a time:
    concurrent callers share it, and a caller cancelled while waiting leaves it running for the others."""

    def __init__(self, fetch: Callable[[], tuple[T, float]], *, what: str, margin_s: float = 300.0,
                 urgent_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._what = what  # names the credential in errors: "AWS credentials", "Entra ID token", ...
        self._margin_s = margin_s
        self._urgent_s = urgent_s
        self._clock = clock
        self._value: T | None = None
        self._expires = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._error = ""
        self._next_try = 0.0
        self.refreshes = 0  # how many fetches succeeded (tests and logs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            pass  # built before the loop runs: the first request fetches
        else:
            # Built by a running gateway (start, reload): fetch now, so the first request to a cloud (maybe a
            # hedge, which has no time to spare) does not wait on a token endpoint or a credential chain.
            self._refresh = loop.create_task(self._run())

    @property
    def current(self) -> T | None:
        return self._value

    async def get(self) -> T:
        now = self._clock()
        value = self._value
        if value is not None and now < self._expires - self._margin_s:
            return value
        urgent = value is None or now >= self._expires - self._urgent_s
        task = self._refresh
        if task is None and (urgent or now >= self._next_try):
            task = self._refresh = asyncio.create_task(self._run())
        if not urgent and value is not None:
            return value  # still good for a while: the refresh runs in the background
        if task is not None:
            await asyncio.shield(task)
        value = self._value
        if value is None or self._clock() >= self._expires:
            raise ProviderError(FailureKind.FAULT, self._error or f"no {self._what}", error_type="auth_unavailable")
        return value

    async def _run(self) -> None:
        try:
            value, expires = await asyncio.to_thread(self._fetch)
        except Exception as exc:
            # Only the exception's type: credential libraries may quote what they were given.
            self._error = f"cannot get {self._what} ({type(exc).__name__})"
            self._next_try = self._clock() + _RETRY_S
        else:
            self._value, self._expires, self._error = value, expires, ""
            self.refreshes += 1
        finally:
            self._refresh = None

    async def aclose(self) -> None:
        task, self._refresh = self._refresh, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class BearerAuth:
    """`Authorization: Bearer <token>` from a `Refreshing` token (Entra ID, Google OAuth)."""

    def __init__(self, token: Refreshing[str]) -> None:
        self.token = token

    async def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, str]:
        return {"authorization": f"Bearer {await self.token.get()}"}

    def secrets(self) -> tuple[str, ...]:
        current = self.token.current
        return (current,) if current else ()

    async def aclose(self) -> None:
        await self.token.aclose()


def google_token(credentials: Any, request: Any) -> Token:
    """Refresh google-auth `credentials` (blocking) and return its token and expiry."""
    credentials.refresh(request)
    expiry = credentials.expiry  # a naive UTC datetime, or None for a token without one
    if expiry is None:
        return str(credentials.token), float("inf")
    import calendar

    return str(credentials.token), float(calendar.timegm(expiry.utctimetuple()))


def azure_token(credential: Any, scope: str) -> Token:
    """A token from an azure-identity `TokenCredential` (blocking)."""
    token = credential.get_token(scope)
    return str(token.token), float(token.expires_on)
