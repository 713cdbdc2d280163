"""Recorded traffic: the gateway's request spans with their attempt spans, as plain frozen records.

One request span (`chat {alias}`, kind SERVER) and its attempt spans (children, one per attempt, skipped ones
included) make one `RecordedRequest`. Several files are taken as recordings made one after another: their
timelines are joined end to end (the time between two files is not traffic), so arrival times run from 0 over
the whole recording. Requests that never reached a provider (rejected at the door, cache hits) are counted but
not kept: there is nothing of the providers in them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.telemetry import names as n
from gateway.tuning.spans import Span, SpanFile, read_span_files


@dataclass(frozen=True, slots=True)
class RecordedAttempt:
    provider: str
    model: str
    kind: str  # the provider's wire format (gen_ai.provider.name)
    index: int  # position in the route's targets (skipped targets take an index too)
    launch: str  # primary | hedge | fallback
    outcome: str  # won | cancelled | failed | skipped
    start_s: float  # after the request's start
    duration_s: float
    ttft_s: float | None  # attempt start to its first content token
    input_tokens: int | None
    output_tokens: int | None
    usage_estimated: bool
    error_type: str | None
    status: int | None  # the upstream HTTP status, when the span carries one
    cost_usd: float

    @property
    def target(self) -> tuple[str, str]:
        return self.provider, self.model

    @property
    def sent(self) -> bool:
        return self.outcome != "skipped"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    alias: str
    at_s: float  # arrival, seconds on the joined timeline
    wall_ns: int  # the request span's recorded start (Unix ns)
    door: str
    stream: bool
    status: int
    latency_s: float | None
    ttft_s: float | None
    hedged: bool
    cost_usd: float
    attempts: tuple[RecordedAttempt, ...]  # by index
    segment: int = 0  # the file it was read from: one gateway lifetime, in the recordings the load test makes

    @property
    def winner(self) -> RecordedAttempt | None:
        return next((a for a in self.attempts if a.outcome == "won"), None)

    @property
    def input_tokens(self) -> int | None:
        """The prompt's size: the winner's billed input when the provider reported it, else the largest count."""
        winner = self.winner
        if winner is not None and winner.input_tokens and not winner.usage_estimated:
            return winner.input_tokens
        counts = [a.input_tokens for a in self.attempts if a.input_tokens]
        return max(counts) if counts else None

    @property
    def output_tokens(self) -> int | None:
        winner = self.winner
        return winner.output_tokens if winner is not None else None


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    requests: int
    first_ns: int | None
    last_ns: int | None
    bad_lines: int
    span_s: float  # this file's share of the joined timeline


@dataclass(slots=True)
class Recording:
    files: list[FileInfo] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    without_attempts: int = 0  # request spans that reached no provider

    @property
    def span_s(self) -> float:
        return sum(f.span_s for f in self.files)

    def aliases(self) -> list[tuple[str, int]]:
        """Aliases by number of requests, most first."""
        return Counter(r.alias for r in self.requests).most_common()

    def for_alias(self, alias: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.alias == alias]


def load_recording(paths: Iterable[str | Path]) -> Recording:
    return build_recording(read_span_files(paths))


def build_recording(files: Sequence[SpanFile]) -> Recording:
    recording = Recording()
    offset = 0.0
    for segment, f in enumerate(files):
        requests, skipped = _requests_of(f.spans)
        recording.without_attempts += skipped
        starts = [r.wall_ns for r in requests]
        first, last = (min(starts), max(starts)) if starts else (None, None)
        span_s = _file_span_s(starts)
        recording.files.append(FileInfo(str(f.path), len(requests), first, last, f.bad_lines, span_s))
        for r in requests:
            at = offset + (r.wall_ns - (first or 0)) / 1e9
            recording.requests.append(_with_time(r, at, segment))
        offset += span_s
    recording.requests.sort(key=lambda r: r.at_s)
    return recording


def _file_span_s(starts: Sequence[int]) -> float:
    """First to last arrival, plus one mean gap between arrivals: n arrivals cover n gaps of traffic."""
    if len(starts) < 2:
        return 1.0 if starts else 0.0
    width = (max(starts) - min(starts)) / 1e9
    return width + width / (len(starts) - 1)


def _with_time(r: RecordedRequest, at_s: float, segment: int) -> RecordedRequest:
    return dataclasses.replace(r, at_s=at_s, segment=segment)


def _requests_of(spans: Sequence[Span]) -> tuple[list[RecordedRequest], int]:
    children: dict[tuple[Any, Any], list[Span]] = defaultdict(list)
    parents: list[Span] = []
    for span in spans:
        attrs = span["attributes"]
        if n.ATTEMPT_INDEX in attrs:
            children[(span.get("trace_id"), span.get("parent_id"))].append(span)
        elif n.DOOR in attrs and attrs.get(n.OPERATION, n.CHAT) == n.CHAT:
            parents.append(span)
    out: list[RecordedRequest] = []
    without = 0
    for span in parents:
        start = span.get("start_ns")
        if not isinstance(start, int):
            continue
        attempts = sorted((a for a in (_attempt(c, start) for c in children.get(
            (span.get("trace_id"), span.get("span_id")), [])) if a is not None), key=lambda a: a.index)
        if not any(a.sent for a in attempts):
            without += 1
            continue
        out.append(_request(span, start, tuple(attempts)))
    return out, without


def _request(span: Span, start: int, attempts: tuple[RecordedAttempt, ...]) -> RecordedRequest:
    a = span["attributes"]
    latency = _number(a.get(n.LATENCY_MS))
    ttft = _number(a.get(n.TTFT_MS))
    return RecordedRequest(
        alias=str(a.get(n.REQUEST_MODEL, "?")), at_s=0.0, wall_ns=start, door=str(a.get(n.DOOR, "openai")),
        stream=a.get(n.STREAM) is True, status=int(_number(a.get(n.HTTP_STATUS)) or 200),
        latency_s=None if latency is None else latency / 1000, ttft_s=None if ttft is None else ttft / 1000,
        hedged=a.get(n.HEDGED) is True, cost_usd=_number(a.get(n.COST_USD)) or 0.0, attempts=attempts)


def _attempt(span: Span, request_start: int) -> RecordedAttempt | None:
    a = span["attributes"]
    start, end = span.get("start_ns"), span.get("end_ns")
    index = a.get(n.ATTEMPT_INDEX)
    if not isinstance(start, int) or not isinstance(end, int) or not isinstance(index, int):
        return None
    status = a.get(n.HTTP_STATUS)
    return RecordedAttempt(
        provider=str(a.get(n.PROVIDER, "?")), model=str(a.get(n.REQUEST_MODEL, "?")),
        kind=str(a.get(n.PROVIDER_NAME, "openai")), index=index, launch=str(a.get(n.ATTEMPT_LAUNCH, "primary")),
        outcome=str(a.get(n.ATTEMPT_OUTCOME, "failed")), start_s=max(0.0, (start - request_start) / 1e9),
        duration_s=max(0.0, (end - start) / 1e9), ttft_s=_number(a.get(n.TIME_TO_FIRST_CHUNK)),
        input_tokens=_whole(a.get(n.INPUT_TOKENS)), output_tokens=_whole(a.get(n.OUTPUT_TOKENS)),
        usage_estimated=a.get(n.USAGE_ESTIMATED) is True,
        error_type=str(a[n.ERROR_TYPE]) if a.get(n.ERROR_TYPE) is not None else None,
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        cost_usd=_number(a.get(n.COST_USD)) or 0.0)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
