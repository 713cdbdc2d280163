"""The three-clouds demo runs end to end on loopback: every cloud answers, its auth checks pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import demo_clouds
from tests.cloud_env import isolate


async def test_three_clouds_demo_prints_both_policies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    isolate(monkeypatch, tmp_path)
    await demo_clouds.main_async(requests=10)
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("claude")}
    assert set(lines) == {"claude-no-hedge", "claude"}
    assert "bedrock 0 (0), vertex 0 (0)" in lines["claude-no-hedge"]  # no hedging: the slow cloud only
    assert "(1 issued)" in out  # the gateway's Vertex token came from the simulator's token endpoint
