"""The hedge race: delayed backups over an alias's targets; the first success wins, losers are cancelled.

Rules (see README "How hedging works"):
- the primary goes first; if nothing has won after the hedge delay, the next target is launched (a hedge),
  up to `max_attempts` attempts launched by the timer, each hedge paid for from the alias's hedge budget;
- a provider fault launches the next target at once (a fallback), not limited by the budget;
- a client error (400, 401, 403, 404, 422) ends the request as it is; a 429 cools the target down;
- streams commit at the first content token: before it nothing has reached the client, so a stalled or
  failed stream can still be hedged over; after it the stream belongs to the winner.
- losers are cancelled at once but not awaited here: their tasks live in the request's TaskGroup, which
  awaits them after the response, so teardown never delays the winner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.config.model import Target
from gateway.engine.attempt import Attempt, AttemptStream, Launch, Outcome
from gateway.engine.hooks import RequestRecord
from gateway.engine.runtime import Runtime
from gateway.errors import FailureKind, GatewayError, ProviderError
from gateway.formats import Aggregator, EventInfo
from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.policies.bulkhead import Bulkhead
from gateway.translate import stream_translator, upstream_request
from gateway.wire import Json, SSEEvent, WireFormat

log = logging.getLogger("gateway.engine")



_INSPECT: dict[WireFormat, Callable[[SSEEvent], EventInfo]] = {
    WireFormat.OPENAI: openai_format.inspect, WireFormat.ANTHROPIC: anthropic_format.inspect}
_AGGREGATOR: dict[WireFormat, Callable[[], Aggregator]] = {
    WireFormat.OPENAI: openai_format.Aggregator, WireFormat.ANTHROPIC: anthropic_format.Aggregator}


@dataclass(slots=True)
class Committed:
    """A streaming winner: `head` holds the client events up to its first content token."""

    attempt: Attempt
    stream: AttemptStream
    head: list[SSEEvent]


@dataclass(slots=True)
class Completed:
    """A non-streaming winner: the whole response body in the client's format."""

    attempt: Attempt
    body: Json


_Result = list[SSEEvent] | Json | ProviderError


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def run(self, record: RequestRecord, body: Json, tg: asyncio.TaskGroup,
                  deadline: float) -> Committed | Completed:
        """Race the alias's targets for `record`. `deadline` is in event-loop time."""
        race = _Race(self.runtime, record, body, tg)
        try:
            async with asyncio.timeout_at(deadline):
                return await race.run()
        except TimeoutError:
            race.cancel_pending()
            raise GatewayError(504, f"deadline exceeded for model '{record.route.alias}'"
                               + race.causes(), type="timeout_error") from None
        finally:
            race.cancel_pending()


class _Race:
    def __init__(self, runtime: Runtime, record: RequestRecord, body: Json, tg: asyncio.TaskGroup) -> None:
        self.rt = runtime
        self.record = record
        self.body = body
        self.tg = tg
        self.loop = asyncio.get_running_loop()
        self.pending: dict[asyncio.Task[_Result], AttemptStream] = {}
        self.untried: Iterator[Target] = iter(record.route.targets)
        self.remaining = len(record.route.targets)
        self.unsupported: GatewayError | None = None
        # Prompt tokens until the provider reports them: about 4 bytes of JSON per token (from the body's size,
        # known at the door; serialising the messages again here would cost as much as the request itself).
        self.input_estimate = max(1, (record.body_bytes or len(str(body.get("messages", "")))) // 4)

    async def run(self) -> Committed | Completed:
        rt, record = self.rt, self.record
        hedge = record.route.hedge
        budget = rt.budgets[record.route.alias]
        budget.record_request()
        tracker = rt.tracker(record.route, record.route.targets[0], record.stream)
        delay = tracker.delay_s() if tracker is not None else hedge.delay_ms / 1000
        record.hedge_delay_s = delay if hedge.enabled else None
        if not self.launch(Launch.PRIMARY):
            raise self.all_failed()
        timer_launches = 1
        can_hedge = hedge.enabled
        hedge_at = self.loop.time() + delay
        while self.pending:
            timeout = None
            if can_hedge and timer_launches < hedge.max_attempts and self.remaining:
                timeout = max(0.0, hedge_at - self.loop.time())
            done, _ = await asyncio.wait(self.pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                if budget.try_spend():
                    timer_launches += 1
                    self.launch(Launch.HEDGE)
                    hedge_at = self.loop.time() + delay
                else:
                    can_hedge = False  # skipped, never queued
                    record.hedges_skipped += 1
                    rt.hooks.hedge_skipped(record, "budget")
                continue
            for task in done:
                stream = self.pending.pop(task)
                result = task.result()
                if not isinstance(result, ProviderError):
                    return self.won(stream, result)
                self.failed(stream, result)
                if result.kind is FailureKind.CLIENT:
                    raise GatewayError(result.status or 400, result.message, type=_client_error_type(result))
                # A failure launches the next target at once, skipping the rest of the delay.
                if self.launch(Launch.FALLBACK):
                    hedge_at = self.loop.time() + delay
        raise self.all_failed()

    def launch(self, kind: Launch) -> bool:
        """Start the next admissible target; targets skipped on the way are recorded as such."""
        rt, record = self.rt, self.record
        for target in self.untried:
            self.remaining -= 1
            attempt = Attempt(index=len(record.attempts), target=target, launch=kind, started=rt.clock(),
                              input_estimate=self.input_estimate)
            record.attempts.append(attempt)
            breaker = rt.breakers[target.provider]
            if rt.cooling_down(target):
                self.skip(attempt, "rate_limited")
                continue
            permit = breaker.try_acquire()
            attempt.breaker_state = str(breaker.state)
            if permit is None:
                self.skip(attempt, "breaker_open")
                continue
            bulkhead = rt.bulkheads.get(target.provider)
            if bulkhead is not None and kind is Launch.HEDGE and not bulkhead.try_acquire():
                permit.release()  # a hedge that would have to queue is better skipped
                self.skip(attempt, "provider_busy")
                continue
            provider = rt.providers[target.provider]
            attempt.server_address, attempt.server_port = provider.server_address, provider.server_port
            try:
                upstream = upstream_request(record.door, provider.kind, self.body, model=target.model,
                                            default_max_tokens=record.route.default_max_tokens)
            except GatewayError as exc:  # this request cannot be expressed in that provider's format
                permit.release()
                self.unsupported = exc
                self.skip(attempt, "unsupported_request")
                continue
            stream = AttemptStream(attempt, provider, upstream, _INSPECT[provider.kind],
                                   stream_translator(record.door, provider.kind), rt.clock, permit)
            if bulkhead is not None and kind is Launch.HEDGE:
                stream.slot_release = bulkhead.release
            rt.hooks.attempt_started(record, attempt)
            self.pending[self.tg.create_task(self.drive(stream, bulkhead))] = stream
            return True
        return False

    async def drive(self, stream: AttemptStream, bulkhead: Bulkhead | None) -> _Result:
        """Run one attempt up to its commit point; never raises (except when cancelled).

        A committed stream keeps its bulkhead slot until the handler closes it; every other end frees it here.
        """
        committed = False
        try:
            if bulkhead is not None and stream.slot_release is None:
                # Waits within the request deadline; the wait shows on the attempt (and its span).
                stream.attempt.queue_wait_s = await bulkhead.acquire()
                stream.slot_release = bulkhead.release
            result = await self._drive(stream)
            committed = self.record.stream and isinstance(result, list)
            return result
        finally:
            if not committed:
                stream.release_slot()

    async def _drive(self, stream: AttemptStream) -> _Result:
        timeout_s = self.rt.config.providers[stream.attempt.provider].timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                if self.record.stream:
                    return await stream.until_content()
                aggregator = _AGGREGATOR[self.record.door]()
                try:
                    async for events in stream.rest():
                        for ev in events:
                            aggregator.feed(ev)
                    return aggregator.result()
                except ProviderError:
                    raise
                except Exception as exc:  # events of the wrong shape (e.g. a null block index) cannot be assembled
                    log.warning("attempt %s: answer cannot be assembled", stream.attempt.target.label, exc_info=True)
                    await stream.aclose()
                    return ProviderError(FailureKind.FAULT, f"{stream.attempt.provider}: malformed answer "
                                         f"({type(exc).__name__})", error_type="bad_response")
        except ProviderError as exc:
            return exc
        except TimeoutError:
            await stream.aclose()
            return ProviderError(FailureKind.FAULT, f"{stream.attempt.provider}: no answer within "
                                 f"{timeout_s:g} s", error_type="timeout")
        except Exception as exc:  # a bug must fail one attempt, not the gateway
            log.exception("attempt %s crashed", stream.attempt.target.label)
            await stream.aclose()
            return ProviderError(FailureKind.FAULT, f"{stream.attempt.provider}: internal error "
                                 f"({type(exc).__name__})", error_type="internal_error")

    def won(self, stream: AttemptStream, result: list[SSEEvent] | Json) -> Committed | Completed:
        rt, record, attempt = self.rt, self.record, stream.attempt
        now = rt.clock()
        attempt.outcome = Outcome.WON
        record.winner = attempt
        if attempt.first_token_s is not None:
            record.ttft_s = attempt.started + attempt.first_token_s - record.started
        tracker = rt.tracker(record.route, attempt.target, record.stream)
        if tracker is not None:
            latency = attempt.first_token_s if record.stream else None
            tracker.record(latency if latency is not None else now - attempt.started)
        self.cancel_pending()
        if isinstance(result, list):
            # The stream's breaker permit is settled when it ends: a mid-stream failure is the provider's.
            return Committed(attempt, stream, result)
        if stream.permit is not None:
            stream.permit.success()
        attempt.ended = now
        rt.hooks.attempt_finished(record, attempt)
        return Completed(attempt, result)

    def failed(self, stream: AttemptStream, error: ProviderError) -> None:
        attempt = stream.attempt
        attempt.outcome, attempt.error, attempt.ended = Outcome.FAILED, error, self.rt.clock()
        if stream.permit is not None:
            if error.kind is FailureKind.FAULT:
                stream.permit.failure()
            else:  # a client error or a 429 says nothing about the provider's health
                stream.permit.release()
        if error.kind is FailureKind.RATE_LIMITED:
            self.rt.cool_down(attempt.target, error.retry_after_s)
        self.rt.hooks.attempt_finished(self.record, attempt)

    def skip(self, attempt: Attempt, reason: str) -> None:
        attempt.outcome, attempt.skip_reason, attempt.ended = Outcome.SKIPPED, reason, attempt.started
        attempt.breaker_state = str(self.rt.breakers[attempt.provider].state)
        self.rt.hooks.attempt_finished(self.record, attempt)

    def cancel_pending(self) -> None:
        """Cancel every running attempt now; the TaskGroup awaits them after the response is sent."""
        now = self.rt.clock()
        for task, stream in self.pending.items():
            task.cancel()
            attempt = stream.attempt
            attempt.outcome, attempt.ended = Outcome.CANCELLED, now
            if stream.permit is not None:
                stream.permit.release()
            tracker = self.rt.tracker(self.record.route, attempt.target, self.record.stream)
            if tracker is not None:
                tracker.record(now - attempt.started)  # superseded: a lower bound of its latency
            self.rt.hooks.attempt_finished(self.record, attempt)
        self.pending.clear()

    def causes(self) -> str:
        parts = []
        for a in self.record.attempts:
            if a.error is not None:
                parts.append(f"{a.target.label}: {a.error.message}")
            elif a.skip_reason is not None:
                parts.append(f"{a.target.label}: skipped ({a.skip_reason.replace('_', ' ')})")
            elif a.outcome is Outcome.CANCELLED:
                parts.append(f"{a.target.label}: no answer in time")
        return (": " + "; ".join(parts)) if parts else ""

    def all_failed(self) -> GatewayError:
        attempts = self.record.attempts
        alias = self.record.route.alias
        message = f"all {len(attempts)} attempts for model '{alias}' failed" + self.causes()

        def every(pred: Callable[[Attempt], bool]) -> bool:
            return bool(attempts) and all(pred(a) for a in attempts)

        if self.unsupported is not None and every(lambda a: a.outcome is Outcome.SKIPPED):
            return self.unsupported
        if every(lambda a: a.skip_reason == "rate_limited" or (
                a.error is not None and a.error.kind is FailureKind.RATE_LIMITED)):
            return GatewayError(429, message, type="rate_limit_error")
        if every(lambda a: a.skip_reason == "breaker_open" or (
                a.error is not None and a.error.status in (503, 529))):
            return GatewayError(503, message, type="overloaded_error")
        if every(lambda a: a.error is not None and a.error.error_type == "timeout"):
            return GatewayError(504, message, type="timeout_error")
        return GatewayError(502, message, type="api_error")


def _client_error_type(error: ProviderError) -> str:
    # Upstream types like "invalid_request_error" pass through; synthetic "http_404" ones do not.
    return "" if error.error_type.startswith("http_") else error.error_type
