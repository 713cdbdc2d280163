"""`make demo-clouds`: the same model on three simulated clouds, one of them slow-tailed, hedged by the others.

Claude on Anthropic (a heavy tail and 20% stalls of 2 s), on Bedrock (30% stalls) and on Vertex (steady), all
at the same price, behind one gateway. The same streamed requests go once without hedging and once hedged (a
backup cloud after 300 ms, the third after 300 ms more); the table shows time to first token against the
extra cost, and what each cloud saw.
The clouds are simulators on 127.0.0.1: the gateway signs every Bedrock request with SigV4 (test keys) and
gets Vertex tokens through google-auth from the Vertex simulator's token endpoint; both are checked there.
Needs the cloud extras: `pip install -e '.[dev]'` has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
from aiohttp import web

from gateway.config import parse_config
from gateway.engine import Hooks, RequestSummary
from gateway.server import Gateway, build_app
from gateway.simulator import SimulatedProvider, parse_profile

AWS_KEY_ID, AWS_SECRET = "AKIDDEMO", "demo-secret"
PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
MODELS = {"anthropic": "claude-sonnet-4-5", "bedrock": "anthropic.claude-sonnet-4-5-20250929-v1:0",
          "vertex": "claude-sonnet-4-5@20250929"}
PROFILES: dict[str, dict[str, Any]] = {
    "anthropic": {"ttft": {"median_ms": 150, "sigma": 0.8}, "stall_prob": 0.2, "stall_ms": 2000},
    "bedrock": {"ttft": {"median_ms": 180, "sigma": 0.3}, "stall_prob": 0.3, "stall_ms": 2000,
                "require_key": f"{AWS_KEY_ID}:{AWS_SECRET}"},
    "vertex": {"ttft": {"median_ms": 200, "sigma": 0.3}, "require_key": "only-tokens-it-issued"},
}
REQUESTS, WAVE = 60, 10


class Collect(Hooks):
    def __init__(self) -> None:
        self.records: list[RequestSummary] = []

    def request_finished(self, summary: RequestSummary) -> None:
        self.records.append(summary)


def service_account(path: Path, token_uri: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": "demo-project", "private_key": pem,
                                "client_email": "demo@demo-project.iam.gserviceaccount.com",
                                "token_uri": token_uri}))
    return str(path)


def config(sims: dict[str, SimulatedProvider], sa_file: str) -> dict[str, Any]:
    targets = [{"provider": name, "model": model, "price": PRICE} for name, model in MODELS.items()]
    return {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {
            "anthropic": {"kind": "anthropic", "base_url": sims["anthropic"].base_url, "api_key": "demo"},
            "bedrock": {"kind": "bedrock", "region": "us-east-1", "base_url": sims["bedrock"].base_url,
                        "aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET},
            "vertex": {"kind": "vertex", "project": "demo-project", "region": "us-east5",
                       "base_url": sims["vertex"].base_url + "/v1", "credentials_file": sa_file},
        },
        "models": {
            "claude-no-hedge": {"targets": targets, "hedge": "off"},
            # Fixed, not p95: with 20% stalls the slow cloud's p95 is the stall itself.
            "claude": {"targets": targets, "hedge": {"delay_ms": 300, "max_attempts": 3, "budget_percent": 50,
                                                     "budget_min": 5}},
        },
        "telemetry": {"traces_file": ""},
    }


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[tuple[str, dict[str, SimulatedProvider], Collect]]:
    async with contextlib.AsyncExitStack() as stack:
        sims: dict[str, SimulatedProvider] = {}
        for i, (name, profile) in enumerate(PROFILES.items()):
            sim = SimulatedProvider(parse_profile({"per_token": 5, "output_tokens": 12, **profile}), name=name,
                                    seed=i + 1)
            sims[name] = await stack.enter_async_context(sim)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sa_file = service_account(folder / "vertex-sa.json", f"{sims['vertex'].base_url}/token")
        collect = Collect()
        runner = web.AppRunner(build_app(Gateway(parse_config(config(sims, sa_file), {}), hooks=collect)),
                               handler_cancellation=True, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", sims, collect


async def _ask(client: anthropic.AsyncAnthropic, alias: str) -> None:
    async with client.messages.stream(model=alias, max_tokens=64,
                                      messages=[{"role": "user", "content": "Say hello."}]) as s:
        await s.get_final_message()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


async def main_async(requests: int = REQUESTS) -> None:
    async with running() as (url, sims, collect):
        client = anthropic.AsyncAnthropic(base_url=url, api_key="demo", max_retries=0)
        print(f"Three simulated clouds serving the same model; gateway at {url}\n")
        print(f"{'policy':<16} {'TTFT p50':>9} {'TTFT p99':>9} {'$/1k req':>9} {'extra $':>8}   "
              "requests per cloud (cut losers)")
        baseline = None
        for alias in ("claude-no-hedge", "claude"):
            for sim in sims.values():
                sim.reset()
            start = len(collect.records)
            for _ in range(max(1, requests // WAVE)):
                await asyncio.gather(*(_ask(client, alias) for _ in range(WAVE)))
            for sim in sims.values():
                await sim.wait_idle()
            records = collect.records[start:]
            ttfts = [r.ttft_s * 1000 for r in records if r.ttft_s is not None]
            cost = sum(r.cost_usd for r in records) / len(records) * 1000
            baseline = cost if baseline is None else baseline
            seen = ", ".join(f"{n} {s.stats.received} ({s.stats.disconnected})" for n, s in sims.items())
            print(f"{alias:<16} {_quantile(ttfts, 0.5):>7.0f}ms {_quantile(ttfts, 0.99):>7.0f}ms "
                  f"{cost:>9.4f} {100 * (cost / baseline - 1):>7.1f}%   {seen}")
        await client.close()
        print("\nEvery Bedrock request was SigV4-signed and verified by the Bedrock simulator; Vertex tokens came "
              f"from its token endpoint ({sims['vertex'].clouds.tokens_issued} issued).")


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async())


if __name__ == "__main__":
    main()
