"""A discrete-event simulation of the hedge race over a replayed world: no sockets, no event loop, virtual time.

The policies are the engine's own objects, on a `FakeClock` moved to each event's time: `HedgeBudget`
(`record_request`, `try_spend`), `LatencyTracker` (the adaptive delay, its window, min samples, clamp and
recompute cadence), `CircuitBreaker` (consecutive failures, open, one half-open probe, stale permits), and the
engine's status classification. What this module writes itself is the race's sequencing, mirroring
`gateway/engine/race.py`:

Applied:
- the primary is the first admissible target (a target cooling down after a 429, or whose breaker refuses a
  permit, is skipped, as the engine records it);
- the delay is read from the tracker of the target that really went first (TTFT for streams, full latency
  otherwise), or is the fixed `delay_ms`: when the request starts, and again when its first hedge would go (the
  window may have learned meanwhile: the hedge then waits out the longer delay, counted from the start);
- after the delay with no winner, the next target is launched as a hedge, paid from the budget; a refused hedge
  is never queued: with `rearm` it is looked at again when the wait reaches 2, 4, 8... delays, else hedging ends
  for that request; at most `max_attempts` attempts are launched by the timer; the budget counts a request only
  once its primary was sent;
- a provider fault (5xx, timeout, broken stream before the commit) launches the next target at once, outside
  the budget, and restarts the delay; a 429 also cools the target down (1 s: traces do not carry Retry-After);
  a client error (4xx) ends the request;
- the first success wins: a stream commits at its first token, any other request at its complete answer; the
  winner's latency and every superseded loser's running time go into the trackers; losers are cancelled at
  once (breaker permit released, billed their input and the tokens they streamed before the cut);
- each attempt is bounded by its provider's `timeout_s` until it commits; the request by its deadline (the
  alias's `timeout_s`, else the primary provider's), which cuts every attempt without recording a latency;
- a streamed winner settles its breaker permit when its stream ends; a mid-stream failure after the commit
  fails the request and counts against the breaker.

Not applied (the recorded world has no such information, or they do not change a race's timing):
bulkheads (`max_concurrent`) and connection-pool waits; the cache and coalescing; rate limits at the door;
shared state between replicas (Redis); Retry-After values; the deadline after a stream's commit; and the load
itself: a provider is as fast under a policy that hedges more as it was in the recording.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.clock import FakeClock
from gateway.config.model import HedgeConfig, Price
from gateway.errors import FailureKind
from gateway.policies.breaker import BreakerOptions, CircuitBreaker, Permit
from gateway.policies.budget import HedgeBudget
from gateway.policies.latency import LatencyTracker
from gateway.tuning.world import Draw, WorldRequest

_EPOCH = 1000.0  # the fake clock's reading at the recording's time 0
COOL_DOWN_S = 1.0  # the engine's default Retry-After


@dataclass(frozen=True, slots=True)
class SimTarget:
    provider: str
    model: str
    price: Price
    timeout_s: float  # the provider's per-attempt timeout until the commit
    gap_s: float  # time per output token after the first
    breaker: BreakerOptions


@dataclass(frozen=True, slots=True)
class SimSetup:
    targets: tuple[SimTarget, ...]  # route order
    hedge: HedgeConfig
    deadline_s: float


@dataclass(slots=True)
class SimResult:
    stream: bool
    ok: bool = False
    ttft_s: float | None = None  # arrival to the winner's first token
    latency_s: float | None = None  # arrival to the end of the answer
    cost_usd: float = 0.0
    wasted_usd: float = 0.0
    sent: int = 0
    hedged: bool = False
    hedges_skipped: int = 0
    error: str | None = None


@dataclass(slots=True, eq=False)
class _Attempt:
    index: int  # the target's position
    started: float
    draw: Draw
    permit: Permit
    live: bool = True


@dataclass(slots=True, eq=False)
class _Request:
    world: WorldRequest
    result: SimResult
    pending: list[_Attempt] = field(default_factory=list)
    next_target: int = 0
    timer_launches: int = 1
    can_hedge: bool = True
    delay_s: float = 0.0
    rearm_s: float = 0.0
    waiting_since: float = 0.0  # the first hedge's delay counts from here (a fallback restarts it)
    refused: bool = False  # a hedge of this request was refused: the delay is no longer re-read
    tracker: LatencyTracker | None = None
    timer_gen: int = 0
    finished: bool = False
    budget_refused: bool = False


class Simulation:
    """One candidate over one world. `run()` returns one result per world request, in arrival order."""

    def __init__(self, setup: SimSetup, world: Sequence[WorldRequest]) -> None:
        self.setup = setup
        self.world = world
        self.clock = FakeClock(_EPOCH)
        self.budget = HedgeBudget(setup.hedge.budget, clock=self.clock)
        self.breakers = {t.provider: CircuitBreaker(t.provider, t.breaker, clock=self.clock) for t in setup.targets}
        self.trackers: dict[tuple[int, bool], LatencyTracker] = {}
        self.cooling_until: dict[int, float] = {}
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    # ---- the event loop -----------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, action))

    @property
    def now(self) -> float:
        return self.clock.now - _EPOCH

    def run(self) -> list[SimResult]:
        requests = [_Request(w, SimResult(stream=w.stream)) for w in self.world]
        for req in requests:
            self.at(req.world.at_s, functools.partial(self.arrive, req))
        while self._events:
            when, _, action = heapq.heappop(self._events)
            self.clock.now = _EPOCH + when
            action()
        return [req.result for req in requests]

    # ---- the race -----------------------------------------------------------------------------------------

    def tracker(self, index: int, stream: bool) -> LatencyTracker | None:
        options = self.setup.hedge.adaptive
        if options is None:
            return None
        key = (index, stream)
        if key not in self.trackers:
            self.trackers[key] = LatencyTracker(options, clock=self.clock)
        return self.trackers[key]

    def arrive(self, req: _Request) -> None:
        hedge = self.setup.hedge
        primary = self.launch(req, "primary")
        if primary is None:
            self.fail(req, "all skipped")
            return
        self.budget.record_request()
        req.tracker = tracker = self.tracker(primary.index, req.world.stream)
        req.delay_s = tracker.delay_s() if tracker is not None else hedge.delay_ms / 1000
        req.can_hedge = hedge.enabled
        self.arm_timer(req)
        self.at(self.now + self.setup.deadline_s, lambda: self.deadline(req))

    def arm_timer(self, req: _Request, after_s: float | None = None) -> None:
        """The next timer check: a full delay from now (after a start, a hedge or a fallback), or `after_s`."""
        req.timer_gen += 1
        if after_s is None:
            req.waiting_since, req.rearm_s = self.now, req.delay_s
        if req.can_hedge and req.timer_launches < self.setup.hedge.max_attempts:
            gen = req.timer_gen
            self.at(self.now + (req.delay_s if after_s is None else after_s), lambda: self.timer(req, gen))

    def timer(self, req: _Request, gen: int) -> None:
        if req.finished or gen != req.timer_gen or req.next_target >= len(self.setup.targets):
            return
        if req.tracker is not None and req.timer_launches == 1 and not req.refused:
            fresh = req.tracker.delay_s()
            if req.waiting_since + fresh > self.now + 1e-6:
                req.delay_s = req.rearm_s = fresh
                self.arm_timer(req, after_s=req.waiting_since + fresh - self.now)
                return
        if self.launch(req, "hedge") is not None:
            req.timer_launches += 1
            req.result.hedged = True
            self.arm_timer(req)
        elif req.budget_refused:
            req.result.hedges_skipped += 1
            req.refused = True
            if self.setup.hedge.rearm and req.rearm_s > 0:
                after, req.rearm_s = req.rearm_s, req.rearm_s * 2
                self.arm_timer(req, after_s=after)
            else:
                req.can_hedge = False

    def launch(self, req: _Request, kind: str) -> _Attempt | None:
        req.budget_refused = False
        targets = self.setup.targets
        while req.next_target < len(targets):
            index = req.next_target
            target = targets[index]
            if self.cooling_until.get(index, -math.inf) > self.now:
                req.next_target += 1
                continue
            permit = self.breakers[target.provider].try_acquire()
            if permit is None:
                req.next_target += 1
                continue
            if kind == "hedge" and not self.budget.try_spend():
                permit.release()
                req.budget_refused = True
                return None
            req.next_target += 1
            attempt = _Attempt(index, self.now, req.world.draws[index], permit)
            req.pending.append(attempt)
            req.result.sent += 1
            self.schedule_end(req, attempt, target)
            return attempt
        return None

    def schedule_end(self, req: _Request, attempt: _Attempt, target: SimTarget) -> None:
        draw = attempt.draw
        if draw.ttft_s is None:
            when, action = draw.fail_s, lambda: self.failed(req, attempt, draw.failure, draw.error_type)
        else:
            commit = draw.ttft_s if req.world.stream or draw.midstream else draw.done_s
            if commit > target.timeout_s:
                when, action = target.timeout_s, lambda: self.failed(req, attempt, FailureKind.FAULT, "timeout")
            elif draw.midstream and not req.world.stream:  # an answer being assembled breaks: a failure
                when, action = commit, lambda: self.failed(req, attempt, FailureKind.FAULT, "incomplete_stream")
            else:
                when, action = commit, lambda: self.won(req, attempt)
        if when > target.timeout_s:
            when, action = target.timeout_s, lambda: self.failed(req, attempt, FailureKind.FAULT, "timeout")
        self.at(attempt.started + when, action)

    def failed(self, req: _Request, attempt: _Attempt, kind: FailureKind, error: str) -> None:
        if not attempt.live:
            return
        self.end(req, attempt)
        if kind is FailureKind.FAULT:
            attempt.permit.failure()
        else:
            attempt.permit.release()
        if kind is FailureKind.RATE_LIMITED:
            self.cooling_until[attempt.index] = self.now + COOL_DOWN_S
        if error == "timeout":  # billed what it was sent; an HTTP error before any token is not billed
            self.bill(req, attempt, cut_at=self.now, wasted=True)
        if kind is FailureKind.CLIENT:
            self.cancel_pending(req, superseded=False)
            self.fail(req, error)
            return
        if self.launch(req, "fallback") is not None:
            self.arm_timer(req)
        elif not req.pending:
            self.fail(req, error)

    def won(self, req: _Request, attempt: _Attempt) -> None:
        if not attempt.live:
            return
        self.end(req, attempt)
        world, result, draw = req.world, req.result, attempt.draw
        assert draw.ttft_s is not None
        result.ttft_s = attempt.started + draw.ttft_s - world.at_s
        tracker = self.tracker(attempt.index, world.stream)
        if tracker is not None:
            tracker.record(draw.ttft_s if world.stream else self.now - attempt.started)
        self.cancel_pending(req, superseded=True)
        req.finished = True
        if world.stream and draw.midstream:
            end = attempt.started + draw.ttft_s + self.setup.targets[attempt.index].gap_s
            self.at(end, attempt.permit.failure)
            result.error = "stream error"
            self.bill(req, attempt, cut_at=end, wasted=False)
            return
        result.ok = True
        result.latency_s = attempt.started + draw.done_s - world.at_s
        if world.stream:
            self.at(attempt.started + draw.done_s, attempt.permit.success)
        else:
            attempt.permit.success()
        price = self.setup.targets[attempt.index].price
        result.cost_usd += price.cost_usd(world.input_tokens, world.output_tokens)

    def end(self, req: _Request, attempt: _Attempt) -> None:
        attempt.live = False
        req.pending.remove(attempt)

    def cancel_pending(self, req: _Request, *, superseded: bool) -> None:
        for attempt in list(req.pending):
            self.end(req, attempt)
            attempt.permit.release()
            self.bill(req, attempt, cut_at=self.now, wasted=True)
            tracker = self.tracker(attempt.index, req.world.stream) if superseded else None
            if tracker is not None:
                tracker.record(self.now - attempt.started)

    def deadline(self, req: _Request) -> None:
        if req.finished:
            return
        self.cancel_pending(req, superseded=False)
        self.fail(req, "deadline")

    def fail(self, req: _Request, error: str) -> None:
        req.finished = True
        req.result.error = error

    def bill(self, req: _Request, attempt: _Attempt, *, cut_at: float, wasted: bool) -> None:
        """An attempt cut at `cut_at`: its input as the gateway estimates it, and the tokens streamed by then."""
        target = self.setup.targets[attempt.index]
        draw, world = attempt.draw, req.world
        ran = cut_at - attempt.started
        streamed = 0
        if draw.ttft_s is not None and ran >= draw.ttft_s:
            after = ran - draw.ttft_s
            streamed = world.output_tokens if target.gap_s <= 0 else min(
                world.output_tokens, 1 + math.floor(after / target.gap_s + 1e-9))
        cost = target.price.cost_usd(world.input_estimate, streamed)
        req.result.cost_usd += cost
        if wasted:
            req.result.wasted_usd += cost


def simulate(setup: SimSetup, world: Sequence[WorldRequest]) -> list[SimResult]:
    """Each segment of the world on its own simulation (fresh budget, trackers, breakers), results in order."""
    segments: dict[int, list[WorldRequest]] = {}
    for w in world:
        segments.setdefault(w.segment, []).append(w)
    return [r for part in segments.values() for r in Simulation(setup, part).run()]
