"""One attempt: a streaming call to one target, its accounting, and its hand-over to the client."""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.config.model import Target
from gateway.errors import FailureKind, ProviderError
from gateway.formats import EventInfo
from gateway.policies.breaker import Permit
from gateway.providers.base import Provider
from gateway.translate import StreamTranslator
from gateway.wire import Json, SSEEvent

log = logging.getLogger("gateway.engine")

CHARS_PER_TOKEN = 4  # the usual estimate for English text, used only when a provider reports no usage


class Launch(enum.StrEnum):
    PRIMARY = "primary"  # the first target tried
    HEDGE = "hedge"  # launched because the previous attempts were slower than the hedge delay
    FALLBACK = "fallback"  # launched because an earlier attempt failed


class Outcome(enum.StrEnum):
    WON = "won"
    CANCELLED = "cancelled"  # lost the race, or the client/deadline ended the request
    FAILED = "failed"
    SKIPPED = "skipped"  # never sent: breaker open or target cooling down after a 429


@dataclass(slots=True, eq=False)
class Attempt:
    index: int
    target: Target
    launch: Launch
    started: float
    input_estimate: int  # prompt tokens estimated from the request size, until the provider reports them
    outcome: Outcome | None = None
    error: ProviderError | None = None
    skip_reason: str | None = None
    breaker_state: str = "closed"
    first_token_s: float | None = None  # seconds from attempt start to its first content token
    ended: float | None = None
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    streamed_chars: int = 0
    finish_reason: str | None = None
    response_model: str | None = None
    server_address: str = ""
    server_port: int = 0
    queue_wait_s: float = 0.0  # time spent waiting for the provider's concurrency bound (bulkhead)
    context: object = None  # opaque slot for telemetry (the attempt span)

    @property
    def provider(self) -> str:
        return self.target.provider

    @property
    def usage_estimated(self) -> bool:
        return self.outcome is not Outcome.SKIPPED and (self.input_tokens is None or self.output_tokens is None)

    @property
    def billed_input_tokens(self) -> int:
        if self.outcome is Outcome.SKIPPED:
            return 0
        return self.input_tokens if self.input_tokens is not None else self.input_estimate

    @property
    def billed_output_tokens(self) -> int:
        if self.output_tokens is not None:
            return self.output_tokens
        return math.ceil(self.streamed_chars / CHARS_PER_TOKEN)

    @property
    def cost_usd(self) -> float:
        # A failed attempt that got an HTTP error before streaming is not billed by providers.
        if self.outcome is Outcome.SKIPPED or (self.error is not None and self.first_token_s is None
                                               and self.error.status is not None):
            return 0.0
        return self.target.price.cost_usd(self.billed_input_tokens, self.billed_output_tokens)

    @property
    def duration_s(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


class AttemptStream:
    """Reads one provider stream: inspects every event for accounting, translates it for the client."""

    def __init__(self, attempt: Attempt, provider: Provider, body: Json,
                 inspect: Callable[[SSEEvent], EventInfo], translator: StreamTranslator,
                 clock: Clock, permit: Permit | None) -> None:
        self.attempt = attempt
        self.permit = permit
        self._events = provider.stream(body)
        self._redact = provider.redact
        self._inspect = inspect
        self._translator = translator
        self._clock = clock
        self._done = False
        self._complete = False  # a finish reason or end-of-message was seen
        self.slot_release: Callable[[], None] | None = None  # set while holding a bulkhead slot
        self._carry: list[SSEEvent] = []  # events read past the commit point, not yet processed

    def release_slot(self) -> None:
        release, self.slot_release = self.slot_release, None
        if release is not None:
            release()

    async def until_content(self) -> list[SSEEvent]:
        """Client events up to and including the first one with content (the commit point)."""
        head: list[SSEEvent] = []
        while self.attempt.first_token_s is None:
            events = await self._next(until_content=True)
            if events is None:
                break  # a stream that ended without content (e.g. an empty answer) still wins
            head.extend(events)
        return head

    async def rest(self) -> AsyncIterator[list[SSEEvent]]:
        while (events := await self._next()) is not None:
            if events:
                yield events

    async def _next(self, until_content: bool = False) -> list[SSEEvent] | None:
        """The client events of the next provider batch. With `until_content`, stop right after the first
        content event and keep the rest of its batch for later: the commit point is that event, exactly."""
        if self._done:
            return None
        a = self.attempt
        try:
            if self._carry:
                batch, self._carry = self._carry, []
            else:
                batch = await anext(self._events)
        except StopAsyncIteration:
            self._done = True
            if not self._complete:
                raise ProviderError(FailureKind.FAULT, f"{a.provider}: stream ended before the answer was "
                                    "complete", error_type="incomplete_stream") from None
            return self._translator.finish()
        except ProviderError:
            self._done = True
            raise
        except Exception as exc:  # e.g. an undecodable body: the provider's fault, never a crashed request
            self._done = True
            log.warning("attempt %s: unexpected error reading the stream", a.target.label, exc_info=True)
            raise ProviderError(FailureKind.FAULT, f"{a.provider}: unreadable response ({type(exc).__name__})",
                                error_type="bad_response") from None
        out: list[SSEEvent] = []
        for i, ev in enumerate(batch):
            try:
                self._account(ev)
                out.extend(self._translator.feed(ev))
                if until_content and a.first_token_s is not None:
                    self._carry = batch[i + 1:]
                    break
            except ProviderError:
                self._done = True
                raise
            except Exception as exc:  # valid JSON of the wrong shape (`"choices": "x"`, a null choice...)
                self._done = True
                log.warning("attempt %s: malformed event %s", a.target.label, self._redact(repr(ev.data)[:300]),
                            exc_info=True)
                raise ProviderError(FailureKind.FAULT, f"{a.provider}: malformed event in stream "
                                    f"({type(exc).__name__})", error_type="bad_response") from None
        return out

    def _account(self, ev: SSEEvent) -> None:
        """Usage, finish, first token and in-stream errors of one provider event."""
        a = self.attempt
        info = self._inspect(ev)
        if a.response_model is None:
            a.response_model = _model_of(ev.data)
        if info.error is not None:
            err_type, message = info.error
            raise ProviderError(FailureKind.FAULT, self._redact(f"{a.provider}: {err_type}: {message}")[:600],
                                error_type=err_type or "stream_error")
        if info.input_tokens is not None:
            a.input_tokens = info.input_tokens
        if info.cached_input_tokens is not None:
            a.cached_input_tokens = info.cached_input_tokens
        if info.output_tokens is not None:
            a.output_tokens = info.output_tokens
        if info.text:
            a.streamed_chars += len(info.text)
        if info.finish_reason is not None:
            a.finish_reason = info.finish_reason
            self._complete = True
        if info.end:
            self._complete = True
        if info.content and a.first_token_s is None:
            a.first_token_s = self._clock() - a.started

    async def aclose(self) -> None:
        """Close the upstream stream (and its connection, if it had not finished)."""
        self._done = True
        self.release_slot()
        await self._events.aclose()


def _model_of(data: Json) -> str | None:
    model = data.get("model")
    if model is None:
        message = data.get("message")
        if isinstance(message, dict):
            model = message.get("model")
    return model if isinstance(model, str) else None
