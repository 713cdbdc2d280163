"""A soak run's samples turned into figures (start, middle, end, slope), a verdict, and a markdown report.

Flat means: resident memory once drained at most 10% + 10 MiB above its value after warm-up, and live tasks
(once drained) and open fds (once the simulators closed their keep-alive connections) within a few of the
idle baseline taken before the first request. The slack covers what legitimately differs between the two
moments (the admin poll's own connection and task, a lazily created executor thread's pipe), not growth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from loadtest.client import RequestResult
from loadtest.schedule import PlannedRequest
from loadtest.stats import summarize_ms

MIB = 1024 * 1024
RSS_GROWTH = 0.10  # end RSS may be this share above the start ...
RSS_SLACK_BYTES = 10 * MIB  # ... plus this much
TASK_SLACK = 3  # live asyncio tasks once drained, above the idle baseline
FD_SLACK = 3  # open fds at the end, above the idle baseline
PHASES = ("baseline", "start", "middle", "end_of_load", "drained", "final")
_FIGURES = ("t_s", "done", "rss_bytes", "open_fds", "tasks", "in_flight", "gc_objects", "sim_rss_bytes")


def _first(samples: Sequence[dict[str, Any]], done_at_least: float) -> dict[str, Any] | None:
    return next((s for s in samples if s["done"] >= done_at_least), None)


def pick_phases(samples: Sequence[dict[str, Any]], total: int, warmup_share: float) -> dict[str, dict[str, Any]]:
    """baseline (idle, before the load), start (first sample after warm-up), middle (half done), end_of_load
    (the last sample under load), drained and final. `samples`: baseline, the periodic ones, drained, final."""
    baseline, load, drained, final = samples[0], list(samples[1:-2]), samples[-2], samples[-1]
    # A run shorter than a few sampling periods: fall back on what there is, so the report keeps its shape.
    start = _first(load, warmup_share * total) or (load[0] if load else drained)
    middle = _first(load, 0.5 * total) or (load[-1] if load else drained)
    end_of_load = load[-1] if load else drained
    return {"baseline": baseline, "start": start, "middle": middle, "end_of_load": end_of_load,
            "drained": drained, "final": final}


def peak(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The highest figures under load. RSS tends to stay at its high-water mark (freed memory stays with the
    allocator), so a step in RSS that matches a peak of in-flight requests is concurrency, not a leak."""
    load = samples[1:-2]
    if not load:
        return {}
    top = max(load, key=lambda s: s["rss_bytes"])
    out = {key: max(s[key] for s in load) for key in ("rss_bytes", "open_fds", "tasks", "in_flight")}
    loadavg = [s["loadavg_1m"] for s in load if s.get("loadavg_1m") is not None]
    return {**out, "rss_peak_at_s": top["t_s"], "loadavg_1m_max": max(loadavg) if loadavg else None}


def _least_squares(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def slopes(samples: Sequence[dict[str, Any]], start: dict[str, Any]) -> dict[str, float | None]:
    """Least-squares growth over the samples under load from `start` on: per 1,000 requests done, and RSS per
    minute. Under load tasks and fds follow the concurrency; RSS and object counts should not follow anything."""
    load = [s for s in samples[1:-2] if s["done"] >= start["done"]]
    done = [float(s["done"]) for s in load]

    def per_1k(key: str) -> float | None:
        slope = _least_squares(done, [float(s[key]) for s in load])
        return None if slope is None else round(1000 * slope, 1)

    per_s = _least_squares([float(s["t_s"]) for s in load], [float(s["rss_bytes"]) for s in load])
    return {"rss_bytes_per_1k_requests": per_1k("rss_bytes"),
            "rss_mib_per_min": None if per_s is None else round(60 * per_s / MIB, 3),
            "gc_objects_per_1k_requests": per_1k("gc_objects"), "open_fds_per_1k_requests": per_1k("open_fds"),
            "tasks_per_1k_requests": per_1k("tasks"), "samples": len(load)}


def verdict(phases: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    base, start, drained, final = (phases[p] for p in ("baseline", "start", "drained", "final"))
    rss_limit = int(start["rss_bytes"] * (1 + RSS_GROWTH) + RSS_SLACK_BYTES)
    checks = {
        "rss": (drained["rss_bytes"] <= rss_limit,
                f"RSS once drained {drained['rss_bytes'] / MIB:.1f} MiB > limit {rss_limit / MIB:.1f} MiB "
                f"(start {start['rss_bytes'] / MIB:.1f} MiB x {1 + RSS_GROWTH:g} + {RSS_SLACK_BYTES // MIB} MiB)"),
        "in_flight": (drained["in_flight"] == 0, f"{drained['in_flight']} requests still in flight after the load"),
        "tasks": (drained["tasks"] <= base["tasks"] + TASK_SLACK,
                  f"{drained['tasks']} tasks once drained, idle baseline {base['tasks']} (+{TASK_SLACK} allowed)"),
        "fds": (final["open_fds"] <= base["open_fds"] + FD_SLACK,
                f"{final['open_fds']} open fds at the end, idle baseline {base['open_fds']} (+{FD_SLACK} allowed)"),
    }
    return {"flat": all(ok for ok, _ in checks.values()), "rss_limit_bytes": rss_limit,
            **{f"{name}_ok": ok for name, (ok, _) in checks.items()},
            "problems": [why for ok, why in checks.values() if not ok]}


def cpu_use(phases: Mapping[str, dict[str, Any]]) -> dict[str, float | None]:
    """CPU share of each process from the baseline to the end of the load: tells whether the rate was one the
    machine sustains (the gateway near 100% of its core means the figures are about a saturated gateway)."""
    base, end = phases["baseline"], phases["end_of_load"]
    elapsed = end["t_s"] - base["t_s"]
    done = end["done"] - base["done"]

    def delta(key: str) -> float | None:
        before, after = base.get(key), end.get(key)
        return None if before is None or after is None else after - before

    def pct(key: str) -> float | None:
        used = delta(key)
        return None if used is None or elapsed <= 0 else round(100 * used / elapsed, 1)

    gateway = delta("cpu_s")
    return {"gateway_pct": pct("cpu_s"), "simulators_pct": pct("sim_cpu_s"), "load_generator_pct": pct("load_cpu_s"),
            "gateway_ms_per_request": None if gateway is None or done <= 0 else round(1000 * gateway / done, 3)}


def _ms(values: Sequence[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None


def request_figures(groups: Mapping[str, Sequence[PlannedRequest]], results: Mapping[str, Sequence[RequestResult]],
                    load_s: float) -> dict[str, Any]:
    """Requests by group. Errors count the main and cached groups: the abandoned ones time out by design."""
    answered = [r for name in ("main", "cached") for r in results.get(name, ())]
    everything = [r for rs in results.values() for r in rs]
    sent = [r for r in everything if r.error != "not sent"]
    ok = [r for r in answered if r.ok]
    abandoned = results.get("abandoned", ())
    last_at = max((req.at_s for plan in groups.values() for req in plan), default=0.0)
    lags = [r.send_lag_s for r in sent]
    return {
        "planned": sum(len(plan) for plan in groups.values()), "sent": len(sent),
        "by_group": {name: len(plan) for name, plan in groups.items()},
        "ok": len(ok), "errors": len(answered) - len(ok),
        "errors_by_kind": dict(Counter(r.error for r in answered if r.error is not None).most_common()),
        "abandoned": {"requests": len(abandoned), "answered_in_time": sum(1 for r in abandoned if r.ok),
                      "abandoned": sum(1 for r in abandoned if r.error == "timeout"),
                      "other_errors": sum(1 for r in abandoned if r.error not in (None, "timeout"))},
        "duration_s": round(load_s, 3), "offered_rate": round(len(sent) / last_at, 1) if last_at else None,
        "latency_ms": summarize_ms([r.latency_s for r in ok if r.latency_s is not None]),
        "multi_attempt_pct": round(100 * sum(1 for r in ok if (r.attempts or 1) > 1) / len(ok), 2) if ok else None,
        "winners": dict(Counter(r.provider or "?" for r in ok).most_common()),
        "send_lag_ms": {"p50": _ms(lags, 0.5), "p99": _ms(lags, 0.99), "max": _ms(lags, 1.0)},
    }


def build_soak_report(*, settings: dict[str, Any], command: str, groups: Mapping[str, Sequence[PlannedRequest]],
                      results: Mapping[str, Sequence[RequestResult]], load_s: float,
                      samples: Sequence[dict[str, Any]], upstream: Mapping[str, Mapping[str, Any]],
                      traces_bytes: int, gateway_port: int, gateway_log: dict[str, Any]) -> dict[str, Any]:
    total = sum(len(plan) for plan in groups.values())
    phases = pick_phases(samples, total, float(settings["warmup_share"]))
    upstream_total = sum(int(u.get("received", 0)) for u in upstream.values())
    return {
        "command": command, "settings": settings, "gateway_pid": samples[0]["pid"], "gateway_port": gateway_port,
        "requests": request_figures(groups, results, load_s),
        "upstream": {name: {k: u.get(k) for k in ("received", "completed", "disconnected", "errors")}
                     for name, u in upstream.items()},
        "extra_upstream_pct": round(100 * (upstream_total / total - 1), 2) if total else None,
        "traces_bytes": traces_bytes,
        "gateway_log": gateway_log,
        "figures": {name: {k: s.get(k) for k in _FIGURES} for name, s in phases.items()},
        "fd_detail": {name: {"fd_kinds": phases[name].get("fd_kinds"), "tcp": phases[name].get("tcp")}
                      for name in ("baseline", "drained", "final")},
        "peak_under_load": peak(samples),
        "slope": slopes(samples, phases["start"]),
        "cpu": cpu_use(phases),
        "verdict": verdict(phases),
        "samples": list(samples),
    }


def _mib(value: object) -> str:
    return f"{value / MIB:.1f}" if isinstance(value, int | float) else "-"


def render_soak_markdown(report: dict[str, Any]) -> str:
    s, r, v, sl = report["settings"], report["requests"], report["verdict"], report["slope"]
    lines = [f"## Soak: {r['planned']} requests at {s['rate']:g} req/s "
             f"(CPU pinning {'on' if s['cpu_pinning'] else 'off'})", "",
             f"`{report['command']}`" if report["command"] else "", "",
             f"**Verdict: {'flat' if v['flat'] else 'NOT flat'}**"
             + ("" if v["flat"] else ": " + "; ".join(v["problems"])), "",
             "| phase | t s | done | RSS MiB | open fds | tasks | in flight | gc objects | simulators RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in report["figures"].items():
        lines.append(f"| {name} | {f['t_s']:.1f} | {f['done']} | {_mib(f['rss_bytes'])} | {f['open_fds']} | "
                     f"{f['tasks']} | {f['in_flight']} | {f['gc_objects']} | {_mib(f['sim_rss_bytes'])} |")
    lines += ["",
              f"Slope after warm-up ({sl['samples']} samples): RSS {sl['rss_bytes_per_1k_requests']} bytes per 1,000 "
              f"requests ({sl['rss_mib_per_min']} MiB/min), gc objects {sl['gc_objects_per_1k_requests']}, "
              f"open fds {sl['open_fds_per_1k_requests']}, tasks {sl['tasks_per_1k_requests']} per 1,000 requests. "
              f"RSS limit once drained: {_mib(v['rss_limit_bytes'])} MiB.", ""]
    top = report["peak_under_load"]
    if top:
        lines += [f"Peak under load: RSS {_mib(top['rss_bytes'])} MiB (at {top['rss_peak_at_s']:.1f} s), "
                  f"{top['open_fds']} fds, {top['tasks']} tasks, {top['in_flight']} in flight; machine load "
                  f"average (1 min) up to {top['loadavg_1m_max']}.", ""]
    for name, detail in report["fd_detail"].items():
        lines.append(f"- fds {name}: {detail['fd_kinds']}; TCP {detail['tcp']}")
    abandoned = r["abandoned"]
    lat, cpu = r["latency_ms"], report["cpu"]
    lines += ["",
              f"Requests: {r['sent']} sent of {r['planned']} ({r['by_group']}), {r['ok']} ok, {r['errors']} errors"
              f"{' ' + str(r['errors_by_kind']) if r['errors_by_kind'] else ''}; abandoned by the client on purpose: "
              f"{abandoned['abandoned']} "
              f"(of {abandoned['requests']}; {abandoned['answered_in_time']} answered in time). "
              f"Load {r['duration_s']:.1f} s at {r['offered_rate']} req/s offered; send lag p99 "
              f"{r['send_lag_ms']['p99']} ms, max {r['send_lag_ms']['max']} ms.",
              f"Latency ms p50 {lat['p50']}, p99 {lat['p99']}, p99.9 {lat['p99.9']}; multi-attempt "
              f"{r['multi_attempt_pct']}%; winners {r['winners']}.",
              f"CPU from baseline to the end of the load: gateway {cpu['gateway_pct']}% of a core "
              f"({cpu['gateway_ms_per_request']} ms per request), simulators {cpu['simulators_pct']}%, load "
              f"generator {cpu['load_generator_pct']}%.",
              f"Upstream: {report['upstream']} (extra upstream requests {report['extra_upstream_pct']}%). "
              f"Trace file: {report['traces_bytes'] / MIB:.1f} MiB.",
              f"Gateway log (WARNING and up): {report['gateway_log']['by_level'] or 'nothing'}"
              + "".join(f"\n- {n} x {msg}" for msg, n in report["gateway_log"]["messages"].items())]
    return "\n".join(lines) + "\n"
