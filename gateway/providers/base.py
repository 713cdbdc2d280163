"""The provider interface and the streaming HTTP machinery both adapters share.

Like httpx's transport: the engine calls `stream(body)` and does not know which provider it is talking to.
Every call is a streaming call (cancelling a stream is what stops a provider from generating and billing),
over one pooled aiohttp session per provider. Closing the generator early (a cancelled loser) closes the
upstream connection instead of returning it to the pool, so the provider sees the disconnect at once.
"""

from __future__ import annotations

import abc
import os
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import urlparse

import aiohttp
import orjson

from gateway.config.model import ProviderConfig
from gateway.errors import FailureKind, ProviderError, classify_status, known_error_type
from gateway.providers.redaction import bounded, redact
from gateway.wire import Json, SSEEvent, WireFormat

_MAX_ERROR_BODY = 64 * 1024  # bytes of a non-stream (error) body read for its message; the rest is dropped
_MAX_EVENT = 1024 * 1024  # bytes of one SSE line, and of one event's data lines together


class Provider(abc.ABC):
    """One upstream provider. `stream` yields the provider's own SSE events, or raises `ProviderError`."""

    kind: WireFormat

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        parsed = urlparse(config.base_url)
        self.server_address = parsed.hostname or ""
        self.server_port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._session: aiohttp.ClientSession | None = None
        self._url = self.url()
        self._headers = self.headers()  # built once: they carry the key and never change

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily so it binds to the running loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300,
                                             enable_cleanup_closed=True)
            # No total timeout: it would cut long streams. The engine owns the deadlines; sock_read bounds
            # a provider that goes silent mid-stream.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s,
                                            sock_read=self.config.timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                                  json_serialize=lambda o: orjson.dumps(o).decode(),
                                                  auto_decompress=True, trust_env=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @abc.abstractmethod
    def url(self) -> str: ...

    @abc.abstractmethod
    def headers(self) -> dict[str, str]: ...

    def stream(self, body: Json) -> AsyncGenerator[list[SSEEvent], None]:
        """The provider's events, in batches: every complete event that arrived in one network read.

        Batches, not single events, because a fast provider sends many events per read, and every layer the
        events then cross (this generator, the attempt, the client write) costs per step, not per byte."""
        return self._stream(body)

    def redact(self, text: str) -> str:
        """`text` (from an upstream body or an exception) with this provider's key cut out: an upstream that
        echoes the key it was sent ("Incorrect API key provided: sk-...") must not hand it to clients. Pieces of
        the key that a bound cut off are cut out too (see `gateway.providers.redaction`)."""
        return redact(text, self.config.api_key)

    def _fault(self, message: str, error_type: str, status: int | None = None) -> ProviderError:
        # Redacted before it is bounded: a bound through the key would leave a part of it unmatched.
        return ProviderError(FailureKind.FAULT, bounded(self.redact(f"{self.name}: {message}")), status=status,
                             error_type=error_type)

    async def _stream(self, body: Json) -> AsyncGenerator[list[SSEEvent], None]:
        try:
            payload = orjson.dumps(body)
        except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes: the request's fault
            raise ProviderError(FailureKind.CLIENT, f"{self.name}: request cannot be encoded as JSON ({exc})",
                                status=400, error_type="invalid_request_error") from None
        try:
            # No redirects: an LLM API never moves, and following one would hand the key headers to
            # whatever server the Location names.
            resp = await self.session.post(self._url, data=payload, headers=self._headers, allow_redirects=False)
        except aiohttp.ConnectionTimeoutError:
            raise self._fault(f"connect timeout ({self.config.connect_timeout_s:g} s)", "timeout") from None
        except TimeoutError:  # connected, request sent, no response headers within sock_read
            raise self._fault(f"no response within {self.config.timeout_s:g} s", "timeout") from None
        except aiohttp.ClientResponseError as exc:  # an unparseable response head (e.g. a huge header)
            raise self._fault(f"invalid response ({exc.message[:200]})", "bad_response") from None
        except aiohttp.ClientError as exc:
            raise self._fault(f"connection failed ({_describe(exc)})", "connection_error") from None
        finished = False
        try:
            if resp.status >= 300:
                raise await self._http_error(resp)
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                # Often an error body sent with 200 (or a server that ignored stream: true): say what it says.
                message, _ = _error_message(await _read_bounded(resp.content, _MAX_ERROR_BODY), raw_excerpt=False)
                raise self._fault(f"expected an event stream, got {ctype or 'no content type'} (HTTP {resp.status})"
                                  + (f": {message}" if message else ""), "bad_response", resp.status)
            async for batch in _read_sse(resp.content, self.name):
                yield batch
            finished = True
        except TimeoutError:
            raise self._fault(f"no data for {self.config.timeout_s:g} s", "timeout") from None
        except aiohttp.ClientError as exc:
            raise self._fault(f"stream broken ({_describe(exc)})", "connection_error") from None
        finally:
            if finished:
                resp.release()
            else:
                # Drop the connection: the provider must see the client leave and stop generating.
                resp.close()

    async def _http_error(self, resp: aiohttp.ClientResponse) -> ProviderError:
        raw = await _read_bounded(resp.content, _MAX_ERROR_BODY)
        message, error_type = _error_message(raw)
        retry_after = _retry_after(resp.headers.get("retry-after-ms"), resp.headers.get("retry-after"))
        if retry_after is not None and not retry_after <= 3600:
            # inf, nan or absurd: as if none was sent (it becomes a cool-down and the client's Retry-After).
            retry_after = None
        text = f"{self.name}: HTTP {resp.status}" + (f": {message}" if message else "")
        # The type goes to the client as its error type, and to metrics and traces: known words only.
        return ProviderError(classify_status(resp.status), bounded(self.redact(text)), status=resp.status,
                             error_type=known_error_type(error_type) or f"http_{resp.status}",
                             retry_after_s=retry_after)


def _describe(exc: aiohttp.ClientError) -> str:
    """A connection failure in a few words, without addresses: `ClientOSError: Connection reset by peer`."""
    err = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(err, OSError) and err.errno:
        return f"{type(exc).__name__}: {os.strerror(err.errno)}"
    return type(exc).__name__


async def _read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a body (`read(n)` alone may return a first fragment of it)."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (part := await content.read(limit - size)):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _too_large(name: str) -> ProviderError:
    return ProviderError(FailureKind.FAULT, f"{name}: event stream line or event larger than "
                         f"{_MAX_EVENT // (1024 * 1024)} MiB", error_type="bad_response")


async def _read_sse(content: aiohttp.StreamReader, name: str) -> AsyncIterator[list[SSEEvent]]:
    """Parse an SSE byte stream incrementally into JSON events, a batch per read. Stops at OpenAI's `[DONE]`.

    Events are split on blank lines here, with a fast path for the usual one-line `data: {...}` event; one bound
    holds on every aiohttp version: an event (or an unfinished one) over `_MAX_EVENT` bytes is a provider fault.
    """
    rest = b""  # the start of an event whose end has not arrived yet
    while chunk := await content.readany():
        if rest:
            chunk = rest + chunk
        if b"\r" in chunk:  # CRLF streams: normalise (a lone CR at the end waits for its LF)
            chunk = chunk.replace(b"\r\n", b"\n")
        blocks = chunk.split(b"\n\n")
        rest = blocks.pop()
        if len(rest) > _MAX_EVENT:
            raise _too_large(name)
        batch: list[SSEEvent] = []
        for block in blocks:
            event_name: str | None = None
            payload: bytes | None
            if block.startswith(b"data: ") and b"\n" not in block:
                payload = block[6:]  # the usual OpenAI event
            else:
                event_name, payload = _parse_block(block)
            if payload is None:
                continue  # comments, keep-alives, events without data
            if len(payload) > _MAX_EVENT:
                raise _too_large(name)
            if payload == b"[DONE]":
                if batch:
                    yield batch
                return
            try:
                parsed = orjson.loads(payload)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                # The events before the bad one still count (one of them may be the first token).
                if batch:
                    yield batch
                what = "malformed JSON in event stream" if parsed is None else "event is not a JSON object"
                raise ProviderError(FailureKind.FAULT, f"{name}: {what}", error_type="bad_response")
            batch.append(SSEEvent(parsed, event_name))
        if batch:
            yield batch
    # End of the body: an event without its closing blank line is incomplete, and dropped (as the SSE spec says).


def _parse_block(block: bytes) -> tuple[str | None, bytes | None]:
    """The event name and data of one SSE event block (several lines); data None if it has none."""
    event_name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
        elif line.startswith(b"event:"):
            event_name = line[6:].strip().decode(errors="replace")
        # Comments (":") and other fields (id, retry) carry nothing we use.
    if not data:
        return event_name, None
    return event_name, b"\n".join(data)


def _error_message(raw: bytes, *, raw_excerpt: bool = True) -> tuple[str, str]:
    """The message and type from an OpenAI- or Anthropic-shaped error body, else a raw excerpt (or nothing,
    with `raw_excerpt=False`). Not bounded here: the caller redacts the text, then bounds it (`_MAX_ERROR_BODY`
    bounds what is read). The type is as the upstream sent it: the caller keeps it only if it is known."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return (raw.decode(errors="replace").strip() if raw_excerpt else ""), ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        kind = err.get("type")
        return str(err.get("message", "")), kind if type(kind) is str else ""
    return "", ""


def _retry_after(ms: str | None, seconds: str | None) -> float | None:
    try:
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        if seconds is not None:
            return max(0.0, float(seconds))
    except ValueError:
        return None
    return None
