"""What the engine records about requests and attempts: finished attempts and requests as frozen data.

`Attempt` and `RequestSummary` are what hooks receive: immutable, complete, safe to keep. The mutable working
state lives with its one owner: `AttemptRun` (gateway.engine.attempt) for an attempt until it ends, and
`RequestRecord` here for a request until its last byte is written (owned by the server's request scope).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from gateway.config.model import ModelRoute, Target
from gateway.errors import ProviderError
from gateway.pricing.usage import NO_COST, NO_USAGE, Cost, Usage, cost
from gateway.wire import WireFormat

CHARS_PER_TOKEN = 4  # the usual estimate for English text, used only when a provider reports no usage


class Launch(enum.StrEnum):
    PRIMARY = "primary"  # the first target tried
    HEDGE = "hedge"  # launched because the previous attempts were slower than the hedge delay
    FALLBACK = "fallback"  # launched because an earlier attempt failed
    RESUME = "resume"  # continues a committed stream whose attempt failed or stalled mid-way (prefilled)


class Outcome(enum.StrEnum):
    WON = "won"
    CANCELLED = "cancelled"  # lost the race, or the client/deadline ended the request
    FAILED = "failed"
    SKIPPED = "skipped"  # never sent: breaker open, target cooling down after a 429, busy, unsupported


@dataclass(frozen=True, slots=True, eq=False)
class Attempt:
    """One attempt, as it ended. Times are monotonic seconds."""

    request_id: int
    alias: str
    index: int
    target: Target
    launch: Launch
    started: float
    ended: float
    outcome: Outcome
    input_estimate: int  # prompt tokens estimated from the request size, until the provider reports them
    error: ProviderError | None = None
    skip_reason: str | None = None
    breaker_state: str = "closed"
    first_token_s: float | None = None  # seconds from attempt start to its first content token
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    streamed_chars: int = 0
    finish_reason: str | None = None
    response_model: str | None = None
    server_address: str = ""
    server_port: int = 0
    queue_wait_s: float = 0.0  # time spent waiting for the provider's concurrency bound (bulkhead)
    operation: str = "chat"  # the request's endpoint: "chat", "embeddings", "count_tokens"
    # Reported with the usage (None: not reported); input_tokens includes cache reads and writes, output_tokens
    # includes reasoning.
    cache_write_tokens: int | None = None
    cache_write_long_tokens: int | None = None
    reasoning_tokens: int | None = None
    # The usage expected before it was sent (prompt-cache state of its provider, the alias's usual output): a
    # hedge's expected cost, and the input split billed when the attempt was cut before any usage came.
    expected: Usage | None = None
    # `cost` and `billed_usage` are read by the spans, the metrics, the log and the request's sums: computed
    # once, on first use (values derived from the frozen fields, so caching them keeps the record's meaning).
    _cost: Cost | None = field(default=None, repr=False, compare=False)
    _usage: Usage | None = field(default=None, repr=False, compare=False)

    @property
    def provider(self) -> str:
        return self.target.provider

    @property
    def output_reported(self) -> bool:
        """The provider's output count is final: Anthropic reports 1 at message_start, the total only with its
        stop reason, so a count seen before the end is no count of what was streamed."""
        return self.output_tokens is not None and (self.finish_reason is not None or self.operation != "chat")

    @property
    def usage_estimated(self) -> bool:
        return self.outcome is not Outcome.SKIPPED and (self.input_tokens is None or not self.output_reported)

    @property
    def billed_input_tokens(self) -> int:
        if self.outcome is Outcome.SKIPPED:
            return 0
        return self.input_tokens if self.input_tokens is not None else self.input_estimate

    @property
    def billed_output_tokens(self) -> int:
        if self.output_reported:
            return self.output_tokens  # type: ignore[return-value]  # output_reported: not None
        return max(self.output_tokens or 0, math.ceil(self.streamed_chars / CHARS_PER_TOKEN))

    @property
    def billed_usage(self) -> Usage:
        """The tokens as billed: the provider's figures; for an attempt cut before it reported its usage, the
        input split it was expected to have (a cold provider's cache writes included) and the output streamed."""
        known = self._usage
        if known is None:
            known = self._billed_usage()
            object.__setattr__(self, "_usage", known)
        return known

    def _billed_usage(self) -> Usage:
        if self.outcome is Outcome.SKIPPED:
            return NO_USAGE
        output = self.billed_output_tokens
        if self.input_tokens is None:
            expected = self.expected
            if expected is None:
                return Usage(input_tokens=self.input_estimate, output_tokens=output)
            return Usage(input_tokens=expected.input_tokens, cache_read_tokens=expected.cache_read_tokens,
                         cache_write_tokens=expected.cache_write_tokens,
                         cache_write_long_tokens=expected.cache_write_long_tokens, output_tokens=output)
        return Usage(input_tokens=self.input_tokens, cache_read_tokens=self.cached_input_tokens or 0,
                     cache_write_tokens=self.cache_write_tokens or 0,
                     cache_write_long_tokens=self.cache_write_long_tokens or 0, output_tokens=output,
                     reasoning_tokens=self.reasoning_tokens or 0)

    @property
    def cost(self) -> Cost:
        known = self._cost
        if known is None:
            # A failed attempt that got an HTTP error before streaming is not billed by providers.
            if self.outcome is Outcome.SKIPPED or (self.error is not None and self.first_token_s is None
                                                   and self.error.status is not None):
                known = NO_COST
            else:
                known = cost(self.target.price, self.billed_usage)
            object.__setattr__(self, "_cost", known)
        return known

    @property
    def cost_usd(self) -> float:
        return self.cost.total_usd

    @property
    def duration_s(self) -> float:
        return self.ended - self.started


@dataclass(frozen=True, slots=True, eq=False)
class RequestSummary:
    """One client request, as it ended (its last byte written, or rejected at the door)."""

    request_id: int
    alias: str  # the requested model alias ("" when the request was rejected before its body was read)
    door: WireFormat
    endpoint: str  # "chat", "embeddings", ...: the operation the door serves
    stream: bool
    started: float
    latency_s: float
    status: int
    trace_id: int  # the W3C trace id of this request (the caller's, or a new one)
    attempts: tuple[Attempt, ...] = ()  # by index
    winner: Attempt | None = None
    ttft_s: float | None = None
    hedge_delay_s: float | None = None
    hedges_skipped: int = 0
    error_type: str | None = None
    cache: str | None = None  # "hit", "miss" or "coalesced" when the alias caches this request
    key_name: str | None = None  # the gateway key's configured name (never the key)
    resumes: int = 0  # resume attempts launched for a committed stream that failed mid-way
    resumed_at_tokens: int | None = None  # output tokens the client had when the stream was first resumed

    @property
    def resumed(self) -> bool:
        return self.resumes > 0

    @property
    def hedged(self) -> bool:
        return any(a.launch is Launch.HEDGE for a in self.attempts)

    @property
    def sent_attempts(self) -> int:
        return sum(1 for a in self.attempts if a.outcome is not Outcome.SKIPPED)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    @property
    def cost(self) -> Cost:
        """All attempts' cost by part."""
        attempts = self.attempts
        if len(attempts) == 1:  # the usual request: nothing to add up
            return attempts[0].cost
        total = NO_COST
        for a in attempts:
            total = total + a.cost
        return total

    @property
    def wasted_cost_usd(self) -> float:
        # Every attempt whose output never reached the client. Only the winner's does, and after a resume the
        # attempts that continued its stream too: they carry Outcome.WON (a failed or cancelled one does not).
        return sum(a.cost_usd for a in self.attempts if a is not self.winner and a.outcome is not Outcome.WON)


@dataclass(slots=True, eq=False)
class RequestRecord:
    """A request while it runs: written by its scope (the server) and its race (the engine), nobody else."""

    request_id: int
    door: WireFormat
    started: float
    trace_id: int
    endpoint: str = "chat"
    route: ModelRoute | None = None  # set once the request is admitted
    alias: str = ""
    stream: bool = False
    body_bytes: int = 0  # size of the client's request body: the prompt-token estimate until a provider reports
    key_name: str | None = None
    cache: str | None = None
    hedge_delay_s: float | None = None
    attempts: list[Attempt] = field(default_factory=list)  # finished attempts, in the order they ended
    attempts_launched: int = 0  # attempts started or skipped so far: the next attempt's index
    winner_index: int | None = None
    ttft_s: float | None = None
    status: int = 200
    error_type: str | None = None
    hedges_skipped: int = 0
    resumes: int = 0
    resumed_at_tokens: int | None = None

    def fail(self, status: int, error_type: str | None) -> None:
        self.status, self.error_type = status, error_type

    def summary(self, ended: float) -> RequestSummary:
        attempts = tuple(sorted(self.attempts, key=_index)) if len(self.attempts) > 1 else tuple(self.attempts)
        winner = next((a for a in attempts if a.index == self.winner_index), None)
        return RequestSummary(
            request_id=self.request_id, alias=self.alias, door=self.door, endpoint=self.endpoint,
            stream=self.stream, started=self.started, latency_s=ended - self.started, status=self.status,
            trace_id=self.trace_id, attempts=attempts, winner=winner, ttft_s=self.ttft_s,
            hedge_delay_s=self.hedge_delay_s, hedges_skipped=self.hedges_skipped, error_type=self.error_type,
            cache=self.cache, key_name=self.key_name, resumes=self.resumes,
            resumed_at_tokens=self.resumed_at_tokens)


def _index(attempt: Attempt) -> int:
    return attempt.index
