"""`AttemptRun`: one attempt owned from its launch to its end, like Polly's `TaskExecution`.

It reads one provider stream (accounting for usage, first token and in-stream errors, translating each event
for the client), holds the attempt's breaker permit and bulkhead slot, and ends exactly once (`finish`):
the permit settled by how it ended, the slot freed, the attempt frozen into an `Attempt` and reported to the
hooks. Nobody else touches a permit, a slot or an attempt's fields.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from gateway.clock import Clock
from gateway.config.model import Target
from gateway.engine.hooks import AttemptStarted, Hooks
from gateway.engine.records import Attempt, Launch, Outcome, RequestRecord
from gateway.errors import FailureKind, ProviderError
from gateway.formats import Aggregator, EventInfo, UsageDetails
from gateway.policies.breaker import Permit
from gateway.policies.bulkhead import Bulkhead
from gateway.pricing.usage import Usage
from gateway.providers import Provider, UpstreamRequest
from gateway.translate import StreamTranslator
from gateway.translate.passthrough import PASSTHROUGH
from gateway.wire import Json, LastBatch, SSEEvent

log = logging.getLogger("gateway.engine")

# Bounds on what one attempt may make the gateway hold: a provider streaming events without content (e.g.
# endless role-only deltas) or an answer beyond any real model's output is a provider fault, not a memory leak.
MAX_EVENTS_BEFORE_CONTENT = 10_000
MAX_ANSWER_CHARS = 16 * 1024 * 1024

# Operations answered with one JSON body. Every other operation ("chat", or a wire format the provider speaks
# natively, such as "responses") is a stream of events.
UNARY_OPERATIONS = frozenset({"embeddings", "count_tokens"})

# What `run` ends in: the client events up to the commit point (streams), the whole answer, or the failure.
RunResult = list[SSEEvent] | Json | ProviderError


class AttemptRun:
    """One attempt in flight. Create it with its permit (and slot, if a hedge took one without waiting)."""

    def __init__(self, record: RequestRecord, index: int, target: Target, launch: Launch, *, provider: Provider,
                 upstream: UpstreamRequest, inspect: Callable[[SSEEvent], EventInfo],
                 translator: StreamTranslator, clock: Clock, hooks: Hooks, permit: Permit,
                 breaker_state: str, input_estimate: int, bulkhead: Bulkhead | None, holds_slot: bool,
                 expected_cost_usd: float | None = None, on_finish: Callable[[Attempt], None] | None = None,
                 expected: Usage | None = None, plain_text: Callable[[Json], str | None] | None = None) -> None:
        self.record = record
        self.index = index
        self.target = target
        self.launch = launch
        self.started = clock()
        self.input_estimate = input_estimate
        self.breaker_state = breaker_state
        self._provider = provider
        self._upstream = upstream
        self._inspect = inspect
        self._plain_text = plain_text or _never_plain
        self._translator = translator
        # Same format, nothing to translate: each batch goes on as it came, with no list built per event.
        self._identity = translator is PASSTHROUGH
        self._clock = clock
        self._hooks = hooks
        self._permit = permit
        self._bulkhead = bulkhead
        self._holds_slot = holds_slot
        self._on_finish = on_finish
        self._connection: Callable[[], None] | None = None  # releases the reserved pool connection
        self._events = provider.stream(upstream)
        self._done = False  # the upstream stream is over (ended, failed or closed)
        self._last_read = False  # the reader handed over its last batch: the next one comes without waiting
        self._complete = False  # a finish reason or end-of-message was seen
        self._carry: list[SSEEvent] = []  # events read past the commit point, not yet processed
        self._events_seen = 0
        self.finished: Attempt | None = None  # set once, by `finish`
        # Accounting, read by `finish`.
        self.first_token_s: float | None = None
        self.input_tokens: int | None = None
        self.cached_input_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.cache_write_long_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.expected = expected
        self.output_tokens: int | None = None
        self.streamed_chars = 0
        self.finish_reason: str | None = None
        self.response_model: str | None = None
        self.queue_wait_s = 0.0
        # Traced as what it is, a chat (gen_ai.operation.name), whichever wire format carried it.
        self._operation = upstream.operation if upstream.operation in UNARY_OPERATIONS else "chat"
        hooks.attempt_started(AttemptStarted(record.request_id, record.alias, index, target, launch, self.started,
                                             breaker_state, provider.server_address, provider.server_port,
                                             self._operation, upstream.dropped_fields, expected_cost_usd))

    @property
    def provider(self) -> str:
        return self.target.provider

    @property
    def ready(self) -> bool:
        """Whether `next_batch` would return without waiting on the provider: events read past the commit point
        are waiting, or the provider's stream is over. A writer holds back what it has while this is true, and
        writes it all at once (each write to a client costs a system call and a wake-up of its reader)."""
        return bool(self._carry) or self._last_read or self._done

    # ---- running up to the commit point --------------------------------------------------------------------

    async def run(self, *, stream: bool, timeout_s: float, aggregator: Callable[[], Aggregator],
                  deadline: float | None = None) -> RunResult:
        """Run up to the commit point (streams: the first content token; else the whole answer). Never raises
        except when cancelled: every failure is returned, to be settled by the race.

        `deadline` (event-loop time): the race's own, which cancels this run when it passes. An attempt timeout
        that would end after it can never fire first, so no timer is armed for it."""
        try:
            # Local waits come before the attempt's timeout, within the request deadline: a full pool or bulkhead
            # is this gateway's overload, never the provider's slowness. The wait shows on the attempt's span.
            if self._bulkhead is not None and not self._holds_slot:
                self.queue_wait_s = await self._bulkhead.acquire()
                self._holds_slot = True
            self._connection, pool_wait_s = await self._provider.reserve()
            self.queue_wait_s += pool_wait_s
            loop = asyncio.get_running_loop()
            if deadline is not None and loop.time() + timeout_s > deadline:
                return await self._work(stream, aggregator)  # no timeout context at all: it is not free
            async with asyncio.timeout(timeout_s):
                return await self._work(stream, aggregator)
        except ProviderError as exc:
            # Close at once: a provider that reported an error in its stream (or sent garbage) may keep the
            # connection open and generating; the error kept on the attempt must not hold it alive either.
            await self.aclose()
            return exc
        except TimeoutError:
            await self.aclose()
            return ProviderError(FailureKind.FAULT, f"{self.provider}: no answer within {timeout_s:g} s",
                                 error_type="timeout")
        except Exception as exc:  # a bug must fail one attempt, not the gateway
            log.exception("attempt %s crashed", self.target.label)
            await self.aclose()
            return ProviderError(FailureKind.FAULT, f"{self.provider}: internal error ({type(exc).__name__})",
                                 error_type="internal_error")

    async def _work(self, stream: bool, aggregator: Callable[[], Aggregator]) -> RunResult:
        if self._upstream.operation in UNARY_OPERATIONS:
            return await self._unary()
        if stream:
            return await self.until_content()
        return await self._aggregate(aggregator())

    async def _unary(self) -> Json:
        """Embeddings or a token count: one JSON answer; its usage (input tokens only) is read here."""
        answer = await self._provider.call(self._upstream)
        self.first_token_s = self._clock() - self.started  # the whole answer is its first token
        usage = answer.get("usage")
        prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        self.input_tokens = prompt_tokens if type(prompt_tokens) is int and 0 <= prompt_tokens < 2**31 else None
        self.output_tokens = 0
        if self._upstream.operation == "count_tokens":
            self.input_tokens = 0  # counting tokens is free
        self._complete = self._done = True
        return answer

    async def _aggregate(self, aggregator: Aggregator) -> Json | ProviderError:
        feed, feed_text = aggregator.feed, aggregator.feed_text
        # Same format: `next_batch` hands back each event's plain text (None: not a plain text event), which it
        # computed for its accounting, so the aggregator does not look at nearly every event a second time.
        texts: list[str | None] | None = [] if self._identity else None
        try:
            while (events := await self.next_batch(texts=texts)) is not None:
                if texts:
                    for ev, text in zip(events, texts, strict=True):
                        if text is None:
                            feed(ev)
                        else:
                            feed_text(ev, text)
                    texts.clear()
                else:
                    for ev in events:
                        feed(ev)
            return aggregator.result()
        except ProviderError:
            raise
        except Exception as exc:  # events of the wrong shape (e.g. a null block index) cannot be assembled
            log.warning("attempt %s: answer cannot be assembled", self.target.label, exc_info=True)
            await self.aclose()
            return ProviderError(FailureKind.FAULT, f"{self.provider}: malformed answer ({type(exc).__name__})",
                                 error_type="bad_response")

    async def until_content(self) -> list[SSEEvent]:
        """Client events up to and including the first one with content (the commit point)."""
        head: list[SSEEvent] = []
        while self.first_token_s is None:
            events = await self.next_batch(until_content=True)
            if events is None:
                break  # a stream that ended without content (e.g. an empty answer) still wins
            head.extend(events)
        return head

    async def rest(self) -> AsyncIterator[list[SSEEvent]]:
        """The client events after the commit point, a batch per provider read; raises `ProviderError`."""
        while (events := await self.next_batch()) is not None:
            if events:
                yield events

    async def next_batch(self, until_content: bool = False,
                         texts: list[str | None] | None = None) -> list[SSEEvent] | None:
        """The client events of the next provider batch. With `until_content`, stop right after the first
        content event and keep the rest of its batch for later: the commit point is that event, exactly.
        `texts` (same format only, without `until_content`) gets each returned event's plain text, or None."""
        if self._done:
            return None
        try:
            if self._carry:
                batch, self._carry = self._carry, []
            else:
                batch = await anext(self._events)
                if type(batch) is LastBatch:
                    self._last_read = True
        except StopAsyncIteration:
            self._done = True
            if not self._complete:
                raise ProviderError(FailureKind.FAULT, f"{self.provider}: stream ended before the answer was "
                                    "complete", error_type="incomplete_stream") from None
            try:
                return self._translator.finish()
            except ProviderError:
                raise
            except Exception as exc:  # the closing events are built from provider data (e.g. its usage)
                raise ProviderError(FailureKind.FAULT, f"{self.provider}: malformed end of stream "
                                    f"({type(exc).__name__})", error_type="bad_response") from None
        except ProviderError:
            self._done = True
            raise
        except Exception as exc:  # e.g. an undecodable body: the provider's fault, never a crashed request
            self._done = True
            log.warning("attempt %s: unexpected error reading the stream", self.target.label, exc_info=True)
            raise ProviderError(FailureKind.FAULT, f"{self.provider}: unreadable response ({type(exc).__name__})",
                                error_type="bad_response") from None
        out: list[SSEEvent] = batch if self._identity else []
        feed = None if self._identity else self._translator.feed
        plain_text = self._plain_text
        for i, ev in enumerate(batch):
            try:
                text = plain_text(ev.data)
                if texts is not None:
                    texts.append(text)
                if text is None:
                    self._account(ev)
                else:  # nearly every event: text and nothing else, counted without `inspect`
                    self._account_text(ev, text)
                if feed is not None:
                    out.extend(feed(ev))
                if until_content and self.first_token_s is not None:
                    self._carry = batch[i + 1:]
                    if feed is None:
                        out = batch[:i + 1]
                    break
            except ProviderError:
                self._done = True
                raise
            except Exception as exc:  # valid JSON of the wrong shape (`"choices": "x"`, a null choice...)
                self._done = True
                log.warning("attempt %s: malformed event %s", self.target.label,
                            self._provider.redact(repr(ev.data))[:300], exc_info=True)
                raise ProviderError(FailureKind.FAULT, f"{self.provider}: malformed event in stream "
                                    f"({type(exc).__name__})", error_type="bad_response") from None
        return out

    def _account_text(self, ev: SSEEvent, text: str) -> None:
        """`_account` of an event whose `inspect` is `content_info(text)` (NOTHING for ""), without building it."""
        if self.response_model is None:
            self._note_model(ev.data)
        if text:
            self.streamed_chars += len(text)
            if self.streamed_chars > MAX_ANSWER_CHARS:
                raise self._too_long()
            if self.first_token_s is None:
                self.first_token_s = self._clock() - self.started
        elif self.first_token_s is None:
            self._count_event_before_content()

    def _account(self, ev: SSEEvent) -> None:
        """Usage, finish, first token and in-stream errors of one provider event."""
        info = self._inspect(ev)
        if self.response_model is None:
            self._note_model(ev.data)
        if info.error is not None:
            err_type, message = info.error
            raise ProviderError(FailureKind.FAULT, self._provider.redact(f"{self.provider}: {err_type}: {message}")
                                [:600], error_type=err_type or "stream_error")
        if info.input_tokens is not None:
            self.input_tokens = info.input_tokens
        if info.cached_input_tokens is not None:
            self.cached_input_tokens = info.cached_input_tokens
        if info.output_tokens is not None:
            self.output_tokens = info.output_tokens
        if info.details is not None:  # usage events only
            self._account_details(info.details)
        if info.text:
            self.streamed_chars += len(info.text)
            if self.streamed_chars > MAX_ANSWER_CHARS:
                raise self._too_long()
        if info.finish_reason is not None:
            self.finish_reason = info.finish_reason
            self._complete = True
        if info.end:
            self._complete = True
        if self.first_token_s is None:
            if info.content:
                self.first_token_s = self._clock() - self.started
            else:
                self._count_event_before_content()

    def _note_model(self, data: Json) -> None:
        if (model := _model_of(data)) is not None:
            self.response_model = self._provider.redact(model)[:200]  # upstream text, traced: never the key

    def _count_event_before_content(self) -> None:
        self._events_seen += 1
        if self._events_seen > MAX_EVENTS_BEFORE_CONTENT:
            raise ProviderError(FailureKind.FAULT, f"{self.provider}: {MAX_EVENTS_BEFORE_CONTENT} events "
                                "without content", error_type="bad_response")

    def _too_long(self) -> ProviderError:
        return ProviderError(FailureKind.FAULT, f"{self.provider}: answer longer than {MAX_ANSWER_CHARS} "
                             "characters", error_type="bad_response")

    def _account_details(self, details: UsageDetails) -> None:
        if details.cache_write_tokens is not None:
            self.cache_write_tokens = details.cache_write_tokens
        if details.cache_write_long_tokens is not None:
            self.cache_write_long_tokens = details.cache_write_long_tokens
        if details.reasoning_tokens is not None:
            self.reasoning_tokens = details.reasoning_tokens

    # ---- the end ------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the upstream stream (and its connection, if it had not finished) and free the slot."""
        self._done = True
        self._free_slot()
        await self._events.aclose()

    def finish(self, outcome: Outcome, error: ProviderError | None = None) -> Attempt:
        """End this attempt, once (later calls return the same `Attempt`): settle the permit by how it ended,
        free the slot, freeze the record and report it. The upstream connection is closed by `aclose`."""
        if self.finished is not None:
            return self.finished
        if outcome is Outcome.WON and error is None and self._complete:
            self._permit.success()
        elif error is not None and error.kind is FailureKind.FAULT:
            self._permit.failure()
        else:  # cancelled, a client error, a 429, or a stream the client left: nothing about the provider
            self._permit.release()
        self._free_slot()
        record = self.record
        attempt = self.finished = Attempt(
            request_id=record.request_id, alias=record.alias, index=self.index, target=self.target,
            launch=self.launch, started=self.started, ended=self._clock(), outcome=outcome,
            input_estimate=self.input_estimate, error=error, breaker_state=self.breaker_state,
            first_token_s=self.first_token_s, input_tokens=self.input_tokens,
            cached_input_tokens=self.cached_input_tokens, output_tokens=self.output_tokens,
            streamed_chars=self.streamed_chars, finish_reason=self.finish_reason,
            response_model=self.response_model, server_address=self._provider.server_address,
            server_port=self._provider.server_port, queue_wait_s=self.queue_wait_s,
            operation=self._operation, cache_write_tokens=self.cache_write_tokens,
            cache_write_long_tokens=self.cache_write_long_tokens, reasoning_tokens=self.reasoning_tokens,
            expected=self.expected)
        record.attempts.append(attempt)
        if self._on_finish is not None:
            self._on_finish(attempt)
        self._hooks.attempt_finished(attempt)
        return attempt

    def _free_slot(self) -> None:
        if self._holds_slot and self._bulkhead is not None:
            self._holds_slot = False
            self._bulkhead.release()
        release, self._connection = self._connection, None
        if release is not None:
            release()


def skipped(record: RequestRecord, index: int, target: Target, launch: Launch, reason: str, *,
            breaker_state: str, now: float, input_estimate: int, hooks: Hooks) -> Attempt:
    """An attempt never sent (breaker open, cooling down, busy, unsupported): recorded and reported at once."""
    attempt = Attempt(request_id=record.request_id, alias=record.alias, index=index, target=target, launch=launch,
                      started=now, ended=now, outcome=Outcome.SKIPPED, input_estimate=input_estimate,
                      skip_reason=reason, breaker_state=breaker_state)
    record.attempts.append(attempt)
    hooks.attempt_finished(attempt)
    return attempt


def _never_plain(data: Json) -> None:
    return None  # no shortcut: every event goes through `inspect`


def _model_of(data: Json) -> str | None:
    model = data.get("model")
    if model is None:
        message = data.get("message")
        if isinstance(message, dict):
            model = message.get("model")
    return model if isinstance(model, str) else None
