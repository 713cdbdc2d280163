"""The cloud kinds' config: each kind's keys, checked at start with messages naming the field, no secret shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.config.clouds import AzureOptions, BedrockOptions, ProviderKind, VertexOptions
from gateway.wire import WireFormat

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def config(provider: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config({"providers": {"p": provider},
                         "models": {"m": {"targets": [{"provider": "p", "model": "x"}]}}}, env or {})


def test_each_kind_speaks_its_wire_format() -> None:
    assert {k: k.wire for k in ProviderKind} == {
        ProviderKind.OPENAI: WireFormat.OPENAI, ProviderKind.ANTHROPIC: WireFormat.ANTHROPIC,
        ProviderKind.AZURE_OPENAI: WireFormat.OPENAI, ProviderKind.BEDROCK: WireFormat.ANTHROPIC,
        ProviderKind.VERTEX: WireFormat.ANTHROPIC}


def test_defaults_and_base_urls(tmp_path: Path) -> None:
    bedrock = config({"kind": "bedrock", "region": "eu-central-1"}).providers["p"]
    assert bedrock.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com" and bedrock.wire == "anthropic"
    assert bedrock.cloud == BedrockOptions(region="eu-central-1")
    vertex = config({"kind": "vertex", "project": "my-project", "region": "us-east5"}).providers["p"]
    assert vertex.base_url == "https://us-east5-aiplatform.googleapis.com/v1"
    assert vertex.cloud == VertexOptions(project="my-project", region="us-east5")
    assert config({"kind": "vertex", "project": "my-project", "region": "global"}).providers["p"].base_url == \
        "https://aiplatform.googleapis.com/v1"
    azure = config({"kind": "azure-openai", "base_url": "https://r.openai.azure.com/", "api_key": "k"}).providers["p"]
    assert azure.base_url == "https://r.openai.azure.com" and azure.cloud == AzureOptions()
    assert azure.cloud.v1


def test_credentials_come_from_env_and_never_show(tmp_path: Path) -> None:
    p = config({"kind": "bedrock", "region": "us-west-2", "aws_access_key_id": "${K}",
                "aws_secret_access_key": "${S}"}, {"K": "AKIDX", "S": SECRET}).providers["p"]
    assert isinstance(p.cloud, BedrockOptions) and p.cloud.secret_access_key == SECRET
    assert SECRET not in repr(p) and "AKIDX" not in repr(p)
    with pytest.raises(ConfigError) as caught:
        config({"kind": "bedrock", "region": "us-west-2", "aws_access_key_id": "${K}",
                "aws_secret_access_key": "${S}"}, {"K": "AKIDX"})
    assert str(caught.value) == "providers.p.aws_secret_access_key: environment variable S is not set"


def sa_file(tmp_path: Path, kind: str = "service_account") -> str:
    path = tmp_path / "key.json"
    path.write_text(json.dumps({"type": kind, "private_key": SECRET}))
    return str(path)


CASES: list[tuple[Callable[[Path], dict[str, Any]], str]] = [
    (lambda t: {"kind": "bedrock"}, "providers.p.region: is required"),
    (lambda t: {"kind": "bedrock", "region": "mars-1"}, "providers.p.region: must be an AWS region"),
    (lambda t: {"kind": "bedrock", "region": "us-east-1", "auth": "iam"},
     "providers.p.auth: must be one of sigv4, api-key, got 'iam'"),
    (lambda t: {"kind": "bedrock", "region": "us-east-1", "aws_access_key_id": "AKID"},
     "providers.p.aws_secret_access_key: is required with the other half"),
    (lambda t: {"kind": "bedrock", "region": "us-east-1", "api_key": "k"},
     "providers.p.api_key: is not used with auth sigv4"),
    (lambda t: {"kind": "bedrock", "region": "us-east-1", "auth": "api-key"}, "providers.p.api_key: is required"),
    (lambda t: {"kind": "azure-openai", "base_url": "https://r.openai.azure.com"},
     "providers.p.api_key: is required with auth api-key"),
    (lambda t: {"kind": "azure-openai", "base_url": "https://r.openai.azure.com", "auth": "entra", "api_key": "k"},
     "providers.p.api_key: is not used with auth entra"),
    (lambda t: {"kind": "azure-openai", "base_url": "https://r.openai.azure.com", "auth": "aad"},
     "providers.p.auth: must be one of api-key, entra"),
    (lambda t: {"kind": "azure-openai", "base_url": "https://r.openai.azure.com", "api_key": "k",
                "api_version": "latest"}, "providers.p.api_version: must be v1"),
    (lambda t: {"kind": "azure-openai", "api_key": "k"}, "providers.p.base_url: is required"),
    (lambda t: {"kind": "vertex", "region": "us-east5"}, "providers.p.project: is required"),
    (lambda t: {"kind": "vertex", "project": "my-project"}, "providers.p.region: is required"),
    (lambda t: {"kind": "vertex", "project": "my-project", "region": "us-east5", "credentials_file": "/nope.json"},
     "providers.p.credentials_file: cannot read /nope.json"),
    (lambda t: {"kind": "vertex", "project": "my-project", "region": "us-east5",
                "credentials_file": sa_file(t, "external_account")},
     "providers.p.credentials_file: must be a service-account key file"),
    (lambda t: {"kind": "openai", "base_url": "https://api.openai.com/v1", "region": "us-east-1"},
     "providers.p.region: unknown key"),
    (lambda t: {"kind": "vertex", "project": "my-project", "region": "us-east5", "aws_profile": "x"},
     "providers.p.aws_profile: unknown key"),
]


@pytest.mark.parametrize(("provider", "message"), CASES)
def test_mistakes_name_the_field(tmp_path: Path, provider: Callable[[Path], dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(provider(tmp_path))
    assert str(caught.value).startswith(message)
    assert SECRET not in str(caught.value)


def test_a_missing_cloud_library_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "botocore" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^providers.p.kind: bedrock with auth sigv4 needs botocore: pip install "
                                          r"'hedging-gateway\[bedrock\]'"):
        config({"kind": "bedrock", "region": "us-east-1"})
    # A Bedrock API key needs no AWS library.
    assert config({"kind": "bedrock", "region": "us-east-1", "auth": "api-key", "api_key": "k"}).providers["p"]


def test_a_service_account_file_is_accepted(tmp_path: Path) -> None:
    p = config({"kind": "vertex", "project": "my-project", "region": "europe-west1",
                "credentials_file": sa_file(tmp_path)}).providers["p"]
    assert isinstance(p.cloud, VertexOptions) and p.cloud.credentials_file.endswith("key.json")


def test_the_example_config_parses_without_any_environment() -> None:
    from gateway.config import load_config

    cfg = load_config(Path(__file__).parents[2] / "config" / "gateway.example.yaml", {})
    kinds = {p.kind for p in cfg.providers.values()}
    assert {"azure-openai", "bedrock", "vertex"} <= kinds
    assert len(cfg.models["claude-clouds"].targets) == 3
