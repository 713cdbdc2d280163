"""The simulator's cloud routes, driven by the official clients: if the SDKs' own parsers read what it sends
and its auth checks agree with the SDKs' signing, it speaks the clouds' formats.

- Bedrock: `anthropic.AsyncAnthropicBedrock` (botocore's SigV4 signer, botocore's event-stream decoder and
  bedrock-runtime model); botocore's `EventStreamBuffer` on the raw bytes.
- Vertex: `anthropic.AsyncAnthropicVertex` with an access token; google-auth's service-account refresh
  against the simulator's token endpoint.
- Azure: `openai.AsyncAzureOpenAI` with an api-key and with a token provider; `openai.AsyncOpenAI` on v1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from botocore.eventstream import EventStreamBuffer

from gateway.simulator import SimProfile, SimulatedProvider
from gateway.simulator.azure_wire import FILTER_COMPLETION, FILTER_PROMPT
from tests.cloud_env import (
    AWS_KEY_ID,
    AWS_REQUIRED,
    AWS_SECRET,
    AZURE_KEY,
    ENTRA_TOKEN,
    PROJECT,
    VERTEX_TOKEN,
    isolate,
    service_account_file,
)

MESSAGES: Any = [{"role": "user", "content": "Hello there, simulator!"}]
WEATHER: Any = [{"name": "get_weather", "description": "Weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(autouse=True)
def _no_real_cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture
async def cloud() -> AsyncIterator[SimulatedProvider]:
    async with SimulatedProvider(SimProfile(output_tokens=5), name="cloud", seed=1) as sim:
        yield sim


def bedrock(sim: SimulatedProvider, secret: str = AWS_SECRET) -> anthropic.AsyncAnthropicBedrock:
    return anthropic.AsyncAnthropicBedrock(aws_access_key=AWS_KEY_ID, aws_secret_key=secret, aws_region="us-east-1",
                                           base_url=sim.base_url, max_retries=0)


def vertex(sim: SimulatedProvider, token: str = VERTEX_TOKEN) -> anthropic.AsyncAnthropicVertex:
    return anthropic.AsyncAnthropicVertex(region="us-east5", project_id=PROJECT, access_token=token,
                                          base_url=f"{sim.base_url}/v1", max_retries=0)


def azure(sim: SimulatedProvider, **auth: Any) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=sim.base_url, api_version="2024-10-21", max_retries=0, **auth)


# ---- Bedrock -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_bedrock_client_reads_answers_and_signature_is_checked(cloud: SimulatedProvider, stream: bool) -> None:
    cloud.profile = SimProfile(output_tokens=5, require_key=AWS_REQUIRED)
    async with bedrock(cloud) as client:
        if stream:
            async with client.messages.stream(model=CLAUDE, max_tokens=50, messages=MESSAGES) as s:
                text = "".join([t async for t in s.text_stream])
                message = await s.get_final_message()
        else:
            message = await client.messages.create(model=CLAUDE, max_tokens=50, messages=MESSAGES)
            text = message.content[0].text if message.content[0].type == "text" else ""
    assert text == "tok0 tok1 tok2 tok3 tok4"
    assert message.usage.output_tokens == 5 and message.stop_reason == "end_turn"
    seen = cloud.stats.recent[-1]
    route = "bedrock.invoke-with-response-stream" if stream else "bedrock.invoke"
    assert seen["route"] == route and seen["path"] == f"/model/{CLAUDE}/{route.split('.')[1]}"
    # The SDK's body: Anthropic's without model and stream, with anthropic_version.
    assert "model" not in seen["body"] and "stream" not in seen["body"] and "anthropic_version" in seen["body"]


async def test_bedrock_refuses_a_wrong_secret_as_aws_does(cloud: SimulatedProvider) -> None:
    cloud.profile = SimProfile(require_key=AWS_REQUIRED)
    async with bedrock(cloud, secret="not-the-secret") as client:
        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    assert caught.value.status_code == 403
    assert "signature we calculated does not match" in str(caught.value.body)
    assert caught.value.response.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")


async def test_bedrock_refuses_unsigned_and_unknown_key_requests(cloud: SimulatedProvider) -> None:
    cloud.profile = SimProfile(require_key=AWS_REQUIRED)
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": MESSAGES})
    async with aiohttp.ClientSession() as http, http.post(f"{cloud.base_url}/model/{CLAUDE}/invoke",
                                                          data=body) as resp:
        assert resp.status == 403 and resp.headers["x-amzn-ErrorType"].startswith(
            "MissingAuthenticationTokenException")
        assert (await resp.json()) == {"message": "Missing Authentication Token"}
    cloud.profile = SimProfile(require_key=f"AKIDOTHER:{AWS_SECRET}")
    async with bedrock(cloud) as client:
        with pytest.raises(anthropic.PermissionDeniedError, match="security token included in the request"):
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)


async def test_bedrock_stream_is_aws_event_stream_framing(cloud: SimulatedProvider) -> None:
    """botocore's own decoder reads the raw bytes: prelude, CRCs, headers, chunk payloads of base64 events."""
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 3, "messages": MESSAGES})
    async with aiohttp.ClientSession() as http, http.post(
            f"{cloud.base_url}/model/{CLAUDE}/invoke-with-response-stream", data=body) as resp:
        assert resp.headers["Content-Type"] == "application/vnd.amazon.eventstream"
        raw = await resp.read()
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    messages = list(buffer)
    assert all(m.headers[":message-type"] == "event" and m.headers[":event-type"] == "chunk" for m in messages)
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert [e["type"] for e in events] == ["message_start", "content_block_start", "ping", "content_block_delta",
                                           "content_block_delta", "content_block_delta", "content_block_stop",
                                           "message_delta", "message_stop"]
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 3


async def test_bedrock_throttling_and_midstream_exception(cloud: SimulatedProvider) -> None:
    cloud.profile = SimProfile(error_rate=1.0, error_status=429)
    async with bedrock(cloud) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
        headers = caught.value.response.headers
        assert headers["x-amzn-ErrorType"].startswith("ThrottlingException:") and "retry-after" not in headers
        assert caught.value.body == {"message": "Too many requests, please wait before trying again."}
        cloud.profile = SimProfile(midstream_error_rate=1.0)
        with pytest.raises(anthropic.APIStatusError, match="internalServerException"):
            async with client.messages.stream(model=CLAUDE, max_tokens=50, messages=MESSAGES) as s:
                async for _ in s.text_stream:
                    pass


async def test_bedrock_tool_call_streams(cloud: SimulatedProvider) -> None:
    async with bedrock(cloud) as client, client.messages.stream(
            model=CLAUDE, max_tokens=100, tools=WEATHER, tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "weather in Paris?"}]) as s:
        message = await s.get_final_message()
    assert message.stop_reason == "tool_use"
    tool = message.content[0]
    assert tool.type == "tool_use" and tool.name == "get_weather" and isinstance(tool.input, dict)


async def test_bedrock_refuses_model_and_stream_in_the_body(cloud: SimulatedProvider) -> None:
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "model": CLAUDE, "max_tokens": 5,
                       "messages": MESSAGES})
    async with aiohttp.ClientSession() as http, http.post(f"{cloud.base_url}/model/{CLAUDE}/invoke",
                                                          data=body) as resp:
        assert resp.status == 400 and resp.headers["x-amzn-ErrorType"].startswith("ValidationException")
        assert "extraneous key [model]" in (await resp.json())["message"]


# ---- Vertex --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_vertex_client_reads_answers(cloud: SimulatedProvider, stream: bool) -> None:
    cloud.profile = SimProfile(output_tokens=5, require_key=VERTEX_TOKEN)
    async with vertex(cloud) as client:
        if stream:
            async with client.messages.stream(model="claude-sonnet-4-5@20250929", max_tokens=50,
                                              messages=MESSAGES) as s:
                text = "".join([t async for t in s.text_stream])
        else:
            message = await client.messages.create(model="claude-sonnet-4-5@20250929", max_tokens=50,
                                                   messages=MESSAGES)
            text = message.content[0].text if message.content[0].type == "text" else ""
        count = await client.messages.count_tokens(model="claude-sonnet-4-5@20250929", messages=MESSAGES)
    assert text == "tok0 tok1 tok2 tok3 tok4" and count.input_tokens > 0
    chat = [r for r in cloud.stats.recent if r["route"].startswith("vertex.") and "count" not in r["route"]][-1]
    method = "streamRawPredict" if stream else "rawPredict"
    assert chat["path"] == (f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/"
                            f"claude-sonnet-4-5@20250929:{method}")
    assert "model" not in chat["body"] and isinstance(chat["body"]["anthropic_version"], str)


async def test_vertex_refuses_a_wrong_token_in_googles_shape(cloud: SimulatedProvider) -> None:
    cloud.profile = SimProfile(require_key=VERTEX_TOKEN)
    async with vertex(cloud, token="ya29.wrong") as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)
    assert caught.value.body == {"error": {"code": 401, "message": caught.value.body["error"]["message"],  # type: ignore[index]
                                           "status": "UNAUTHENTICATED"}}


async def test_vertex_quota_is_a_google_rate_limit(cloud: SimulatedProvider) -> None:
    cloud.profile = SimProfile(error_rate=1.0, error_status=429)
    async with vertex(cloud) as client:
        with pytest.raises(anthropic.RateLimitError, match="RESOURCE_EXHAUSTED"):
            await client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)


async def test_google_auth_service_account_refresh_against_the_token_endpoint(
        cloud: SimulatedProvider, tmp_path: Path) -> None:
    """google-auth's real JWT-bearer flow; the token it gets is accepted, a made-up one is not."""
    import asyncio

    import google.auth.transport.requests
    from google.oauth2 import service_account

    cloud.profile = SimProfile(require_key="some-other-token")
    path = service_account_file(tmp_path / "sa.json", f"{cloud.base_url}/token")
    credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(path), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())
    assert credentials.token.startswith("ya29.sim-") and cloud.clouds.tokens_issued == 1
    async with vertex(cloud, token=credentials.token) as client:
        message = await client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)
    assert message.usage.output_tokens == 5


# ---- Azure OpenAI --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_azure_client_with_api_key(cloud: SimulatedProvider, stream: bool) -> None:
    cloud.profile = SimProfile(output_tokens=5, require_key=AZURE_KEY)
    async with azure(cloud, api_key=AZURE_KEY) as client:
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="gpt-4o-prod", messages=MESSAGES, stream=True, stream_options={"include_usage": True})]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert chunks[0].prompt_filter_results is not None  # type: ignore[attr-defined]  # Azure's first chunk
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
        else:
            completion = await client.chat.completions.create(model="gpt-4o-prod", messages=MESSAGES)
            text = completion.choices[0].message.content or ""
    assert text == "tok0 tok1 tok2 tok3 tok4"
    seen = cloud.stats.recent[-1]
    assert seen["path"] == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"


async def test_azure_token_provider_and_wrong_key(cloud: SimulatedProvider) -> None:
    cloud.profile = SimProfile(output_tokens=2, require_key=ENTRA_TOKEN)

    async def token() -> str:
        return ENTRA_TOKEN

    async with azure(cloud, azure_ad_token_provider=token) as client:
        completion = await client.chat.completions.create(model="gpt-4o-prod", messages=MESSAGES)
    assert completion.choices[0].message.content == "tok0 tok1"
    async with azure(cloud, api_key="wrong") as client:
        with pytest.raises(openai.AuthenticationError, match="invalid subscription key"):
            await client.chat.completions.create(model="gpt-4o-prod", messages=MESSAGES)


async def test_azure_content_filter_refusal_and_cut(cloud: SimulatedProvider) -> None:
    async with azure(cloud, api_key=AZURE_KEY) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="d", messages=[{"role": "user", "content": FILTER_PROMPT}])
        assert caught.value.code == "content_filter"
        stream = await client.chat.completions.create(
            model="d", messages=[{"role": "user", "content": FILTER_COMPLETION}], stream=True)
        reasons = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert reasons[-1] == "content_filter"


async def test_azure_v1_style_and_missing_api_version(cloud: SimulatedProvider) -> None:
    cloud.profile = SimProfile(output_tokens=2, require_key=AZURE_KEY)
    # The v1 API takes the OpenAI client as it is; the key rides as a bearer token.
    async with openai.AsyncOpenAI(base_url=f"{cloud.base_url}/openai/v1/", api_key=AZURE_KEY, max_retries=0) as c:
        completion = await c.chat.completions.create(model="gpt-4o-prod", messages=MESSAGES)
    assert completion.choices[0].message.content == "tok0 tok1"
    assert cloud.stats.recent[-1]["path"] == "/openai/v1/chat/completions"
    async with aiohttp.ClientSession() as http, http.post(
            f"{cloud.base_url}/openai/deployments/d/chat/completions", json={"messages": MESSAGES},
            headers={"api-key": AZURE_KEY}) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["message"] == "Resource not found"
