"""Several simulated providers in one process, so they can share a core away from the gateway's.

    python -m loadtest.sim_host --spec-json '{"primary": {"profile": {...}, "seed": 2}, "secondary": {...}}'

Prints one JSON line `{"primary": "http://127.0.0.1:PORT", ...}` once all are listening, then serves until
SIGTERM/SIGINT. Each is a `gateway.simulator.SimulatedProvider`, controlled over its `/_sim/...` routes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.simulator import SimulatedProvider, parse_profile


async def serve(specs: Mapping[str, Mapping[str, Any]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for name, spec in specs.items():
            sim = SimulatedProvider(parse_profile(spec.get("profile", {})), name=name, seed=int(spec.get("seed", 0)))
            await stack.enter_async_context(sim)
            urls[name] = sim.base_url
        print(orjson.dumps(urls).decode(), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sim_host", description=__doc__.splitlines()[0])
    parser.add_argument("--spec-json", required=True, help='{"name": {"profile": {...}, "seed": N}, ...}')
    args = parser.parse_args(argv)
    specs = orjson.loads(args.spec_json)
    if not isinstance(specs, dict) or not specs:
        parser.error("--spec-json: must be a non-empty JSON object")
    try:
        import uvloop  # the gateway runs on uvloop too: same footing
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(specs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
