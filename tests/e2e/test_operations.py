"""Operations on a real `gateway serve` process: graceful drain on SIGTERM, reload on SIGHUP, several workers."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from gateway.simulator import SimulatedProvider, parse_profile
from tests.polling import eventually, eventually_equal

ROOT = Path(__file__).resolve().parents[2]
BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, sim: SimulatedProvider, port: int, aliases: tuple[str, ...] = ("chat",),
                 **server: Any) -> None:
    path.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "admin_key": "admin-secret", **server},
        "providers": {"sim": {"kind": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "k"}},
        "models": {alias: {"targets": [{"provider": "sim", "model": "m"}]} for alias in aliases},
        "telemetry": {"traces_file": ""},
    }))


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    async def post(self, http: aiohttp.ClientSession, alias: str = "chat") -> tuple[int, Any]:
        body = orjson.dumps({"model": alias, "messages": [{"role": "user", "content": "hi"}]})
        async with http.post(f"{self.url}/v1/chat/completions", data=body,
                             headers={"content-type": "application/json"}) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def launch(config: Path, port: int, workers: int = 1) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", str(workers),
            "--log-format", "json", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        procs.append(proc)
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                assert proc.returncode is None, f"gateway exited with {proc.returncode}"
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    return resp.status == 200

            # Up to 30 s on a loaded machine; refused connections until it listens.
            await eventually(healthy, timeout_s=30, interval_s=0.1, what=f"the gateway on port {port} to start",
                             ignoring=(aiohttp.ClientError,))
        return Proc(proc, port)

    yield launch
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_drains_running_requests_then_exits_zero(start: Any, tmp_path: Path) -> None:
    async with SimulatedProvider(parse_profile({"ttft": 1500}), name="slow") as sim:
        port = free_port()
        write_config(tmp_path / "g.yaml", sim, port, shutdown_grace_s=20)
        gw = await start(tmp_path / "g.yaml", port)
        async with aiohttp.ClientSession() as http:
            running = asyncio.create_task(gw.post(http))
            await eventually(lambda: sim.stats.in_flight, timeout_s=10, what="the request to reach the provider")
            gw.proc.send_signal(signal.SIGTERM)
            status, body = await running  # finished, not cut, although the server was stopping
            assert status == 200 and body["choices"][0]["message"]["content"]
        assert await asyncio.wait_for(gw.proc.wait(), 30) == 0
        output = (await gw.proc.stdout.read()).decode()
        assert '"msg":"request"' in output and '"status":200' in output  # one JSON log line per request


async def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(start: Any, tmp_path: Path) -> None:
    async with SimulatedProvider(name="fast") as sim, aiohttp.ClientSession() as http:
        port = free_port()
        config = tmp_path / "g.yaml"
        write_config(config, sim, port)
        gw = await start(config, port)
        assert (await gw.post(http, "second"))[0] == 404
        write_config(config, sim, port, aliases=("chat", "second"))
        gw.proc.send_signal(signal.SIGHUP)

        async def second_status() -> int:
            return (await gw.post(http, "second"))[0]

        await eventually_equal(second_status, 200, timeout_s=10, interval_s=0.1, what="the reloaded alias's status")
        config.write_text("providers: {}\n")  # invalid: rejected, the previous config keeps serving
        async with http.post(f"{gw.url}/admin/reload", headers={"authorization": "Bearer admin-secret"}) as resp:
            assert resp.status == 400
            assert "providers: at least one provider is required" in (await resp.json())["error"]["message"]
        async with http.post(f"{gw.url}/admin/reload", headers={"authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        assert (await gw.post(http, "second"))[0] == 200
        gw.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gw.proc.wait(), 30) == 0


async def test_two_workers_share_one_port(start: Any, tmp_path: Path) -> None:
    async with SimulatedProvider(name="fast") as sim, aiohttp.ClientSession() as http:
        port = free_port()
        write_config(tmp_path / "g.yaml", sim, port)
        gw = await start(tmp_path / "g.yaml", port, workers=2)
        results = await asyncio.gather(*(gw.post(http) for _ in range(40)))
        assert all(status == 200 for status, _ in results)
        pgrep = await asyncio.create_subprocess_exec("pgrep", "-P", str(gw.proc.pid), "-f", "gateway serve",
                                                     stdout=asyncio.subprocess.PIPE)
        children = (await pgrep.communicate())[0].split()
        assert len(children) == 2  # the workers (the supervisor's third child is their state hub)
        gw.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gw.proc.wait(), 30) == 0
