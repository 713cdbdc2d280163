"""The cloud provider kinds in a load test: the simulators check each cloud's auth (SigV4, Azure's api-key,
Google tokens from the simulator's own token endpoint), so the gateway under test signs and refreshes as it
would against the real clouds. The credentials are fixed test values, known to both sides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

AWS_KEY_ID, AWS_SECRET = "AKIDLOADTEST", "loadtest-secret"
AZURE_KEY = "loadtest-azure-key"
PROJECT, VERTEX_REGION, BEDROCK_REGION = "loadtest-project", "us-east5", "us-east-1"
KINDS = ("openai", "anthropic", "azure-openai", "bedrock", "vertex")
# What each cloud's simulator requires (its profile's require_key); Vertex accepts only tokens it issued.
SIM_KEYS = {"azure-openai": AZURE_KEY, "bedrock": f"{AWS_KEY_ID}:{AWS_SECRET}", "vertex": "only-issued-tokens"}


def base_url(kind: str, sim_url: str) -> str:
    # The OpenAI SDK's base_url ends in /v1, as does Vertex's; Anthropic's, Azure's and Bedrock's do not.
    return sim_url + "/v1" if kind in ("openai", "vertex") else sim_url


def provider_keys(kind: str, name: str, sim_url: str, files_dir: Path) -> dict[str, Any]:
    """The gateway config keys of one provider of `kind`, but for the scenario's own (timeout_s, breaker...)."""
    keys: dict[str, Any] = {"kind": kind, "base_url": base_url(kind, sim_url)}
    if kind == "azure-openai":
        return keys | {"api_version": "2024-10-21", "api_key": AZURE_KEY}
    if kind == "bedrock":
        return keys | {"region": BEDROCK_REGION, "aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET}
    if kind == "vertex":
        path = service_account_file(files_dir / f"vertex-{name}-sa.json", f"{sim_url}/token")
        return keys | {"project": PROJECT, "region": VERTEX_REGION, "credentials_file": str(path)}
    return keys | {"api_key": "loadtest"}


def service_account_file(path: Path, token_uri: str) -> Path:
    """A service-account key file (a fresh RSA key) whose token endpoint is a simulator's."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "service_account", "project_id": PROJECT, "private_key_id": "loadtest",
                                "private_key": pem, "client_email": f"loadtest@{PROJECT}.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": token_uri}), encoding="utf-8")
    path.chmod(0o600)
    return path
