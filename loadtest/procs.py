"""Child processes of a run: the simulated providers, the gateway (or pass-through proxy), each on 127.0.0.1.

Where `taskset` exists and there are two cores, the process under test gets core 0 and the load side
(this process and the simulators) core 1, so the gateway never competes with the load for a core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
UNDER_TEST_CPU = 0
LOAD_CPU = 1


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def pinned(command: Sequence[str], cpu: int | None) -> list[str]:
    """`command` run under `taskset -c cpu` when pinning is possible (else unchanged)."""
    if cpu is None or not pinning_available():
        return list(command)
    return ["taskset", "-c", str(cpu), *command]


@contextlib.contextmanager
def pin_this_process(cpu: int | None) -> Iterator[bool]:
    """Run the load generator on one core for the duration, then give back the cores it had."""
    if cpu is None or not pinning_available():
        yield False
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


def cancel_on_sigterm() -> None:
    """Let `kill` (SIGTERM) unwind the current task like Ctrl-C does, so the `finally` blocks stop the gateway
    and the simulators instead of leaving them running. The handler goes away when the loop is closed."""
    task = asyncio.current_task()
    if task is None:
        return
    with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):  # no signals off the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def free_port() -> int:
    # Small race (another process could take it before the child binds), acceptable on a test machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The children import `gateway` and `loadtest` from this checkout, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """A started child process; `stop()` sends SIGTERM, then SIGKILL if it has not exited in time."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: IO[bytes] | None) -> None:
        self.name = name
        self.process = process
        self._log = log

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    async def stop(self, grace_s: float = 5.0) -> None:
        if not self.exited:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _open_log(path: Path | None) -> IO[bytes] | None:
    return open(path, "wb") if path is not None else None  # closed by Child.stop


async def _spawn(name: str, command: list[str], log_path: Path | None, *, stdout_pipe: bool = False) -> Child:
    log = _open_log(log_path)
    sink: IO[bytes] | int = log if log is not None else asyncio.subprocess.DEVNULL
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE if stdout_pipe else sink,
        stderr=sink, env=_child_env(), cwd=str(REPO_ROOT))
    return Child(name, process, log)


async def start_sim_host(specs: Mapping[str, Mapping[str, Any]], *, cpu: int | None, log_path: Path | None,
                         timeout_s: float = 20.0) -> tuple[Child, dict[str, str]]:
    """Start `loadtest.sim_host`; returns it and each simulator's base URL, read from its first line."""
    command = pinned([sys.executable, "-m", "loadtest.sim_host", "--spec-json", orjson.dumps(specs).decode()], cpu)
    child = await _spawn("simulators", command, log_path, stdout_pipe=True)
    assert child.process.stdout is not None
    try:
        line = await asyncio.wait_for(child.process.stdout.readline(), timeout_s)
        urls = orjson.loads(line) if line else None
    except (TimeoutError, orjson.JSONDecodeError):
        urls = None
    if not isinstance(urls, dict):
        await child.stop()
        raise RuntimeError(f"simulators did not start (see {log_path})")
    return child, {str(k): str(v) for k, v in urls.items()}


async def start_gateway(config_path: Path, port: int, *, cpu: int | None, log_path: Path | None,
                        workers: int = 1) -> Child:
    # One worker by default: the gateway is measured on one pinned core.
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config_path), "--port", str(port),
               "--log-level", "WARNING", "--workers", str(workers)]
    command = pinned(command, cpu) if workers == 1 else command
    child = await _spawn("gateway", command, log_path)
    await wait_healthy(f"http://127.0.0.1:{port}/healthz", child, log_path)
    return child


async def start_passthrough(upstream: str, port: int, *, cpu: int | None, log_path: Path | None,
                            reuse_port: bool = False) -> Child:
    command = pinned([sys.executable, "-m", "loadtest.passthrough", "--upstream", upstream, "--port", str(port),
                      *(["--reuse-port"] if reuse_port else [])], cpu)
    child = await _spawn("passthrough", command, log_path)
    await wait_healthy(f"http://127.0.0.1:{port}/healthz", child, log_path)
    return child


async def start_floor(upstream: str, port: int, *, cpu: int | None, log_path: Path | None) -> Child:
    """`loadtest.floor`: the mechanical work of a gateway on this stack, without its features."""
    command = pinned([sys.executable, "-m", "loadtest.floor", "--upstream", upstream, "--port", str(port)], cpu)
    child = await _spawn("floor", command, log_path)
    await wait_healthy(f"http://127.0.0.1:{port}/healthz", child, log_path)
    return child


async def wait_healthy(url: str, child: Child, log_path: Path | None, timeout_s: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail early if the child exits (a config error, a taken port)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
        while loop.time() < deadline:
            if child.exited:
                raise RuntimeError(f"{child.name} exited with status {child.process.returncode} (see {log_path})")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    await child.stop()
    raise RuntimeError(f"{child.name} not healthy at {url} after {timeout_s:g} s (see {log_path})")
