"""`python -m loadtest shared-sketch`: a replica started mid-run hedges at the delay the others learned.

On the stall scenario's providers (streams, TTFT lognormal median 400 ms, sigma 0.3, 3% stalls of +8 s) and its
adaptive p95 policy: replica A (Redis) takes the scenario's traffic for `--warmup` seconds and goes on; then
replica B (the same Redis: shared latency) and replica C (memory backend: a fresh window of its own) start
and each get their first `--requests` requests. From each gateway's trace file (`gateway.hedge_delay_ms` of
every request span): per replica the hedge delay of those requests (min, median, max; how many used the
fallback delay; the first request that did not), and A's delays over the same span of time, which B and C are
compared with. Needs `redis-server` on the PATH (Debian: `apt-get install redis-server`); all on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from loadtest.driver import client_session, drive_open_loop
from loadtest.gateway_config import gateway_config
from loadtest.procs import Child, cancel_on_sigterm, free_port, start_gateway, start_sim_host
from loadtest.progress import Progress
from loadtest.scenario import load_scenario
from loadtest.schedule import build_schedule
from loadtest.spec import Policy, Scenario

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "stall.yaml"
POLICY = "adaptive-p95"
REPLICAS = (("A", "redis", "warmed up first, then on"), ("B", "redis", "new, shared latency"),
            ("C", "memory", "new, a fresh window"))


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    start_ns: int
    delay_ms: float


def request_spans(traces: Path, alias: str) -> list[Span]:
    """The request spans of `alias` with a hedge delay, in the order the requests started."""
    spans: list[Span] = []
    try:
        lines = traces.read_bytes().splitlines()
    except OSError:
        return spans
    for line in lines:
        try:
            span = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(span, dict) or span.get("name") != f"chat {alias}" or span.get("kind") != "SERVER":
            continue
        delay = (span.get("attributes") or {}).get("gateway.hedge_delay_ms")
        if isinstance(delay, int | float) and isinstance(span.get("start_ns"), int):
            spans.append(Span(span["start_ns"], float(delay)))
    return sorted(spans, key=lambda s: s.start_ns)


def delay_summary(delays: Sequence[float], fallback_ms: float) -> dict[str, Any]:
    at_fallback = [i for i, d in enumerate(delays) if d == fallback_ms]
    learned = next((i + 1 for i, d in enumerate(delays) if d != fallback_ms), None)
    return {"requests": len(delays), "min_ms": round(min(delays), 1) if delays else None,
            "median_ms": round(statistics.median(delays), 1) if delays else None,
            "max_ms": round(max(delays), 1) if delays else None, "at_fallback": len(at_fallback),
            "first_learned": learned}


def summarize(spans: dict[str, list[Span]], requests: int, fallback_ms: float) -> dict[str, Any]:
    """B's and C's first `requests` requests, and A's requests started while those ran."""
    firsts = {name: spans[name][:requests] for name in ("B", "C")}
    started = [s.start_ns for group in firsts.values() for s in group]
    during = ([s for s in spans["A"] if min(started) <= s.start_ns <= max(started)] if started else [])
    rows: dict[str, Any] = {"A": delay_summary([s.delay_ms for s in during], fallback_ms)}
    for name, group in firsts.items():
        rows[name] = delay_summary([s.delay_ms for s in group], fallback_ms)
    learned = rows["A"]["median_ms"]
    for row in rows.values():
        row["median_vs_a"] = (round(row["median_ms"] / learned, 3)
                              if learned and row["median_ms"] is not None else None)
    return rows


def render(report: dict[str, Any]) -> str:
    rows = report["replicas"]
    fallback = report["fallback_ms"]
    lines = [f"Hedge delay (`gateway.hedge_delay_ms`) of B's and C's first {report['requests']} requests, and of A's "
             f"requests over the same time (A had taken {report['warmup_s']:g} s of traffic first). Policy "
             f"`{report['policy']}` of the stall scenario (fallback {fallback:g} ms until {report['min_samples']} "
             f"samples).", "",
             "| replica | state | requests | delay min (ms) | median | max | at the fallback | first learned | "
             "median / A's |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, backend, role in REPLICAS:
        row = rows[name]
        first = "-" if row["first_learned"] is None else f"#{row['first_learned']}"
        lines.append(f"| {name} ({role}) | {backend} | {row['requests']} | {row['min_ms']} | {row['median_ms']} | "
                     f"{row['max_ms']} | {row['at_fallback']} | {first} | {row['median_vs_a']} |")
    return "\n".join(lines) + "\n"


async def start_redis(log_path: Path) -> tuple[Child, str]:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server not found on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    log = log_path.open("wb")  # closed by Child.stop
    process = await asyncio.create_subprocess_exec(
        path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
    child = Child("redis-server", process, log)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while not await _pong(port):
        if child.exited or loop.time() > deadline:
            await child.stop()
            raise RuntimeError(f"redis-server did not answer on port {port} (see {log_path})")
        await asyncio.sleep(0.05)
    return child, f"redis://127.0.0.1:{port}/0"


async def _pong(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"PING\r\n")
        return await asyncio.wait_for(reader.readline(), 1.0) == b"+PONG\r\n"
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


def replica_config(scenario: Scenario, policy: Policy, urls: dict[str, str], port: int, traces: Path,
                   out: Path, state: dict[str, Any]) -> Path:
    config = gateway_config(scenario.providers, policy, scenario.alias, urls, port, str(traces), out)
    config["state"] = state
    path = out / f"gateway-{traces.stem}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    traces.unlink(missing_ok=True)
    return path


async def run_shared_sketch(out: Path, *, warmup_s: float, requests: int, policy_name: str = POLICY
                            ) -> dict[str, Any]:
    """Run it, write report.json and report.md to `out` (an existing folder, absolute), return the report."""
    cancel_on_sigterm()
    scenario = load_scenario(SCENARIO)
    policies = {p.name: p for p in scenario.policies}
    policy = policies.get(policy_name)
    hedge = policy.route.get("hedge") if policy is not None else None
    if policy is None or not isinstance(hedge, dict) or "fallback_delay_ms" not in hedge:
        adaptive = ", ".join(n for n, p in policies.items() if "fallback_delay_ms" in (p.route.get("hedge") or {}))
        raise ValueError(f"--policy: {policy_name!r} is not an adaptive policy of the stall scenario ({adaptive})")
    traffic = scenario.traffic
    # A goes on while B and C start (a few seconds) and take their requests; it is stopped after them.
    a_plan = build_schedule(dataclasses.replace(traffic, duration_s=warmup_s + 15 + requests / traffic.rate),
                            scenario.seed)
    new_plan = build_schedule(dataclasses.replace(traffic, duration_s=10 * requests / traffic.rate, count=requests),
                              scenario.seed + 1)
    redis, redis_url = await start_redis(out / "redis.log")
    children: list[Child] = [redis]
    try:
        specs = {p.name: {"profile": p.profile, "seed": p.seed} for p in scenario.providers}
        sims, urls = await start_sim_host(specs, cpu=None, log_path=out / "simulators.log")
        children.append(sims)
        ports = {name: free_port() for name, _, _ in REPLICAS}
        configs = {name: replica_config(scenario, policy, urls, ports[name], out / f"traces-{name}.jsonl", out,
                                        {"backend": "redis", "url": redis_url} if backend == "redis" else {})
                   for name, backend, _ in REPLICAS}
        a = await start_gateway(configs["A"], ports["A"], cpu=None, log_path=out / "gateway-A.log")
        children.append(a)
        loop = asyncio.get_running_loop()
        async with client_session() as load:
            start_a = loop.time() + 0.1
            progress = Progress("A", len(a_plan))
            progress.start()
            a_run = asyncio.create_task(drive_open_loop(
                load, f"http://127.0.0.1:{ports['A']}", scenario.alias, a_plan, start_at=start_a,
                request_timeout_s=traffic.request_timeout_s, hard_timeout_s=warmup_s + 60 + requests,
                progress=progress))
            try:
                await asyncio.sleep(max(0.0, start_a + warmup_s - loop.time()))
                b, c = await asyncio.gather(*(start_gateway(configs[n], ports[n], cpu=None,
                                                            log_path=out / f"gateway-{n}.log") for n in ("B", "C")))
                children += [b, c]
                start_new = loop.time() + 0.1
                await asyncio.gather(*(drive_open_loop(
                    load, f"http://127.0.0.1:{ports[n]}", scenario.alias, new_plan, start_at=start_new,
                    request_timeout_s=traffic.request_timeout_s, hard_timeout_s=60 + requests,
                    progress=Progress(n, len(new_plan))) for n in ("B", "C")))
            finally:
                await a_run  # bounded by its hard timeout
                await progress.stop()
        for child in reversed(children[2:]):  # the gateways first: a graceful stop writes their last spans out
            await child.stop(grace_s=10)
    finally:
        for child in reversed(children):
            await child.stop()
    spans = {name: request_spans(out / f"traces-{name}.jsonl", scenario.alias) for name, _, _ in REPLICAS}
    report = {"scenario": scenario.name, "policy": policy.name, "warmup_s": warmup_s, "requests": requests,
              "fallback_ms": float(hedge["fallback_delay_ms"]), "min_samples": int(hedge["min_samples"]),
              "replicas": summarize(spans, requests, float(hedge["fallback_delay_ms"]))}
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out / "report.md").write_text(render(report), encoding="utf-8")
    return report


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest shared-sketch", description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of traffic A takes before B and C (20)")
    parser.add_argument("--requests", type=int, default=50, help="requests B and C each get (50)")
    parser.add_argument("--policy", default=POLICY, help=f"an adaptive policy of the stall scenario ({POLICY})")
    parser.add_argument("--out", type=Path, default=Path("loadtest-results") / "shared-sketch", help="output folder")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup <= 0:
        parser.error("--requests must be >= 1 and --warmup > 0")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        report = asyncio.run(run_shared_sketch(out, warmup_s=args.warmup, requests=args.requests,
                                               policy_name=args.policy))
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(render(report))
    return 0
