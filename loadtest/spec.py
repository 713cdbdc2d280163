"""A parsed scenario as plain frozen data. Parsing and validation live in `loadtest.scenario`."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any, Literal

from gateway.config.model import Price

Door = Literal["openai", "anthropic", "responses"]
Kind = Literal["openai", "anthropic", "azure-openai", "bedrock", "vertex"]  # a provider kind (loadtest.clouds)


@dataclass(frozen=True, slots=True)
class IntRange:
    """A whole number drawn uniformly from [low, high]; low == high is a fixed value. With a quantile `table`
    ((q, value) points from q = 0 to 1, e.g. fitted from traces), drawn from that distribution instead, linear
    between the points and rounded; low and high are then the table's ends."""

    low: int
    high: int
    table: tuple[tuple[float, float], ...] = ()

    def draw(self, rng: random.Random) -> int:
        # Exactly one draw, fixed range or not, so changing one range leaves every later draw unchanged.
        u = rng.random()
        if self.table:
            i = bisect.bisect_right(self.table, u, key=lambda point: point[0])
            if i >= len(self.table):
                return self.high
            (q0, v0), (q1, v1) = self.table[i - 1], self.table[i]
            return min(self.high, max(self.low, round(v0 + (u - q0) / (q1 - q0) * (v1 - v0))))
        return min(self.high, self.low + int(u * (self.high - self.low + 1)))

    @property
    def mean(self) -> float:
        if self.table:  # the mean of the piecewise-linear quantile function
            pairs = zip(self.table, self.table[1:], strict=False)
            return sum((q1 - q0) * (v0 + v1) / 2 for (q0, v0), (q1, v1) in pairs)
        return (self.low + self.high) / 2

    def to_json(self) -> int | list[int] | dict[str, list[list[float]]]:
        if self.table:
            return {"quantiles": [[q, v] for q, v in self.table]}
        return self.low if self.low == self.high else [self.low, self.high]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One simulated provider and how the gateway reaches it."""

    name: str
    kind: Kind  # the provider kind the gateway speaks to it as
    model: str
    price: Price  # for the cost rebuilt from the simulators' counters
    profile: dict[str, Any]  # the simulator profile mapping, already validated by `parse_profile`
    seed: int
    gateway: dict[str, Any]  # extra provider keys for the gateway config: timeout_s, breaker, ...
    price_configured: bool = True  # False: the gateway prices it from its catalog (the scenario gave no price)


@dataclass(frozen=True, slots=True)
class Traffic:
    rate: float  # mean arrivals per second (Poisson)
    duration_s: float  # no arrival is scheduled at or after this time ...
    count: int | None  # ... nor after this many requests, when set
    request_timeout_s: float  # measured from the scheduled time, like the latency
    stream_share: float  # share of requests that ask for a stream
    anthropic_share: float  # share of requests sent through the Anthropic door (the rest: OpenAI)
    prompt_tokens: IntRange  # with sessions: the new tokens of each turn
    max_tokens: IntRange
    door: Door | None = None  # every request through this door; None: the mix `anthropic_share` says
    # Piecewise-constant arrival rate, (start_s, rate) from 0 (e.g. fitted from traces); empty: `rate` throughout.
    rates: tuple[tuple[float, float], ...] = ()
    # Claude-Code-like sessions (0: independent requests): request i is turn i // sessions of session
    # i % sessions, through the Anthropic door, with a `cached_prefix_tokens` system prompt, the session's
    # earlier turns, and `cache_control` on the system prompt and on the newest turn, as Claude Code sends them.
    sessions: int = 0
    cached_prefix_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """At `at_s` seconds into each policy's run, `provider`'s profile becomes `profile` (a full mapping)."""

    at_s: float
    provider: str
    profile: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Policy:
    """One hedging policy: keys merged into the alias's gateway config (hedge, timeout_s, targets, ...)."""

    name: str
    route: dict[str, Any]
    # Providers whose prompt cache is warmed before the load: each session's prefix sent once to each, through
    # the gateway (so its prompt-cache tracker learns it), as an alias of its own.
    warm: tuple[str, ...] = ()

    @property
    def hedges(self) -> bool:
        hedge = self.route.get("hedge")
        return not (hedge is False or hedge == "off")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    seed: int
    alias: str  # the model name clients send
    providers: tuple[ProviderSpec, ...]  # in priority order: the first is the primary
    traffic: Traffic
    changes: tuple[ProfileChange, ...]
    policies: tuple[Policy, ...]
    baseline: str | None  # policy the extra cost is measured against; None: against the winners' cost
    hard_timeout_s: float | None  # per policy; None: derived from the traffic (see `policy_deadline_s`)
    source: dict[str, Any] | None = None  # where a fitted scenario came from (`python -m loadtest fit`)

    def policy_deadline_s(self) -> float:
        """Seconds after which one policy's load stops for good: outstanding requests then count as errors."""
        if self.hard_timeout_s is not None:
            return self.hard_timeout_s
        return self.traffic.duration_s + self.traffic.request_timeout_s + 15.0

    def provider(self, name: str) -> ProviderSpec:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(name)
