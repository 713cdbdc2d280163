"""Two checkouts of the gateway side by side on the real stack, rounds interleaved: CPU per request and throughput
of each against the same pass-through, traces sampled out and traced, non-streaming and streaming.

    git worktree add /tmp/before <commit> && ln -s "$PWD/.venv" /tmp/before/.venv
    .venv/bin/python docs/measure_ab.py /tmp/before . [--rounds 3] [--seconds 5]

Every process under test (the pass-through, four gateways: before and after, sampled out and traced) is pinned
to core 0 and measured alone, the load (wrk, 32 connections) and the zero-latency simulator are on core 1, as
`python -m loadtest perf` does; CPU is read from /proc. The order of before and after alternates by round. A line
per round and mode: each gateway's CPU against the pass-through's, and after / before (CPU and req/s). The
machine's noise is a few percent even so: for a change of that size, count instructions
(`docs/measure_instructions.sh`) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import orjson
import yaml

from loadtest.perf import BODY, cpu_per_request, gateway_config
from loadtest.procs import Child, cancel_on_sigterm, free_port, pinned, start_passthrough, start_sim_host, wait_healthy
from loadtest.wrk import lua_script

SAMPLERS = ("always_off", "always_on")


async def start_checkout(tree: Path, sampler: str, sim: str, name: str, out: Path) -> tuple[Child, str]:
    """`gateway serve` of the checkout at `tree` (its own `.venv`, its own code first on the path)."""
    port = free_port()
    config = out / f"{name}.yaml"
    config.write_text(yaml.safe_dump(gateway_config(sim, port, out / f"{name}-traces.jsonl")))
    env = {**os.environ, "PYTHONPATH": str(tree), "OTEL_TRACES_SAMPLER": sampler, "PYTHONUNBUFFERED": "1"}
    log = open(out / f"{name}.log", "wb")  # noqa: ASYNC230, SIM115 - at start; closed by Child.stop
    command = pinned([str(tree / ".venv/bin/python"), "-m", "gateway", "serve", "--config", str(config),
                      "--port", str(port), "--log-level", "WARNING", "--workers", "1"], 0)
    process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                   stderr=log, env=env, cwd=str(tree))
    child = Child(name, process, log)
    await wait_healthy(f"http://127.0.0.1:{port}/healthz", child, None)
    return child, f"http://127.0.0.1:{port}"


async def main(before: Path, after: Path, rounds: int, seconds: float, out: Path) -> None:
    cancel_on_sigterm()
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    scripts = {}
    for mode in ("json", "stream"):
        scripts[mode] = out / f"wrk-{mode}.lua"
        scripts[mode].write_text(lua_script("/v1/chat/completions",
                                            [orjson.dumps({**BODY, "stream": mode == "stream"})]))
    children: list[Child] = []
    try:
        sims, urls = await start_sim_host({"zero": {"profile": {"output_tokens": 16}, "seed": 1}}, cpu=1,
                                          log_path=out / "simulators.log")
        children.append(sims)
        port = free_port()
        children.append(await start_passthrough(urls["zero"], port, cpu=0, log_path=out / "passthrough.log"))
        targets = {"pass": (children[-1], f"http://127.0.0.1:{port}")}
        for sampler in SAMPLERS:
            for label, tree in (("before", before), ("after", after)):
                child, url = await start_checkout(tree.resolve(), sampler, urls["zero"], f"{label}_{sampler}", out)
                children.append(child)
                targets[f"{label}_{sampler}"] = (child, url)
        for r in range(rounds):
            for mode in ("json", "stream"):
                firsts = ("before", "after") if r % 2 == 0 else ("after", "before")
                order = ["pass", *(f"{label}_{s}" for s in SAMPLERS for label in firsts)]
                res = {}
                for name in order:
                    child, url = targets[name]
                    res[name] = await cpu_per_request(child, url, scripts[mode], seconds=seconds)
                base = res["pass"]["cpu_us_per_request"]
                line = f"round {r + 1} {mode}: pass-through {base:.0f} us/request"
                for s in SAMPLERS:
                    b, a = res[f"before_{s}"], res[f"after_{s}"]
                    line += (f" | {s}: before {b['cpu_us_per_request'] / base:.2f}x,"
                             f" after {a['cpu_us_per_request'] / base:.2f}x, after/before CPU"
                             f" {a['cpu_us_per_request'] / b['cpu_us_per_request']:.3f},"
                             f" req/s {a['requests_per_s'] / b['requests_per_s']:.3f}")
                print(line, flush=True)
    finally:
        for child in reversed(children):
            await child.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/measure-ab"))
    args = parser.parse_args()
    asyncio.run(main(args.before, args.after, args.rounds, args.seconds, args.out))
