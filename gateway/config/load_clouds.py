"""The cloud kinds' provider keys: which each kind takes, their checks, and the base URL each defaults to.

Credentials come only from the config (through `${ENV}`) or from the clouds' standard chains; no message
here ever shows a credential's value.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from gateway.config.clouds import (
    AZURE_V1,
    ENTRA_SCOPE,
    AzureOptions,
    BedrockOptions,
    CloudOptions,
    ProviderKind,
    VertexOptions,
)
from gateway.config.load import ConfigError, _Section

CLOUD_KEYS: dict[ProviderKind, tuple[str, ...]] = {
    ProviderKind.AZURE_OPENAI: ("api_version", "auth", "entra_scope"),
    ProviderKind.BEDROCK: ("region", "auth", "aws_profile", "aws_access_key_id", "aws_secret_access_key",
                           "aws_session_token"),
    ProviderKind.VERTEX: ("project", "region", "credentials_file"),
}
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")  # us-east-1, eu-central-2, us-gov-west-1, ap-southeast-5
_GCP_REGION = re.compile(r"^([a-z]+-[a-z]+\d+|global|us|eu)$")  # us-east5, europe-west1; global; multi-regions
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def parse_cloud(p: _Section, kind: ProviderKind) -> tuple[CloudOptions | None, str | None]:
    """The kind's settings and its default base URL (None: `base_url` is required)."""
    if kind is ProviderKind.AZURE_OPENAI:
        return _azure(p), None  # the resource endpoint has no default
    if kind is ProviderKind.BEDROCK:
        bedrock = _bedrock(p)
        return bedrock, f"https://bedrock-runtime.{bedrock.region}.amazonaws.com"
    if kind is ProviderKind.VERTEX:
        vertex = _vertex(p)
        host = "aiplatform.googleapis.com" if vertex.region == "global" else \
            f"aiplatform.{vertex.region}.rep.googleapis.com" if vertex.region in ("us", "eu") else \
            f"{vertex.region}-aiplatform.googleapis.com"
        return vertex, f"https://{host}/v1"  # as the anthropic SDK's Vertex client defaults it
    return None, None


def _needs(p: _Section, module: str, extra: str, what: str) -> None:
    """The credential library `what` uses is installed (checked without importing it): a missing extra is a
    config error at start, not an ImportError at the first request."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(p.at("kind"), f"{what} needs {module.split('.')[0]}: pip install "
                          f"'hedging-gateway[{extra}]'")


def _choice(p: _Section, key: str, choices: tuple[str, ...]) -> str:
    value = p.string(key, choices[0])
    if value not in choices:
        raise ConfigError(p.at(key), f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _azure(p: _Section) -> AzureOptions:
    version = p.string("api_version", AZURE_V1)
    if version != AZURE_V1 and not _API_VERSION.match(version):
        raise ConfigError(p.at("api_version"), f"must be v1 (the v1 URL style) or a date such as 2024-10-21 "
                          f"(the deployments style), got {version!r}")
    auth = _choice(p, "auth", ("api-key", "entra"))
    has_key = bool(p.string("api_key", ""))
    if auth == "api-key" and not has_key:
        raise ConfigError(p.at("api_key"), "is required with auth api-key (e.g. api_key: ${AZURE_OPENAI_API_KEY}); "
                          "or set auth: entra")
    if auth == "entra" and has_key:
        raise ConfigError(p.at("api_key"), "is not used with auth entra (the token comes from azure-identity)")
    if auth == "entra":
        _needs(p, "azure.identity", "azure", "azure-openai with auth entra")
    return AzureOptions(api_version=version, auth="entra" if auth == "entra" else "api-key",
                        entra_scope=p.string("entra_scope", ENTRA_SCOPE))


def _bedrock(p: _Section) -> BedrockOptions:
    region = p.string("region")  # no default region: the endpoint and the signature depend on it
    if not _AWS_REGION.match(region):
        raise ConfigError(p.at("region"), f"must be an AWS region such as us-east-1, got {region!r}")
    auth = _choice(p, "auth", ("sigv4", "api-key"))
    key_id, secret = p.string("aws_access_key_id", ""), p.string("aws_secret_access_key", "")
    token = p.string("aws_session_token", "")
    if bool(key_id) != bool(secret):
        missing = "aws_secret_access_key" if key_id else "aws_access_key_id"
        raise ConfigError(p.at(missing), "is required with the other half of the key pair (or omit both to use "
                          "the default credential chain)")
    if token and not key_id:
        raise ConfigError(p.at("aws_session_token"), "needs aws_access_key_id and aws_secret_access_key")
    has_key = bool(p.string("api_key", ""))
    if auth == "api-key":
        if not has_key:
            raise ConfigError(p.at("api_key"), "is required with auth api-key (a Bedrock API key, e.g. "
                              "${AWS_BEARER_TOKEN_BEDROCK})")
        if key_id or p.string("aws_profile", ""):
            raise ConfigError(p.at("auth"), "api-key takes no AWS credentials (aws_* keys are for sigv4)")
    elif has_key:
        raise ConfigError(p.at("api_key"), "is not used with auth sigv4 (set auth: api-key for a Bedrock API key)")
    else:
        _needs(p, "botocore", "bedrock", "bedrock with auth sigv4")
    return BedrockOptions(region=region, auth="api-key" if auth == "api-key" else "sigv4",
                          aws_profile=p.string("aws_profile", ""), access_key_id=key_id, secret_access_key=secret,
                          session_token=token)


def _vertex(p: _Section) -> VertexOptions:
    project = p.string("project")
    if not _GCP_PROJECT.match(project):
        raise ConfigError(p.at("project"), f"must be a Google Cloud project id (6-30 lower-case letters, digits "
                          f"and hyphens), got {project!r}")
    region = p.string("region")
    if not _GCP_REGION.match(region):
        raise ConfigError(p.at("region"), f"must be a Vertex AI region such as us-east5 or global, got {region!r}")
    path = p.string("credentials_file", "")
    if path:
        _check_service_account(p.at("credentials_file"), path)
    if p.string("api_key", ""):
        raise ConfigError(p.at("api_key"), "is not used by vertex (credentials: credentials_file or "
                          "application-default credentials)")
    _needs(p, "google.auth", "vertex", "vertex")
    _needs(p, "requests", "vertex", "vertex (google-auth's token refresh)")
    return VertexOptions(project=project, region=region, credentials_file=path)


def _check_service_account(field: str, path: str) -> None:
    """A readable service-account key file. Messages name the path and the type, never the content (it holds
    a private key). Other credential types (external accounts run commands) go through ADC."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(field, f"{path} is not a JSON key file") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind != "service_account":
        raise ConfigError(field, f"must be a service-account key file (type service_account), got type {kind!r}; "
                          "for other credentials leave it out and use application-default credentials "
                          "(GOOGLE_APPLICATION_CREDENTIALS)")
