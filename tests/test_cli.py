"""The command line, run as a real process: bad configs fail at start naming the field, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin"})


def test_check_config_prints_routes() -> None:
    result = gateway("check-config", "config/gateway.example.yaml")
    assert result.returncode == 0, result.stderr
    assert "chat-adaptive: hedge delay p95" in result.stdout
    assert "1. openai-main / gpt-4o-mini (primary" in result.stdout


def test_bad_config_names_the_field_for_check_and_serve(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  p: {kind: openai, base_url: 'http://127.0.0.1:1/v1', api_key: sk-secret-123}\n"
                   "models:\n  chat: {targets: [{provider: q, model: m}]}\n")
    for args in (("check-config", str(bad)), ("serve", "--config", str(bad))):
        result = gateway(*args)
        assert result.returncode == 1
        assert "models.chat.targets[0].provider: unknown provider 'q'" in result.stderr
        assert "Traceback" not in result.stderr and "sk-secret-123" not in result.stderr + result.stdout


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = gateway("serve", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and "cannot read config file" in result.stderr
