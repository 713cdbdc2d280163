"""Streams that survive their provider: a committed stream that fails or stalls goes on on the next target.

`ResumingStream` is the committed stream of an alias with `resume` or `stream_stall_ms`. It yields the
winner's client events like `StreamingWinner`, and:
- a batch that takes longer than `stream_stall_ms` is a stall: the attempt fails (`stream_stall`), and its
  breaker counts it, as for any mid-stream fault;
- when the committed attempt fails (an error event, a broken or stalled stream) and the cut is somewhere a
  prefill can continue (see `splice`), it settles the failed attempt, launches a `Launch.RESUME` attempt on
  the next admissible target with the original request plus the text streamed so far as an assistant prefill,
  runs it to its first content, and yields its events spliced after what the client has: one stream.

Resumes are bounded: `resume.max` per request; each paid from the alias's resume budget (the hedge budget's
share, counted apart from hedges so neither starves the other); none when the target's usual time to first
token would pass the request's deadline. Every attempt stays owned by its `AttemptRun`, which settles it
once; this stream owns the one it is reading, as `StreamingWinner` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.engine.attempt import AttemptRun, skipped
from gateway.engine.hooks import HedgeSkipped
from gateway.engine.prefill import mark_upstream, prefill_style, prefilled_body, split_trailing_whitespace
from gateway.engine.records import CHARS_PER_TOKEN, Attempt, Launch, Outcome
from gateway.engine.splice import Cut, Splicer, splicer_for
from gateway.engine.winners import StreamBroken, StreamingWinner
from gateway.errors import FailureKind, GatewayError, ProviderError
from gateway.formats.codecs import codec_for
from gateway.providers import UpstreamRequest
from gateway.translate import translation
from gateway.wire import SSEEvent, WireFormat

if TYPE_CHECKING:
    from gateway.config.model import Target
    from gateway.engine.race import _Race
    from gateway.policies.breaker import Permit
    from gateway.policies.bulkhead import Bulkhead

log = logging.getLogger("gateway.engine")


class ResumingStream(StreamingWinner):
    """A committed stream that resumes on another target when its attempt fails mid-way (see module doc)."""

    __slots__ = ("_carried", "_committed", "_failed_providers", "_race", "_resumes_left", "_splicer", "_stall_s")

    def __init__(self, race: _Race, run: AttemptRun, head: list[SSEEvent], attempts_sent: int) -> None:
        super().__init__(run, head, attempts_sent)
        route = race.route
        self._race = race
        self._stall_s = None if route.stream_stall_ms is None else route.stream_stall_ms / 1000
        splicer = splicer_for(race.record.door)
        self._splicer: Splicer = splicer if splicer is not None else _NO_SPLICE
        self._resumes_left = route.resume_max if splicer is not None else 0  # stall detection still applies
        self._splicer.see(head)
        self._carried = (0, 0)  # tokens billed by the stream's failed attempts: added to the final usage
        self._failed_providers: set[str] = set()
        if route.resumes:
            race.rt.resume_budget(route).record_request()
        self._committed = run.target

    @property
    def target(self) -> Target:
        return self._committed  # the headers named it; a continuation does not change who answered

    async def __anext__(self) -> list[SSEEvent]:
        head = self._head
        if head:
            self._head = []
            return head
        while True:
            run = self._run
            try:
                events = await self._next_batch(run)
            except ProviderError as exc:
                failed = run.finish(Outcome.WON, exc)  # its output reached the client; its breaker counts it
                await run.aclose()
                if not await self._resume(exc, failed):
                    raise StreamBroken(exc) from None
                head, self._head = self._head, []
                if head:
                    return head
                continue
            if events is None:
                run.finish(Outcome.WON)
                raise StopAsyncIteration
            if events:
                if run.launch is Launch.RESUME:
                    events = self._splicer.splice(events)
                    if not events:
                        continue
                else:
                    self._splicer.see(events)
                return events

    async def _next_batch(self, run: AttemptRun) -> list[SSEEvent] | None:
        if self._stall_s is None:
            return await run.next_batch()
        try:
            async with asyncio.timeout(self._stall_s):
                return await run.next_batch()
        except TimeoutError:
            raise ProviderError(FailureKind.FAULT, f"{run.provider}: stream stalled: no event for "
                                f"{self._stall_s * 1000:g} ms", error_type="stream_stall") from None

    # ---- resuming ----------------------------------------------------------------------------------------

    async def _resume(self, error: ProviderError, failed: Attempt) -> bool:
        """Continue the stream on another target; False when it cannot be (the client then gets the error)."""
        self._carry(failed)
        self._failed_providers.add(failed.provider)
        if self._resumes_left <= 0 or error.kind is not FailureKind.FAULT:
            return False
        cut = self._splicer.cut()
        if cut.refusal is not None:
            log.info("request %s: stream cut (%s) where it cannot be resumed", self._race.record.request_id,
                     cut.refusal)
            return False
        record = self._race.record
        while self._resumes_left > 0:
            budget = self._race.rt.resume_budget(self._race.route)
            if not budget.has_room():  # spent below, only once a resume is really launched
                self._race.rt.hooks.hedge_skipped(HedgeSkipped(record.request_id, record.alias, "resume_budget"))
                return False
            # The output so far: what was billed, or the text's estimate where a provider reported less (an
            # Anthropic stream cut before its message_delta has reported only message_start's 1 token).
            used = max(self._carried[1], -(-len(cut.text) // CHARS_PER_TOKEN))
            launched = launch_resume(self._race, cut, self._failed_providers, used)
            if launched is None:
                return False
            budget.try_spend()
            run, strip = launched
            self._resumes_left -= 1
            record.resumes += 1
            if record.resumed_at_tokens is None:
                record.resumed_at_tokens = failed.billed_output_tokens
            head = await self._first_content(run)
            if isinstance(head, ProviderError):
                self._carry(run.finish(Outcome.FAILED, head))
                self._failed_providers.add(run.provider)
                continue
            self._run = run
            self._splicer.begin(*self._carried, strip)
            self._head = self._splicer.splice(head)
            return True
        return False

    async def _first_content(self, run: AttemptRun) -> list[SSEEvent] | ProviderError:
        """Run a resume attempt to its first content, as a task of the request's group (so nothing outlives the
        request); if the client leaves or the deadline cuts it meanwhile, it is cancelled and settled here."""
        race = self._race
        timeout_s = race.rt.config.providers[run.provider].timeout_s
        task = race.tg.create_task(run.run(stream=True, timeout_s=timeout_s,
                                           aggregator=codec_for(race.record.door).aggregator))
        try:
            result = await task
        except BaseException:
            task.cancel()
            run.finish(Outcome.CANCELLED)
            race.tg.create_task(run.aclose())
            raise
        if isinstance(result, ProviderError):
            return result
        assert isinstance(result, list), "a streamed attempt runs to its head events"
        return result

    def _carry(self, attempt: Attempt) -> None:
        error = attempt.error
        if error is not None and error.status is not None and attempt.first_token_s is None:
            return  # an HTTP error before any token: nothing billed (as `Attempt.cost_usd` counts it)
        # Anthropic's input_tokens leaves out cache reads (the client reads those separately).
        cached = (attempt.cached_input_tokens or 0) if self._race.record.door is WireFormat.ANTHROPIC else 0
        carried_in, carried_out = self._carried
        self._carried = (carried_in + attempt.billed_input_tokens - cached,
                         carried_out + attempt.billed_output_tokens)


class _NoSplice:
    """For a door whose stream no splicer knows: nothing tracked, never resumable."""

    def see(self, events: list[SSEEvent]) -> None:
        pass

    def cut(self) -> Cut:
        return Cut("", "unsupported_format")

    def begin(self, carried_input: int, carried_output: int, strip: str) -> None:
        pass

    def splice(self, events: list[SSEEvent]) -> list[SSEEvent]:
        return events


_NO_SPLICE = _NoSplice()


def launch_resume(race: _Race, cut: Cut, exclude: set[str], output_used: int) -> tuple[AttemptRun, str] | None:
    """Start a resume attempt on the first admissible target, in priority order, that can continue `cut`'s
    text and is not one of `exclude` (the providers that failed this stream); the client's output limit is
    lowered by `output_used`, the tokens already generated. Returns the attempt and the whitespace its
    prefill left out. Targets that cannot continue a prefill are passed over unrecorded; open breakers,
    cool-downs and busy providers are recorded as skipped attempts, like any launch's."""
    rt, record = race.rt, race.record
    for target in race.route.targets:
        if target.provider in exclude:
            continue
        provider = rt.providers[target.provider]
        fmt = race.upstream_format(provider)
        style = prefill_style(rt.config.providers[target.provider], fmt, target.model, race.body) \
            if cut.text.strip() else "none"
        if style is None:
            continue
        typical = rt.typical_latency_s(target, True)
        if typical is not None and race.deadline - race.loop.time() < typical:
            continue  # its first token would come after the deadline
        text, strip = split_trailing_whitespace(cut.text, style)
        if not text:  # nothing to prefill (whitespace, or no text yet): the same request again
            strip = cut.text
        body = race.body if not text else prefilled_body(race.body, record.door, text,
                                                         max_tokens_used=output_used)
        if body is None:
            return None  # the client's own last assistant turn cannot be extended
        pair = translation(record.door, fmt)
        try:
            upstream = mark_upstream(pair.request(body, model=target.model,
                                                  default_max_tokens=race.route.default_max_tokens), style)
        except GatewayError:
            continue  # this request cannot be expressed for that target
        admitted = _admit(race, target)
        if admitted is None:
            continue
        permit, breaker_state, bulkhead = admitted
        index = record.attempts_launched
        record.attempts_launched += 1
        run = AttemptRun(record, index, target, Launch.RESUME, provider=provider,
                         upstream=UpstreamRequest(upstream, race.forward_headers if pair.same_format else {},
                                                  pair.dropped_fields(body),
                                                  "chat" if fmt is provider.kind else str(fmt)),
                         inspect=codec_for(fmt).inspect, plain_text=codec_for(fmt).plain_text,
                         translator=pair.stream(), clock=rt.clock, hooks=rt.hooks,
                         permit=permit, breaker_state=breaker_state, input_estimate=race.input_estimate,
                         bulkhead=bulkhead, holds_slot=bulkhead is not None, on_finish=race.attempt_ended)
        race.sent += 1
        return run, strip
    return None


def _admit(race: _Race, target: Target) -> tuple[Permit, str, Bulkhead | None] | None:
    """The target's breaker permit, its state, and its bulkhead slot (taken), or None (recorded as skipped)."""
    rt = race.rt
    index = race.record.attempts_launched
    if rt.cooling_down(target):
        _skip(race, index, target, "rate_limited")
        return None
    breaker = rt.breakers[target.provider]
    permit = breaker.try_acquire()
    breaker_state = str(breaker.state)
    if permit is None:
        _skip(race, index, target, "breaker_open")
        return None
    bulkhead = rt.bulkheads.get(target.provider)
    if bulkhead is not None and not bulkhead.try_acquire():
        permit.release()  # the client is waiting mid-stream: no queueing
        _skip(race, index, target, "provider_busy")
        return None
    return permit, breaker_state, bulkhead


def _skip(race: _Race, index: int, target: Target, reason: str) -> None:
    race.record.attempts_launched += 1
    skipped(race.record, index, target, Launch.RESUME, reason,
            breaker_state=str(race.rt.breakers[target.provider].state), now=race.rt.clock(),
            input_estimate=race.input_estimate, hooks=race.rt.hooks)

