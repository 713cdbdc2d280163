"""The provider interface and the streaming HTTP machinery both adapters share.

Like httpx's transport: the engine calls `stream(body)` and does not know which provider it is talking to.
Every call is a streaming call (cancelling a stream is what stops a provider from generating and billing),
over one pooled aiohttp session per provider. Closing the generator early (a cancelled loser) closes the
upstream connection instead of returning it to the pool, so the provider sees the disconnect at once.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import urlparse

import aiohttp
import orjson

from gateway.config.model import ProviderConfig
from gateway.types import FailureKind, Json, ProviderError, SSEEvent, WireFormat, classify_status

_MAX_ERROR_BODY = 64 * 1024


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

    def stream(self, body: Json) -> AsyncGenerator[SSEEvent, None]:
        return self._stream(body)

    async def _stream(self, body: Json) -> AsyncGenerator[SSEEvent, None]:
        payload = orjson.dumps(body)
        try:
            resp = await self.session.post(self._url, data=payload, headers=self._headers)
        except TimeoutError:
            raise ProviderError(FailureKind.FAULT, f"{self.name}: connect timeout",
                                error_type="timeout") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(FailureKind.FAULT, f"{self.name}: connection failed ({type(exc).__name__})",
                                error_type="connection_error") from None
        finished = False
        try:
            if resp.status >= 300:
                raise await self._http_error(resp)
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                raise ProviderError(FailureKind.FAULT, f"{self.name}: expected an event stream, got "
                                    f"{ctype or 'no content type'}", status=resp.status,
                                    error_type="bad_response")
            async for event in _read_sse(resp.content, self.name):
                yield event
            finished = True
        except TimeoutError:
            raise ProviderError(FailureKind.FAULT, f"{self.name}: no data for {self.config.timeout_s:g} s",
                                error_type="timeout") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(FailureKind.FAULT, f"{self.name}: stream broken ({type(exc).__name__})",
                                error_type="connection_error") from None
        finally:
            if finished:
                resp.release()
            else:
                # Drop the connection: the provider must see the client leave and stop generating.
                resp.close()

    async def _http_error(self, resp: aiohttp.ClientResponse) -> ProviderError:
        raw = await resp.content.read(_MAX_ERROR_BODY)
        message, error_type = _error_message(raw)
        retry_after = _retry_after(resp.headers.get("retry-after-ms"), resp.headers.get("retry-after"))
        text = f"{self.name}: HTTP {resp.status}" + (f": {message}" if message else "")
        return ProviderError(classify_status(resp.status), text, status=resp.status,
                             error_type=error_type or f"http_{resp.status}", retry_after_s=retry_after)


async def _read_sse(content: aiohttp.StreamReader, name: str) -> AsyncIterator[SSEEvent]:
    """Parse an SSE byte stream incrementally into JSON events. Stops at OpenAI's `[DONE]`."""
    event_name: str | None = None
    data: list[bytes] = []
    async for raw_line in content:
        line = raw_line.rstrip(b"\r\n")
        if line:
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                event_name = line[6:].strip().decode()
            # Comments (":") and other fields (id, retry) carry nothing we use.
            continue
        if data:
            payload = b"\n".join(data)
            data = []
            if payload == b"[DONE]":
                return
            try:
                parsed = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise ProviderError(FailureKind.FAULT, f"{name}: malformed JSON in event stream",
                                    error_type="bad_response") from None
            if not isinstance(parsed, dict):
                raise ProviderError(FailureKind.FAULT, f"{name}: event is not a JSON object",
                                    error_type="bad_response")
            yield SSEEvent(parsed, event_name)
        event_name = None


def _error_message(raw: bytes) -> tuple[str, str]:
    """The message and type from an OpenAI- or Anthropic-shaped error body, or a bounded raw excerpt."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode(errors="replace").strip(), ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("message", ""))[:500], str(err.get("type") or "")
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
