"""What the recorded traffic says about each target (provider, model) of an alias: latency distributions with the
cut losers as censored samples, output length, errors by type and their bursts, prices. Shared by
`python -m loadtest fit` (which turns it into simulator profiles) and `gateway tune` (which replays it).

Which attempt says what:

| attempt | time to first token | duration (to the end of the answer) |
|---|---|---|
| first token seen (won, cut after it, failed mid-stream) | observed | observed if it won complete, else censored |
| cancelled before its first token (a loser; cut by the deadline or the client) | censored at its duration | censored |
| failed with `timeout` before its first token | censored at its duration | - |
| failed otherwise before its first token (5xx, 429, connection) | - (an error, not a latency) | - |

Bursts: a run of `BURST_MIN` or more consecutive failures of one target is an outage window, from midway between
the last success before it and its first failure to midway between its last failure and the next success (with
a breaker open, the probes are what bound it). Failures outside windows make the background error rate.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.config.model import Price
from gateway.tuning.records import RecordedAttempt, RecordedRequest
from gateway.tuning.survival import Sample, SurvivalCurve

BURST_MIN = 3  # consecutive failures that make an outage: at a 1% background rate, 3 in a row is one in a million
_TYPE_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "rate_limit_exceeded": 429, "requests": 429,
                "local_overload": 503}
_HTTP_TYPE = re.compile(r"http_(\d{3})")


@dataclass(frozen=True, slots=True)
class OutageWindow:
    start_s: float  # on the recording's timeline
    end_s: float
    status: int
    failures: int


@dataclass(frozen=True, slots=True)
class TargetModel:
    provider: str
    model: str
    kind: str
    index: int  # position in the alias's targets (the most common attempt index of this target)
    price: Price
    attempts: int  # sent
    ttft: SurvivalCurve | None  # seconds; None without a single observed first token
    duration: SurvivalCurve | None  # seconds, start to the end of a complete answer
    gap_s: float  # median time between two output tokens of a complete answer
    output_tokens: tuple[int, ...]  # of the answers it won, sorted
    errors: dict[str, int]  # failed attempts by error type (timeouts included), bursts included
    error_rate: float  # failures before the first token, outside outage windows, per attempt sent outside them
    error_status: int  # the most common status of those failures (500 when none)
    midstream_rate: float  # errors after the first token (a broken winner too), per attempt that had one
    outages: tuple[OutageWindow, ...]
    failure_s: float  # median time a failure took

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"

    def in_outage(self, at_s: float) -> OutageWindow | None:
        return next((w for w in self.outages if w.start_s <= at_s < w.end_s), None)


def status_of(attempt: RecordedAttempt) -> int:
    """The HTTP status a failure stands for: the span's own when present, else read from the error type."""
    if attempt.status is not None:
        return attempt.status
    error = attempt.error_type or ""
    match = _HTTP_TYPE.fullmatch(error)
    if match:
        return int(match.group(1))
    return _TYPE_STATUS.get(error, 500)  # server_error, api_error, connection_error...: a server fault


def is_latency_failure(attempt: RecordedAttempt) -> bool:
    """A failure that says how long the provider took (it timed out), not that it answered with an error."""
    return attempt.error_type == "timeout"


def fit_targets(requests: Sequence[RecordedRequest]) -> list[TargetModel]:
    """One model per target the requests tried, in route order."""
    by_target: dict[tuple[str, str], list[tuple[float, RecordedAttempt]]] = defaultdict(list)
    for r in requests:
        for a in r.attempts:
            by_target[a.target].append((r.at_s + a.start_s, a))
    models = [_fit_target(sorted(items, key=lambda item: item[0])) for items in by_target.values()]
    return sorted(models, key=lambda m: (m.index, m.provider, m.model))


def _fit_target(timeline: list[tuple[float, RecordedAttempt]]) -> TargetModel:
    attempts = [a for _, a in timeline]
    sent = [(t, a) for t, a in timeline if a.sent]
    first = attempts[0]
    ttft_samples, duration_samples = latency_samples(a for _, a in sent)
    outages = find_outages(sent)
    background = [(t, a) for t, a in sent if not any(w.start_s <= t < w.end_s for w in outages)]
    early = [a for _, a in background if _early_failure(a)]
    with_token = [a for _, a in sent if a.ttft_s is not None]
    failures = [a for _, a in sent if a.outcome == "failed"]
    won = [a for _, a in sent if a.outcome == "won" and a.error_type is None]
    return TargetModel(
        provider=first.provider, model=first.model, kind=Counter(a.kind for a in attempts).most_common(1)[0][0],
        index=Counter(a.index for a in attempts).most_common(1)[0][0],
        price=fit_price(a for _, a in sent if not _early_failure(a)),  # an HTTP error is not billed
        attempts=len(sent),
        ttft=SurvivalCurve(ttft_samples) if any(s.observed for s in ttft_samples) else None,
        duration=SurvivalCurve(duration_samples) if any(s.observed for s in duration_samples) else None,
        gap_s=_median_gap(won),
        output_tokens=tuple(sorted(a.output_tokens for a in won if a.output_tokens is not None)),
        errors=dict(Counter(a.error_type or "error" for a in failures).most_common()),
        error_rate=len(early) / len(background) if background else 0.0,
        error_status=Counter(status_of(a) for a in early).most_common(1)[0][0] if early else 500,
        midstream_rate=(sum(1 for a in with_token if a.error_type is not None) / len(with_token)
                        if with_token else 0.0),
        outages=tuple(outages),
        failure_s=statistics.median(a.duration_s for a in failures) if failures else 0.0)


def latency_samples(attempts: Iterable[RecordedAttempt]) -> tuple[list[Sample], list[Sample]]:
    """(TTFT samples, duration samples) of sent attempts, by the table of the module docstring."""
    ttft: list[Sample] = []
    duration: list[Sample] = []
    for a in attempts:
        if a.ttft_s is not None:
            ttft.append(Sample(a.ttft_s))
        elif a.outcome == "cancelled" or (a.outcome == "failed" and is_latency_failure(a)):
            ttft.append(Sample(a.duration_s, observed=False))
        elif a.outcome == "won":  # an empty answer: its end was its first (and only) event
            ttft.append(Sample(a.duration_s))
        if a.outcome == "won" and a.error_type is None:
            duration.append(Sample(a.duration_s))
        elif a.outcome == "cancelled":
            duration.append(Sample(a.duration_s, observed=False))
    return ttft, duration


def _early_failure(a: RecordedAttempt) -> bool:
    return a.outcome == "failed" and a.ttft_s is None and not is_latency_failure(a)


def find_outages(sent: Sequence[tuple[float, RecordedAttempt]]) -> list[OutageWindow]:
    """Runs of at least BURST_MIN consecutive early failures, as time windows (see the module docstring)."""
    windows: list[OutageWindow] = []
    run: list[tuple[float, RecordedAttempt]] = []
    last_ok: float | None = None
    for t, a in [*sent, (float("inf"), None)]:
        if a is not None and _early_failure(a):
            run.append((t, a))
            continue
        if a is not None and a.outcome == "cancelled" and a.ttft_s is None:
            continue  # says nothing either way: still waiting when it was cut
        if len(run) >= BURST_MIN:
            first, last = run[0][0], run[-1][0]
            start = first if last_ok is None else (last_ok + first) / 2
            end = last + 1e-3 if t == float("inf") else (last + t) / 2
            status = Counter(status_of(f) for _, f in run).most_common(1)[0][0]
            windows.append(OutageWindow(round(start, 3), round(end, 3), status, len(run)))
        run = []
        if a is not None:
            last_ok = t
    return windows


def _median_gap(won: Sequence[RecordedAttempt]) -> float:
    gaps = [(a.duration_s - a.ttft_s) / (a.output_tokens - 1) for a in won
            if a.ttft_s is not None and a.output_tokens is not None and a.output_tokens > 1
            and a.duration_s >= a.ttft_s]
    return statistics.median(gaps) if gaps else 0.0


def fit_price(attempts: Iterable[RecordedAttempt]) -> Price:
    """USD per million tokens, from the attempts' billed tokens and costs (least squares: the gateway priced each
    attempt as input * p_in + output * p_out, so with varied token counts this recovers the prices exactly)."""
    sxx = sxy = syy = sxc = syc = 0.0
    for a in attempts:
        x, y = float(a.input_tokens or 0), float(a.output_tokens or 0)
        sxx, sxy, syy = sxx + x * x, sxy + x * y, syy + y * y
        sxc, syc = sxc + x * a.cost_usd, syc + y * a.cost_usd
    det = sxx * syy - sxy * sxy
    if det > 1e-9 * max(1.0, sxx * syy):
        p_in, p_out = (sxc * syy - syc * sxy) / det, (syc * sxx - sxc * sxy) / det
    elif sxx > 0:  # token counts proportional to each other: put everything on input
        p_in, p_out = sxc / sxx, 0.0
    else:
        p_in = p_out = 0.0
    return Price(input_per_mtok=_round_price(p_in * 1e6), output_per_mtok=_round_price(p_out * 1e6))


def _round_price(value: float) -> float:
    return 0.0 if value <= 1e-9 else float(f"{value:.6g}")
