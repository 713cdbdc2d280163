"""`python -m loadtest perf --workers N`: how throughput scales across cores, next to N pass-through processes.

The per-core figures of `loadtest perf` pin one process to core 0; here nothing is pinned: the gateway runs as
`gateway serve --workers N` (N processes on one port, with the workers' hub), against N pass-through processes
sharing one port the same way (SO_REUSEPORT). The load (wrk) and the simulator share the same cores, as they
would on any N-core machine serving its own load; both arms pay that alike. CPU per request counts every
process of the arm (the gateway's supervisor, workers and hub; each pass-through process).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml

from loadtest.procs import Child, free_port, start_gateway, start_passthrough
from loadtest.wrk import run_wrk

CONNECTIONS = 64  # enough to keep N processes busy


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(child) for child in children)
    return out


def tree_cpu_seconds(pids: list[int]) -> float:
    from loadtest.perf import cpu_seconds

    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # exited meanwhile
            total += cpu_seconds(pid)
    return total


async def measure_arm(pids: list[int], url: str, script: Path, *, seconds: float) -> dict[str, float]:
    """Closed-loop wrk against `url` (unpinned): requests per second, CPU microseconds per request of `pids`."""
    await run_wrk(url, script, connections=CONNECTIONS, duration_s=1, cpu=None)  # warm-up
    before = tree_cpu_seconds(pids)
    result = await run_wrk(url, script, connections=CONNECTIONS, duration_s=seconds, cpu=None)
    used = tree_cpu_seconds(pids) - before
    if result is None or result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"wrk failed against {url}: {result}")
    rate = float(result["requests_per_s"])
    return {"requests_per_s": round(rate, 1), "cpu_us_per_request": round(used / (rate * round(seconds)) * 1e6, 1)}


async def run_scaling(out: Path, sim_url: str, gateway_config: dict[str, Any], scripts: dict[str, Path], *,
                      workers: int, seconds: float) -> dict[str, Any]:
    """N pass-through processes, then `gateway serve --workers N` (every request traced), on every core."""
    report: dict[str, Any] = {"workers": workers, "connections": CONNECTIONS, "targets": {}}
    children: list[Child] = []
    try:
        port = free_port()
        for i in range(workers):
            children.append(await start_passthrough(sim_url, port, cpu=None, log_path=out / f"passthrough-{i}.log",
                                                    reuse_port=True))
        url = f"http://127.0.0.1:{port}"
        pids = [child.process.pid for child in children]
        report["targets"]["passthrough"] = {kind: await measure_arm(pids, url, script, seconds=seconds)
                                            for kind, script in scripts.items()}
        for child in children:
            await child.stop()
        children.clear()
        gw_port = free_port()
        config = {**gateway_config, "server": {**gateway_config["server"], "port": gw_port}}
        path = out / "gateway_workers.yaml"
        path.write_text(yaml.safe_dump(config))
        gateway = await start_gateway(path, gw_port, cpu=None, log_path=out / "gateway_workers.log",
                                      workers=workers)
        children.append(gateway)
        url = f"http://127.0.0.1:{gw_port}"
        pids = process_tree(gateway.process.pid)
        report["targets"]["gateway_traced"] = {kind: await measure_arm(pids, url, script, seconds=seconds)
                                               for kind, script in scripts.items()}
    finally:
        for child in children:
            await child.stop()
    base, gw = report["targets"]["passthrough"], report["targets"]["gateway_traced"]
    report["ratios"] = {kind: {"throughput_ratio": round(gw[kind]["requests_per_s"] / base[kind]["requests_per_s"], 2),
                               "cpu_ratio": round(gw[kind]["cpu_us_per_request"] / base[kind]["cpu_us_per_request"], 2)}
                        for kind in scripts}
    return report


def scaled(single: dict[str, Any], multi: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Throughput with N processes over one pinned process, per arm and mode (from the same run)."""
    out: dict[str, dict[str, float]] = {}
    for name, figures in multi["targets"].items():
        for kind, f in figures.items():
            one = single.get(name, {}).get(kind)
            if one:
                out.setdefault(name, {})[kind] = round(f["requests_per_s"] / one["requests_per_s"], 2)
    return out


def render_scaling(report: dict[str, Any]) -> list[str]:
    n = report["workers"]
    lines = ["", f"Scaling: {n} processes on every core (gateway `--workers {n}`, every request traced, against {n} "
             f"pass-through processes on one port; wrk {report['connections']} connections, nothing pinned):", "",
             "| target | mode | req/s | CPU µs/request | x one pinned process | throughput vs pass-through |",
             "|---|---|---:|---:|---:|---:|"]
    for name, figures in report["targets"].items():
        for kind, f in figures.items():
            ratio = report["ratios"][kind]["throughput_ratio"] if name != "passthrough" else 1.0
            factor = report.get("scaled", {}).get(name, {}).get(kind)
            lines.append(f"| {name} | {kind} | {f['requests_per_s']:.0f} | {f['cpu_us_per_request']:.0f} | "
                         f"{'' if factor is None else f'{factor:.2f}'} | {ratio:.2f} |")
    return lines
