"""`HttpProvider`: the `Provider` interface over HTTP, for every provider kind.

Every call is a streaming call (cancelling a stream is what stops a provider from generating and billing),
over one pooled aiohttp session per provider. Closing the generator early (a cancelled loser) closes the
upstream connection instead of returning it to the pool, so the provider sees the disconnect at once.
What differs between kinds is only where to send and which headers: an `Endpoint`, built by the kind's module.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlparse

import aiohttp
import orjson

from gateway.config.model import ProviderConfig
from gateway.errors import FailureKind, ProviderError, classify_status, known_error_type
from gateway.providers.auth import Auth
from gateway.providers.protocol import UpstreamRequest
from gateway.providers.redaction import bounded, redact
from gateway.wire import (
    ALWAYS_WRITABLE_LEN,
    Json,
    LastBatch,
    SSEEvent,
    WireFormat,
    nested_within_writable,
    read_event,
)

_MAX_ERROR_BODY = 64 * 1024  # bytes of a non-stream (error) body read for its message; the rest is dropped
_MAX_EVENT = 1024 * 1024  # bytes of one SSE line, and of one event's data lines together
_BODY_END_S = 0.1  # how long the end of a body may lag its last event before the connection is given up
_MAX_BODY_TAIL = 64 * 1024  # bytes read (and dropped) after the last event while waiting for the end
_MAX_JSON_BODY = 64 * 1024 * 1024  # bytes of a unary answer (embeddings of a large batch are tens of MB)
_OWN_ERROR_TYPES = frozenset({"bad_response", "stream_error", "timeout", "connection_error"})
_AUTH_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})


# Reads a streamed answer's body into batches of events (SSE by default; Bedrock's AWS event stream).
StreamDecoder = Callable[[aiohttp.StreamReader, str], AsyncIterator[list[SSEEvent]]]
# Reads a kind's error body (and headers): message, error type, and the failure kind when the status alone
# does not tell it (e.g. a throttling error sent as 400).
ErrorReader = Callable[[bytes, Mapping[str, str]], tuple[str, str, FailureKind | None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a provider kind is called, by operation ("chat", "embeddings", "count_tokens", ...), and the
    headers every call carries (auth included). An operation without a URL is one the kind does not serve.

    For kinds whose requests differ one from another (the clouds): a URL may hold `{model}`, filled with the
    body's model (URL-quoted); `shape` rewrites each request into the kind's own body and headers (e.g. no
    `model` in the body); `auth` adds headers per request, last (a signature over the final body, a refreshed
    token); `stream_type` and `decode` read the kind's stream; `errors` reads its error bodies."""

    urls: Mapping[str, str]
    headers: Mapping[str, str]
    auth: Auth | None = None
    shape: Callable[[UpstreamRequest], UpstreamRequest] | None = None
    stream_type: str = "text/event-stream"
    decode: StreamDecoder | None = None  # None: SSE
    errors: ErrorReader | None = None  # None: OpenAI- and Anthropic-shaped bodies


class HttpProvider:
    """One upstream provider reached over HTTP (see `gateway.providers.protocol.Provider`)."""

    def __init__(self, config: ProviderConfig, endpoint: Endpoint) -> None:
        self.config = config
        self.name = config.name
        self.kind: WireFormat = config.wire  # what the engine translates to (the provider kind is config.kind)
        parsed = urlparse(config.base_url)
        self.server_address = parsed.hostname or ""
        self.server_port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._session: aiohttp.ClientSession | None = None
        self._free = config.max_connections  # connections not reserved by an attempt
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._urls = dict(endpoint.urls)
        self.operations = frozenset(self._urls)
        # The kind's chat format, and any other wire format the endpoint has a URL for (by the format's name).
        self.speaks = frozenset({self.kind} | {fmt for fmt in WireFormat if fmt.value in self._urls})
        self._headers = dict(endpoint.headers)  # built once: they carry the key and never change
        self._auth = endpoint.auth
        self._shape = endpoint.shape
        self._stream_type = endpoint.stream_type
        self._decode: StreamDecoder = endpoint.decode or _read_sse
        self._errors = endpoint.errors

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
            # No cookie jar: a cookie one provider's answer sets must not go out with every later client's
            # request (and an empty jar is still looked up on every call).
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                                  json_serialize=lambda o: orjson.dumps(o).decode(),
                                                  auto_decompress=True, trust_env=False,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def aclose(self) -> None:
        if self._auth is not None:
            await self._auth.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def reserve(self) -> tuple[Callable[[], None], float]:
        """One of the pool's `max_connections`, waited for FIFO at most `pool_timeout_s`. Attempts reserve before
        they connect, so aiohttp never queues inside an attempt's timeout (where a wait would look like a slow
        provider and count against its breaker)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return self._release, 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.config.pool_timeout_s):
                await waiter
        except TimeoutError:
            raise ProviderError(FailureKind.LOCAL, f"{self.name}: all {self.config.max_connections} connections "
                                f"busy for {self.config.pool_timeout_s:g} s", error_type="local_overload") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a connection just as it was cancelled: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return self._release, loop.time() - started

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over directly: _free stays as it is
                return
        self._free += 1

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[list[SSEEvent], None]:
        """The provider's events, in batches: every complete event that arrived in one network read.

        Batches, not single events, because a fast provider sends many events per read, and every layer the
        events then cross (this generator, the attempt, the client write) costs per step, not per byte."""
        return self._stream(request)

    async def call(self, request: UpstreamRequest) -> Json:
        """A unary call (embeddings, token counting): the provider's JSON answer, or `ProviderError`.
        Cancelling it closes the connection, as for a stream."""
        resp = await self._post(request)
        finished = False
        try:
            if resp.status >= 300:
                raise await self._http_error(resp)
            raw = await _read_bounded(resp.content, _MAX_JSON_BODY + 1)
            if len(raw) > _MAX_JSON_BODY:
                raise self._fault(f"answer larger than {_MAX_JSON_BODY // (1024 * 1024)} MiB", "bad_response")
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                raise self._fault(f"answer is not a JSON object (HTTP {resp.status})", "bad_response", resp.status)
            finished = True
            return body
        except TimeoutError:
            raise self._fault(f"no data for {self.config.timeout_s:g} s", "timeout") from None
        except aiohttp.ClientError as exc:
            raise self._fault(f"answer broken ({_describe(exc)})", "connection_error") from None
        finally:
            if finished:
                resp.release()
            else:
                resp.close()

    def redact(self, text: str) -> str:
        """`text` (from an upstream body or an exception) with this provider's key cut out: an upstream that
        echoes the key it was sent ("Incorrect API key provided: sk-...") must not hand it to clients. Pieces of
        the key that a bound cut off are cut out too (see `gateway.providers.redaction`), and so is the current
        token or signature of a cloud's auth, whatever the config holds."""
        text = redact(text, self.config.api_key)
        if self._auth is not None:
            for secret in self._auth.secrets():
                text = redact(text, secret)
        return text

    def _fault(self, message: str, error_type: str, status: int | None = None) -> ProviderError:
        # Redacted before it is bounded: a bound through the key would leave a part of it unmatched.
        return ProviderError(FailureKind.FAULT, bounded(self.redact(f"{self.name}: {message}")), status=status,
                             error_type=error_type)

    async def _post(self, request: UpstreamRequest) -> aiohttp.ClientResponse:
        url = self._urls.get(request.operation)
        if url is None:
            raise ProviderError(FailureKind.CLIENT, f"{self.name}: {request.operation} is not served by a "
                                f"{self.kind} provider", status=400, error_type="invalid_request_error")
        if "{model}" in url:  # the clouds name the model (deployment, model id) in the URL
            url = url.replace("{model}", quote(str(request.body.get("model", "")), safe=":@"))  # RFC 3986 pchar
        if self._shape is not None:
            request = self._shape(request)
        # Forwarded client headers never replace the provider's own auth.
        headers = self._headers if not request.headers else {
            **self._headers, **{k: v for k, v in request.headers.items() if k.lower() not in _AUTH_HEADERS}}
        try:
            payload = orjson.dumps(request.body)
        except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes: the request's fault
            raise ProviderError(FailureKind.CLIENT, f"{self.name}: request cannot be encoded as JSON ({exc})",
                                status=400, error_type="invalid_request_error") from None
        if self._auth is not None:
            headers = {**headers, **await self._auth.headers("POST", url, headers, payload)}
        try:
            # No redirects: an LLM API never moves, and following one would hand the key headers to
            # whatever server the Location names.
            return await self.session.post(url, data=payload, headers=headers, allow_redirects=False)
        except aiohttp.ConnectionTimeoutError:
            raise self._fault(f"connect timeout ({self.config.connect_timeout_s:g} s)", "timeout") from None
        except TimeoutError:  # connected, request sent, no response headers within sock_read
            raise self._fault(f"no response within {self.config.timeout_s:g} s", "timeout") from None
        except aiohttp.ClientResponseError as exc:  # an unparseable response head (e.g. a huge header)
            raise self._fault(f"invalid response ({exc.message[:200]})", "bad_response") from None
        except aiohttp.ClientError as exc:
            raise self._fault(f"connection failed ({_describe(exc)})", "connection_error") from None

    async def _stream(self, request: UpstreamRequest) -> AsyncGenerator[list[SSEEvent], None]:
        resp = await self._post(request)
        finished = False
        try:
            if resp.status >= 300:
                raise await self._http_error(resp)
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith(self._stream_type):
                # Often an error body sent with 200 (or a server that ignored stream: true): say what it says.
                message, _ = _error_message(await _read_bounded(resp.content, _MAX_ERROR_BODY), raw_excerpt=False)
                raise self._fault(f"expected an event stream, got {ctype or 'no content type'} (HTTP {resp.status})"
                                  + (f": {message}" if message else ""), "bad_response", resp.status)
            try:
                async for batch in self._decode(resp.content, self.name):
                    yield batch
            except ProviderError as exc:  # from the stream's decoder (e.g. an exception frame): upstream words
                own = exc.error_type in _OWN_ERROR_TYPES  # the reader's own verdict, else the upstream's word
                raise ProviderError(exc.kind, bounded(self.redact(exc.message)), status=exc.status,
                                    error_type=exc.error_type if own else known_error_type(exc.error_type)
                                    or "stream_error", retry_after_s=exc.retry_after_s) from None
            finished = True
        except TimeoutError:
            raise self._fault(f"no data for {self.config.timeout_s:g} s", "timeout") from None
        except aiohttp.ClientError as exc:
            raise self._fault(f"stream broken ({_describe(exc)})", "connection_error") from None
        finally:
            if finished:
                resp.release()
            else:
                # Drop the connection: the provider must see the client leave and stop generating. (A body read
                # to its end, e.g. an error's, was already given back to the pool by aiohttp when it ended.)
                resp.close()

    async def _http_error(self, resp: aiohttp.ClientResponse) -> ProviderError:
        raw = await _read_bounded(resp.content, _MAX_ERROR_BODY)
        kind: FailureKind | None = None
        if self._errors is not None:
            message, error_type, kind = self._errors(raw, resp.headers)
        else:
            message, error_type = _error_message(raw)
        retry_after = _retry_after(resp.headers.get("retry-after-ms"), resp.headers.get("retry-after"))
        if retry_after is not None and not retry_after <= 3600:
            # inf, nan or absurd: as if none was sent (it becomes a cool-down and the client's Retry-After).
            retry_after = None
        text = f"{self.name}: HTTP {resp.status}" + (f": {message}" if message else "")
        # The type goes to the client as its error type, and to metrics and traces: known words only.
        return ProviderError(kind or classify_status(resp.status), bounded(self.redact(text)), status=resp.status,
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


async def _read_to_end(content: aiohttp.StreamReader) -> None:
    """Wait briefly for the end of a body whose last event has come (OpenAI's `[DONE]`, then the chunked body's
    terminator, often in a later network read). A response released before its body's end makes aiohttp close
    the connection instead of pooling it: the next request would open a new one (a TLS handshake with a real
    provider). Bounded in time and bytes: a provider that never ends its body costs `_BODY_END_S` once per
    answer, then its connection is closed as before. Never raises but when cancelled: the answer is whole."""
    size = 0
    try:
        async with asyncio.timeout(_BODY_END_S):
            while size <= _MAX_BODY_TAIL and (part := await content.readany()):
                size += len(part)
    except (TimeoutError, aiohttp.ClientError):
        pass  # the connection is closed on release (not at its end): as if never waited for


def _too_large(name: str) -> ProviderError:
    return ProviderError(FailureKind.FAULT, f"{name}: event stream line or event larger than "
                         f"{_MAX_EVENT // (1024 * 1024)} MiB", error_type="bad_response")


async def _read_sse(content: aiohttp.StreamReader, name: str) -> AsyncIterator[list[SSEEvent]]:
    """Parse an SSE byte stream incrementally into JSON events, a batch per read. Stops at OpenAI's `[DONE]`.

    Events are split on blank lines here, with a fast path for the usual one-line `data: {...}` event, whose JSON
    text is kept as the event's `raw` (what a door of the same format forwards); one bound holds on every aiohttp
    version: an event (or an unfinished one) over `_MAX_EVENT` bytes is a provider fault. Every event is parsed
    all the same: the parse is what guarantees that no client is ever forwarded an event that is not JSON.
    """
    rest = b""  # the start of an event whose end has not arrived yet
    loads, new_event = orjson.loads, read_event
    while chunk := await content.readany():
        if rest:
            chunk = rest + chunk
        lone_cr = False  # a CR left inside an event: a line break to an SSE client, so no raw text is kept
        # `find`, not `in`: bytes' `in` first tries its argument as an int and formats a TypeError (~2,000
        # instructions) before it searches; this runs once per read and once per event.
        if chunk.find(b"\r") >= 0:  # CRLF streams: normalise (a lone CR at the end waits for its LF)
            chunk = chunk.replace(b"\r\n", b"\n")
            lone_cr = chunk.find(b"\r") >= 0
        blocks = chunk.split(b"\n\n")
        rest = blocks.pop()
        batch: list[SSEEvent] = []
        # A fault ends the stream, but the events before it in this read still count (one of them may be the
        # first token): they are yielded first.
        fault: ProviderError | None = _too_large(name) if len(rest) > _MAX_EVENT else None
        for block in blocks:
            event_name: str | None = None
            payload: bytes | None
            if block.startswith(b"data: ") and block.find(b"\n") < 0:
                payload = block[6:]  # the usual OpenAI event
                one_line = True
            else:
                event_name, payload = _parse_block(block)
                one_line = payload is not None and payload.find(b"\n") < 0  # e.g. Anthropic's `event:` + `data:`
            if payload is None:
                continue  # comments, keep-alives, events without data
            if len(payload) > _MAX_EVENT:
                fault = _too_large(name)
                break
            if payload == b"[DONE]":
                if content.at_eof():  # the body's end came with it: the connection is free already
                    if batch:
                        yield LastBatch(batch)
                    return
                if batch:
                    yield batch  # not the last read: the body's end is still to come (written at once)
                await _read_to_end(content)
                return
            try:
                parsed = loads(payload)
            except orjson.JSONDecodeError:
                fault = ProviderError(FailureKind.FAULT, f"{name}: malformed JSON in event stream",
                                      error_type="bad_response")
                break
            if type(parsed) is not dict:
                fault = ProviderError(FailureKind.FAULT, f"{name}: event is not a JSON object",
                                      error_type="bad_response")
                break
            # Kept for a door of the same format to forward (see `gateway.wire.forwardable`).
            raw = payload if one_line and not lone_cr and (
                len(payload) <= ALWAYS_WRITABLE_LEN or nested_within_writable(payload)) else None
            batch.append(new_event(parsed, event_name, raw))
        if batch:
            # The body's end already arrived (a fast provider's whole answer in one read): say so.
            yield LastBatch(batch) if fault is None and content.at_eof() else batch
        if fault is not None:
            raise fault
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
