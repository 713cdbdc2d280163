"""The `python -m gateway.simulator` command: prints its URL, serves, exits cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway.simulator.__main__ import build_parser, read_profile

REPO = Path(__file__).resolve().parents[2]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.simulator", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # 127.0.0.1 only
        data: dict[str, object] = json.loads(resp.read())
        return data


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_with_a_json_profile_and_stops_on_signal(sig: signal.Signals) -> None:
    proc = _start("--port", "0", "--seed", "3", "--name", "cli-sim",
                  "--profile-json", '{"output_tokens": 3, "require_key": "sk-cli"}')
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            base_url + "/v1/chat/completions", method="POST",
            data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Authorization": "Bearer sk-cli", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            reply = json.loads(resp.read())
        assert reply["choices"][0]["message"]["content"] == "tok0 tok1 tok2"
        stats = _get_json(base_url + "/_sim/stats")
        assert (stats["name"], stats["completed"]) == ("cli-sim", 1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "sk-cli" not in err


def test_yaml_profile_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("output_tokens: 2\nttft: {median_ms: 5, sigma: 0.1}\n")
    args = build_parser().parse_args(["--profile", str(path)])
    profile = read_profile(args)
    assert profile.output_tokens == 2 and profile.ttft.kind == "lognormal"


def test_bad_profile_exits_2_naming_the_field() -> None:
    proc = _start("--profile-json", '{"ttft": {"median_ms": 0, "sigma": 1}}')
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "ttft.median_ms: must be > 0" in err


def test_unreadable_inputs_are_reported() -> None:
    with pytest.raises(ValueError, match="--profile-json: not valid JSON"):
        read_profile(build_parser().parse_args(["--profile-json", "{nope"]))
    with pytest.raises(ValueError, match="--profile: cannot read"):
        read_profile(build_parser().parse_args(["--profile", "/nonexistent/p.yaml"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--profile", "a.yaml", "--profile-json", "{}"])
