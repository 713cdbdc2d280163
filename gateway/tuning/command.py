"""`gateway tune TRACES.jsonl ...`: per alias, candidate hedge policies replayed over the recorded traffic, the
frontier of TTFT p99 (and p99.9) against extra cost, and the `hedge:` block a stated goal recommends."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.config.model import ModelRoute
from gateway.policies.breaker import BreakerOptions
from gateway.tuning.model import TargetModel, fit_targets
from gateway.tuning.records import Recording, load_recording
from gateway.tuning.simulate import SimTarget
from gateway.tuning.tune import Candidate, Figures, default_blocks, evaluate, frontier, parse_candidates, recommend
from gateway.tuning.world import build_world

DEFAULT_TIMEOUT_S = 60.0  # the gateway's defaults, when no config says otherwise
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


def percent(text: str) -> float:
    """`10%` or `10` -> 10.0."""
    match = _PERCENT.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 10%, got {text!r}")
    return float(match.group(1))


def duration_ms(text: str) -> float:
    """`1.5s`, `1500ms` or `1500` (ms) -> 1500.0."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration such as 1.5s or 800ms, got {text!r}")
    value = float(match.group(1))
    return value * 1000 if match.group(2) == "s" else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", help="span files (JSON lines, or OTLP JSON); several are replayed one "
                                                  "after another")
    parser.add_argument("--alias", action="append", help="only this alias (repeatable; default: every alias)")
    parser.add_argument("--config", help="the gateway config the traces came from: route order, prices, provider "
                                         "timeouts and breakers (default: read from the traces, gateway defaults)")
    parser.add_argument("--candidates", help="YAML of candidate policies: {name: {hedge: ...}} or a load-test "
                                             "scenario's `policies:` (default: a built-in grid)")
    goal = parser.add_mutually_exclusive_group()
    goal.add_argument("--max-extra-cost", type=percent, metavar="PCT",
                      help="goal: the lowest TTFT p99 within this extra cost (default 10%%)")
    goal.add_argument("--target-ttft-p99", type=duration_ms, metavar="DURATION",
                      help="goal: the cheapest candidate with TTFT p99 at or below this (e.g. 1.5s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the imputed draws (default 1)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="replays of the recording with fresh imputed draws, pooled (default 1)")
    parser.add_argument("--join", action="store_true",
                        help="replay all files as one gateway's lifetime (default: each file starts with fresh "
                             "budgets, latency windows and breakers, as a restarted gateway does)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout  # read at call time: tests and callers may replace it
    try:
        recording = load_recording(args.traces)
        config = load_config(args.config) if args.config else None
        candidates_file = _read_candidates(args.candidates) if args.candidates else None
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    aliases = [a for a, _ in recording.aliases() if not args.alias or a in args.alias]
    if not aliases:
        print("no recorded requests" + (f" for alias {', '.join(args.alias)}" if args.alias else ""),
              file=sys.stderr)
        return 1
    print(_header(recording), file=out)
    report: dict[str, Any] = {"traces": [f.path for f in recording.files], "aliases": {}}
    for alias in aliases:
        try:
            report["aliases"][alias] = tune_alias(recording, alias, config, candidates_file, args, out)
        except ConfigError as exc:
            print(f"candidate error: {exc}", file=sys.stderr)
            return 2
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


def _read_candidates(path: str) -> Mapping[str, object]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    policies = data.get("policies", data) if isinstance(data, Mapping) else None
    if not isinstance(policies, Mapping) or not policies:
        raise ConfigError("", f"{path}: expected a mapping of candidate names to hedge policies")
    return policies


def _header(recording: Recording) -> str:
    return (f"Replaying {len(recording.requests)} recorded requests ({recording.span_s:.1f} s of traffic, "
            f"{len(recording.files)} file(s)).")


def tune_alias(recording: Recording, alias: str, config: GatewayConfig | None,
               candidates_file: Mapping[str, object] | None, args: argparse.Namespace, out: TextIO) -> dict[str, Any]:
    requests = recording.for_alias(alias)
    models = fit_targets(requests)
    route = config.models.get(alias) if config is not None else None
    targets = sim_targets(models, config, route)
    deadline = (config.deadline_s(route) if config is not None and route is not None
                else targets[0].timeout_s)
    candidates = parse_candidates(candidates_file if candidates_file is not None else default_blocks(), alias)
    worlds = [build_world(requests, models, args.seed + i, join=args.join) for i in range(max(1, args.repeats))]
    results = evaluate(candidates, targets, worlds, deadline)
    goal = (f"TTFT p99 <= {args.target_ttft_p99:g} ms" if args.target_ttft_p99 is not None
            else f"extra cost <= {args.max_extra_cost if args.max_extra_cost is not None else 10:g}%")
    pick = recommend(results, max_extra_cost_pct=args.max_extra_cost, target_p99_ms=args.target_ttft_p99)
    print(render(alias, models, results, candidates, pick, goal), file=out)
    return {"targets": [_describe_target(m) for m in models], "candidates": [f.as_dict() for f in results],
            "frontier": [f.name for f in frontier(results)], "goal": goal,
            "recommended": None if pick is None else pick.name}


def sim_targets(models: Sequence[TargetModel], config: GatewayConfig | None,
                route: ModelRoute | None) -> list[SimTarget]:
    """The race's targets: the config's route order and prices when given, else the traces' order and fitted
    prices; provider timeouts and breakers from the config, else the gateway's defaults."""
    by_key = {(m.provider, m.model): m for m in models}
    ordered = ([by_key[(t.provider, t.model)] for t in route.targets if (t.provider, t.model) in by_key]
               if route is not None else list(models))
    prices = {(t.provider, t.model): t.price for t in route.targets} if route is not None else {}
    out = []
    for m in ordered or models:
        provider = config.providers.get(m.provider) if config is not None else None
        out.append(SimTarget(m.provider, m.model, prices.get((m.provider, m.model), m.price),
                             provider.timeout_s if provider is not None else DEFAULT_TIMEOUT_S, m.gap_s,
                             provider.breaker if provider is not None else BreakerOptions()))
    return out


def _describe_target(m: TargetModel) -> dict[str, Any]:
    ttft = m.ttft
    return {"target": m.name, "attempts": m.attempts, "error_rate": round(m.error_rate, 5),
            "ttft_observed": ttft.observed if ttft else 0, "ttft_censored": ttft.censored if ttft else 0,
            "ttft_p50_ms": round(1000 * ttft.quantile(0.5), 1) if ttft else None,
            "ttft_p99_ms": round(1000 * ttft.quantile(0.99), 1) if ttft else None,
            "outages": [[w.start_s, w.end_s] for w in m.outages]}


def render(alias: str, models: Sequence[TargetModel], results: Sequence[Figures], candidates: Sequence[Candidate],
           pick: Figures | None, goal: str) -> str:
    on_frontier = {f.name for f in frontier(results)}
    lines = ["", f"## {alias}: {results[0].requests if results else 0} replayed requests", ""]
    for m in models:
        t = m.ttft
        lines.append(f"  target {m.name}: {m.attempts} attempts, TTFT "
                     + (f"p50 {1000 * t.quantile(0.5):.0f} ms, p99 {1000 * t.quantile(0.99):.0f} ms from "
                        f"{t.observed} observed + {t.censored} censored" if t else "never observed")
                     + f", errors {100 * m.error_rate:.2f}%" + (f", {len(m.outages)} outage(s)" if m.outages else ""))
    kind = "TTFT" if results and results[0].ttft_ms.get("count") else "latency"
    lines += ["", f"| candidate | {kind} p50 | {kind} p99 | {kind} p99.9 | extra cost % | extra upstream % | "
                  "hedged % | errors | frontier |", "|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for f in sorted(results, key=lambda f: (f.extra_cost_pct or 0.0, f.key_ms())):
        values = f.ttft_ms if kind == "TTFT" else f.latency_ms
        lines.append(f"| {f.name} | {_ms(values['p50'])} | {_ms(values['p99'])} | {_ms(values['p99.9'])} | "
                     f"{_num(f.extra_cost_pct)} | {f.extra_upstream_pct:.1f} | {f.hedged_pct:.1f} | {f.errors} | "
                     f"{'*' if f.name in on_frontier else ''} |")
    lines += ["", f"Goal: {goal}."]
    if pick is None:
        lines.append("No candidate meets the goal; the frontier (*) shows what each extra cost buys.")
        return "\n".join(lines)
    block = next(c.block for c in candidates if c.name == pick.name)
    lines += [f"Recommended: {pick.name} ({kind} p99 {_ms(pick.key_ms())} ms, "
              f"extra cost {_num(pick.extra_cost_pct)}%):",
              "", yaml.safe_dump({"models": {alias: {"hedge": block}}}, sort_keys=False).rstrip()]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway tune", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
