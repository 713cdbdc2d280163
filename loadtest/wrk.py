"""Closed-loop throughput with `wrk`, when it is installed: a C load generator that needs far less CPU than
ours, so a proxy's ceiling is less likely to be the load side's. Never installed by this tool."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from loadtest.procs import pinned

_RATE = re.compile(rb"Requests/sec:\s*([0-9.]+)")
_NON_2XX = re.compile(rb"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET_ERRORS = re.compile(rb"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_path() -> str | None:
    return shutil.which("wrk")


def lua_script(path: str, bodies: Sequence[bytes]) -> str:
    """A wrk script POSTing the given JSON bodies in turn (Lua long strings: the JSON needs no escaping)."""
    listed = ",\n".join(f"  [==[{body.decode()}]==]" for body in bodies)
    return (f"local bodies = {{\n{listed}\n}}\n"
            "local i = 0\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            'wrk.headers["Authorization"] = "Bearer loadtest"\n'
            "request = function()\n"
            "  i = i % #bodies + 1\n"
            f'  return wrk.format("POST", "{path}", nil, bodies[i])\n'
            "end\n")


def parse_wrk_output(output: bytes) -> dict[str, float | int] | None:
    rate = _RATE.search(output)
    if rate is None:
        return None
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET_ERRORS.search(output)
    return {"requests_per_s": round(float(rate.group(1)), 1),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0}


async def run_wrk(base_url: str, script: Path, *, connections: int, duration_s: float,
                  cpu: int | None) -> dict[str, float | int] | None:
    """Run wrk (one thread, `connections` connections) against `base_url`; None if wrk is absent or failed."""
    exe = wrk_path()
    if exe is None:
        return None
    command = pinned([exe, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "-s", str(script),
                      base_url], cpu)
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), duration_s + 15.0)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return parse_wrk_output(output) if process.returncode == 0 else None
