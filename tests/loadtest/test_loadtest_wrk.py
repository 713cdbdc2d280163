"""wrk support: the Lua script, parsing its output, and (when wrk is installed) one short real run."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.simulator import SimProfile, SimulatedProvider
from loadtest.client import request_body
from loadtest.schedule import PlannedRequest
from loadtest.wrk import lua_script, parse_wrk_output, run_wrk, wrk_path

WRK_OUTPUT = b"""Running 5s test @ http://127.0.0.1:9000
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.02ms  20.11ms   90.00%
  7046 requests in 5.00s, 4.31MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1408.73
Transfer/sec:    882.75KB
"""


def test_parse_wrk_output() -> None:
    assert parse_wrk_output(WRK_OUTPUT) == {"requests_per_s": 1408.7, "non_2xx": 4, "socket_errors": 3}
    assert parse_wrk_output(b"unable to connect to 127.0.0.1:9000 Connection refused") is None


def test_lua_script_cycles_through_the_bodies() -> None:
    script = lua_script("/v1/chat/completions", [b'{"a":1}', b'{"b":[2]}'])
    assert '[==[{"a":1}]==]' in script and '[==[{"b":[2]}]==]' in script
    assert 'wrk.format("POST", "/v1/chat/completions", nil, bodies[i])' in script


@pytest.mark.skipif(wrk_path() is None, reason="wrk is not installed")
async def test_real_wrk_run_against_a_simulator(tmp_path: Path) -> None:
    bodies = [request_body("m", PlannedRequest(index=0, at_s=0.0, door="openai", stream=stream, prompt_tokens=10,
                                               max_tokens=4)) for stream in (False, True)]
    script = tmp_path / "post.lua"
    script.write_text(lua_script("/v1/chat/completions", bodies))
    async with SimulatedProvider(SimProfile(output_tokens=4), name="wrk-sim") as sim:
        result = await run_wrk(sim.base_url, script, connections=4, duration_s=1, cpu=None)
        received = sim.stats.received
    assert result is not None
    assert result["requests_per_s"] > 0
    assert result["non_2xx"] == 0
    assert received > 10
