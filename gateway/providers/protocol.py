"""The provider interface: what the engine sees of an upstream, in the spirit of httpx's `AsyncBaseTransport`.

The engine calls `stream(request)` and reads batches of the provider's own SSE events; it does not know whether
HTTP, a test fake or anything else is behind it. The one real implementation is `HttpProvider`
(gateway.providers.http): a pooled aiohttp session, URL and auth headers per provider kind, an SSE reader.
A test fake implements these few members and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway.wire import Json, SSEEvent, WireFormat


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request to send: the provider-format body (always streaming) and the client headers to forward
    (e.g. `anthropic-beta` between two Anthropic speakers), which override the provider's defaults."""

    body: Json
    headers: Mapping[str, str] = field(default_factory=dict)
    dropped_fields: tuple[str, ...] = ()  # client fields the translation left out (for the attempt's span)
    operation: str = "chat"  # which of the provider's endpoints: "chat" (in its kind's format), a wire format it
    # also speaks natively (e.g. "responses"), "embeddings", "count_tokens"


class Provider(Protocol):
    name: str
    kind: WireFormat  # the wire format it speaks
    server_address: str  # for traces: where it is
    server_port: int
    operations: frozenset[str]  # the operations it serves ("chat" always; "embeddings", "count_tokens", ...)
    speaks: frozenset[WireFormat]  # the wire formats it serves natively (its `kind`, and maybe more)

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[list[SSEEvent], None]:
        """The provider's events in batches (every complete event of one network read), or `ProviderError`.

        Nothing is sent before the first iteration. Closing the generator early (a cancelled loser) closes the
        upstream connection instead of returning it to a pool, so the provider sees the client leave at once."""
        ...

    async def reserve(self) -> tuple[Callable[[], None], float]:
        """Wait for a free connection to this provider (the gateway's own pool): its release, and the seconds
        waited (0.0 when one was free).
        Raises `ProviderError` of kind LOCAL when none frees up in time: local overload, not a provider fault."""
        ...

    async def call(self, request: UpstreamRequest) -> Json:
        """A unary call (embeddings, token counting): the provider's JSON answer, or `ProviderError`."""
        ...

    def redact(self, text: str) -> str:
        """`text` with this provider's secrets cut out (an upstream may echo the key it was sent)."""
        ...

    async def aclose(self) -> None:
        """Close the connections. Idempotent."""
        ...
