"""The soak run: a tiny one through a real gateway process, the verdict on made-up samples, `/admin/stats`,
and the /proc readings it relies on."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.config import parse_config
from gateway.server import Gateway, build_app
from loadtest import procfs
from loadtest.soak import SoakSettings, plan_groups, run_soak
from loadtest.soak_report import FD_SLACK, MIB, PHASES, TASK_SLACK, pick_phases, slopes, verdict

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc (Linux)")


def test_tiny_soak_returns_to_baseline(tmp_path: Path) -> None:
    settings = SoakSettings(requests=2000, rate=250, sample_s=0.5)
    stdout = io.StringIO()
    report = run_soak(tmp_path, settings, command="python -m loadtest soak --requests 2000", stdout=stdout,
                      progress_stream=io.StringIO())

    assert orjson.loads((tmp_path / "report.json").read_bytes()) == orjson.loads(orjson.dumps(report))
    assert (tmp_path / "report.md").read_text() == stdout.getvalue().rstrip("\n") + "\n"
    assert not (tmp_path / "traces.jsonl").exists()  # removed unless --keep-traces
    assert {"command", "settings", "requests", "upstream", "figures", "fd_detail", "peak_under_load", "slope", "cpu",
            "verdict", "gateway_log", "samples"} <= set(report)
    assert set(report["gateway_log"]) == {"by_level", "messages"}
    figures = report["figures"]
    assert list(figures) == list(PHASES)
    for name, f in figures.items():
        assert f["rss_bytes"] > 0 and f["open_fds"] > 0 and f["tasks"] >= 1, name
    assert figures["baseline"]["done"] == 0 and figures["drained"]["done"] == 2000
    assert figures["start"]["done"] >= 200  # after warm-up
    assert report["slope"]["samples"] >= 2 and report["slope"]["rss_bytes_per_1k_requests"] is not None

    requests = report["requests"]
    assert requests["sent"] == 2000 and sum(requests["by_group"].values()) == 2000
    assert requests["by_group"]["cached"] > 0 and requests["by_group"]["abandoned"] > 0
    assert requests["errors"] <= 0.01 * (requests["ok"] + requests["errors"]), requests["errors_by_kind"]
    assert requests["multi_attempt_pct"] > 30  # about half the requests race the backup
    assert report["upstream"]["primary"]["disconnected"] > 100  # ... and their primary is cancelled

    # What the test is for: after the load, nothing is left behind.
    v = report["verdict"]
    assert v["in_flight_ok"] and v["tasks_ok"] and v["fds_ok"], v["problems"]
    assert figures["drained"]["tasks"] <= figures["baseline"]["tasks"] + TASK_SLACK
    assert figures["final"]["open_fds"] <= figures["baseline"]["open_fds"] + FD_SLACK
    tcp = report["fd_detail"]
    assert not any("CLOSE_WAIT" in key for key in tcp["drained"]["tcp"])
    # The load's connections are gone on the gateway's side; only the sampler's own remains.
    assert tcp["drained"]["tcp"].get("clients ESTABLISHED") == tcp["baseline"]["tcp"].get("clients ESTABLISHED")
    assert "**Verdict:" in stdout.getvalue()


def _sample(phase: str, done: int, rss_mib: float, *, fds: int = 20, tasks: int = 3, t: float | None = None,
            in_flight: int = 0) -> dict[str, Any]:
    return {"phase": phase, "t_s": done / 100 if t is None else t, "done": done, "rss_bytes": int(rss_mib * MIB),
            "open_fds": fds, "tasks": tasks, "in_flight": in_flight, "gc_objects": 1000 + done, "pid": 1}


def _run(rss_end: float, *, final_fds: int = 20, drained_tasks: int = 3) -> list[dict[str, Any]]:
    load = [_sample("load", done, 60 + (rss_end - 60) * done / 1000, fds=200, tasks=150) for done in
            range(50, 1001, 50)]
    return [_sample("baseline", 0, 50), *load, _sample("drained", 1000, rss_end, tasks=drained_tasks),
            _sample("final", 1000, rss_end, fds=final_fds)]


def test_verdict_flat_and_leaking() -> None:
    samples = _run(62)
    phases = pick_phases(samples, 1000, 0.1)
    assert phases["start"]["done"] == 100 and phases["middle"]["done"] == 500 and phases["end_of_load"]["done"] == 1000
    assert verdict(phases)["flat"]
    slope = slopes(samples, phases["start"])
    assert slope["rss_bytes_per_1k_requests"] == pytest.approx(2 * MIB, rel=0.01)

    # 60.2 MiB after warm-up: the limit is 60.2 * 1.1 + 10 = 76.2 MiB.
    leaking = verdict(pick_phases(_run(90, final_fds=40, drained_tasks=30), 1000, 0.1))
    assert not leaking["flat"]
    assert not leaking["rss_ok"] and not leaking["fds_ok"] and not leaking["tasks_ok"] and leaking["in_flight_ok"]
    assert len(leaking["problems"]) == 3 and "RSS once drained 90.0 MiB" in leaking["problems"][0]


def test_groups_follow_the_shares() -> None:
    groups = plan_groups(SoakSettings(requests=5000, cache_share=0.1, abandon_share=0.05))
    sizes = {name: len(plan) for name, plan in groups.items()}
    assert sum(sizes.values()) == 5000
    assert 400 < sizes["cached"] < 600 and 180 < sizes["abandoned"] < 320
    assert len({(r.door, r.prompt_tokens) for r in groups["cached"]}) <= 128  # a key space the cache cycles through
    plain = plan_groups(SoakSettings(requests=5000, cache_share=0.0, abandon_share=0.0))
    assert len(plain["main"]) == 5000 and not plain["cached"] and not plain["abandoned"]


async def _admin_server(admin_key: str) -> tuple[web.AppRunner, str]:
    config = parse_config({"server": {"admin_key": admin_key},
                           "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                           "models": {"chat": {"targets": [{"provider": "p", "model": "m"}]}},
                           "telemetry": {"traces_file": ""}}, {})
    runner = web.AppRunner(build_app(Gateway(config)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/admin/stats"


async def test_admin_stats_needs_the_admin_key() -> None:
    runner, url = await _admin_server("secret")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers={"authorization": "Bearer secret"}) as resp:
                assert resp.status == 200
                stats = await resp.json()
            async with http.get(url, headers={"authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with http.get(url) as resp:
                assert resp.status == 401
    finally:
        await runner.cleanup()
    assert set(stats) == {"pid", "tasks", "in_flight", "rss_bytes", "open_fds", "gc_objects"}
    assert stats["pid"] == os.getpid() and stats["in_flight"] == 0
    assert stats["tasks"] >= 1 and stats["open_fds"] > 3 and stats["gc_objects"] > 1000
    assert stats["rss_bytes"] > 10 * MIB

    runner, url = await _admin_server("")
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 404  # no admin key configured: no admin API
    finally:
        await runner.cleanup()


def test_procfs_sees_a_listening_socket_and_a_connection() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                tcp = procfs.tcp_sockets(os.getpid(), listen_port=port, peers={port: "upstream:me"})
                kinds = procfs.fd_kinds(os.getpid())
        assert client is not None
    assert tcp.get("listen LISTEN", 0) >= 1
    assert tcp.get("clients ESTABLISHED", 0) >= 1  # the accepted end
    assert tcp.get("upstream:me ESTABLISHED", 0) >= 1  # the connecting end
    assert kinds.get("socket", 0) >= 3
    assert (procfs.rss_bytes(os.getpid()) or 0) > MIB
    assert (procfs.cpu_seconds(os.getpid()) or 0) > 0
    assert procfs.rss_bytes(2**22 + 12345) is None  # no such process
