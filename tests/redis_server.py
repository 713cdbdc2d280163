"""A real `redis-server` on a free loopback port for tests: started as a subprocess, killed, restarted. Never a mock.

Without redis-server the tests that need it fail in CI (env CI=true: .ci/run installs the Debian package, so
a missing one is a broken CI) and are skipped on a developer's machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from tests.polling import NotYet, eventually


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        message = ("redis-server not found on PATH: install the Debian package redis-server "
                   "(`apt-get install redis-server`; .ci/run does it)")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, without persistence; `kill` and `start` again to restart."""

    def __init__(self, path: str, port: int) -> None:
        self.path, self.port = path, port
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        proc = self.proc

        async def answers() -> bool:
            assert proc.returncode is None, f"redis-server exited with {proc.returncode} (port {self.port} taken?)"
            return await self.ping()

        # Up to 15 s on a loaded machine.
        await eventually(answers, timeout_s=15, interval_s=0.05, what=f"redis-server on port {self.port} to PONG")

    async def ping(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 1)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            return await asyncio.wait_for(reader.readline(), 1) == b"+PONG\r\n"
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def kill(self) -> None:
        """SIGKILL: the way a crash or an OOM kill looks to the gateway."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: Redis keeps its connections but answers nothing, like a hung server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


async def ttl_once_set(client: aioredis.Redis, key: str) -> int | NotYet:
    """`key`'s TTL in ms if it exists with one; else NotYet(-2 absent, -1 without TTL): a check for `eventually`."""
    ttl_ms = int(await client.pttl(key))
    return ttl_ms if ttl_ms > 0 else NotYet(ttl_ms)


@asynccontextmanager
async def running_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer(redis_server_path(), free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.kill()  # also ends a paused (SIGSTOPped) server
