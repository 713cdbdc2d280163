"""A per-provider circuit breaker: pybreaker's state machine behind a non-blocking permit API.

pybreaker 1.4.1 has no asyncio support, and its ways of guarding a call are wrong for hedging:
`calling()` counts asyncio.CancelledError as a failure (cancelled hedge losers would open breakers),
`exclude` counts an excluded error as a SUCCESS (a 4xx or 429 would reset the failure count or even close
a half-open breaker), half-open lets every concurrent caller through, and open -> half-open is timed with
`datetime.now()`, which tests cannot drive.

So no attempt ever runs inside pybreaker. A caller takes a `Permit` before an attempt and settles it after.
Only `success()` and `failure()` reach pybreaker, each as a synchronous `cb.call()` of a function that
returns or raises at once, so pybreaker still does the counting and the transitions. `release()` never
reaches it. This class adds what pybreaker lacks: open -> half-open on the injected clock, a single
half-open probe, and a guard against permits that outlive the state they were granted in.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pybreaker

from gateway.clock import Clock, monotonic


@dataclass(frozen=True, slots=True)
class BreakerOptions:
    fail_max: int = 5  # consecutive failures that open the breaker
    reset_timeout_s: float = 30.0  # open -> half-open after this long

    def __post_init__(self) -> None:
        if self.fail_max < 1:
            raise ValueError(f"fail_max must be >= 1, got {self.fail_max}")
        if not 0.0 <= self.reset_timeout_s < float("inf"):
            raise ValueError(f"reset_timeout_s must be finite and >= 0, got {self.reset_timeout_s}")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


StateChangeCallback = Callable[[str, BreakerState, BreakerState], None]  # (breaker name, old, new)

_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: BreakerState.CLOSED,
    pybreaker.STATE_OPEN: BreakerState.OPEN,
    pybreaker.STATE_HALF_OPEN: BreakerState.HALF_OPEN,
}

# pybreaker half-opens by itself when called while open after `datetime.now() >= opened_at + reset_timeout`.
# We never call it while open, and on top of that give it a timeout its wall clock cannot reach, so only
# our injected clock decides. Ten years: out of reach, yet small enough for datetime arithmetic.
_PYBREAKER_NEVER_S = 10 * 365 * 24 * 3600.0


class _ReportedFailure(Exception):
    """Raised inside `pybreaker.CircuitBreaker.call` so that pybreaker counts one failure."""


def _report_success() -> None:
    return None


def _report_failure() -> None:
    raise _ReportedFailure


class _Outcome(enum.Enum):
    SUCCESS = enum.auto()
    FAILURE = enum.auto()
    RELEASE = enum.auto()


class _TransitionListener(pybreaker.CircuitBreakerListener):
    """Forwards pybreaker's state changes (as its state names) to the owning `CircuitBreaker`."""

    def __init__(self, forward: Callable[[str | None, str], None]) -> None:
        self._forward = forward

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: pybreaker.CircuitBreakerState | None,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        self._forward(old_state.name if old_state is not None else None, new_state.name)


class Permit:
    """Leave to make one attempt. Settle it exactly once: the first of success/failure/release takes
    effect and later calls are no-ops, so `finally: permit.release()` after an explicit outcome is safe.
    An unsettled probe permit keeps a half-open breaker closed to everyone else, so always settle."""

    __slots__ = ("_breaker", "_epoch", "_is_probe", "_settled")

    def __init__(self, breaker: CircuitBreaker, epoch: int, is_probe: bool) -> None:
        self._breaker = breaker
        self._epoch = epoch
        self._is_probe = is_probe
        self._settled = False

    @property
    def is_probe(self) -> bool:
        """True for the single trial attempt a half-open breaker admits."""
        return self._is_probe

    def success(self) -> None:
        self._settle(_Outcome.SUCCESS)

    def failure(self) -> None:
        """The provider failed (5xx, 529, timeout, connection, broken stream)."""
        self._settle(_Outcome.FAILURE)

    def release(self) -> None:
        """Neutral end (cancelled loser, client error, 429): counts as neither success nor failure."""
        self._settle(_Outcome.RELEASE)

    def _settle(self, outcome: _Outcome) -> None:
        if self._settled:
            return
        self._settled = True
        self._breaker._settle_permit(self._epoch, self._is_probe, outcome)


class CircuitBreaker:
    """Circuit breaker for one provider. Call only from the event loop thread; nothing here blocks.

    Stale permits: every state transition starts a new epoch, and an outcome reported on a permit granted
    in an earlier epoch is ignored. So a permit taken while closed that fails after the breaker opened
    neither re-arms the open timer nor touches the half-open probe, and one that succeeds late cannot
    close a breaker that has since opened: only the probe decides how an open breaker recovers.
    """

    def __init__(self, name: str, options: BreakerOptions, *, clock: Clock = monotonic,
                 on_state_change: StateChangeCallback | None = None) -> None:
        self.name = name
        self.options = options
        self._clock = clock
        self._listeners: list[StateChangeCallback] = [] if on_state_change is None else [on_state_change]
        self._epoch = 0
        self._opened_at = 0.0  # injected-clock time of the latest transition to open
        self._probe_in_flight = False
        # Transitions seen inside pybreaker, reported once pybreaker has finished, so a callback that
        # raises or re-enters this breaker cannot leave pybreaker half-updated.
        self._pending: list[tuple[BreakerState, BreakerState]] = []
        self._cb = pybreaker.CircuitBreaker(
            fail_max=options.fail_max,
            reset_timeout=_PYBREAKER_NEVER_S,
            success_threshold=1,  # one successful probe closes the breaker
            listeners=[_TransitionListener(self._on_transition)],
            name=name,
        )

    @property
    def state(self) -> BreakerState:
        """Current state. Reading it half-opens a breaker whose reset timeout has passed, exactly as
        `try_acquire` would, so the two always agree (HALF_OPEN may still reject: probe in flight)."""
        self._half_open_if_due()
        return self._current()

    @property
    def consecutive_failures(self) -> int:
        """pybreaker's failure counter, for metrics and tests."""
        return self._cb.fail_counter

    def try_acquire(self) -> Permit | None:
        """A permit to attempt now, or None: open and reset timeout not elapsed, or half-open with the
        probe already in flight. Never waits."""
        self._half_open_if_due()
        state = self._current()
        if state is BreakerState.CLOSED:
            return Permit(self, self._epoch, is_probe=False)
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return Permit(self, self._epoch, is_probe=True)
        return None

    def retry_in_s(self) -> float:
        """Seconds until an open breaker would admit a probe; 0 if not open."""
        if self._current() is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.options.reset_timeout_s - self._clock())

    def force_open(self, open_for_s: float) -> bool:
        """Be open for at least `open_for_s` from now, then admit one probe as usual: another replica's
        breaker for this provider opened, and its evidence counts here too. The transition goes through
        pybreaker, so it is reported (logged, traced) like any other. Returns False, changing nothing, when
        already open at least that long."""
        if not open_for_s > 0.0:
            return False
        until = self._clock() + open_for_s
        if self._current() is BreakerState.OPEN:
            if self._opened_at + self.options.reset_timeout_s >= until:
                return False
        else:
            self._cb.open()  # a new epoch: permits granted before (a probe included) no longer count
        self._opened_at = until - self.options.reset_timeout_s  # so `_half_open_if_due` waits until `until`
        self._report_transitions()
        return True

    def _current(self) -> BreakerState:
        return _FROM_PYBREAKER[self._cb.current_state]

    def _half_open_if_due(self) -> None:
        if (self._current() is BreakerState.OPEN
                and self._clock() >= self._opened_at + self.options.reset_timeout_s):
            self._cb.half_open()
            self._report_transitions()

    def _settle_permit(self, epoch: int, is_probe: bool, outcome: _Outcome) -> None:
        if epoch != self._epoch:
            return  # granted in a state that has since ended: see the class docstring
        if is_probe:
            self._probe_in_flight = False
        if outcome is _Outcome.RELEASE:
            return
        if outcome is _Outcome.SUCCESS and not is_probe and self._cb.fail_counter == 0:
            return  # a success in a closed breaker with no failures counted changes nothing: skip pybreaker's call
        report = _report_success if outcome is _Outcome.SUCCESS else _report_failure
        # Raising is how pybreaker says "failure counted" and "failure counted, breaker opened".
        with contextlib.suppress(_ReportedFailure, pybreaker.CircuitBreakerError):
            self._cb.call(report)
        self._report_transitions()

    def _on_transition(self, old_name: str | None, new_name: str) -> None:
        new = _FROM_PYBREAKER[new_name]
        self._epoch += 1
        self._probe_in_flight = False
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()  # a failed probe lands here too: the timer restarts
        if old_name is not None and old_name != new_name:
            self._pending.append((_FROM_PYBREAKER[old_name], new))

    def _report_transitions(self) -> None:
        events, self._pending = self._pending, []
        for old, new in events:
            for listener in self._listeners:
                try:
                    listener(self.name, old, new)
                except Exception:  # an observer (logging, replication) must never fail the attempt it follows
                    logging.getLogger("gateway.breaker").exception("breaker listener failed")

    def add_listener(self, listener: StateChangeCallback) -> None:
        """Also call `listener(name, old, new)` on every state change (once, however often it is added)."""
        if listener not in self._listeners:
            self._listeners.append(listener)
