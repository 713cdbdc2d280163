"""The hedge race: delayed backups over an alias's targets; the first success wins, losers are cancelled.

Rules (see README "How hedging works"):
- the primary goes first; if nothing has won after the hedge delay, the next target is launched (a hedge),
  up to `max_attempts` attempts launched by the timer, each hedge paid for from the alias's hedge budget
  (only when it is really sent: a hedge that finds no admissible target costs nothing);
- a provider fault launches the next target at once (a fallback), not limited by the budget;
- a client error (400, 401, 403, 404, 422) ends the request as it is; a 429 cools the target down;
- streams commit at the first content token: before it nothing has reached the client, so a stalled or
  failed stream can still be hedged over; after it the stream belongs to the winner;
- losers are cancelled at once but not awaited here: their tasks live in the request's TaskGroup, which
  awaits them after the response, so teardown never delays the winner.

Every attempt is owned by its `AttemptRun`, which settles it exactly once; the race decides how each ends.
A streamed winner is handed over as a `StreamingWinner`, which settles its attempt when the stream ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.config.model import Target
from gateway.engine.attempt import AttemptRun, RunResult, skipped
from gateway.engine.hooks import HedgeSkipped
from gateway.engine.records import Attempt, Launch, Outcome, RequestRecord
from gateway.engine.runtime import Runtime
from gateway.engine.winners import Completed, StreamingWinner, Winner
from gateway.errors import FailureKind, GatewayError, ProviderError
from gateway.formats.codecs import codec_for
from gateway.policies.breaker import Permit
from gateway.policies.bulkhead import Bulkhead
from gateway.pricing.estimate import expected_usage, learn
from gateway.pricing.prefix import prompt_prefix
from gateway.pricing.usage import Usage, cost
from gateway.providers import Provider, UpstreamRequest
from gateway.translate import StreamTranslator, translation
from gateway.translate.passthrough import PASSTHROUGH
from gateway.wire import Json, SSEEvent, WireFormat

# A timer that fires this close to its deadline has reached it (loop time is a float).
_SAME_INSTANT_S = 1e-6


@dataclass(slots=True)
class _Admitted:
    """What a target was given to be sent: handed to its `AttemptRun`, or given back if it is not sent."""

    permit: Permit
    breaker_state: str
    bulkhead: Bulkhead | None
    holds_slot: bool = False
    upstream: UpstreamRequest | None = None
    translator: StreamTranslator | None = None

    def give_back(self) -> None:
        self.permit.release()
        if self.holds_slot and self.bulkhead is not None:
            self.bulkhead.release()
            self.holds_slot = False


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def run(self, record: RequestRecord, body: Json, tg: asyncio.TaskGroup, deadline: float, *,
                  forward_headers: Mapping[str, str] | None = None, hedge: bool = True) -> Winner:
        """Race the alias's targets for `record` (admitted: its route is set). `deadline` is in event-loop time.
        `forward_headers` go upstream to providers of the door's own format only. `hedge=False`: failover
        only (for cheap calls such as token counting, where a backup buys nothing)."""
        race = _Race(self.runtime, record, body, tg, forward_headers or {}, deadline)
        race.may_hedge = hedge
        try:
            async with asyncio.timeout_at(deadline):
                return await race.run()
        except TimeoutError:
            race.cancel_pending(superseded=False)
            raise GatewayError(504, f"deadline exceeded for model '{record.alias}'" + race.causes(),
                               type="timeout_error") from None
        finally:
            race.cancel_pending(superseded=False)  # a no-op when the race ended normally


class _Race:
    def __init__(self, runtime: Runtime, record: RequestRecord, body: Json, tg: asyncio.TaskGroup,
                 forward_headers: Mapping[str, str], deadline: float) -> None:
        assert record.route is not None, "only an admitted request is raced"
        self.rt = runtime
        self.record = record
        self.route = record.route
        self.body = body
        self.tg = tg
        self.forward_headers = forward_headers
        self.deadline = deadline
        self.loop = asyncio.get_running_loop()
        self.pending: dict[asyncio.Task[RunResult], AttemptRun] = {}
        self.next_target = 0
        self.sent = 0
        self.unsupported: GatewayError | None = None
        self.may_hedge = True
        self.hedge_refused: str | None = None  # why the last hedge launch, with a target found, was not sent
        self.fallback_needed = False  # the last settled attempts include a failure
        self.budget = runtime.budgets[self.route.alias]
        # Prompt tokens until the provider reports them: about 4 bytes of JSON per token (from the body's size,
        # known at the door; serialising the messages again here would cost as much as the request itself).
        self.input_estimate = max(1, (record.body_bytes or len(str(body.get("messages", "")))) // 4)
        # The cacheable prefix, hashed once (long prompts only): what each provider's prompt cache holds of it
        # decides a hedge's expected cost and what a cut attempt is billed.
        self.prefix = prompt_prefix(body, record.door, self.input_estimate) if record.endpoint == "chat" else None

    async def run(self) -> Winner:
        hedge = self.route.hedge
        primary = self.launch(Launch.PRIMARY)
        if primary is None:
            raise self.all_failed()
        self.budget.record_request()  # only requests that reached a provider earn hedges
        # The delay follows the target that really went first (the first one may be skipped by its breaker).
        tracker = self.rt.tracker(self.route, primary.target, self.record.stream)
        delay = tracker.delay_s() if tracker is not None else hedge.delay_ms / 1000
        self.record.hedge_delay_s = delay if hedge.enabled else None
        timer_launches = 1
        can_hedge = hedge.enabled and self.may_hedge
        waiting_since = self.loop.time()  # the first hedge's delay counts from here (a fallback restarts it)
        hedge_at = waiting_since + delay
        rearm_s = delay  # a refused hedge is checked again when the wait reaches 2, 4, 8... delays
        refused = False
        while self.pending:
            timeout = None
            if can_hedge and timer_launches < hedge.max_attempts and self.next_target < len(self.route.targets):
                timeout = max(0.0, hedge_at - self.loop.time())
            done, _ = await asyncio.wait(self.pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                if tracker is not None and timer_launches == 1 and not refused:
                    # The window may have learned while this request waited (a young one most of all: at start
                    # every request in flight used the fallback): the first hedge waits out the delay as it
                    # stands now, never less than when the request started.
                    fresh = tracker.delay_s()
                    if waiting_since + fresh > self.loop.time() + _SAME_INSTANT_S:
                        delay = rearm_s = fresh
                        hedge_at = waiting_since + fresh
                        self.record.hedge_delay_s = fresh
                        continue
                if self.launch(Launch.HEDGE) is not None:
                    timer_launches += 1
                    hedge_at, rearm_s = self.loop.time() + delay, delay
                elif self.hedge_refused is not None:
                    self.record.hedges_skipped += 1
                    self.rt.hooks.hedge_skipped(HedgeSkipped(self.record.request_id, self.record.alias,
                                                             self.hedge_refused))
                    # Never queued: refused now, looked at again later (the budget refills as requests come),
                    # when the requests still waiting are the likely stalls. Time only runs out: no re-arm then.
                    refused = True
                    if hedge.rearm and self.hedge_refused != "deadline" and rearm_s > 0:
                        hedge_at = self.loop.time() + rearm_s
                        rearm_s *= 2
                    else:
                        can_hedge = False
                continue
            winner = self.settle_done(done)
            if winner is not None:
                return winner
            # A failure launches the next target at once, skipping the rest of the delay.
            if self.fallback_needed and self.launch(Launch.FALLBACK) is not None:
                waiting_since = self.loop.time()
                hedge_at = waiting_since + delay
        raise self.all_failed()

    def settle_done(self, done: set[asyncio.Task[RunResult]]) -> Winner | None:
        """Every finished attempt is settled: the first success (by attempt index) wins, failures go through
        the failure path, and any other success that finished in the same tick is closed as a loser."""
        self.fallback_needed = False
        runs = sorted(((self.pending.pop(task), task.result()) for task in done), key=lambda rr: rr[0].index)
        winner: Winner | None = None
        client_error: GatewayError | None = None
        for run, result in runs:
            if isinstance(result, ProviderError):
                self.failed(run, result)
                if result.kind is FailureKind.CLIENT and client_error is None:
                    client_error = GatewayError(result.status or 400, result.message,
                                                type=_client_error_type(result))
                self.fallback_needed = True
            elif winner is None and client_error is None:
                winner = self.won(run, result)
            else:
                self.lost(run)
        if winner is not None:
            return winner
        if client_error is not None:
            raise client_error
        return None

    def launch(self, kind: Launch) -> AttemptRun | None:
        """Start the next admissible target; targets skipped on the way are recorded as such. A hedge is paid
        from the budgets only once a target will really be sent (`hedge_refused` says why one was not)."""
        self.hedge_refused = None
        while self.next_target < len(self.route.targets):
            target = self.route.targets[self.next_target]
            index = self.record.attempts_launched
            admitted = self.admit(index, target, kind)
            if admitted is None:
                continue  # skipped, and recorded so
            expected = expected_usage(self.prefix, self.rt.prompt_caches.get(target.provider),
                                      self.upstream_format(self.rt.providers[target.provider]),
                                      self.input_estimate, round(self.rt.expected_output_tokens(self.route)))
            expected_cost: float | None = None
            if kind is Launch.HEDGE:
                expected_cost = cost(target.price, expected).total_usd
                self.hedge_refused = self.hedge_refusal(target, expected_cost)
                if self.hedge_refused is not None:
                    admitted.give_back()
                    return None
            return self.start(index, target, kind, admitted, expected_cost, expected)
        return None

    def admit(self, index: int, target: Target, kind: Launch) -> _Admitted | None:
        """The leave to send `target` this request (a breaker permit, a bulkhead slot for a hedge, the request in
        its format), or None with the target recorded as skipped."""
        rt = self.rt
        if rt.cooling_down(target):
            self.skip(index, target, kind, "rate_limited")
            return None
        breaker = rt.breakers[target.provider]
        permit = breaker.try_acquire()
        if permit is None:
            self.skip(index, target, kind, "breaker_open")
            return None
        admitted = _Admitted(permit, str(breaker.state), rt.bulkheads.get(target.provider))
        if admitted.bulkhead is not None and kind is Launch.HEDGE:
            if not admitted.bulkhead.try_acquire():
                admitted.give_back()  # a hedge that would have to queue is better skipped
                self.skip(index, target, kind, "provider_busy")
                return None
            admitted.holds_slot = True
        try:
            admitted.upstream, admitted.translator = self.upstream_for(rt.providers[target.provider], target)
        except GatewayError as exc:  # this request cannot be expressed in that provider's format
            admitted.give_back()
            self.unsupported = exc
            self.skip(index, target, kind, "unsupported_request")
            return None
        return admitted

    def start(self, index: int, target: Target, kind: Launch, admitted: _Admitted,
              expected_cost: float | None, expected: Usage | None = None) -> AttemptRun:
        rt, record = self.rt, self.record
        self.next_target += 1
        record.attempts_launched += 1
        provider = rt.providers[target.provider]
        assert admitted.upstream is not None and admitted.translator is not None
        upstream_codec = codec_for(self.upstream_format(provider))
        run = AttemptRun(record, index, target, kind, provider=provider, upstream=admitted.upstream,
                         inspect=upstream_codec.inspect, plain_text=upstream_codec.plain_text,
                         translator=admitted.translator,
                         clock=rt.clock, hooks=rt.hooks, permit=admitted.permit,
                         breaker_state=admitted.breaker_state, input_estimate=self.input_estimate,
                         bulkhead=admitted.bulkhead, holds_slot=admitted.holds_slot,
                         expected_cost_usd=expected_cost, on_finish=self.attempt_ended, expected=expected)
        self.sent += 1
        timeout_s = rt.config.providers[target.provider].timeout_s
        aggregator = codec_for(record.door).aggregator
        task = self.tg.create_task(run.run(stream=record.stream, timeout_s=timeout_s, aggregator=aggregator,
                                           deadline=self.deadline))
        self.pending[task] = run
        return run

    def attempt_ended(self, attempt: Attempt) -> None:
        if attempt.outcome is Outcome.WON and attempt.error is None:
            self.rt.note_output(self.route.alias, attempt.billed_output_tokens)
        if self.prefix is not None and attempt.input_tokens is not None:  # its provider said what it cached
            learn(self.rt.prompt_caches[attempt.provider], self.prefix,
                  self.upstream_format(self.rt.providers[attempt.provider]),
                  cache_read_tokens=attempt.cached_input_tokens or 0,
                  cache_write_tokens=attempt.cache_write_tokens or 0)

    def hedge_refusal(self, target: Target, expected_cost: float) -> str | None:
        """Why a hedge to `target` must not go now, or None (and its share of the budgets is then spent)."""
        typical = self.rt.typical_latency_s(target, self.record.stream)
        if typical is not None and self.deadline - self.loop.time() < typical:
            return "deadline"  # the backup usually takes longer than the time left: it cannot win
        ceiling = self.rt.ceilings.get(self.route.alias)
        if ceiling is not None and not ceiling.allows(expected_cost):
            return "cost_ceiling"
        if not self.budget.try_spend():
            return "budget"
        if ceiling is not None:
            ceiling.spend(expected_cost)
        return None

    def upstream_format(self, provider: Provider) -> WireFormat:
        """The wire format to speak to `provider`: the door's own when the provider serves it natively (no
        translation), else the provider's kind."""
        door = self.record.door
        return door if door in provider.speaks else provider.kind

    def upstream_for(self, provider: Provider, target: Target) -> tuple[UpstreamRequest, StreamTranslator]:
        """What to send to `target` for this request; raises `GatewayError` when it cannot be expressed there."""
        record, operation = self.record, self.record.endpoint
        if operation == "chat":
            fmt = self.upstream_format(provider)
            pair = translation(record.door, fmt)
            body = pair.request(self.body, model=target.model, default_max_tokens=self.route.default_max_tokens)
            # The kind's own format goes to its chat URL; another native format to the URL named after it.
            endpoint = "chat" if fmt is provider.kind else str(fmt)
            return (UpstreamRequest(body, self.forward_headers if pair.same_format else {},
                                    pair.dropped_fields(self.body), endpoint), pair.stream())
        # Embeddings and token counts pass through, unchanged but for the model, to providers that serve them.
        if operation not in provider.operations:
            raise GatewayError(400, f"model '{record.alias}' has no target that serves {operation}: "
                               f"{target.provider} is a {provider.kind} provider", type="invalid_request_error",
                               param="model")
        same = provider.kind is record.door
        return (UpstreamRequest({**self.body, "model": target.model}, self.forward_headers if same else {},
                                operation=operation), PASSTHROUGH)

    def won(self, run: AttemptRun, result: list[SSEEvent] | Json) -> Winner:
        rt, record = self.rt, self.record
        now = rt.clock()
        record.winner_index = run.index
        if run.first_token_s is not None:
            record.ttft_s = run.started + run.first_token_s - record.started
        rt.tracker(self.route, run.target, record.stream)  # so this alias's window exists and gets the sample
        latency = run.first_token_s if record.stream else None
        rt.record_latency(run.target, record.stream, latency if latency is not None else now - run.started)
        self.cancel_pending(superseded=True)
        if isinstance(result, list):
            if self.route.resumes or self.route.stream_stall_ms is not None:
                # Imported here: the resuming stream builds on this module (a StreamingWinner that resumes).
                from gateway.engine.resume import ResumingStream
                return ResumingStream(self, run, result, self.sent)
            return StreamingWinner(run, result, self.sent)
        return Completed(run.finish(Outcome.WON), result, self.sent)

    def failed(self, run: AttemptRun, error: ProviderError) -> None:
        if error.kind is FailureKind.RATE_LIMITED:
            self.rt.cool_down(run.target, error.retry_after_s)
        run.finish(Outcome.FAILED, error)

    def lost(self, run: AttemptRun) -> None:
        """A success that finished in the same tick as the winner: a loser whose stream must still be closed."""
        run.finish(Outcome.CANCELLED)
        self.tg.create_task(run.aclose())

    def skip(self, index: int, target: Target, kind: Launch, reason: str) -> None:
        self.next_target += 1
        self.record.attempts_launched += 1
        skipped(self.record, index, target, kind, reason, breaker_state=str(self.rt.breakers[target.provider].state),
                now=self.rt.clock(), input_estimate=self.input_estimate, hooks=self.rt.hooks)

    def cancel_pending(self, *, superseded: bool) -> None:
        """End every attempt still running: cancelled now, awaited by the TaskGroup after the response.

        `superseded`: another attempt won, so a loser's running time is a lower bound of its latency and
        goes into its latency window; an attempt cut by the deadline or by the client says nothing of it."""
        now = self.rt.clock()
        for task, run in self.pending.items():
            result = task.result() if task.done() and not task.cancelled() else None
            if isinstance(result, ProviderError):
                self.failed(run, result)  # finished in this very tick: it failed, and is counted so
                continue
            task.cancel()
            if task.done():  # finished in this tick with an answer nobody will read: close its stream
                self.tg.create_task(run.aclose())
            run.finish(Outcome.CANCELLED)
            if superseded:
                self.rt.tracker(self.route, run.target, self.record.stream)
                self.rt.record_latency(run.target, self.record.stream, now - run.started)
        self.pending.clear()

    def causes(self) -> str:
        parts = []
        for a in sorted(self.record.attempts, key=lambda a: a.index):
            if a.error is not None:
                parts.append(f"{a.target.label}: {a.error.message}")
            elif a.skip_reason is not None:
                parts.append(f"{a.target.label}: skipped ({a.skip_reason.replace('_', ' ')})")
            elif a.outcome is Outcome.CANCELLED:
                parts.append(f"{a.target.label}: no answer in time")
        return (": " + "; ".join(parts)) if parts else ""

    def all_failed(self) -> GatewayError:
        attempts = self.record.attempts
        message = f"all {len(attempts)} attempts for model '{self.record.alias}' failed" + self.causes()

        def every(pred: Callable[[Attempt], bool]) -> bool:
            return bool(attempts) and all(pred(a) for a in attempts)

        if self.unsupported is not None and every(lambda a: a.outcome is Outcome.SKIPPED):
            return self.unsupported
        if every(lambda a: a.skip_reason == "rate_limited" or (
                a.error is not None and a.error.kind is FailureKind.RATE_LIMITED)):
            return GatewayError(429, message, type="rate_limit_error")
        if every(lambda a: a.skip_reason in ("breaker_open", "provider_busy") or (a.error is not None and (
                a.error.status in (503, 529) or a.error.kind is FailureKind.LOCAL))):
            return GatewayError(503, message, type="overloaded_error")
        if every(lambda a: a.error is not None and a.error.error_type == "timeout"):
            return GatewayError(504, message, type="timeout_error")
        return GatewayError(502, message, type="api_error")


def _client_error_type(error: ProviderError) -> str:
    # Upstream types like "invalid_request_error" pass through; synthetic "http_404" ones do not.
    return "" if error.error_type.startswith("http_") else error.error_type
