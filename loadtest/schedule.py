"""The open-loop schedule: every request's send time and shape, computed before the first one is sent.

Precomputing from a seeded RNG is what keeps the load open-loop: a slow gateway cannot delay later arrivals
(no coordinated omission), and every policy of a run faces exactly the same requests at the same times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from loadtest.spec import Door, Traffic


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    index: int
    at_s: float  # send time, in seconds after the run's start
    door: Door
    stream: bool
    prompt_tokens: int  # with sessions: this turn's new tokens
    max_tokens: int
    session: int = -1  # Claude-Code-like traffic: the session (else -1), its prefix and the earlier turns' sizes
    prefix_tokens: int = 0
    history: tuple[int, ...] = ()


def poisson_arrivals(rate: float, duration_s: float, rng: random.Random, count: int | None = None) -> list[float]:
    """Arrival times of a Poisson process of `rate` per second in [0, duration_s), at most `count` of them."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s and (count is None or len(times) < count):
        times.append(t)
        t += rng.expovariate(rate)
    return times


def varying_arrivals(rates: Sequence[tuple[float, float]], duration_s: float, rng: random.Random,
                     count: int | None = None) -> list[float]:
    """Arrivals of a Poisson process whose rate is piecewise constant: `rates` is (start_s, rate) from 0, each
    rate holding until the next start (the last until `duration_s`). Each gap is one unit-rate exponential draw,
    spent through the rates as they come (the time-change of a non-homogeneous Poisson process)."""
    if not rates or rates[0][0] != 0 or any(r < 0 for _, r in rates):
        raise ValueError("rates must start at 0 s and be >= 0")
    ends = [start for start, _ in rates[1:]] + [math.inf]
    times: list[float] = []
    t, segment = 0.0, 0
    while count is None or len(times) < count:
        need = rng.expovariate(1.0)  # expected arrivals to wait for
        while segment < len(rates):
            rate, end = rates[segment][1], ends[segment]
            if rate > 0 and need <= rate * (end - t):
                t += need / rate
                break
            need -= rate * (end - t) if math.isfinite(end) else 0.0
            t, segment = end, segment + 1
        if segment >= len(rates) or t >= duration_s:
            break
        times.append(t)
    return times


def build_schedule(traffic: Traffic, seed: int) -> list[PlannedRequest]:
    """The requests of one run. Arrivals and request shapes use separate RNG streams, so changing the mix
    (say, the streaming share) does not move a single arrival."""
    arrival_rng = random.Random(f"arrivals-{seed}")
    arrivals = (varying_arrivals(traffic.rates, traffic.duration_s, arrival_rng, traffic.count) if traffic.rates
                else poisson_arrivals(traffic.rate, traffic.duration_s, arrival_rng, traffic.count))
    shapes = random.Random(f"shapes-{seed}")
    plan: list[PlannedRequest] = []
    for index, at_s in enumerate(arrivals):
        # A fixed number of draws per request, in a fixed order, whatever the shares.
        mixed: Door = "anthropic" if shapes.random() < traffic.anthropic_share else "openai"
        door = traffic.door or mixed  # drawn either way, so forcing a door moves nothing else
        stream = shapes.random() < traffic.stream_share
        prompt_tokens = traffic.prompt_tokens.draw(shapes)
        max_tokens = traffic.max_tokens.draw(shapes)
        if traffic.sessions:
            plan.append(_session_turn(traffic, seed, index, at_s, stream, max_tokens))
            continue
        plan.append(PlannedRequest(index=index, at_s=at_s, door=door, stream=stream,
                                   prompt_tokens=prompt_tokens, max_tokens=max_tokens))
    return plan


def _session_turn(traffic: Traffic, seed: int, index: int, at_s: float, stream: bool,
                  max_tokens: int) -> PlannedRequest:
    """Turn `index // sessions` of session `index % sessions`. A turn's size depends on (session, turn) only, so
    every later turn of the session repeats it exactly as sent: the prefix a provider may have cached."""
    session, turn = index % traffic.sessions, index // traffic.sessions
    sizes = tuple(traffic.prompt_tokens.draw(random.Random(f"turn-{seed}-{session}-{t}")) for t in range(turn + 1))
    return PlannedRequest(index=index, at_s=at_s, door="anthropic", stream=stream, prompt_tokens=sizes[-1],
                          max_tokens=max_tokens, session=session, prefix_tokens=traffic.cached_prefix_tokens,
                          history=sizes[:-1])
