"""`python -m loadtest SCENARIO --target-url`: a running gateway driven as it is, capped, its /metrics read.

The deployment is a real `gateway serve` process on 127.0.0.1 in front of simulated providers that this test
owns (so their counters say exactly what reached them); the load tool runs as its own process, as an operator
would run it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from gateway.config.model import Price
from gateway.simulator import SimProfile, SimulatedProvider, parse_profile
from loadtest.procs import REPO_ROOT, free_port, start_gateway
from loadtest.scenario import parse_scenario
from loadtest.schedule import PlannedRequest
from loadtest.target import Caps, TargetError, cap_schedule, check_target_url, worst_case_usd

GATEWAY_KEY = "gw-target-test"
SCENARIO = {
    "name": "target-test", "seed": 5, "alias": "chat",
    # The scenario's own profiles are slow on purpose: were the tool to start simulators from them, nothing
    # here would answer in time. It must not: the deployment's providers are the test's fast ones.
    "providers": {"primary": {"kind": "openai", "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                              "profile": {"ttft": 20000}},
                  "secondary": {"kind": "anthropic", "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
                                "profile": {"ttft": 20000}}},
    "traffic": {"rate": 50, "duration_s": 2, "stream_share": 0.5, "anthropic_share": 0.5, "prompt_tokens": 40,
                "max_tokens": 8, "request_timeout_s": 10},
    "hard_timeout_s": 20,
    "policies": {"ignored": {"hedge": "off"}},
}


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.3.2.1:9/", "http://[::1]:8080",
                                 "http://localhost:8080/v1", "https://LOCALHOST"])
def test_loopback_urls_are_accepted(url: str) -> None:
    assert check_target_url(url, allow_remote=False).startswith(("http://", "https://"))
    assert not check_target_url(url, allow_remote=False).endswith(("/", "/v1"))


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "http://example.com", "http://gateway.internal:80",
                                 "http://127.0.0.1.nip.io"])
def test_remote_urls_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(TargetError, match="not a loopback address; pass --allow-remote"):
        check_target_url(url, allow_remote=False)
    assert check_target_url(url, allow_remote=True)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1/v1/chat/completions"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetError, match="--target-url"):
        check_target_url(url, allow_remote=True)


def test_caps_cut_the_schedule_to_a_prefix_by_count_and_by_worst_case_spend() -> None:
    scenario = parse_scenario(SCENARIO)
    plan = [PlannedRequest(i, i / 10, "openai", False, 1000, 100) for i in range(10)]
    # The dearest provider is the secondary: 1000 * 3 + 100 * 15 per million = $0.0045, twice: $0.009.
    assert worst_case_usd(scenario, plan[0]) == pytest.approx(0.009)
    by_count = cap_schedule(scenario, plan, Caps(max_requests=4, max_spend_usd=100))
    assert [r.index for r in by_count.requests] == [0, 1, 2, 3]
    assert (by_count.cut_by_requests, by_count.cut_by_spend) == (6, 0)
    by_spend = cap_schedule(scenario, plan, Caps(max_requests=100, max_spend_usd=0.05))
    assert [r.index for r in by_spend.requests] == [0, 1, 2, 3, 4]  # 5 * 0.009 = 0.045 <= 0.05 < 6 * 0.009
    assert (by_spend.cut_by_requests, by_spend.cut_by_spend) == (0, 5)
    assert by_spend.worst_case_usd == pytest.approx(0.045)


def test_a_remote_url_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    done = subprocess.run([sys.executable, "-m", "loadtest", str(path), "--target-url", "http://192.0.2.1:8080",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60)
    assert done.returncode == 2
    assert "not a loopback address; pass --allow-remote" in done.stderr
    assert not (tmp_path / "out").exists()


async def test_drives_a_running_gateway_with_caps_and_reads_its_metrics(tmp_path: Path) -> None:
    fast = parse_profile({"ttft": 5, "per_token": 1, "output_tokens": 6})
    async with SimulatedProvider(fast, name="p1", seed=1) as p1, \
            SimulatedProvider(SimProfile(ttft=fast.ttft, output_tokens=6), name="p2", seed=2) as p2:
        port = free_port()
        config = {
            "server": {"host": "127.0.0.1", "port": port, "api_keys": [GATEWAY_KEY]},
            "providers": {"primary": {"kind": "openai", "base_url": p1.base_url + "/v1", "api_key": "k1"},
                          "secondary": {"kind": "anthropic", "base_url": p2.base_url, "api_key": "k2"}},
            # Failover only, so every request is exactly one attempt at the primary: a race's loser may be cut
            # before its request reaches the simulator, which would make the counts below timing-dependent.
            "models": {"chat": {"targets": [
                {"provider": "primary", "model": "m1", "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
                {"provider": "secondary", "model": "m2", "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}],
                "hedge": "off"}},
            "telemetry": {"traces_file": str(tmp_path / "traces.jsonl")},
        }
        config_path = tmp_path / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config))
        gateway = await start_gateway(config_path, port, cpu=None, log_path=tmp_path / "gateway.log")
        try:
            scenario_path = tmp_path / "s.yaml"
            scenario_path.write_text(yaml.safe_dump(SCENARIO))
            out = tmp_path / "out"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loadtest", str(scenario_path), "--target-url", f"http://127.0.0.1:{port}",
                "--api-key", GATEWAY_KEY, "--max-requests", "30", "--out", str(out), cwd=str(REPO_ROOT),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            printed, stderr = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, stderr.decode()
            assert b"| target |" in printed  # the report is printed too
            await p1.wait_idle()
            await p2.wait_idle()
        finally:
            await gateway.stop()
        received = (p1.stats.received, p2.stats.received)

    report = orjson.loads((out / "report.json").read_bytes())
    target = report["target"]
    policy = report["policies"]["target"]
    assert target["planned"] > 30 and target["cut_by_requests"] == target["planned"] - 30
    assert policy["requests"] == 30 and policy["ok"] == 30, policy["errors_by_kind"]
    assert received == (30, 0)  # exactly the capped traffic reached the deployment's providers
    metrics = target["gateway_metrics"]
    assert metrics["requests_by_status"] == {"200": 30}
    assert metrics["attempts_sent"] == 30
    assert metrics["attempts_by_launch"] == {"primary": 30}
    assert metrics["attempts_by_outcome"] == {"won": 30}
    # 30 answers of 40 prompt tokens and 6 output tokens at the primary's prices, as the gateway billed them.
    assert metrics["cost_usd"] == pytest.approx(30 * Price(1.0, 2.0).cost_usd(40, 6), rel=0.2)
    assert metrics["wasted_cost_usd"] == 0
    assert policy["cost"]["source"] == "gateway /metrics"
    assert policy["upstream_requests"] == 30 and policy["extra_upstream_pct"] == 0.0
    assert not (out / "simulators.log").exists()
    assert "Target http://127.0.0.1:" in (out / "report.md").read_text()
    assert Price(3.0, 15.0).cost_usd(40, 8) * 2 * 30 >= target["worst_case_usd"] > 0
