"""Each cloud kind's endpoint: URLs, the body differences, error reading, and what the engine sees of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config import parse_config
from gateway.config.model import ProviderConfig
from gateway.errors import FailureKind
from gateway.providers import UpstreamRequest, azure, bedrock, create_provider, vertex
from gateway.providers.http import HttpProvider
from gateway.telemetry.hooks import GENAI_PROVIDER_NAME
from gateway.wire import WireFormat
from tests.cloud_env import isolate

BODY: Any = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def provider_config(**p: Any) -> ProviderConfig:
    return parse_config({"providers": {"p": p}, "models": {"m": {"targets": [{"provider": "p", "model": "x"}]}}},
                        {}).providers["p"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setattr("gateway.providers.azure.entra_credential", lambda: None)


def test_urls_per_kind_and_style() -> None:
    v1 = azure.endpoint(provider_config(kind="azure-openai", base_url="https://r.openai.azure.com", api_key="k"))
    assert v1.urls["chat"] == "https://r.openai.azure.com/openai/v1/chat/completions"
    assert v1.headers["api-key"] == "k" and v1.auth is None
    dated = azure.endpoint(provider_config(kind="azure-openai", base_url="https://r.openai.azure.com",
                                           api_version="2024-10-21", auth="entra"))
    assert dated.urls["chat"] == ("https://r.openai.azure.com/openai/deployments/{model}/chat/completions"
                                  "?api-version=2024-10-21")
    assert "api-key" not in dated.headers and dated.auth is not None
    br = bedrock.endpoint(provider_config(kind="bedrock", region="us-west-2", aws_access_key_id="A",
                                          aws_secret_access_key="S"))
    assert br.urls == {"chat": "https://bedrock-runtime.us-west-2.amazonaws.com/model/{model}/"
                               "invoke-with-response-stream"}
    assert br.stream_type == "application/vnd.amazon.eventstream"
    vx = vertex.endpoint(provider_config(kind="vertex", project="my-project", region="europe-west1"))
    models = "https://europe-west1-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west1/" \
             "publishers/anthropic/models"
    assert vx.urls == {"chat": f"{models}/{{model}}:streamRawPredict",
                       "count_tokens": f"{models}/count-tokens:rawPredict"}


def test_bedrock_body_has_no_model_or_stream_and_takes_betas_in_the_body() -> None:
    shaped = bedrock.shape(UpstreamRequest(BODY, {"anthropic-beta": "a-1, b-2", "anthropic-version": "2023-06-01"}))
    assert shaped.body == {"max_tokens": 5, "messages": BODY["messages"], "anthropic_version": "bedrock-2023-05-31",
                           "anthropic_beta": ["a-1", "b-2"]}
    assert shaped.headers == {}
    assert BODY["model"] == "m" and "stream" in BODY  # the engine's body is not changed in place


def test_vertex_body_keeps_stream_drops_model_but_for_token_counts() -> None:
    shaped = vertex.shape(UpstreamRequest(BODY, {"anthropic-beta": "x", "anthropic-version": "2023-06-01"}))
    assert shaped.body == {"max_tokens": 5, "stream": True, "messages": BODY["messages"],
                           "anthropic_version": "vertex-2023-10-16"}
    assert shaped.headers == {"anthropic-beta": "x"}
    counted = vertex.shape(UpstreamRequest({"model": "m", "messages": []}, {}, operation="count_tokens"))
    assert counted.body == {"model": "m", "messages": [], "anthropic_version": "vertex-2023-10-16"}


def test_azure_errors_use_the_code_and_a_content_filter_is_named() -> None:
    filtered = orjson.dumps({"error": {"message": "filtered", "type": None, "code": "content_filter",
                                       "innererror": {"code": "ResponsibleAIPolicyViolation"}}})
    assert azure.read_error(filtered, {}) == ("filtered", "content_filter", None)
    missing = orjson.dumps({"error": {"code": "DeploymentNotFound", "message": "The API deployment ..."}})
    assert azure.read_error(missing, {})[1] == "DeploymentNotFound"
    assert azure.read_error(b"<html>gateway timeout</html>", {}) == ("<html>gateway timeout</html>", "", None)


@pytest.mark.parametrize(("headers", "body", "expected"), [
    ({"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"},
     {"message": "Too many requests"}, ("Too many requests", "ThrottlingException", FailureKind.RATE_LIMITED)),
    ({}, {"__type": "com.amazon.bedrock#ServiceQuotaExceededException", "message": "quota"},
     ("quota", "ServiceQuotaExceededException", FailureKind.RATE_LIMITED)),
    ({"x-amzn-ErrorType": "ModelErrorException"}, {"message": "m"}, ("m", "ModelErrorException", FailureKind.FAULT)),
    ({"x-amzn-ErrorType": "AccessDeniedException:x"}, {"Message": "no"}, ("no", "AccessDeniedException", None)),
])
def test_bedrock_errors_read_the_type_header(headers: dict[str, str], body: Any, expected: Any) -> None:
    assert bedrock.read_error(orjson.dumps(body), headers) == expected


def test_vertex_errors_in_both_shapes() -> None:
    google = orjson.dumps([{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}])
    assert vertex.read_error(google, {}) == ("Quota exceeded", "RESOURCE_EXHAUSTED", None)
    claude = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert vertex.read_error(claude, {}) == ("Overloaded", "overloaded_error", None)


async def test_the_engine_sees_the_wire_format_and_telemetry_the_cloud() -> None:
    configs = {
        "azure.ai.openai": provider_config(kind="azure-openai", base_url="https://r.openai.azure.com", api_key="k"),
        "aws.bedrock": provider_config(kind="bedrock", region="us-east-1", aws_access_key_id="A",
                                       aws_secret_access_key="S"),
        "gcp.vertex_ai": provider_config(kind="vertex", project="my-project", region="us-east5"),
    }
    for name, config in configs.items():
        provider = create_provider(config)
        assert isinstance(provider, HttpProvider)
        assert provider.kind is config.wire and provider.speaks == {config.wire}
        assert GENAI_PROVIDER_NAME[config.kind] == name
        await provider.aclose()
    assert configs["aws.bedrock"].wire is WireFormat.ANTHROPIC
    assert "count_tokens" in create_provider(configs["gcp.vertex_ai"]).operations


async def test_redaction_cuts_the_current_bearer_token() -> None:
    class Entra:
        def get_token(self, *scopes: str) -> Any:
            import time

            from azure.core.credentials import AccessToken
            return AccessToken("eyJ-secret-token", int(time.time()) + 3600)

    import gateway.providers.azure as module
    original = module.entra_credential
    module.entra_credential = Entra  # type: ignore[assignment]
    try:
        provider = create_provider(provider_config(kind="azure-openai", base_url="https://r.openai.azure.com",
                                                   auth="entra"))
        assert isinstance(provider, HttpProvider) and provider._auth is not None
        await provider._auth.headers("POST", "https://r", {}, b"")
        assert provider.redact("upstream said: bad token eyJ-secret-token") == "upstream said: bad token [redacted]"
        await provider.aclose()
    finally:
        module.entra_credential = original
