"""`python -m loadtest soak`: a bounded soak run that shows whether the gateway leaks under hedging.

One real gateway process (`gateway serve --workers 1`, with `server.admin_key` so `GET /admin/stats` answers)
in front of two simulated providers. The primary stalls 300 ms on half its requests and the hedge fires after
50 ms with an unlimited budget, so about half the requests race a backup and cancel a loser: the path where
tasks, sockets and buffers are most likely to be left behind. Streams and plain answers, both doors, a share
through a caching alias (hits, misses, coalescing, LRU eviction, TTL expiry), a share the client abandons
mid-race (handler cancellation), and 1% upstream errors (failover).

While the open-loop load runs, `/admin/stats` and the simulators' `/_sim/stats` are sampled every few seconds.
After it: the load's connections are closed and the tool waits for every in-flight count to reach 0
("drained"), then stops the simulators, whose servers close the gateway's idle keep-alive connections as a
provider's idle timeout would ("final"). The gateway's log is scanned for warnings and errors (an unhandled
exception shows there, not in tasks or fds). `loadtest.soak_report` turns it all into figures and a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
import yaml

from loadtest import procfs, sim_control
from loadtest.client import RequestResult
from loadtest.clouds import base_url as provider_base_url
from loadtest.driver import client_session, drive_open_loop
from loadtest.procs import (
    LOAD_CPU,
    UNDER_TEST_CPU,
    Child,
    cancel_on_sigterm,
    free_port,
    pin_this_process,
    start_gateway,
    start_sim_host,
)
from loadtest.progress import Progress
from loadtest.schedule import PlannedRequest, build_schedule
from loadtest.soak_report import FD_SLACK, TASK_SLACK, build_soak_report, render_soak_markdown
from loadtest.spec import IntRange, Traffic

ALIAS = "chat"
CACHED_ALIAS = "chat-cached"
ADMIN_KEY = "soak-admin"  # 127.0.0.1 only, for this run's own gateway
GROUPS = ("main", "cached", "abandoned")

PROVIDERS: dict[str, dict[str, Any]] = {
    # Half the primary's requests stall 300 ms: the 50 ms hedge races the backup and the primary is cancelled.
    "primary": {"kind": "openai", "seed": 11,
                "profile": {"ttft": {"median_ms": 20, "sigma": 0.5}, "stall_prob": 0.5, "stall_ms": 300,
                            "output_tokens": 16, "error_rate": 0.01, "error_status": 503}},
    "backup": {"kind": "anthropic", "seed": 12,
               "profile": {"ttft": {"median_ms": 10, "sigma": 0.3}, "output_tokens": 16}},
}
HEDGE = {"delay_ms": 50, "max_attempts": 2, "budget_percent": 100}  # every slow primary is hedged
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}  # non-zero, so cost accounting runs too


@dataclass(frozen=True, slots=True)
class SoakSettings:
    requests: int = 50_000
    rate: float = 400.0  # requests per second, Poisson arrivals
    stream_share: float = 0.5
    anthropic_share: float = 0.5
    cache_share: float = 0.1  # sent to CACHED_ALIAS, whose few distinct prompts repeat
    abandon_share: float = 0.02  # the client gives up after `abandon_after_s`: mid-race, as a hedge launches
    abandon_after_s: float = 0.055
    request_timeout_s: float = 10.0
    sample_s: float = 2.0
    warmup_share: float = 0.1  # the "start" figures are taken once this share of requests is done
    seed: int = 1
    drain_timeout_s: float = 15.0
    keep_traces: bool = False


def gateway_config(urls: Mapping[str, str], port: int, traces_file: str) -> dict[str, Any]:
    targets = [{"provider": name, "model": "sim-model", "price": PRICE} for name in PROVIDERS]
    route: dict[str, Any] = {"targets": targets, "hedge": dict(HEDGE)}
    # A cache smaller than the cached requests' key space, with a short TTL: eviction and expiry both happen.
    cache = {"ttl_s": 5, "max_entries": 64, "always": True}
    return {"server": {"host": "127.0.0.1", "port": port, "admin_key": ADMIN_KEY},
            "providers": {name: {"kind": spec["kind"], "base_url": provider_base_url(spec["kind"], urls[name]),
                                 "api_key": "loadtest"} for name, spec in PROVIDERS.items()},
            "models": {ALIAS: route, CACHED_ALIAS: {**route, "cache": cache}},
            "telemetry": {"traces_file": traces_file}}


def plan_groups(settings: SoakSettings) -> dict[str, list[PlannedRequest]]:
    """The schedule, split between the groups by a seeded draw (the arrivals stay one Poisson process)."""
    traffic = Traffic(rate=settings.rate, duration_s=math.inf, count=settings.requests,
                      request_timeout_s=settings.request_timeout_s, stream_share=settings.stream_share,
                      anthropic_share=settings.anthropic_share, prompt_tokens=IntRange(50, 400),
                      max_tokens=IntRange(16, 16))
    rng = random.Random(f"soak-groups-{settings.seed}")
    groups: dict[str, list[PlannedRequest]] = {name: [] for name in GROUPS}
    for req in build_schedule(traffic, settings.seed):
        draw, prompt = rng.random(), 20 + rng.randrange(64)  # always two draws: shares do not move the rest
        if draw < settings.cache_share:
            # 64 prompt sizes x 2 doors = 128 keys for a 64-entry cache.
            groups["cached"].append(replace(req, prompt_tokens=prompt))
        elif draw < settings.cache_share + settings.abandon_share:
            groups["abandoned"].append(req)
        else:
            groups["main"].append(req)
    return groups


class Sampler:
    """Reads the gateway's `/admin/stats` and the simulators' `/_sim/stats`, and keeps every periodic sample."""

    def __init__(self, control: aiohttp.ClientSession, gateway_url: str, sim_urls: Mapping[str, str],
                 sim_pid: int, progress: Progress) -> None:
        self.control = control
        self.gateway_url = gateway_url
        self.sim_urls = dict(sim_urls)
        self.sim_pid = sim_pid
        self.progress = progress
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.gateway_pid = 0
        self.listen_port = int(gateway_url.rsplit(":", 1)[1])
        self.peers: dict[int, str] = {int(url.rsplit(":", 1)[1]): f"upstream:{name}" for name, url in sim_urls.items()}

    async def gateway(self) -> dict[str, Any]:
        async with self.control.get(self.gateway_url + "/admin/stats",
                                    headers={"authorization": f"Bearer {ADMIN_KEY}"}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET /admin/stats: {resp.status} {(await resp.read())[:200]!r}")
            stats: dict[str, Any] = orjson.loads(await resp.read())
        self.gateway_pid = int(stats["pid"])
        return stats

    async def take(self, phase: str, *, sims: bool = True, detail: bool = False) -> dict[str, Any]:
        sample: dict[str, Any] = {"phase": phase, "t_s": round(time.monotonic() - self.started, 3),
                                  "sent": self.progress.sent, "done": self.progress.done,
                                  "errors": self.progress.errors, **await self.gateway()}
        sample["cpu_s"] = procfs.cpu_seconds(self.gateway_pid)
        sample["load_cpu_s"] = round(time.process_time(), 3)
        sample["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine shows here
        if sims:
            sample["sims"] = {}
            for name, url in self.sim_urls.items():
                stats = await sim_control.stats(self.control, url)
                sample["sims"][name] = {k: stats[k] for k in ("in_flight", "received", "disconnected")}
            sample["sim_rss_bytes"] = procfs.rss_bytes(self.sim_pid)
            sample["sim_cpu_s"] = procfs.cpu_seconds(self.sim_pid)
        if detail:  # what the fds are: only at the phases compared, it reads every fd's link
            sample["fd_kinds"] = procfs.fd_kinds(self.gateway_pid)
            sample["tcp"] = procfs.tcp_sockets(self.gateway_pid, listen_port=self.listen_port, peers=self.peers)
        return sample

    async def run(self, period_s: float) -> None:
        """Sample every `period_s` until cancelled; a failed read is reported and sampling goes on."""
        while True:
            await asyncio.sleep(period_s)
            try:
                self.samples.append(await self.take("load"))
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                print(f"\nwarning: sample failed: {exc!r}", file=sys.stderr)

    async def until(self, phase: str, done: Callable[[dict[str, Any]], bool], timeout_s: float, *,
                    sims: bool = True) -> dict[str, Any]:
        """Poll until `done(sample)` or the timeout; returns the last sample (with fd detail) either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            sample = await self.take(phase, sims=sims, detail=True)
            if done(sample) or time.monotonic() >= deadline:
                sample["waited_s"] = round(timeout_s - max(0.0, deadline - time.monotonic()), 3)
                return sample
            await asyncio.sleep(0.2)


def _write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


async def _drive(groups: dict[str, list[PlannedRequest]], url: str, settings: SoakSettings,
                 progress: Progress) -> tuple[dict[str, list[RequestResult]], float]:
    """All groups on one open-loop clock; returns each group's results and the load's wall time."""
    last_at = max((req.at_s for plan in groups.values() for req in plan), default=0.0)
    hard_timeout_s = last_at + settings.request_timeout_s + 15.0
    aliases = {"main": ALIAS, "cached": CACHED_ALIAS, "abandoned": ALIAS}
    timeouts = {"main": settings.request_timeout_s, "cached": settings.request_timeout_s,
                "abandoned": settings.abandon_after_s}
    loop = asyncio.get_running_loop()
    start_at = loop.time() + 0.1
    # The connections to the gateway are closed when the session ends: the server's tasks for them go too.
    async with client_session() as load:
        runs: list[Awaitable[list[RequestResult]]] = [
            drive_open_loop(load, url, aliases[name], plan, start_at=start_at, request_timeout_s=timeouts[name],
                            hard_timeout_s=hard_timeout_s, progress=progress)
            for name, plan in groups.items()]
        results = await asyncio.gather(*runs)
    return dict(zip(groups, results, strict=True)), loop.time() - start_at


async def _soak(settings: SoakSettings, groups: dict[str, list[PlannedRequest]], out_dir: Path, *, pinned: bool,
                progress_stream: TextIO | None) -> dict[str, Any]:
    cancel_on_sigterm()
    specs = {name: {"profile": spec["profile"], "seed": spec["seed"]} for name, spec in PROVIDERS.items()}
    traces = out_dir / "traces.jsonl"
    traces.unlink(missing_ok=True)
    children: list[Child] = []
    try:
        sims, urls = await start_sim_host(specs, cpu=LOAD_CPU if pinned else None, log_path=out_dir / "simulators.log")
        children.append(sims)
        port = free_port()
        config_path = out_dir / "gateway.yaml"
        _write_config(config_path, gateway_config(urls, port, str(traces)))
        children.append(await start_gateway(config_path, port, cpu=UNDER_TEST_CPU if pinned else None,
                                            log_path=out_dir / "gateway.log"))
        url = f"http://127.0.0.1:{port}"
        total = sum(len(plan) for plan in groups.values())
        progress = Progress("soak", total, progress_stream)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as control:
            sampler = Sampler(control, url, urls, sims.process.pid, progress)
            baseline = await sampler.take("baseline", detail=True)  # idle: no request has been sent yet
            progress.start()
            sampling = asyncio.create_task(sampler.run(settings.sample_s))
            try:
                results, load_s = await _drive(groups, url, settings, progress)
            finally:
                sampling.cancel()
                await asyncio.gather(sampling, return_exceptions=True)
                await progress.stop()

            def drained(s: dict[str, Any]) -> bool:
                sims_idle = all(sim["in_flight"] == 0 for sim in s["sims"].values())
                # The load's connections closed on the gateway's side too: only the sampler's own is left.
                clients = sum(n for key, n in s["tcp"].items() if key.startswith("clients "))
                baseline_clients = sum(n for key, n in baseline["tcp"].items() if key.startswith("clients "))
                return (s["in_flight"] == 0 and sims_idle and s["tasks"] <= baseline["tasks"] + TASK_SLACK
                        and clients <= baseline_clients)

            drained_sample = await sampler.until("drained", drained, settings.drain_timeout_s)
            upstream = {name: await sim_control.stats(control, sim_url) for name, sim_url in urls.items()}
            # The simulators' servers close their keep-alive connections: the gateway's pooled sockets end.
            await sims.stop()
            final = await sampler.until("final", lambda s: s["open_fds"] <= baseline["open_fds"] + FD_SLACK, 5.0,
                                        sims=False)
    finally:
        for child in reversed(children):
            await child.stop()
    traces_bytes = traces.stat().st_size if traces.exists() else 0
    if not settings.keep_traces:
        traces.unlink(missing_ok=True)
    return {"results": results, "load_s": load_s, "samples": [baseline, *sampler.samples, drained_sample, final],
            "upstream": upstream, "traces_bytes": traces_bytes, "gateway_port": port,
            "gateway_log": log_summary(out_dir / "gateway.log")}


def log_summary(path: Path) -> dict[str, Any]:
    """Warnings and errors the gateway logged (JSON lines, WARNING and up), counted by message: a request that
    ended in an unhandled exception leaves no trace in tasks or fds, but it does here."""
    counts: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    with contextlib.suppress(OSError), path.open("rb") as log:
        for line in log:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                entry = {"level": "other", "msg": line.decode(errors="replace").strip()[:200]}
            if isinstance(entry, dict):
                level = str(entry.get("level", "other"))
                levels[level] += 1
                counts[f"{level}: {entry.get('msg')}"] += 1
    return {"by_level": dict(levels), "messages": dict(counts.most_common(10))}


def run_soak(out_dir: Path, settings: SoakSettings = SoakSettings(), *, pin: bool = True, command: str = "",
             progress_stream: TextIO | None = None, stdout: TextIO | None = None) -> dict[str, Any]:
    """Run the soak, write report.md and report.json to `out_dir`, print the markdown; return the report."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = plan_groups(settings)
    with pin_this_process(LOAD_CPU if pin else None) as pinned:
        run = asyncio.run(_soak(settings, groups, out_dir, pinned=pinned, progress_stream=progress_stream))
    report = build_soak_report(settings=settings_dict(settings, pinned), command=command, groups=groups, **run)
    markdown = render_soak_markdown(report)
    (out_dir / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    print(markdown, file=stdout if stdout is not None else sys.stdout, flush=True)
    return report


def settings_dict(settings: SoakSettings, pinned: bool) -> dict[str, Any]:
    return {"requests": settings.requests, "rate": settings.rate, "stream_share": settings.stream_share,
            "anthropic_share": settings.anthropic_share, "cache_share": settings.cache_share,
            "abandon_share": settings.abandon_share, "abandon_after_s": settings.abandon_after_s,
            "request_timeout_s": settings.request_timeout_s, "sample_s": settings.sample_s,
            "warmup_share": settings.warmup_share, "seed": settings.seed, "cpu_pinning": pinned,
            "providers": PROVIDERS, "hedge": HEDGE}


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def main(argv: Sequence[str]) -> int:
    """`python -m loadtest soak ...`; exit status 0 when flat, 3 when not, 1 when the run could not be done."""
    from loadtest.__main__ import RESULTS_DIR

    defaults = SoakSettings()
    parser = argparse.ArgumentParser(prog="python -m loadtest soak",
                                     description="A bounded soak run: does the gateway return to its idle "
                                                 "memory, tasks and fds after hedged load?")
    parser.add_argument("--requests", type=int, default=50_000, help="requests to send (50000)")
    parser.add_argument("--rate", type=_positive, default=defaults.rate,
                        help=f"open-loop requests per second ({defaults.rate:g})")
    parser.add_argument("--sample-s", type=_positive, default=defaults.sample_s,
                        help=f"seconds between samples of /admin/stats ({defaults.sample_s:g})")
    parser.add_argument("--cache-share", type=_share, default=defaults.cache_share,
                        help=f"share sent to the caching alias ({defaults.cache_share:g})")
    parser.add_argument("--abandon-share", type=_share, default=defaults.abandon_share,
                        help=f"share the client abandons mid-race ({defaults.abandon_share:g})")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "soak", help="output folder (loadtest-results/soak)")
    parser.add_argument("--keep-traces", action="store_true", help="keep the gateway's trace file (large)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests: must be >= 1")
    if args.cache_share + args.abandon_share > 1:
        parser.error("--cache-share + --abandon-share: must be <= 1")
    settings = SoakSettings(requests=args.requests, rate=args.rate, sample_s=args.sample_s,
                            cache_share=args.cache_share, abandon_share=args.abandon_share,
                            keep_traces=args.keep_traces)
    command = " ".join(["python -m loadtest soak", *(shlex.quote(a) for a in argv)])
    try:
        report = run_soak(args.out, settings, pin=not args.no_pin, command=command)
    except (RuntimeError, aiohttp.ClientError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: children already stopped
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"results in {args.out}/ (report.md, report.json)", file=sys.stderr)
    return 0 if report["verdict"]["flat"] else 3
