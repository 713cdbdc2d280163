"""Synthetic gateway traces with known distributions: what the fit must recover, censoring included.

A simplified race, decided at the first token: the primary goes at once; if it fails before its first token the
secondary goes at that moment (a fallback); otherwise, if the primary's first token has not come by `delay_s`,
the secondary goes then (a hedge). The first first-token wins; the loser is cancelled at that moment, so its
span says only "no first token within this long": a censored sample. Spans are written exactly as the gateway's
JSON-lines file has them (names from `gateway.telemetry.names`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.config.model import Price
from gateway.telemetry import names as n

Dist = Callable[[random.Random], float]
START_NS = 1_800_000_000 * 10**9


@dataclass(frozen=True)
class Target:
    provider: str
    model: str
    kind: str
    ttft: Dist  # seconds
    price: Price
    error_rate: float = 0.0
    outage: tuple[float, float] | None = None  # every attempt in this window fails at once (503)


@dataclass(frozen=True)
class Traffic:
    n: int
    rate: float | Callable[[float], float] = 20.0  # arrivals per second, or a function of time
    stream_share: float = 0.6
    anthropic_share: float = 0.25
    prompt: Callable[[random.Random], int] = lambda rng: rng.randint(100, 500)
    output: Callable[[random.Random], int] = lambda rng: rng.randint(10, 40)
    gap_s: float = 0.005
    delay_s: float = 0.2
    hedge_share: float = 1.0  # chance a request slower than the delay gets its hedge (a budget's stand-in)


def _attempt(target: Target, index: int, launch: str, outcome: str, start_s: float, duration_s: float,
             ttft_s: float | None, prompt: int, output: int, error: str | None) -> dict[str, Any]:
    billed_out = output if outcome == "won" else 0
    cost = 0.0 if error else target.price.cost_usd(prompt, billed_out)
    attrs: dict[str, Any] = {n.OPERATION: "chat", n.PROVIDER_NAME: target.kind, n.PROVIDER: target.provider,
                             n.REQUEST_MODEL: target.model, n.ATTEMPT_INDEX: index, n.ATTEMPT_LAUNCH: launch,
                             n.BREAKER_STATE: "closed", n.ATTEMPT_OUTCOME: outcome, n.COST_USD: cost,
                             n.INPUT_TOKENS: prompt, n.OUTPUT_TOKENS: billed_out,
                             n.USAGE_ESTIMATED: outcome != "won"}
    if ttft_s is not None:
        attrs[n.TIME_TO_FIRST_CHUNK] = ttft_s
    if error:
        attrs[n.ERROR_TYPE] = error
    return {"start": start_s, "end": start_s + duration_s, "attributes": attrs}


def race(at_s: float, primary: Target, secondary: Target, traffic: Traffic, rng: random.Random,
         stream: bool) -> tuple[list[dict[str, Any]], float | None]:
    """The attempts of one request (times relative to it) and its TTFT (None if everything failed)."""
    prompt, output = traffic.prompt(rng), traffic.output(rng)
    p_fails = rng.random() < primary.error_rate or (primary.outage is not None
                                                   and primary.outage[0] <= at_s < primary.outage[1])
    p_ttft, s_ttft = primary.ttft(rng), secondary.ttft(rng)
    generation = traffic.gap_s * (output - 1)
    if p_fails:
        fail_at = 0.002
        return [_attempt(primary, 0, "primary", "failed", 0.0, fail_at, None, prompt, output, "http_503"),
                _attempt(secondary, 1, "fallback", "won", fail_at, s_ttft + generation, s_ttft, prompt, output,
                         None)], fail_at + s_ttft
    if p_ttft <= traffic.delay_s or rng.random() >= traffic.hedge_share:
        return [_attempt(primary, 0, "primary", "won", 0.0, p_ttft + generation, p_ttft, prompt, output, None)], p_ttft
    hedge_at = traffic.delay_s
    if p_ttft <= hedge_at + s_ttft:  # the primary still wins; the hedge is cut at that moment
        return [_attempt(primary, 0, "primary", "won", 0.0, p_ttft + generation, p_ttft, prompt, output, None),
                _attempt(secondary, 1, "hedge", "cancelled", hedge_at, p_ttft - hedge_at, None, prompt, output,
                         None)], p_ttft
    win = hedge_at + s_ttft
    return [_attempt(primary, 0, "primary", "cancelled", 0.0, win, None, prompt, output, None),
            _attempt(secondary, 1, "hedge", "won", hedge_at, s_ttft + generation, s_ttft, prompt, output, None)], win


def spans(primary: Target, secondary: Target, traffic: Traffic, seed: int = 1, alias: str = "chat"
          ) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    t = 0.0
    for i in range(traffic.n):
        rate = traffic.rate(t) if callable(traffic.rate) else traffic.rate
        t += rng.expovariate(rate)
        stream = rng.random() < traffic.stream_share
        door = "anthropic" if rng.random() < traffic.anthropic_share else "openai"
        attempts, ttft = race(t, primary, secondary, traffic, rng, stream)
        trace_id, parent = f"{i + 1:032x}", f"{i + 1:016x}"
        begin = START_NS + int(t * 1e9)
        end = max(a["end"] for a in attempts)
        for j, a in enumerate(attempts):
            out.append({"name": f"chat {a['attributes'][n.REQUEST_MODEL]}", "trace_id": trace_id,
                        "span_id": f"{i + 1:08x}{j + 1:08x}", "parent_id": parent, "kind": "CLIENT",
                        "start_ns": begin + int(a["start"] * 1e9), "end_ns": begin + int(a["end"] * 1e9),
                        "status": "ERROR" if n.ERROR_TYPE in a["attributes"] else "UNSET",
                        "attributes": a["attributes"], "service_name": "llm-gateway"})
        winner = next(a for a in attempts if a["attributes"][n.ATTEMPT_OUTCOME] == "won")
        request_attrs: dict[str, Any] = {
            n.OPERATION: "chat", n.REQUEST_MODEL: alias, n.DOOR: door, n.STREAM: stream,
            n.ATTEMPTS: len(attempts), n.HEDGED: any(a["attributes"][n.ATTEMPT_LAUNCH] == "hedge" for a in attempts),
            n.HEDGES_SKIPPED: 0, n.COST_USD: sum(a["attributes"][n.COST_USD] for a in attempts),
            n.WASTED_COST_USD: 0.0, n.HTTP_STATUS: 200, n.LATENCY_MS: end * 1000,
            n.WINNER: winner["attributes"][n.PROVIDER]}
        if ttft is not None:
            request_attrs[n.TTFT_MS] = ttft * 1000
        out.append({"name": f"chat {alias}", "trace_id": trace_id, "span_id": parent, "parent_id": None,
                    "kind": "SERVER", "start_ns": begin, "end_ns": begin + int(end * 1e9), "status": "UNSET",
                    "attributes": request_attrs, "service_name": "llm-gateway"})
    return out


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in items))
    return path


def to_otlp(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The same spans as one OTLP/JSON export (ints as strings, attributes as typed key/value lists)."""
    def value(v: object) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        if isinstance(v, list | tuple):
            return {"arrayValue": {"values": [value(x) for x in v]}}
        return {"stringValue": str(v)}

    kinds = {"SERVER": 2, "CLIENT": 3}
    otlp_spans = [{"traceId": s["trace_id"], "spanId": s["span_id"], "parentSpanId": s["parent_id"] or "",
                   "name": s["name"], "kind": kinds[s["kind"]], "startTimeUnixNano": str(s["start_ns"]),
                   "endTimeUnixNano": str(s["end_ns"]), "status": {"code": 2 if s["status"] == "ERROR" else 0},
                   "attributes": [{"key": k, "value": value(v)} for k, v in s["attributes"].items()]}
                  for s in items]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
                                                            "value": {"stringValue": "llm-gateway"}}]},
                               "scopeSpans": [{"scope": {"name": "gateway"}, "spans": otlp_spans}]}]}
