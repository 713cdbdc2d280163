"""Per gateway key rate limits: requests per minute and tokens per minute.

Each limited quantity is a token bucket per key: capacity = the per-minute value, refilled continuously
at value / 60 per second. A bucket allows a burst of one minute's worth and then the steady rate, has no
window edges at which twice the limit gets through, and gives an exact Retry-After: the time until the
bucket holds what the request needs.

Tokens are not known until the answer is in, so `check` reserves an estimate and `settle` corrects it
with the real count. A bucket may go below zero (the answer used more than estimated, or a request
estimated above the whole per-minute value was let through from a full bucket): that debt delays the
key's next requests until the refill has paid it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.clock import Clock, monotonic

# Float slack, as a share of the bucket's capacity, when comparing a bucket with what a request needs,
# so a caller that waits exactly the retry-after it was given is admitted even when the refill rounds
# down. Relative, because the rounding grows with the rate and with the clock's magnitude (elapsed time
# is a difference of two large monotonic readings); a billionth of a minute's worth is never noticed.
_SLACK = 1e-9

# How often (injected-clock seconds) to look for keys to forget. Each sweep is O(tracked keys); with
# at least one call per tracked key per sweep, that is O(1) amortized per call.
_SWEEP_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class RateLimitOptions:
    requests_per_minute: int | None = None  # None = unlimited
    tokens_per_minute: int | None = None  # None = unlimited; prompt and completion tokens together

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            # 0 would mean "never": a key that must not be used is revoked, not rate limited.
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (unlimited), got {value}")


class _Bucket:
    """One token bucket. `level` starts at +inf, which the first refill clamps to the capacity."""

    __slots__ = ("level",)

    def __init__(self) -> None:
        self.level = math.inf

    def refill(self, capacity: int, elapsed_s: float) -> None:
        # Also clamps a level above a capacity that was lowered by a config reload.
        self.level = min(float(capacity), self.level + elapsed_s * capacity / 60.0)

    def wait_s(self, capacity: int, need: float) -> float:
        """Seconds until the bucket holds `need` (at most its capacity: a request larger than a
        minute's worth is let through from a full bucket and leaves it in debt)."""
        shortfall = min(need, float(capacity)) - self.level
        return 0.0 if shortfall <= _SLACK * capacity else shortfall * 60.0 / capacity

    def full_in_s(self, capacity: int) -> float:
        return max(0.0, capacity - self.level) * 60.0 / capacity


class _KeyState:
    __slots__ = ("full_at", "requests", "tokens", "updated_at")

    def __init__(self, now: float) -> None:
        self.requests = _Bucket()
        self.tokens = _Bucket()
        self.updated_at = now
        self.full_at = now  # when both buckets will be full again, given the last options seen


class RateLimiter:
    """Rate limits for every gateway key. Call from the event loop thread; nothing here blocks.

    Memory: a key whose buckets have refilled completely behaves exactly like a key never seen, so its
    state is dropped at the next sweep (at most once a minute). That is at most a minute after its last
    request, later only while it is in debt. Only keys active recently, or in debt, are kept.
    """

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._next_sweep_at = clock() + _SWEEP_EVERY_S

    def __len__(self) -> int:
        """Keys with state, for metrics and tests."""
        return len(self._keys)

    def tokens_left(self, key_id: str) -> float | None:
        """The key's token bucket level as of its last update (None: no state, a full bucket), for tests."""
        state = self._keys.get(key_id)
        return None if state is None else state.tokens.level

    def check(self, key_id: str, options: RateLimitOptions, estimated_tokens: int) -> float | None:
        """Admit one request expected to use `estimated_tokens`: None if admitted (one request counted
        and the tokens reserved), else the seconds to wait before it would be (nothing counted).

        `key_id` is an opaque id, e.g. a hash of the gateway key, never the key itself.
        """
        rpm, tpm = options.requests_per_minute, options.tokens_per_minute
        if rpm is None and tpm is None:
            return None
        now = self._clock()
        self._sweep_if_due(now)
        state = self._refilled(key_id, options, now)
        need = float(max(0, estimated_tokens))
        wait = 0.0
        if rpm is not None:
            wait = state.requests.wait_s(rpm, 1.0)
        if tpm is not None:
            wait = max(wait, state.tokens.wait_s(tpm, need))
        if wait > 0.0:
            return wait
        if rpm is not None:
            state.requests.level -= 1.0
        if tpm is not None:
            state.tokens.level -= need
        self._update_full_at(state, options, now)
        return None

    def settle(self, key_id: str, options: RateLimitOptions, estimated_tokens: int, actual_tokens: int) -> None:
        """Replace an admitted request's reservation with the tokens it really used: refunds when it
        used fewer (0 for a request that failed before any token was spent), charges the excess
        when it used more. Call exactly once per admitted request, with the same options and estimate
        that `check` got."""
        tpm = options.tokens_per_minute
        if tpm is None:
            return
        correction = float(max(0, actual_tokens) - max(0, estimated_tokens))
        if correction == 0.0:
            return
        now = self._clock()
        self._sweep_if_due(now)
        # A key forgotten since its check had full buckets, so recreating it full loses nothing.
        state = self._refilled(key_id, options, now)
        state.tokens.level = min(float(tpm), state.tokens.level - correction)
        self._update_full_at(state, options, now)

    def _refilled(self, key_id: str, options: RateLimitOptions, now: float) -> _KeyState:
        state = self._keys.get(key_id)
        if state is None:
            state = self._keys[key_id] = _KeyState(now)
        elapsed = max(0.0, now - state.updated_at)  # a clock going backwards refills nothing
        if options.requests_per_minute is not None:
            state.requests.refill(options.requests_per_minute, elapsed)
        if options.tokens_per_minute is not None:
            state.tokens.refill(options.tokens_per_minute, elapsed)
        state.updated_at = max(state.updated_at, now)
        return state

    def _update_full_at(self, state: _KeyState, options: RateLimitOptions, now: float) -> None:
        full_in = 0.0
        if options.requests_per_minute is not None:
            full_in = state.requests.full_in_s(options.requests_per_minute)
        if options.tokens_per_minute is not None:
            full_in = max(full_in, state.tokens.full_in_s(options.tokens_per_minute))
        state.full_at = now + full_in

    def _sweep_if_due(self, now: float) -> None:
        if now < self._next_sweep_at:
            return
        self._next_sweep_at = now + _SWEEP_EVERY_S
        forgotten = [key_id for key_id, state in self._keys.items() if state.full_at <= now]
        for key_id in forgotten:
            del self._keys[key_id]
