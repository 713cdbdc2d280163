"""Command line: `python -m loadtest SCENARIO.yaml ...`, `python -m loadtest fit TRACES ... -o SCENARIO.yaml`,
`python -m loadtest overhead ...`, `... perf ...`, `... soak ...`, `... shared-sketch ...`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtest.scenario import ScenarioError, load_scenario
from loadtest.spec import Door, Scenario

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
RESULTS_DIR = Path("loadtest-results")


def resolve_scenario_path(text: str) -> Path:
    """A path, or the name of a reference scenario: `heavy-tail` means loadtest/scenarios/heavy-tail.yaml."""
    path = Path(text)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    return SCENARIOS_DIR / f"{text}.yaml"


def apply_overrides(scenario: Scenario, *, duration_s: float | None, rate: float | None,
                    policies: Sequence[str] | None, door: Door | None = None) -> Scenario:
    traffic = scenario.traffic
    if door is not None:
        traffic = dataclasses.replace(traffic, door=door)
    if duration_s is not None:
        traffic = dataclasses.replace(traffic, duration_s=duration_s)
    if rate is not None:  # a constant rate: it replaces a fitted rate profile too
        traffic = dataclasses.replace(traffic, rate=rate, rates=())
    chosen = scenario.policies
    if policies:
        known = {p.name for p in scenario.policies}
        unknown = [name for name in policies if name not in known]
        if unknown:
            raise ScenarioError("--policy", f"unknown policy {unknown[0]!r} (known: {', '.join(sorted(known))})")
        chosen = tuple(p for p in scenario.policies if p.name in policies)
    baseline = scenario.baseline if scenario.baseline in {p.name for p in chosen} else None
    return dataclasses.replace(scenario, traffic=traffic, policies=chosen, baseline=baseline)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def scenario_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest",
                                     description="Compare hedging policies on simulated providers "
                                                 "(or: python -m loadtest overhead --help).")
    parser.add_argument("scenario", help="scenario YAML file, or a reference scenario name (heavy-tail, outage, ...)")
    parser.add_argument("--out", type=Path, help="output folder (default: loadtest-results/<scenario>/)")
    parser.add_argument("--duration", type=_positive, help="override traffic.duration_s (seconds per policy)")
    parser.add_argument("--rate", type=_positive, help="override traffic.rate (requests per second)")
    parser.add_argument("--policy", action="append", help="run only this policy (repeatable)")
    parser.add_argument("--door", choices=("openai", "anthropic", "responses"),
                        help="send every request through this door (override traffic.door)")
    parser.add_argument("--no-plot", action="store_true", help="skip plot.png (and the matplotlib import)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    target = parser.add_argument_group("driving a running deployment (no simulators, no gateway started)")
    target.add_argument("--target-url", help="the deployment's root URL, e.g. http://127.0.0.1:8080")
    target.add_argument("--allow-remote", action="store_true", help="allow a --target-url that is not loopback")
    target.add_argument("--max-requests", type=int, default=1000, help="hard cap on requests sent (1000)")
    target.add_argument("--max-spend", type=_positive, default=1.0, metavar="USD",
                        help="hard cap on the worst-case spend, at the scenario's prices (1.0)")
    target.add_argument("--api-key", help="gateway key to send (default: none)")
    target.add_argument("--metrics-key", help="bearer key for the deployment's /metrics (telemetry.metrics_key)")
    args = parser.parse_args(argv)
    try:
        scenario = apply_overrides(load_scenario(resolve_scenario_path(args.scenario)), duration_s=args.duration,
                                   rate=args.rate, policies=args.policy, door=args.door)
    except ScenarioError as exc:
        print(f"scenario error: {exc}", file=sys.stderr)
        return 2
    if args.target_url:
        return _target_main(scenario, args)
    from loadtest.runner import run_scenario

    out = args.out if args.out is not None else RESULTS_DIR / scenario.name
    try:
        run_scenario(scenario, out, plot=not args.no_plot, pin=not args.no_pin)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: children already stopped
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"results in {out}/ (report.md, report.json{'' if args.no_plot else ', plot.png'})", file=sys.stderr)
    return 0


def _target_main(scenario: Scenario, args: argparse.Namespace) -> int:
    from loadtest.target import Caps, TargetError, check_target_url, run_target

    try:
        check_target_url(args.target_url, allow_remote=args.allow_remote)  # refused before anything else happens
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.max_requests < 1:
        print("error: --max-requests must be >= 1", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else RESULTS_DIR / f"{scenario.name}-target"
    try:
        run_target(scenario, args.target_url, out, caps=Caps(args.max_requests, args.max_spend),
                   allow_remote=args.allow_remote, api_key=args.api_key, metrics_key=args.metrics_key)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"results in {out}/ (report.md, report.json)", file=sys.stderr)
    return 0


def overhead_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest overhead",
                                     description="Gateway overhead against direct calls and a bare aiohttp proxy.")
    parser.add_argument("--rate", type=_positive, default=100.0,
                        help="open-loop requests per second (100: well below the gateway's single-core ceiling)")
    parser.add_argument("--duration", type=_positive, default=10.0, help="open-loop seconds per target (10)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop connections (32)")
    parser.add_argument("--throughput-duration", type=_positive, default=5.0, help="closed-loop seconds (5)")
    parser.add_argument("--stream-share", type=float, default=0.5, help="share of streamed requests (0.5)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "overhead", help="output folder")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    args = parser.parse_args(argv)
    from loadtest.overhead import run_overhead

    try:
        run_overhead(args.out, rate=args.rate, duration_s=args.duration, concurrency=args.concurrency,
                     throughput_s=args.throughput_duration, stream_share=args.stream_share, pin=not args.no_pin)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


def perf_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest perf",
                                     description="Gateway CPU per request, throughput, latency and memory against "
                                                 "a bare aiohttp pass-through, in one run.")
    parser.add_argument("--seconds", type=_positive, default=5.0, help="wrk seconds per measurement (5)")
    parser.add_argument("--rate", type=_positive, default=500.0, help="open-loop rate for latency (500)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "perf", help="output folder")
    parser.add_argument("--workers", type=int, default=1,
                        help="also measure N gateway workers against N pass-through processes, every core (1: no)")
    parser.add_argument("--guard", action="store_true", help="short CPU comparison only; exit 1 past the bound")
    parser.add_argument("--max-cpu-ratio", type=_positive, default=4.0,
                        help="--guard bound on gateway/pass-through CPU per request (4.0)")
    parser.add_argument("--guard-rounds", type=int, default=2,
                        help="--guard: measurement rounds, the best one kept (2)")
    args = parser.parse_args(argv)
    from loadtest.perf import render, run_perf
    from loadtest.perf_guard import render_rounds, run_guard

    try:
        if args.guard:
            report = asyncio.run(run_guard(args.out, seconds=args.seconds, rounds=max(1, args.guard_rounds)))
        else:
            report = asyncio.run(run_perf(args.out, seconds=args.seconds, rate=args.rate, workers=args.workers))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(report) + (render_rounds(report) if args.guard else ""))
    if args.guard:
        ratio = report["ratios"]["gateway_traced.json"]["cpu_ratio"]
        if ratio > args.max_cpu_ratio:
            print(f"REGRESSION: gateway CPU per request is {ratio}x the pass-through's (bound {args.max_cpu_ratio}x)",
                  file=sys.stderr)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "overhead":
        return overhead_main(args[1:])
    if args and args[0] == "perf":
        return perf_main(args[1:])
    if args and args[0] == "fit":
        from loadtest.fit import fit_main

        return fit_main(args[1:])
    if args and args[0] == "shared-sketch":
        from loadtest.shared_sketch import main as shared_sketch_main

        return shared_sketch_main(args[1:])
    if args and args[0] == "soak":
        from loadtest.soak import main as soak_main

        return soak_main(args[1:])
    return scenario_main(args)


if __name__ == "__main__":
    sys.exit(main())
