"""The replayed world: for every recorded request and every target of its alias, what that target would do if
the request were sent to it, fixed before any candidate policy runs (common random numbers: every candidate
faces exactly the same providers, so their differences are the policies', not the dice's).

Per (request, target), in order of preference:
- the recorded attempt, when the request really went there and its outcome was seen: its first token, its
  complete answer, its failure, replayed as they happened;
- the recorded attempt cut before its first token (a loser, a timeout): its true time to first token is drawn
  from the target's Kaplan-Meier curve *given that it was still waiting when cut* (`conditional_quantile`);
- a target the request never reached: a failure when it fell in one of the target's outage windows, else a
  background failure with the target's error rate, else a first token drawn from the target's curve.

The rest of an answer after its first token takes `gap_s` per output token (the target's median), unless the
recorded attempt showed its complete answer.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import FailureKind, classify_status
from gateway.tuning.model import TargetModel, is_latency_failure, status_of
from gateway.tuning.records import RecordedAttempt, RecordedRequest


@dataclass(frozen=True, slots=True)
class Draw:
    """What one target does with one request, in seconds after the attempt starts."""

    ttft_s: float | None  # None: it fails before its first token, at `fail_s`
    done_s: float  # the complete answer (ttft + generation)
    fail_s: float = 0.0
    failure: FailureKind = FailureKind.FAULT
    error_type: str = ""
    midstream: bool = False  # fails right after its first token

    @property
    def fails_early(self) -> bool:
        return self.ttft_s is None


@dataclass(frozen=True, slots=True)
class WorldRequest:
    at_s: float
    stream: bool
    input_tokens: int  # billed for an answer the provider reported
    input_estimate: int  # billed for an attempt cut before the provider reported usage
    output_tokens: int
    draws: tuple[Draw, ...]  # by target, in route order
    segment: int = 0  # replayed with its own, fresh policy state (one gateway lifetime)


def build_world(requests: Sequence[RecordedRequest], targets: Sequence[TargetModel], seed: int, *,
                join: bool = False) -> list[WorldRequest]:
    """The world of `requests` against `targets`. Each file of the recording is a segment replayed with fresh
    policy state, as it was recorded (the load test starts a gateway per policy); `join` makes it one."""
    rng = random.Random(f"tune-world-{seed}")
    ratio = _estimate_ratio(requests)
    default_output = _default_output(targets)
    world: list[WorldRequest] = []
    for r in requests:
        recorded = {a.target: a for a in r.attempts if a.sent}
        output = r.output_tokens or default_output
        # Two draws per target, always, so a change for one target leaves every other draw unchanged.
        draws = tuple(_draw(r, t, recorded.get((t.provider, t.model)), output, rng.random(), rng.random())
                      for t in targets)
        input_tokens = r.input_tokens or 1
        world.append(WorldRequest(r.at_s, r.stream, input_tokens, _input_estimate(r, input_tokens, ratio), output,
                                  draws, 0 if join else r.segment))
    return world


def _draw(r: RecordedRequest, t: TargetModel, a: RecordedAttempt | None, output: int, u: float, v: float) -> Draw:
    generation = t.gap_s * max(0, output - 1)
    if a is not None:
        if a.ttft_s is not None:
            complete = a.outcome == "won" and a.error_type is None
            # An error after the first token (failed, or a committed winner whose stream broke): mid-stream.
            return Draw(a.ttft_s, a.duration_s if complete else a.ttft_s + generation,
                        midstream=a.error_type is not None)
        if a.outcome == "failed" and not is_latency_failure(a):
            status = status_of(a)
            return Draw(None, 0.0, fail_s=a.duration_s, failure=classify_status(status),
                        error_type=a.error_type or f"http_{status}")
        if t.ttft is not None and (a.outcome == "cancelled" or is_latency_failure(a)):
            ttft = t.ttft.conditional_quantile(a.duration_s, u)
            return Draw(ttft, ttft + generation)
    outage = t.in_outage(r.at_s)
    if outage is not None or t.ttft is None or u < t.error_rate:
        status = outage.status if outage is not None else t.error_status
        return Draw(None, 0.0, fail_s=t.failure_s, failure=classify_status(status), error_type=f"http_{status}")
    # u >= error_rate here: rescale it to [0, 1) so the first-token draw stays uniform.
    ttft = t.ttft.quantile((u - t.error_rate) / (1.0 - t.error_rate))
    return Draw(ttft, ttft + generation, midstream=v < t.midstream_rate)


def _estimate_ratio(requests: Sequence[RecordedRequest]) -> float:
    """The gateway's estimate of a prompt (request bytes / 4) against the provider's count, typically a little
    above 1 (JSON around the text): what an attempt cut before the provider reported usage is billed."""
    ratios = []
    for r in requests:
        reported = r.input_tokens
        cut = [a.input_tokens for a in r.attempts if a.outcome == "cancelled" and a.ttft_s is None and a.input_tokens]
        if reported and cut:
            ratios.append(cut[0] / reported)
    return statistics.median(ratios) if ratios else 1.0


def _input_estimate(r: RecordedRequest, input_tokens: int, ratio: float) -> int:
    cut = [a.input_tokens for a in r.attempts if a.outcome == "cancelled" and a.ttft_s is None and a.input_tokens]
    return cut[0] if cut else max(1, math.floor(input_tokens * ratio))


def _default_output(targets: Sequence[TargetModel]) -> int:
    lengths = [n for t in targets for n in t.output_tokens]
    return int(statistics.median(lengths)) if lengths else 1
