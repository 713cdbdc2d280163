"""Claude Code, the real CLI, against the gateway on 127.0.0.1 with simulated providers of either kind.

Claude Code is installed from npm into .clients/node (git-ignored; .ci/run installs it). Without it the tests
fail in CI (CI=true: a missing binary is a broken CI) and are skipped on a developer's machine.

The alias is `claude`, a name Claude Code does not know as a model: for such names it sends a `role: "system"`
turn inside messages, adaptive thinking, effort, context management and more betas, which is what broke it
before (the door answered 400 to every request).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.simulator import SimulatedProvider
from gateway.simulator.chat import answer_text
from tests.e2e.harness import GATEWAY_KEY, Running, config_for, running

ROOT = Path(__file__).resolve().parents[2]
LOCAL_CLAUDE = ROOT / ".clients" / "node" / "node_modules" / ".bin" / "claude"
ALIAS = "claude"
# A run takes about a second against the simulator. The bound is for a Claude Code that hangs or retries
# (it retries a 401 seven times over ~36 s): a run never outlives it.
RUN_TIMEOUT_S = 45
# The simulator's default answer: 16 tokens "tok0 tok1 ... tok15".
ANSWER = answer_text(16)


def claude_path() -> str:
    path = str(LOCAL_CLAUDE) if LOCAL_CLAUDE.is_file() else shutil.which("claude")
    if path is None:
        message = (f"Claude Code not found at {LOCAL_CLAUDE} nor on PATH: install it with "
                   "`npm install --prefix .clients/node @anthropic-ai/claude-code` (.ci/run does it)")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def result(self) -> dict[str, Any]:
        """The `--output-format json` result; fails the test (not an assertion) if Claude Code failed."""
        if self.returncode != 0:
            pytest.fail(f"claude exited {self.returncode}\nstdout: {self.stdout[-2000:]}\n"
                        f"stderr: {self.stderr[-2000:]}")
        result: dict[str, Any] = orjson.loads(self.stdout)
        return result


@dataclass
class Env:
    gw: Running
    sim: SimulatedProvider
    kind: str  # the simulator's wire format: "anthropic" or "openai"
    claude: str
    home: Path  # a throwaway HOME: Claude Code keeps its settings and sessions there
    project: Path  # the working directory, which --continue looks up sessions by

    async def claude_p(self, prompt: str, *args: str) -> Run:
        """`claude -p PROMPT --model claude --output-format json ARGS` as a subprocess, bounded in time."""
        # Built from nothing rather than from os.environ: no key or base URL of the machine's own reaches it.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LANG": "C.UTF-8",
               "TMPDIR": str(self.home), "ANTHROPIC_BASE_URL": self.gw.url, "ANTHROPIC_API_KEY": GATEWAY_KEY,
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
               "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1"}
        proc = await asyncio.create_subprocess_exec(
            self.claude, "-p", prompt, "--model", ALIAS, "--output-format", "json", *args, cwd=self.project,
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)  # its own group: a timeout ends its children
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S):
                out, err = await proc.communicate()
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            pytest.fail(f"claude did not finish within {RUN_TIMEOUT_S} s; gateway saw {self.gw.seen}")
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


@pytest.fixture(params=["anthropic", "openai"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """The gateway with one route `claude` whose primary (and only) target is a simulator of the given kind."""
    claude = claude_path()
    kind: str = request.param
    async with SimulatedProvider(name="sim", seed=1) as sim:
        config = config_for({"sim": (kind, sim)}, {ALIAS: {"targets": [{"provider": "sim", "model": "sim-model"}]}})
        async with running(config) as gw:
            home, project = tmp_path / "home", tmp_path / "project"
            home.mkdir()
            project.mkdir()
            yield Env(gw, sim, kind, claude, home, project)


def text_of(content: Any) -> str:
    """All text of a message's content, whichever format's shape it has."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content or () if isinstance(part, dict))


def has_cache_control(value: Any) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(has_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(has_cache_control(v) for v in value)
    return False


def posts(env: Env) -> list[tuple[str, str, int]]:
    """The chat calls the gateway answered; any other call must be a probe (HEAD or GET) it did not fail."""
    others = [call for call in env.gw.seen if call[0] != "POST"]
    assert all(method in ("HEAD", "GET") and status < 500 for method, _, status in others), others
    return [call for call in env.gw.seen if call[0] == "POST"]


async def test_say_hi_answers_with_the_simulated_text(env: Env) -> None:
    result = (await env.claude_p("say hi")).result()
    assert result["is_error"] is False and result["subtype"] == "success"
    assert result["result"] == ANSWER
    assert result["usage"]["output_tokens"] == 16
    # One streamed POST, with the beta query string (the door's route takes it).
    assert posts(env) == [("POST", "/v1/messages?beta=true", 200)]
    assert env.sim.stats.received == 1
    assert [r.status for r in env.gw.collect.records] == [200]


async def test_the_system_turn_reaches_the_provider(env: Env) -> None:
    (await env.claude_p("say hi")).result()
    sent = env.sim.stats.last_body
    messages = sent["messages"]
    if env.kind == "anthropic":
        # As sent: the system turn inside messages, thinking, and cache_control on blocks.
        system_turns = [i for i, m in enumerate(messages) if m["role"] == "system"]
        assert system_turns and system_turns[0] > 0, [m["role"] for m in messages]
        assert "thinking" in sent and sent["thinking"]["type"] in ("adaptive", "enabled")
        assert has_cache_control(sent["system"]) and has_cache_control(messages)
        assert isinstance(sent["metadata"]["user_id"], str)
    else:
        # Translated: the top-level system first, then the system turn as a system message where it was;
        # the fields OpenAI has no form for are gone.
        roles = [m["role"] for m in messages]
        assert roles[0] == "system" and "system" in roles[1:] and roles.index("user") < roles.index("system", 1)
        messages = messages[1:]  # the top-level system prompt, as a message
        assert not any(key in sent for key in ("thinking", "context_management", "output_config", "system"))
        assert not has_cache_control(sent)
        assert sent["max_completion_tokens"] == 32000 and sent["user"]
    # The prompt rides in the first user turn; for an unknown model the system turn follows it.
    assert messages[0]["role"] == "user" and "say hi" in text_of(messages[0]["content"])


async def test_continue_carries_the_first_turn_into_the_second(env: Env) -> None:
    first = (await env.claude_p("say hi")).result()
    second = (await env.claude_p("and again", "--continue")).result()
    assert second["session_id"] == first["session_id"]
    assert second["result"] == ANSWER
    messages = env.sim.stats.last_body["messages"]
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    assert len(assistant) == 1 and text_of(messages[assistant[0]]["content"]) == ANSWER
    assert any("say hi" in text_of(m["content"]) for m in messages[:assistant[0]] if m["role"] == "user")
    assert messages[-1]["role"] == "user" and "and again" in text_of(messages[-1]["content"])
    assert env.sim.stats.received == 2
    assert posts(env) == [("POST", "/v1/messages?beta=true", 200)] * 2


# What the Messages API answers to a system turn where it takes none (an API version or a beta without them), as
# it words it (verified in a public issue). Claude Code recognises these words and retries without the turn.
UNEXPECTED_SYSTEM_ROLE = ('messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                          'parameter, not "system" as an input message role.')


@dataclass(frozen=True)
class Relay:
    base_url: str


@asynccontextmanager
async def strict_upstream(sim: SimulatedProvider) -> AsyncIterator[str]:
    """An Anthropic upstream that refuses system turns with the API's own 400 and otherwise relays to `sim`."""
    async with aiohttp.ClientSession() as session:
        async def messages(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            if any(m.get("role") == "system" for m in body["messages"]):
                error = {"type": "error", "error": {"type": "invalid_request_error", "message": UNEXPECTED_SYSTEM_ROLE}}
                return web.json_response(error, status=400)
            async with session.post(f"{sim.base_url}/v1/messages", json=body, headers={
                    "anthropic-version": "2023-06-01"}) as upstream:
                resp = web.StreamResponse(status=upstream.status,
                                          headers={"content-type": upstream.headers["content-type"]})
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

        app = web.Application()
        app.router.add_post("/v1/messages", messages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


async def test_an_upstream_that_refuses_system_turns_in_its_own_words_is_recovered_from(tmp_path: Path) -> None:
    """A real Anthropic provider may refuse the system turn (the gateway does not forward Claude Code's
    anthropic-beta yet). The gateway relays that 400 with the API's words in it, Claude Code recognises them and
    asks again without system turns, and the second request gets the answer."""
    claude = claude_path()
    async with SimulatedProvider(name="sim", seed=1) as sim, strict_upstream(sim) as url:
        config = config_for({"strict": ("anthropic", Relay(url))},
                            {ALIAS: {"targets": [{"provider": "strict", "model": "sim-model"}]}})
        async with running(config) as gw:
            home, project = tmp_path / "home", tmp_path / "project"
            home.mkdir()
            project.mkdir()
            result = (await Env(gw, sim, "anthropic", claude, home, project).claude_p("say hi")).result()
    assert result["is_error"] is False and result["result"] == ANSWER
    assert [r.status for r in gw.collect.records] == [400, 200]
    assert [m["role"] for m in sim.stats.last_body["messages"]] == ["user"]  # the retry, without the system turn
    assert sim.stats.received == 1


@pytest.mark.parametrize("env", ["anthropic"], indirect=True)  # the header means nothing to an OpenAI provider
async def test_anthropic_beta_reaches_an_anthropic_provider(env: Env) -> None:
    (await env.claude_p("say hi")).result()
    betas = env.sim.stats.last_headers.get("anthropic-beta", "")
    assert "claude-code-20250219" in betas.split(","), env.sim.stats.last_headers
